//! The span lifecycle: finding a run of free pages (best fit, aligned), handing it out as a
//! span with its page-map entries, and taking it back, shrinking or growing it in place.

use core::ptr;

use super::extent::Extent;
use super::Locked;
use super::{add, sub};
use crate::page_map::PageMap;
use crate::page_source::{PageSource, Run};
use crate::span::{Span, SpanFlags, CLASS_FREED, CLASS_LARGE};
use crate::sync::Ordering;

impl<S: PageSource> Locked<'_, S> {
    /// Mark `n` free pages of `ext` from page `i` used, with the counters. Returns whether
    /// they were all clean (known zero).
    // Out of line: three callers (first fit, the top page for metadata, growing in place).
    #[inline(never)]
    pub(super) fn use_pages(&self, ext: &mut Extent, i: usize, n: usize) -> bool {
        // Only a zero-filling source's extents have a clean bitmap (compiled out otherwise).
        let clean = if S::ZERO_FILLED {
            let clean = ext.count_clean(i, n);
            ext.set_clean(i, n, false);
            clean
        } else {
            0
        };
        ext.set_range(i, n, true);
        sub(&self.stats.free_pages, n);
        sub(&self.stats.idle_pages, n - clean);
        S::ZERO_FILLED && ext.has_clean && clean == n
    }

    /// Mark `n` used pages of `ext` from page `i` free (and idle), with the counters.
    pub(super) fn mark_free(&self, ext: &mut Extent, i: usize, n: usize) {
        ext.set_range(i, n, false);
        add(&self.stats.free_pages, n);
        add(&self.stats.idle_pages, n);
    }

    /// Find `n` free pages aligned to `align` in some shared (not direct) extent; mark them
    /// used. See [`take_run`](Self::take_run).
    pub(super) fn take_pages(&mut self, n: usize, align: usize) -> Option<usize> {
        self.take_run(n, n, align).map(|(start, _)| start)
    }

    /// The run of a new span, its start and its length: `pages` pages, or for a size-class
    /// span possibly fewer, a multiple of `fewest`, marked used. Best fit
    /// ([`Extent::find_best`], in the first extent that has a fit): the shortest run near
    /// the lowest that holds `fewest` pages, and of it up to `pages`. Large spans so leave the
    /// long runs whole for the next long request, and class spans fill the short holes
    /// between large spans instead of cutting into long runs. Aligned beyond a page: the
    /// lowest aligned run.
    fn take_run(&mut self, pages: usize, fewest: usize, align: usize) -> Option<(usize, usize)> {
        let page_shift = self.geom.page_shift;
        let mut e = self.st.extents;
        // SAFETY: extent records are valid while linked; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            if !ext.direct {
                if let Some((i, len)) = ext.find(fewest, align, page_shift) {
                    let n = if len >= pages {
                        pages
                    } else {
                        len / fewest * fewest
                    };
                    self.st.last_zeroed = self.use_pages(ext, i, n);
                    return Some((ext.base + (i << page_shift), n));
                }
            }
            e = ext.next;
        }
        None
    }

    /// The extent holding `addr`, or null.
    pub(super) fn extent_ptr(&self, addr: usize, page_shift: u32) -> *mut Extent {
        let mut e = self.st.extents;
        // SAFETY: as in `take_pages`.
        while let Some(ext) = unsafe { e.as_ref() } {
            if ext.contains(addr, page_shift) {
                return e;
            }
            e = ext.next;
        }
        ptr::null_mut()
    }

    /// Allocate a span of `pages` pages aligned to `align` bytes for size class `class`
    /// (0 for a large allocation), and point the page map at it. Grows through the source
    /// when no run of free pages is long enough.
    ///
    /// A size-class span may come out shorter, down to `fewest` pages (a multiple of it):
    /// the best-fitting free run of `fewest` pages serves, with as much of `pages` as it
    /// holds, so that short holes left between large spans are filled by class spans
    /// instead of staying free. The span's length is its record's `pages`.
    pub(crate) fn alloc_span(
        &mut self,
        pages: usize,
        fewest: usize,
        align: usize,
        class: u8,
    ) -> Option<*mut Span> {
        debug_assert!(fewest >= 1 && fewest <= pages && (class != 0 || fewest == pages));
        // The record first: taking a metadata page must not steal the run found below.
        let rec = self.new_record()?;
        self.st.last_zeroed = false;
        let direct = pages
            .checked_mul(self.geom.page_size())
            .is_some_and(|b| S::DIRECT_RUNS && b >= self.st.source.direct_threshold());
        let direct_start = if direct {
            self.alloc_direct(pages, align).map(|s| (s, pages))
        } else {
            None
        };
        let start = match direct_start {
            Some(s) => Some(s),
            None => match self.take_run(pages, fewest, align) {
                Some(s) => Some(s),
                // Growth asks for room for the fewest pages (the growth step is larger anyway).
                None if self.grow(fewest, align) => self.take_run(pages, fewest, align),
                None => None,
            },
        };
        let Some((start, pages)) = start else {
            // SAFETY: `rec` is a record we own; back to the spare list.
            unsafe { (*rec).next = self.st.spare };
            self.st.spare = rec;
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
        // A direct span is described by its first page alone.
        let mapped = if direct_start.is_some() { 1 } else { pages };
        self.set_map(start, mapped, tag, rec);
        add(&self.stats.spans_allocated, 1);
        add(&self.stats.span_pages, pages);
        Some(rec)
    }

    pub(super) fn set_map(&self, start: usize, pages: usize, tag: u8, span: *mut Span) {
        for i in 0..pages {
            if let Some(pr) = self
                .map
                .page(start + (i << self.geom.page_shift), self.geom.page_shift)
            {
                pr.span.store(span, Ordering::Relaxed);
                pr.class.store(tag, Ordering::Release);
            }
        }
    }

    /// Give a span's pages back and recycle its record.
    ///
    /// # Safety
    /// `span` must be a live span of this heap with no object in use.
    pub(crate) unsafe fn free_span(&mut self, span: *mut Span) {
        // SAFETY: the caller guarantees a live record.
        let (start, pages) = unsafe { ((*span).start, (*span).pages) };
        let ext = self.extent_ptr(start, self.geom.page_shift);
        // SAFETY: null or a linked extent record; we hold the lock.
        let direct = S::DIRECT_RUNS && unsafe { ext.as_ref() }.is_some_and(|e| e.direct);
        self.set_map(
            start,
            if direct { 1 } else { pages },
            CLASS_FREED,
            ptr::null_mut(),
        );
        if !direct {
            // SAFETY: as above.
            if let Some(e) = unsafe { ext.as_mut() } {
                self.mark_free(e, (start - e.base) >> self.geom.page_shift, pages);
            }
        }
        add(&self.stats.spans_freed, 1);
        sub(&self.stats.span_pages, pages);
        // SAFETY: the record is no longer referenced by the page map.
        unsafe { (*span).next = self.st.spare };
        self.st.spare = span;
        if direct {
            self.release_direct(ext);
        } else {
            self.maybe_discard();
        }
    }

    /// Shrink a large span to `new_pages` pages in place, freeing its tail.
    ///
    /// # Safety
    /// `span` must be a live large span and `new_pages` at least 1 and at most its length.
    pub(crate) unsafe fn shrink_span(&mut self, span: *mut Span, new_pages: usize) {
        // SAFETY: the caller guarantees a live record.
        let s = unsafe { &mut *span };
        let tail = s.start + (new_pages << self.geom.page_shift);
        let n = s.pages - new_pages;
        if n == 0 {
            return;
        }
        let ext = self.extent_ptr(tail, self.geom.page_shift);
        s.pages = new_pages;
        sub(&self.stats.span_pages, n);
        // SAFETY: null or a linked extent record; we hold the lock.
        let Some(e) = (unsafe { ext.as_mut() }) else {
            return;
        };
        if S::DIRECT_RUNS && e.direct {
            // The tail leaves the extent (it had no page-map entries) and goes back to the
            // source's care; the run is released whole with the span.
            e.pages = new_pages;
            sub(&self.stats.pages, n);
            let bytes = n << self.geom.page_shift;
            let range =
                core::ptr::NonNull::new(tail as *mut u8).map(|base| Run { base, len: bytes });
            // SAFETY: the tail lies in the direct run and no span uses it any more.
            if range.is_some_and(|r| unsafe { self.st.source.discard(r) }) {
                sub(&self.stats.source_bytes, bytes);
                add(&self.stats.discarded_bytes, bytes);
                add(&self.stats.discards, 1);
            } else {
                e.slack += bytes;
                add(&self.stats.meta_bytes, bytes);
            }
            return;
        }
        self.set_map(tail, n, CLASS_FREED, ptr::null_mut());
        self.mark_free(e, (tail - e.base) >> self.geom.page_shift, n);
        self.maybe_discard();
    }

    /// Grow a large span to `new_pages` pages in place if the pages after it are free.
    ///
    /// # Safety
    /// `span` must be a live large span and `new_pages` larger than its length.
    pub(crate) unsafe fn extend_span(&mut self, span: *mut Span, new_pages: usize) -> bool {
        // SAFETY: the caller guarantees a live record.
        let s = unsafe { &mut *span };
        let end = s.end(self.geom.page_size());
        let n = new_pages - s.pages;
        // SAFETY: null or a linked extent record; we hold the lock.
        let Some(ext) = (unsafe { self.extent_ptr(s.start, self.geom.page_shift).as_mut() }) else {
            return false;
        };
        if S::DIRECT_RUNS && ext.direct {
            // A direct run ends with its span: the caller moves the object instead.
            return false;
        }
        let i = (end - ext.base) >> self.geom.page_shift;
        if i + n > ext.pages || ext.next_with(i, true) < i + n {
            return false;
        }
        self.use_pages(ext, i, n);
        s.pages = new_pages;
        self.set_map(end, n, CLASS_LARGE, span);
        add(&self.stats.span_pages, n);
        true
    }

    /// Grow (or shrink) a large span that has a direct run of its own to `new_pages` pages by
    /// resizing the run itself ([`PageSource::resize_direct`], `mremap`): no byte is copied,
    /// though the run may move (only when `may_move`). Returns the span's start now, or
    /// `None` if the span has no direct run the source can resize (then nothing changed).
    ///
    /// # Safety
    /// `span` must be a live large span with no other reference into its memory across a
    /// move (its one object is being reallocated by its owner).
    pub(crate) unsafe fn remap_direct(
        &mut self,
        span: *mut Span,
        new_pages: usize,
        may_move: bool,
    ) -> Option<usize> {
        if !S::DIRECT_RUNS {
            return None;
        }
        let shift = self.geom.page_shift;
        // SAFETY: the caller guarantees a live record.
        let s = unsafe { &mut *span };
        // SAFETY: null or a linked extent record; we hold the lock.
        let ext = unsafe { self.extent_ptr(s.start, shift).as_mut() }?;
        // Only a run that starts with its span (no alignment slack in front) is resized.
        if !ext.direct || ext.run_base != ext.base || ext.base != s.start {
            return None;
        }
        let new_len = new_pages.checked_mul(self.geom.page_size())?;
        // Room for the page-map entry at a new address, before anything moves.
        let need = S::Map::meta_bound(1, shift);
        if may_move && self.st.arena_end - self.st.arena < need && !self.refill_arena(need) {
            return None;
        }
        let old = ext.direct_run()?;
        // SAFETY: the extent's run is a direct run from this source, as last resized.
        let run = unsafe { self.st.source.resize_direct(old, new_len, may_move) }?;
        let new_base = run.base.as_ptr() as usize;
        let old_base = ext.base;
        if new_base != old_base {
            let map = self.map;
            // SAFETY: under the page-heap lock; the new address is a fresh mapping that no
            // other run covers; the arena has room (ensured above).
            let registered = unsafe {
                map.register(new_base, 1, shift, &mut |size, align| {
                    self.arena_alloc(size, align)
                })
            };
            if !registered {
                // Cannot describe the new address: move the run back where it was.
                // SAFETY: the run as `resize_direct` just returned it.
                let back = unsafe { self.st.source.resize_direct(run, old.len, false) };
                debug_assert!(back.is_some());
                return None;
            }
            self.set_map(old_base, 1, CLASS_FREED, ptr::null_mut());
            // SAFETY: `[old_base, + 1 page)` was registered for this extent and now says
            // freed.
            unsafe { self.unregister_direct(old_base) };
        }
        let old_pages = ext.pages;
        let st = self.stats;
        sub(&st.meta_bytes, ext.slack);
        sub(&st.source_bytes, (old_pages << shift) + ext.slack);
        add(&st.source_bytes, new_len);
        sub(&st.pages, old_pages);
        add(&st.pages, new_pages);
        sub(&st.span_pages, s.pages);
        add(&st.span_pages, new_pages);
        ext.base = new_base;
        ext.run_base = new_base;
        ext.run_len = new_len;
        ext.pages = new_pages;
        ext.slack = 0;
        s.start = new_base;
        s.pages = new_pages;
        self.set_map(new_base, 1, CLASS_LARGE, span);
        Some(new_base)
    }
}
