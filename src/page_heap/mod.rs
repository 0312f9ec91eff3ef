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
//! With a source whose memory reads as zero ([`PageSource::ZERO_FILLED`], mmap) each extent
//! also has a *clean* bitmap: 1 = a free page known to be zero and not backed by memory
//! (never touched since the source handed it out, or discarded since). Free pages that are
//! not clean are *idle*: backed memory nobody uses. Once more than the source's
//! [`idle_limit`](PageSource::idle_limit) is idle, the page heap gives idle runs back with
//! [`discard`](PageSource::discard) (madvise) until half of it is left: not eagerly, since
//! each discarded page costs a page fault when it is used again.
//!
//! Spans of at least the source's [`direct_threshold`](PageSource::direct_threshold) get a
//! run of their own ([`grow_direct`](PageSource::grow_direct), mmap): a *direct* extent whose
//! record and bitmaps sit in its own first page(s), which no other span shares, and which is
//! given back whole ([`release`](PageSource::release), munmap) when its span is freed.
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
    /// Whether a clean bitmap follows the bitmap: one bit per page, 1 = free and known zero
    /// (not backed). Only with a [`ZERO_FILLED`](PageSource::ZERO_FILLED) source.
    has_clean: bool,
    /// A direct run: one huge span's own, released when the span is freed. The record sits
    /// at the start of the run, so the run is `[record, end of the extent)`.
    pub(crate) direct: bool,
}

/// `(word, mask)` pairs that cover the bits `[start, start + n)`.
fn masks(start: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let end = start + n;
    let mut i = start;
    core::iter::from_fn(move || {
        if i >= end {
            return None;
        }
        let w = i / WORD_BITS;
        let lo = i % WORD_BITS;
        let hi = (end - w * WORD_BITS).min(WORD_BITS);
        let mask = if hi - lo == WORD_BITS {
            !0
        } else {
            ((1usize << (hi - lo)) - 1) << lo
        };
        i = w * WORD_BITS + hi;
        Some((w, mask))
    })
}

/// Bump-allocate `size` zeroed bytes aligned to `align` from `[*cur, end)`.
fn bump(cur: &mut usize, end: usize, size: usize, align: usize) -> Option<NonNull<u8>> {
    let start = cur.checked_next_multiple_of(align)?;
    let stop = start.checked_add(size)?;
    if *cur == 0 || stop > end {
        return None;
    }
    *cur = stop;
    let p = start as *mut u8;
    // SAFETY: `[start, stop)` lies in the bump region, metadata memory owned by the heap and
    // not yet handed out.
    unsafe { ptr::write_bytes(p, 0, size) };
    NonNull::new(p)
}

impl Extent {
    fn words(&self) -> usize {
        self.pages.div_ceil(WORD_BITS)
    }

    fn word(&self, i: usize) -> usize {
        // SAFETY: callers pass `i < self.words()`; the bitmap has that many words.
        unsafe { *self.bitmap.add(i) }
    }

    /// The clean bitmap (see `has_clean`), or null.
    fn clean(&self) -> *mut usize {
        if self.has_clean {
            // SAFETY: the clean bitmap directly follows the bitmap's words.
            unsafe { self.bitmap.add(self.words()) }
        } else {
            ptr::null_mut()
        }
    }

    /// Free pages that are not known clean ("idle") among the bits of word `w`.
    fn idle_word(&self, w: usize) -> usize {
        let clean = if self.has_clean {
            // SAFETY: the clean bitmap has as many words as the bitmap.
            unsafe { *self.clean().add(w) }
        } else {
            0
        };
        !self.word(w) & !clean
    }

    /// The run of a direct extent: from its record to its end.
    fn direct_run(&self, page_shift: u32) -> Option<Run> {
        let start = self as *const Self as usize;
        Some(Run {
            base: NonNull::new(self as *const Self as *mut u8)?,
            len: self.base + (self.pages << page_shift) - start,
        })
    }

    /// Idle pages in the extent.
    fn idle_pages(&self) -> usize {
        (0..self.words())
            .map(|w| self.idle_word(w).count_ones() as usize)
            .sum()
    }

