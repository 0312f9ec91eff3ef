//! Giving memory back: idle pages are discarded (madvise) once more than the source's idle
//! limit is idle, and a direct run goes back to the source whole when its span is freed.

use core::ptr::{self, NonNull};

use super::extent::Extent;
use super::Locked;
use super::{add, sub};
use crate::page_map::PageMap;
use crate::page_source::{PageSource, Run};
use crate::sync::Ordering;

impl<S: PageSource> Locked<'_, S> {
    /// Unlink a direct extent whose span was just freed and give its run back to the source,
    /// with its page-map entry and its record (onto the spare list). If the source will not
    /// take the run, the extent stays linked, wholly free (and idle), and is never used again.
    pub(super) fn release_direct(&mut self, ext: *mut Extent) {
        let mut prev: *mut Extent = ptr::null_mut();
        let mut e = self.st.extents;
        while !e.is_null() && e != ext {
            prev = e;
            // SAFETY: linked extent records are valid; we hold the lock.
            e = unsafe { (*e).next };
        }
        if e.is_null() {
            return;
        }
        // SAFETY: `ext` is linked, so valid.
        let (base, pages, slack, run, next) = unsafe {
            let x = &*ext;
            debug_assert!(x.direct && x.free_count == 0);
            (x.base, x.pages, x.slack, x.direct_run(), x.next)
        };
        let shift = self.geom.page_shift;
        // SAFETY: the extent's span is gone: nothing of the heap's lives in its run (its
        // record and page-map entry are in the arena).
        if !run.is_some_and(|r| unsafe { self.st.source.release(r) }) {
            // SAFETY: as above; the run was not released.
            unsafe { (*ext).free_count = pages };
            add(&self.stats.free_pages, pages);
            add(&self.stats.idle_pages, pages);
            return;
        }
        let Some(run) = run else { return };
        // SAFETY: `prev` is null or a linked record.
        match unsafe { prev.as_mut() } {
            Some(p) => p.next = next,
            None => self.st.extents = next,
        }
        if self.st.last == ext {
            self.st.last = prev;
        }
        // SAFETY: the record is unlinked and nothing refers to it any more.
        unsafe { (*ext).next = self.st.spare_ext };
        self.st.spare_ext = ext;
        // SAFETY: `[base, base + 1 page)` is what `install_direct` registered, and its
        // entry says freed.
        unsafe { self.unregister_direct(base) };
        let st = self.stats;
        sub(&st.pages, pages);
        sub(&st.source_bytes, (pages << shift) + slack);
        sub(&st.meta_bytes, slack);
        add(&st.released_bytes, run.len);
        sub(&st.direct_runs, 1);
    }

    /// Discard idle pages (see the module docs) once more than the source's idle limit is
    /// idle, down to half of it.
    pub(super) fn maybe_discard(&mut self) {
        let limit = self.st.source.idle_limit();
        if limit != usize::MAX
            && self.stats.idle_pages.load(Ordering::Relaxed) << self.geom.page_shift > limit
        {
            self.discard_idle(limit / 2);
        }
    }

    /// Give idle runs of pages back to the source with `discard` until at most `keep` bytes
    /// are idle. Returns the bytes discarded. Does nothing unless the source is
    /// [`ZERO_FILLED`](PageSource::ZERO_FILLED).
    pub(crate) fn discard_idle(&mut self, keep: usize) -> usize {
        if !S::ZERO_FILLED {
            return 0;
        }
        let shift = self.geom.page_shift;
        let mut done = 0;
        let mut e = self.st.extents;
        // SAFETY: extent records are valid while linked; we hold the lock.
        while let Some(ext) = unsafe { e.as_mut() } {
            let mut i = if ext.direct { ext.pages } else { 0 };
            loop {
                if self.stats.idle_pages.load(Ordering::Relaxed) << shift <= keep {
                    return done;
                }
                let start = ext.next_bit(i, ext.pages, |w| ext.idle_word(w));
                if start >= ext.pages {
                    break;
                }
                let end = ext.next_bit(start, ext.pages, |w| !ext.idle_word(w));
                if !self.discard_run(ext, start, end - start) {
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
    pub(super) fn discard_run(&mut self, ext: &mut Extent, i: usize, n: usize) -> bool {
        let shift = self.geom.page_shift;
        let Some(base) = NonNull::new((ext.base + (i << shift)) as *mut u8) else {
            return false;
        };
        let range = Run {
            base,
            len: n << shift,
        };
        // SAFETY: the pages are free pages of an extent of this source's run: no data lives
        // there.
        if !ext.has_clean || !unsafe { self.st.source.discard(range) } {
            return false;
        }
        ext.set_clean(i, n, true);
        sub(&self.stats.idle_pages, n);
        add(&self.stats.discarded_bytes, n << shift);
        add(&self.stats.discards, 1);
        true
    }

    /// Stop mapping the first page of a direct run at `base` (its only page-map entry); the
    /// map's metadata that then describes nothing is discarded.
    ///
    /// # Safety
    /// `[base, base + 1 page)` must have been registered for a direct extent, and its entry
    /// must say freed.
    pub(super) unsafe fn unregister_direct(&mut self, base: usize) {
        let (map, source) = (self.map, &mut self.st.source);
        // SAFETY: under the page-heap lock, with the caller's guarantee. A range the map asks
        // to discard is metadata of this heap (arena memory, so inside one of this source's
        // runs) describing no page in use; after `discard` it reads as zero, an empty entry,
        // and stays mapped.
        unsafe {
            map.unregister(base, 1, self.geom.page_shift, &mut |addr, len| {
                if let Some(base) = NonNull::new(addr as *mut u8) {
                    // SAFETY: as above.
                    source.discard(Run { base, len });
                }
            })
        };
    }
}
