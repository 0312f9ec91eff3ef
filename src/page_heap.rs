//! The page heap: free pages tracked in a bitmap, spans carved from it.
//!
//! Memory arrives from the [`PageSource`] in runs; each run becomes an *extent* with one bit
//! per page (1 = in use). A request for `n` pages is a first-fit search for `n` clear bits,
//! done a word at a time. Because free space is the bitmap itself, neighbouring free pages
//! are merged the moment they are freed: there is no free-span list to coalesce.
//!
//! The page heap also owns the heap's metadata: extent records, bitmaps, page-map arrays and
//! span records are bump-allocated from metadata pages, which are either carved from the
//! front of a new run or taken one page at a time from an extent (and marked as metadata in
//! the page map). Metadata never sits in front of an object.
//!
//! Everything here runs under the page-heap lock.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use crate::page_map::PageMap;
use crate::page_source::{PageSource, Run};
use crate::span::{Span, SpanFlags, CLASS_FREED, CLASS_LARGE, CLASS_META};
use crate::sync::{AtomicUsize, Ordering};

const WORD_BITS: usize = usize::BITS as usize;

/// A run of pages obtained from the source, with its bitmap.
pub(crate) struct Extent {
    /// Address of page 0.
    pub(crate) base: usize,
    /// Pages in the extent.
    pub(crate) pages: usize,
    /// One bit per page, 1 = in use; bits past `pages` in the last word are set.
    bitmap: *mut usize,
    /// Free pages in the extent.
    pub(crate) free_pages: usize,
    /// No page below this index is free.
    hint: usize,
    pub(crate) next: *mut Extent,
}

impl Extent {
    fn words(&self) -> usize {
        self.pages.div_ceil(WORD_BITS)
    }

    fn word(&self, i: usize) -> usize {
        // SAFETY: callers pass `i < self.words()`; the bitmap has that many words.
        unsafe { *self.bitmap.add(i) }
    }

    /// Whether page `i` is in use.
    pub(crate) fn is_used(&self, i: usize) -> bool {
        self.word(i / WORD_BITS) >> (i % WORD_BITS) & 1 == 1
    }

    /// Set (in use) or clear pages `[start, start + n)`.
    fn set_range(&mut self, start: usize, n: usize, used: bool) {
        let mut i = start;
        let end = start + n;
        while i < end {
            let w = i / WORD_BITS;
            let lo = i % WORD_BITS;
            let hi = (end - w * WORD_BITS).min(WORD_BITS);
            let mask = if hi - lo == WORD_BITS {
                !0
            } else {
                ((1usize << (hi - lo)) - 1) << lo
            };
            // SAFETY: `w < self.words()` because `i < end <= self.pages`.
            unsafe {
                let p = self.bitmap.add(w);
                if used {
                    debug_assert_eq!(*p & mask, 0, "page already in use");
                    *p |= mask;
                } else {
                    debug_assert_eq!(*p & mask, mask, "page already free");
                    *p &= !mask;
                }
            }
            i = w * WORD_BITS + hi;
        }
        if used {
            self.free_pages -= n;
            if start == self.hint {
                self.hint = end;
            }
        } else {
            self.free_pages += n;
            self.hint = self.hint.min(start);
        }
    }

    /// First index `>= from` whose bit equals `used`, or `self.pages` if none.
    fn next_with(&self, from: usize, used: bool) -> usize {
        if from >= self.pages {
            return self.pages;
        }
        let flip = if used { 0 } else { !0 };
        let mut w = from / WORD_BITS;
        let mut x = (self.word(w) ^ flip) & (!0usize << (from % WORD_BITS));
        loop {
            if x != 0 {
                return (w * WORD_BITS + x.trailing_zeros() as usize).min(self.pages);
            }
            w += 1;
            if w >= self.words() {
                return self.pages;
            }
            x = self.word(w) ^ flip;
        }
    }

    /// First-fit search for `n` free pages whose first page's address is a multiple of
    /// `align` bytes.
    fn find(&self, n: usize, align: usize, page_shift: u32) -> Option<usize> {
        if self.free_pages < n {
            return None;
        }
        let align_pages = (align >> page_shift).max(1);
        let first_abs = self.base >> page_shift;
        let mut pos = self.hint;
        while pos < self.pages {
            let start = self.next_with(pos, false);
            if start >= self.pages {
                return None;
            }
            let end = self.next_with(start, true);
            let abs = first_abs + start;
            let aligned = start + (abs.next_multiple_of(align_pages) - abs);
            if aligned + n <= end {
                return Some(aligned);
            }
            pos = end;
        }
        None
    }