    /// Mark pages `[start, start + n)` clean (or not). No-op without a clean bitmap.
    fn set_clean(&mut self, start: usize, n: usize, clean: bool) {
        if !self.has_clean {
            return;
        }
        for (w, mask) in masks(start, n) {
            // SAFETY: `w < self.words()`; the clean bitmap has that many words.
            unsafe {
                let p = self.clean().add(w);
                *p = if clean { *p | mask } else { *p & !mask };
            }
        }
    }

    /// Clean pages among `[start, start + n)`.
    fn count_clean(&self, start: usize, n: usize) -> usize {
        if !self.has_clean {
            return 0;
        }
        let clean = self.clean();
        masks(start, n)
            // SAFETY: as in `set_clean`.
            .map(|(w, mask)| unsafe { (*clean.add(w) & mask).count_ones() as usize })
            .sum()
    }

    /// Whether page `i` is in use.
    pub(crate) fn is_used(&self, i: usize) -> bool {
        self.word(i / WORD_BITS) >> (i % WORD_BITS) & 1 == 1
    }

    /// Set (in use) or clear pages `[start, start + n)`.
    fn set_range(&mut self, start: usize, n: usize, used: bool) {
        let end = start + n;
        for (w, mask) in masks(start, n) {
            // SAFETY: `w < self.words()` because the range ends at most at `self.pages`.
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
        let flip = if used { 0 } else { !0 };
        self.next_bit(from, |w| self.word(w) ^ flip)
    }

    /// First index `>= from` whose bit is set in `word(w)`, or `self.pages` if none.
    fn next_bit(&self, from: usize, word: impl Fn(usize) -> usize) -> usize {
        if from >= self.pages {
            return self.pages;
        }
        let mut w = from / WORD_BITS;
        let mut x = word(w) & (!0usize << (from % WORD_BITS));
        loop {
            if x != 0 {
                return (w * WORD_BITS + x.trailing_zeros() as usize).min(self.pages);
            }
            w += 1;
            if w >= self.words() {
                return self.pages;
            }
            x = word(w);
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
    /// Free pages backed by memory: not known clean (see the module docs).
    pub(crate) idle_pages: AtomicUsize,
    /// Bytes given back with `discard` (cumulative), and how many calls that took.
    pub(crate) discarded_bytes: AtomicUsize,
    pub(crate) discards: AtomicUsize,
    /// Bytes of runs given back with `release` (cumulative).
    pub(crate) released_bytes: AtomicUsize,
    /// Direct runs held now.
    pub(crate) direct_runs: AtomicUsize,
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
            idle_pages: AtomicUsize::new(0),
            discarded_bytes: AtomicUsize::new(0),
            discards: AtomicUsize::new(0),
            released_bytes: AtomicUsize::new(0),
            direct_runs: AtomicUsize::new(0),
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
    /// Whether the pages of the last span [`alloc_span`](Self::alloc_span) handed out were all
    /// known zero (clean).
    pub(crate) last_zeroed: bool,
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
            last_zeroed: false,
        }
    }

    /// Iterate over the extents.
    pub(crate) fn extents(&self) -> impl Iterator<Item = &Extent> {
        let mut e = self.extents;
        core::iter::from_fn(move || {
            // SAFETY: extent records stay valid while linked (a direct extent's is released
            // only after it is unlinked), and the list is only changed under the lock this
            // `&self` proves.
            let ext = unsafe { e.as_ref()? };
            e = ext.next;
            Some(ext)
        })
    }

    /// Bump-allocate `size` zeroed bytes of metadata from the arena.
    fn arena_alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        bump(&mut self.arena, self.arena_end, size, align)
    }

    /// Metadata of an extent of `pages` pages: its record and bitmaps.
    fn extent_meta(pages: usize) -> usize {
        let bitmap = pages.div_ceil(WORD_BITS) * size_of::<usize>() + align_of::<usize>();
        let bitmaps = if S::ZERO_FILLED { 2 * bitmap } else { bitmap };
        size_of::<Extent>() + align_of::<Extent>() + bitmaps
    }

    /// Metadata needed to add a run of `pages` pages: extent record, bitmaps, page-map arrays.
    fn meta_need(pages: usize, page_shift: u32) -> usize {
        Self::extent_meta(pages) + S::Map::meta_bound(pages, page_shift)
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
        let need =
            Self::extent_meta(pages).saturating_add(cx.map.meta_need(base, pages, cx.g.page_shift));
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
        self.install(cx, base, pages, None).is_some()
    }

    /// Make `[base, base + pages)` (inside `run`) an extent: its record and bitmaps come from
    /// `local` (a direct run's own front) or the arena, its page-map entries from the arena.
    /// Links it last and counts its pages.
    fn install(
        &mut self,
        cx: &Ctx<'_, S::Map>,
        base: usize,
        pages: usize,
        local: Option<(usize, usize)>,
    ) -> Option<*mut Extent> {
        let words = pages.div_ceil(WORD_BITS);
        let (mut cur, end) = local.unwrap_or((self.arena, self.arena_end));
        let ext = bump(&mut cur, end, size_of::<Extent>(), align_of::<Extent>())?;
        debug_assert!(local.is_none_or(|(start, _)| ext.as_ptr() as usize == start));
        let bitmaps = if S::ZERO_FILLED { 2 * words } else { words };
        let bitmap = bump(
            &mut cur,
            end,
            bitmaps * size_of::<usize>(),
            align_of::<usize>(),
        )?;
        if local.is_none() {
            self.arena = cur;
        }
        // SAFETY: under the page-heap lock; the run is new and overlaps no covered run.
        let registered = unsafe {
            cx.map
                .register(base, pages, cx.g.page_shift, &mut |size, align| {
                    self.arena_alloc(size, align)
                })
        };
        if !registered {
            return None;
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
                has_clean: S::ZERO_FILLED,
                direct: local.is_some(),
            });
            // Fresh memory from a zero-filling source is clean.
            (*ext).set_clean(0, pages, true);
            match self.last.as_mut() {
                Some(last) => last.next = ext,
                None => self.extents = ext,
            }
        }
        self.last = ext;
        cx.stats.pages.fetch_add(pages, Ordering::Relaxed);
        cx.stats.free_pages.fetch_add(pages, Ordering::Relaxed);
        if !S::ZERO_FILLED {
            cx.stats.idle_pages.fetch_add(pages, Ordering::Relaxed);
        }
        Some(ext)
    }

    /// Mark `n` free pages of `ext` from page `i` used, with the counters. Returns whether
    /// they were all clean (known zero).
    fn use_pages(cx: &Ctx<'_, S::Map>, ext: &mut Extent, i: usize, n: usize) -> bool {
        let clean = ext.count_clean(i, n);
        ext.set_clean(i, n, false);
        ext.set_range(i, n, true);
        cx.stats.free_pages.fetch_sub(n, Ordering::Relaxed);
        cx.stats.idle_pages.fetch_sub(n - clean, Ordering::Relaxed);
        ext.has_clean && clean == n
    }

    /// Mark `n` used pages of `ext` from page `i` free (and idle), with the counters.
    fn free_pages(cx: &Ctx<'_, S::Map>, ext: &mut Extent, i: usize, n: usize) {
        ext.set_range(i, n, false);
        cx.stats.free_pages.fetch_add(n, Ordering::Relaxed);
        cx.stats.idle_pages.fetch_add(n, Ordering::Relaxed);
    }

    /// Find `n` free pages aligned to `align` in some shared (not direct) extent; mark them
    /// used.
    fn take_pages(&mut self, cx: &Ctx<'_, S::Map>, n: usize, align: usize) -> Option<usize> {
        let page_shift = cx.g.page_shift;
        let mut e = self.extents;
        // SAFETY: extent records are valid while linked; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            if !ext.direct {
                if let Some(i) = ext.find(n, align, page_shift) {
                    self.last_zeroed = Self::use_pages(cx, ext, i, n);
                    return Some(ext.base + (i << page_shift));
                }
            }
            e = ext.next;
        }
        None
    }

    /// A direct run for a span of `pages` pages aligned to `align`: the run's first page(s)
    /// hold the extent's record and bitmaps, the span takes the rest. Returns the span's start.
    fn alloc_direct(&mut self, cx: &Ctx<'_, S::Map>, pages: usize, align: usize) -> Option<usize> {
        let (page, shift) = (cx.g.page_size(), cx.g.page_shift);
        let span_pages = pages.checked_add((align >> shift).saturating_sub(1))?;
        let local = Self::extent_meta(span_pages).div_ceil(page);
        let bytes = span_pages.checked_add(local)?.checked_mul(page)?;
        let run = self.source.grow_direct(bytes, page)?;
        let run_start = run.base.as_ptr() as usize;
        debug_assert!(run.len >= bytes && run_start % page == 0);
        let base = run_start + local * page;
        let ext_pages = (run.len >> shift) - local;
        let need = cx.map.meta_need(base, ext_pages, shift);
        let room = need <= self.arena_end - self.arena || {
            need != usize::MAX && self.refill_arena(cx, need)
        };
        let ext = if room {
            self.install(cx, base, ext_pages, Some((run_start, base)))
        } else {
            None
        };
        let Some(ext) = ext else {
            // SAFETY: the run came from `grow_direct` and holds nothing of the heap's.
            unsafe { self.source.release(run) };
            return None;
        };
        cx.stats.grows.fetch_add(1, Ordering::Relaxed);
        cx.stats.source_bytes.fetch_add(run.len, Ordering::Relaxed);
        cx.stats
            .meta_bytes
            .fetch_add(local * page, Ordering::Relaxed);
        cx.stats.direct_runs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the extent was just installed; we hold the lock.
        let e = unsafe { &mut *ext };
        match e.find(pages, align, shift) {
            Some(i) => {
                self.last_zeroed = Self::use_pages(cx, e, i, pages);
                Some(e.base + (i << shift))
            }
            None => {
                self.release_direct(cx, ext);
                None
            }
        }
    }

    /// Point the arena at `bytes` (or more) of fresh metadata pages taken from an extent,
    /// growing the heap if none has room.
    fn refill_arena(&mut self, cx: &Ctx<'_, S::Map>, bytes: usize) -> bool {
        let page = cx.g.page_size();
        let k = bytes.div_ceil(page).max(1);
        let start = match self.take_pages(cx, k, 1) {
            Some(p) => p,
            None => {
                if !self.grow(cx, k, 1) {
                    return false;
                }
                match self.take_pages(cx, k, 1) {
                    Some(p) => p,
                    None => return false,
                }
            }
        };
        Self::set_map(cx, start, k, CLASS_META, ptr::null_mut());
        cx.stats.meta_bytes.fetch_add(k * page, Ordering::Relaxed);
        self.arena = start;
        self.arena_end = start + k * page;
        true
    }

    /// Unlink a wholly free direct extent and give its run back to the source (it stays if
    /// the source will not take it).
    fn release_direct(&mut self, cx: &Ctx<'_, S::Map>, ext: *mut Extent) {
        let mut prev: *mut Extent = ptr::null_mut();
        let mut e = self.extents;
        while !e.is_null() && e != ext {
            prev = e;
            // SAFETY: linked extent records are valid; we hold the lock.
            e = unsafe { (*e).next };
        }
        if e.is_null() {
            return;
        }
        // SAFETY: `ext` is linked, so valid; it is read before its run is released.
        let (pages, idle, run, next) = unsafe {
            let x = &*ext;
            debug_assert!(x.direct && x.free_pages == x.pages);
            (
                x.pages,
                x.idle_pages(),
                x.direct_run(cx.g.page_shift),
                x.next,
            )
        };
        let Some(run) = run else { return };
        // SAFETY: `prev` is null or a linked record.
        match unsafe { prev.as_mut() } {
            Some(p) => p.next = next,
            None => self.extents = next,
        }
        if self.last == ext {
            self.last = prev;
        }
        // SAFETY: the extent is unlinked and wholly free: nothing of the heap's lives in its
        // run but its own record, which is no longer reachable.
        if !unsafe { self.source.release(run) } {
            // Keep it: link it back last.
            // SAFETY: the record is still valid, the run was not released.
            unsafe {
                (*ext).next = ptr::null_mut();
                match self.last.as_mut() {
                    Some(last) => last.next = ext,
                    None => self.extents = ext,
                }
            }
            self.last = ext;
            return;
        }
        let st = cx.stats;
        st.pages.fetch_sub(pages, Ordering::Relaxed);
        st.free_pages.fetch_sub(pages, Ordering::Relaxed);
        st.idle_pages.fetch_sub(idle, Ordering::Relaxed);
        st.source_bytes.fetch_sub(run.len, Ordering::Relaxed);
        st.meta_bytes
            .fetch_sub(run.len - (pages << cx.g.page_shift), Ordering::Relaxed);
        st.released_bytes.fetch_add(run.len, Ordering::Relaxed);
        st.direct_runs.fetch_sub(1, Ordering::Relaxed);
    }

    /// Discard idle pages (see the module docs) once more than the source's idle limit is
    /// idle, down to half of it.
    fn maybe_discard(&mut self, cx: &Ctx<'_, S::Map>) {
        let limit = self.source.idle_limit();
        if limit != usize::MAX
            && cx.stats.idle_pages.load(Ordering::Relaxed) << cx.g.page_shift > limit
        {
            self.discard_idle(cx, limit / 2);
        }
    }

    /// Give idle runs of pages back to the source with `discard` until at most `keep` bytes
    /// are idle. Returns the bytes discarded. Does nothing unless the source is
    /// [`ZERO_FILLED`](PageSource::ZERO_FILLED).
    pub(crate) fn discard_idle(&mut self, cx: &Ctx<'_, S::Map>, keep: usize) -> usize {
        if !S::ZERO_FILLED {
            return 0;
        }
        let shift = cx.g.page_shift;
        let mut done = 0;
        let mut e = self.extents;
        // SAFETY: extent records are valid while linked; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            let mut i = 0;
            loop {
                if cx.stats.idle_pages.load(Ordering::Relaxed) << shift <= keep {
                    return done;
                }
                let start = ext.next_bit(i, |w| ext.idle_word(w));
                if start >= ext.pages {
                    break;
                }
                let end = ext.next_bit(start, |w| !ext.idle_word(w));
                if !self.discard_run(cx, ext, start, end - start) {
                    return done;
                }
                done += (end - start) << shift;
                i = end;
            }
            e = ext.next;
        }
        done
    }

    /// Discard `n` idle pages of `ext` from page `i`; they become clean.
    fn discard_run(&mut self, cx: &Ctx<'_, S::Map>, ext: &mut Extent, i: usize, n: usize) -> bool {
        let shift = cx.g.page_shift;
        let Some(base) = NonNull::new((ext.base + (i << shift)) as *mut u8) else {
            return false;
        };
        let range = Run {
            base,
            len: n << shift,
        };
        // SAFETY: the pages are free pages of an extent of this source's run: no data lives
        // there.
        if !ext.has_clean || !unsafe { self.source.discard(range) } {
            return false;
        }
        ext.set_clean(i, n, true);
        cx.stats.idle_pages.fetch_sub(n, Ordering::Relaxed);
        cx.stats
            .discarded_bytes
            .fetch_add(n << shift, Ordering::Relaxed);
        cx.stats.discards.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Take the highest free page of the last extent that has one. Metadata pages come from
    /// the top so that they do not split the runs that spans are carved from at the bottom.
    fn take_top_page(&mut self, cx: &Ctx<'_, S::Map>) -> Option<usize> {
        let mut found = None;
        let mut e = self.extents;
        // SAFETY: extent records are valid for the heap's life; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            if ext.free_pages > 0 && !ext.direct {
                found = Some(e);
            }
            e = ext.next;
        }
        // SAFETY: as above.
        let ext = unsafe { &mut *found? };
        let i = ext.last_free()?;
        Self::use_pages(cx, ext, i, 1);
        Some(ext.base + (i << cx.g.page_shift))
    }

    /// The extent holding `addr`.
    fn extent_of(&mut self, addr: usize, page_shift: u32) -> Option<&mut Extent> {
        // SAFETY: a linked record, valid while `&mut self` keeps the list unchanged.
        unsafe { self.extent_ptr(addr, page_shift).as_mut() }
    }

    /// The extent holding `addr`, or null.
    fn extent_ptr(&self, addr: usize, page_shift: u32) -> *mut Extent {
        let mut e = self.extents;
        // SAFETY: as in `take_pages`.
        while let Some(ext) = unsafe { e.as_ref() } {
            if ext.contains(addr, page_shift) {
                return e;
            }
            e = ext.next;
        }
        ptr::null_mut()
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
        self.last_zeroed = false;
        let direct = pages
            .checked_mul(cx.g.page_size())
            .is_some_and(|b| b >= self.source.direct_threshold());
        let start = match direct
            .then(|| self.alloc_direct(cx, pages, align))
            .flatten()
        {
            Some(s) => Some(s),
            None => match self.take_pages(cx, pages, align) {
                Some(s) => Some(s),
                None if self.grow(cx, pages, align) => self.take_pages(cx, pages, align),
                None => None,
            },
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
        let ext = self.extent_ptr(start, cx.g.page_shift);
        // SAFETY: null or a linked extent record; we hold the lock.
        let direct = match unsafe { ext.as_mut() } {
            Some(e) => {
                Self::free_pages(cx, e, (start - e.base) >> cx.g.page_shift, pages);
                e.direct && e.free_pages == e.pages
            }
            None => false,
        };
        cx.stats.spans_freed.fetch_add(1, Ordering::Relaxed);
        cx.stats.span_pages.fetch_sub(pages, Ordering::Relaxed);
        // SAFETY: the record is no longer referenced by the page map.
        unsafe { (*span).next = self.spare };
        self.spare = span;
        if direct {
            self.release_direct(cx, ext);
        } else {
            self.maybe_discard(cx);
        }
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
        s.pages = new_pages;
        cx.stats.span_pages.fetch_sub(n, Ordering::Relaxed);
        let ext = self.extent_ptr(tail, cx.g.page_shift);
        // SAFETY: null or a linked extent record; we hold the lock.
        if let Some(e) = unsafe { ext.as_mut() } {
            let i = (tail - e.base) >> cx.g.page_shift;
            Self::free_pages(cx, e, i, n);
            if e.direct {
                // No other span can use a direct run's pages: let them go now.
                self.discard_run(cx, e, i, n);
                return;
            }
        }
        self.maybe_discard(cx);
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
        Self::use_pages(cx, ext, i, n);
        s.pages = new_pages;
        Self::set_map(cx, end, n, CLASS_LARGE, span);
        cx.stats.span_pages.fetch_add(n, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::page_map::FlatMap;
    use crate::page_source::StaticRegion;
    use core::mem::MaybeUninit;
    use std::boxed::Box;
    use std::vec::Vec;

    const SHIFT: u32 = 12;
    const PAGE: usize = 1 << SHIFT;

    struct Fixture {
        heap: PageHeap<StaticRegion<2>>,
        map: FlatMap<2>,
        stats: PageStats,
    }

    impl Fixture {
        /// A page heap over one region of `pages` pages (plus slack for alignment).
        fn new(pages: usize) -> Self {
            let region: &'static mut [MaybeUninit<u8>] =
                Box::leak(Box::new_uninit_slice((pages + 1) * PAGE));
            let mut source = StaticRegion::new();
            assert!(source.add(region));
            Self {
                heap: PageHeap::new(source),
                map: FlatMap::EMPTY,
                stats: PageStats::new(),
            }
        }

        fn cx(&self) -> Ctx<'_, FlatMap<2>> {
            Ctx {
                map: &self.map,
                g: Geometry {
                    page_shift: SHIFT,
                    grow_bytes: 0,
                    min_span_bytes: PAGE,
                },
                stats: &self.stats,
            }
        }

        fn alloc(&mut self, pages: usize, align: usize) -> Option<*mut Span> {
            let cx = Ctx {
                map: &self.map,
                g: self.cx().g,
                stats: &self.stats,
            };
            self.heap.alloc_span(&cx, pages, align, 0)
        }

        fn free(&mut self, span: *mut Span) {
            let cx = Ctx {
                map: &self.map,
                g: self.cx().g,
                stats: &self.stats,
            };
            // SAFETY: a live span from `alloc` with nothing in use.
            unsafe { self.heap.free_span(&cx, span) };
        }

        fn free_pages(&self) -> usize {
            self.stats.free_pages.load(Ordering::Relaxed)
        }
    }

    fn start(span: *mut Span) -> usize {
        // SAFETY: a live span record.
        unsafe { (*span).start }
    }

    #[test]
    fn first_fit_from_the_bottom_and_freed_neighbours_merge() {
        let mut f = Fixture::new(64);
        let spans: Vec<_> = (0..6).map(|_| f.alloc(4, PAGE).expect("room")).collect();
        for w in spans.windows(2) {
            assert_eq!(
                start(w[1]) - start(w[0]),
                4 * PAGE,
                "first fit packs spans upward"
            );
        }
        let total_free = f.free_pages();
        // Free two neighbours: their 8 pages form one run that an 8-page span reuses.
        let (a, b) = (start(spans[1]), start(spans[2]));
        f.free(spans[1]);
        f.free(spans[2]);
        assert_eq!(f.free_pages(), total_free + 8);
        let merged = f.alloc(8, PAGE).expect("merged run");
        assert_eq!(start(merged), a);
        assert!(start(merged) < b);
    }

    #[test]
    fn aligned_runs_start_on_the_alignment() {
        let mut f = Fixture::new(128);
        let _pad = f.alloc(1, PAGE).unwrap();
        for align in [2 * PAGE, 8 * PAGE, 32 * PAGE] {
            let s = f.alloc(3, align).expect("room for an aligned run");
            assert_eq!(start(s) % align, 0, "align {align}");
        }
    }

    #[test]
    fn growth_exhaustion_and_recovery() {
        let mut f = Fixture::new(32);
        let mut spans = Vec::new();
        while let Some(s) = f.alloc(1, PAGE) {
            spans.push(s);
        }
        assert!(
            spans.len() >= 24,
            "most of 32 pages serve spans: {}",
            spans.len()
        );
        assert_eq!(f.free_pages(), 0);
        assert!(
            f.alloc(1, PAGE).is_none(),
            "exhausted, and the source has nothing more"
        );
        let n = spans.len();
        for s in spans {
            f.free(s);
        }
        // Everything merged back: one span of all the pages fits again.
        assert!(f.alloc(n, PAGE).is_some());
    }

    #[test]
    fn metadata_pages_come_from_the_top() {
        let mut f = Fixture::new(64);
        // Enough spans to need more span records than the carved arena holds.
        let spans: Vec<_> = (0..40).map(|_| f.alloc(1, PAGE).unwrap()).collect();
        let highest_span = spans.iter().map(|&s| start(s)).max().unwrap();
        let ext = f.heap.extents().next().unwrap();
        let meta_pages: Vec<usize> = (0..ext.pages)
            .filter(|&i| {
                let addr = ext.base + i * PAGE;
                f.map
                    .page(addr, SHIFT)
                    .unwrap()
                    .class
                    .load(Ordering::Relaxed)
                    == CLASS_META
            })
            .collect();
        assert!(!meta_pages.is_empty(), "40 records need a metadata page");
        for i in meta_pages {
            assert!(
                ext.base + i * PAGE > highest_span,
                "metadata page below a span"
            );
        }
    }
}