    /// The highest free page, if any.
    fn last_free(&self) -> Option<usize> {
        if self.free_pages == 0 {
            return None;
        }
        (0..self.words()).rev().find_map(|w| {
            let free = !self.word(w);
            (free != 0).then(|| w * WORD_BITS + (WORD_BITS - 1 - free.leading_zeros() as usize))
        })
    }

    pub(crate) fn contains(&self, addr: usize, page_shift: u32) -> bool {
        addr.wrapping_sub(self.base) < self.pages << page_shift
    }
}

/// What every page-heap call needs from the heap around it.
pub(crate) struct Ctx<'a, M> {
    pub(crate) map: &'a M,
    pub(crate) g: Geometry,
    pub(crate) stats: &'a PageStats,
}

/// Page size and growth step, fixed when the heap is built.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) page_shift: u32,
    /// The least the heap asks the source for when it grows.
    pub(crate) grow_bytes: usize,
    /// The least a size-class span spans.
    pub(crate) min_span_bytes: usize,
}

impl Geometry {
    pub(crate) fn page_size(&self) -> usize {
        1 << self.page_shift
    }
}

/// Counters of the page heap, readable without its lock.
pub(crate) struct PageStats {
    /// Pages in all extents.
    pub(crate) pages: AtomicUsize,
    /// Free pages in all extents.
    pub(crate) free_pages: AtomicUsize,
    /// Bytes of metadata (carved pages and metadata pages taken from extents).
    pub(crate) meta_bytes: AtomicUsize,
    /// Bytes obtained from the source.
    pub(crate) source_bytes: AtomicUsize,
    /// Calls to the source that returned memory.
    pub(crate) grows: AtomicUsize,
    /// Pages handed out as spans.
    pub(crate) span_pages: AtomicUsize,
    /// Spans handed out / given back.
    pub(crate) spans_allocated: AtomicUsize,
    pub(crate) spans_freed: AtomicUsize,
}

impl PageStats {
    pub(crate) const fn new() -> Self {
        Self {
            pages: AtomicUsize::new(0),
            free_pages: AtomicUsize::new(0),
            meta_bytes: AtomicUsize::new(0),
            source_bytes: AtomicUsize::new(0),
            grows: AtomicUsize::new(0),
            span_pages: AtomicUsize::new(0),
            spans_allocated: AtomicUsize::new(0),
            spans_freed: AtomicUsize::new(0),
        }
    }
}

/// The page heap proper. Lives inside the heap's page-heap mutex.
pub(crate) struct PageHeap<S> {
    pub(crate) source: S,
    extents: *mut Extent,
    last: *mut Extent,
    /// Metadata bump arena `[arena, arena_end)`.
    arena: usize,
    arena_end: usize,
    /// Span records not in use.
    spare: *mut Span,
}

// SAFETY: the raw pointers point into memory the heap owns (metadata and extents), reachable
// only through the page-heap lock; the source is `Send`.
unsafe impl<S: Send> Send for PageHeap<S> {}

impl<S: PageSource> PageHeap<S> {
    pub(crate) const fn new(source: S) -> Self {
        Self {
            source,
            extents: ptr::null_mut(),
            last: ptr::null_mut(),
            arena: 0,
            arena_end: 0,
            spare: ptr::null_mut(),
        }
    }

    /// Iterate over the extents.
    pub(crate) fn extents(&self) -> impl Iterator<Item = &Extent> {
        let mut e = self.extents;
        core::iter::from_fn(move || {
            // SAFETY: extent records are never freed, and the list is only changed under the
            // lock this `&self` proves.
            let ext = unsafe { e.as_ref()? };
            e = ext.next;
            Some(ext)
        })
    }

    /// Bump-allocate `size` zeroed bytes of metadata from the arena.
    fn arena_alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let start = self.arena.checked_next_multiple_of(align)?;
        let end = start.checked_add(size)?;
        if self.arena == 0 || end > self.arena_end {
            return None;
        }
        self.arena = end;
        let p = start as *mut u8;
        // SAFETY: `[start, end)` lies in the arena, metadata memory owned by the heap and not
        // yet handed out.
        unsafe { ptr::write_bytes(p, 0, size) };
        NonNull::new(p)
    }

    /// Metadata needed to add a run of `pages` pages: extent record, bitmap, page-map arrays.
    fn meta_need(pages: usize, page_shift: u32) -> usize {
        size_of::<Extent>()
            + align_of::<Extent>()
            + pages.div_ceil(WORD_BITS) * size_of::<usize>()
            + align_of::<usize>()
            + S::Map::meta_bound(pages, page_shift)
    }

    /// Ask the source for memory enough for a span of `pages` pages aligned to `align`, and
    /// add it as a new extent. Returns `false` if the source has nothing suitable.
    fn grow(&mut self, cx: &Ctx<'_, S::Map>, pages: usize, align: usize) -> bool {
        let page = cx.g.page_size();
        let Some(span_bytes) = pages
            .checked_mul(page)
            .and_then(|b| b.checked_add(align.saturating_sub(page)))
        else {
            return false;
        };
        // Ask for the span plus its metadata, or the growth step if that is more.
        let meta_pages =
            Self::meta_need(span_bytes >> cx.g.page_shift, cx.g.page_shift).div_ceil(page);
        let Some(min_bytes) = span_bytes.checked_add(meta_pages * page) else {
            return false;
        };
        // Prefer a whole growth step; settle for what the span needs.
        let run = match self.source.grow(min_bytes.max(cx.g.grow_bytes), page) {
            Some(run) => run,
            None if cx.g.grow_bytes > min_bytes => match self.source.grow(min_bytes, page) {
                Some(run) => run,
                None => return false,
            },
            None => return false,
        };
        cx.stats.grows.fetch_add(1, Ordering::Relaxed);
        self.add_run(cx, run)
    }

    /// Turn a run from the source into an extent, carving its metadata from its front when
    /// the arena is short.
    /// A run that cannot be used (the page map is full, or the run is too small to hold even
    /// its own metadata) goes back to the source.
    pub(crate) fn add_run(&mut self, cx: &Ctx<'_, S::Map>, run: Run) -> bool {
        let page = cx.g.page_size();
        let mut base = run.base.as_ptr() as usize;
        let mut pages = run.len >> cx.g.page_shift;
        debug_assert_eq!(base % page, 0);
        let need = Self::meta_need(pages, cx.g.page_shift);
        let carve = if self.arena_end - self.arena < need {
            need.div_ceil(page)
        } else {
            0
        };
        if carve >= pages || !cx.map.has_room() {
            // SAFETY: `run` came from this source and the heap has not touched it.
            unsafe { self.source.release(run) };
            return false;
        }
        cx.stats.source_bytes.fetch_add(run.len, Ordering::Relaxed);
        if carve > 0 {
            self.arena = base;
            self.arena_end = base + carve * page;
            base += carve * page;
            pages -= carve;
            cx.stats
                .meta_bytes
                .fetch_add(carve * page, Ordering::Relaxed);
        }
        let Some(ext) = self.arena_alloc(size_of::<Extent>(), align_of::<Extent>()) else {
            return false;
        };
        let words = pages.div_ceil(WORD_BITS);
        let Some(bitmap) = self.arena_alloc(words * size_of::<usize>(), align_of::<usize>()) else {
            return false;
        };
        // SAFETY: under the page-heap lock; the run is new and overlaps no covered run.
        let registered = unsafe {
            cx.map
                .register(base, pages, cx.g.page_shift, &mut |size, align| {
                    self.arena_alloc(size, align)
                })
        };
        if !registered {
            return false;
        }
        let bitmap = bitmap.as_ptr().cast::<usize>();
        if pages % WORD_BITS != 0 {
            // SAFETY: the last word of the bitmap just allocated.
            unsafe { *bitmap.add(words - 1) = !0usize << (pages % WORD_BITS) };
        }
        let ext = ext.as_ptr().cast::<Extent>();
        // SAFETY: `ext` is fresh, aligned metadata memory for one `Extent`.
        unsafe {
            ext.write(Extent {
                base,
                pages,
                bitmap,
                free_pages: pages,
                hint: 0,
                next: ptr::null_mut(),
            });
            match self.last.as_mut() {
                Some(last) => last.next = ext,
                None => self.extents = ext,
            }
        }
        self.last = ext;
        cx.stats.pages.fetch_add(pages, Ordering::Relaxed);
        cx.stats.free_pages.fetch_add(pages, Ordering::Relaxed);
        true
    }

    /// Find `n` free pages aligned to `align` in some extent; mark them used.
    fn take_pages(&mut self, cx: &Ctx<'_, S::Map>, n: usize, align: usize) -> Option<usize> {
        let page_shift = cx.g.page_shift;
        let mut e = self.extents;
        // SAFETY: extent records are valid for the heap's life; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            if let Some(i) = ext.find(n, align, page_shift) {
                ext.set_range(i, n, true);
                cx.stats.free_pages.fetch_sub(n, Ordering::Relaxed);
                return Some(ext.base + (i << page_shift));
            }
            e = ext.next;
        }
        None
    }

    /// Take the highest free page of the last extent that has one. Metadata pages come from
    /// the top so that they do not split the runs that spans are carved from at the bottom.
    fn take_top_page(&mut self, cx: &Ctx<'_, S::Map>) -> Option<usize> {
        let mut found = None;
        let mut e = self.extents;
        // SAFETY: extent records are valid for the heap's life; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            if ext.free_pages > 0 {
                found = Some(e);
            }
            e = ext.next;
        }
        // SAFETY: as above.
        let ext = unsafe { &mut *found? };
        let i = ext.last_free()?;
        ext.set_range(i, 1, true);
        cx.stats.free_pages.fetch_sub(1, Ordering::Relaxed);
        Some(ext.base + (i << cx.g.page_shift))
    }

    /// The extent holding `addr`.
    fn extent_of(&mut self, addr: usize, page_shift: u32) -> Option<&mut Extent> {
        let mut e = self.extents;
        // SAFETY: as in `take_pages`.
        while let Some(ext) = unsafe { e.as_mut() } {
            if ext.contains(addr, page_shift) {
                return Some(ext);
            }
            e = ext.next;
        }
        None
    }

    /// A span record: a spare one, or a new one from the arena, refilling the arena with a
    /// metadata page when it is empty.
    fn new_record(&mut self, cx: &Ctx<'_, S::Map>) -> Option<*mut Span> {
        if let Some(s) = NonNull::new(self.spare) {
            // SAFETY: spare records are valid records linked through `next`.
            self.spare = unsafe { s.as_ref().next };
            return Some(s.as_ptr());
        }
        let rec = match self.arena_alloc(size_of::<Span>(), align_of::<Span>()) {
            Some(r) => r,
            None => {
                let page = match self.take_top_page(cx) {
                    Some(p) => p,
                    None => {
                        if !self.grow(cx, 1, 1) {
                            return None;
                        }
                        self.take_top_page(cx)?
                    }
                };
                if let Some(pr) = cx.map.page(page, cx.g.page_shift) {
                    pr.class.store(CLASS_META, Ordering::Relaxed);
                }
                cx.stats
                    .meta_bytes
                    .fetch_add(cx.g.page_size(), Ordering::Relaxed);
                self.arena = page;
                self.arena_end = page + cx.g.page_size();
                self.arena_alloc(size_of::<Span>(), align_of::<Span>())?
            }
        };
        Some(rec.as_ptr().cast())
    }

    /// Allocate a span of `pages` pages aligned to `align` bytes for size class `class`
    /// (0 for a large allocation), and point the page map at it. Grows through the source
    /// when no run of free pages is long enough.
    pub(crate) fn alloc_span(
        &mut self,
        cx: &Ctx<'_, S::Map>,
        pages: usize,
        align: usize,
        class: u8,
    ) -> Option<*mut Span> {
        // The record first: taking a metadata page must not steal the run found below.
        let rec = self.new_record(cx)?;
        let start = match self.take_pages(cx, pages, align) {
            Some(s) => Some(s),
            None if self.grow(cx, pages, align) => self.take_pages(cx, pages, align),
            None => None,
        };
        let Some(start) = start else {
            // SAFETY: `rec` is a record we own; back to the spare list.
            unsafe { (*rec).next = self.spare };
            self.spare = rec;
            return None;
        };
        let mut span = Span::empty();
        span.start = start;
        span.pages = pages;
        span.class = class;
        if class == 0 {
            span.flags = SpanFlags::LARGE;
        }
        // SAFETY: `rec` is an exclusively owned record.
        unsafe { rec.write(span) };
        let tag = if class == 0 { CLASS_LARGE } else { class };
        Self::set_map(cx, start, pages, tag, rec);
        cx.stats.spans_allocated.fetch_add(1, Ordering::Relaxed);
        cx.stats.span_pages.fetch_add(pages, Ordering::Relaxed);
        Some(rec)
    }

    fn set_map(cx: &Ctx<'_, S::Map>, start: usize, pages: usize, tag: u8, span: *mut Span) {
        for i in 0..pages {
            if let Some(pr) = cx.map.page(start + (i << cx.g.page_shift), cx.g.page_shift) {
                pr.span.store(span, Ordering::Relaxed);
                pr.class.store(tag, Ordering::Release);
            }
        }
    }

    /// Give a span's pages back and recycle its record.
    ///
    /// # Safety
    /// `span` must be a live span of this heap with no object in use.
    pub(crate) unsafe fn free_span(&mut self, cx: &Ctx<'_, S::Map>, span: *mut Span) {
        // SAFETY: the caller guarantees a live record.
        let (start, pages) = unsafe { ((*span).start, (*span).pages) };
        Self::set_map(cx, start, pages, CLASS_FREED, ptr::null_mut());
        if let Some(ext) = self.extent_of(start, cx.g.page_shift) {
            let i = (start - ext.base) >> cx.g.page_shift;
            ext.set_range(i, pages, false);
        }
        cx.stats.free_pages.fetch_add(pages, Ordering::Relaxed);
        cx.stats.spans_freed.fetch_add(1, Ordering::Relaxed);
        cx.stats.span_pages.fetch_sub(pages, Ordering::Relaxed);
        // SAFETY: the record is no longer referenced by the page map.
        unsafe { (*span).next = self.spare };
        self.spare = span;
    }

    /// Shrink a large span to `new_pages` pages in place, freeing its tail.
    ///
    /// # Safety
    /// `span` must be a live large span and `new_pages` at least 1 and at most its length.
    pub(crate) unsafe fn shrink_span(
        &mut self,
        cx: &Ctx<'_, S::Map>,
        span: *mut Span,
        new_pages: usize,
    ) {
        // SAFETY: the caller guarantees a live record.
        let s = unsafe { &mut *span };
        let tail = s.start + (new_pages << cx.g.page_shift);
        let n = s.pages - new_pages;
        if n == 0 {
            return;
        }
        Self::set_map(cx, tail, n, CLASS_FREED, ptr::null_mut());
        if let Some(ext) = self.extent_of(tail, cx.g.page_shift) {
            let i = (tail - ext.base) >> cx.g.page_shift;
            ext.set_range(i, n, false);
        }
        s.pages = new_pages;
        cx.stats.free_pages.fetch_add(n, Ordering::Relaxed);
        cx.stats.span_pages.fetch_sub(n, Ordering::Relaxed);
    }

    /// Grow a large span to `new_pages` pages in place if the pages after it are free.
    ///
    /// # Safety
    /// `span` must be a live large span and `new_pages` larger than its length.
    pub(crate) unsafe fn extend_span(
        &mut self,
        cx: &Ctx<'_, S::Map>,
        span: *mut Span,
        new_pages: usize,
    ) -> bool {
        // SAFETY: the caller guarantees a live record.
        let s = unsafe { &mut *span };
        let end = s.end(cx.g.page_size());
        let n = new_pages - s.pages;
        let Some(ext) = self.extent_of(s.start, cx.g.page_shift) else {
            return false;
        };
        let i = (end - ext.base) >> cx.g.page_shift;
        if i + n > ext.pages || ext.next_with(i, true) < i + n {
            return false;
        }
        ext.set_range(i, n, true);
        s.pages = new_pages;
        Self::set_map(cx, end, n, CLASS_LARGE, span);
        cx.stats.free_pages.fetch_sub(n, Ordering::Relaxed);
        cx.stats.span_pages.fetch_add(n, Ordering::Relaxed);
        true
    }
}
