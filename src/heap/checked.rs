//! Checked mode (feature `checked`): a live bit per 8 bytes of every run, so double frees,
//! interior pointers and mismatched layouts are caught deterministically.

use core::alloc::Layout;

use lock_api::RawMutex;

use super::Heap;
use crate::page_map::{PageMap, PageRef, LIVE_BITS};
use crate::page_source::PageSource;
use crate::platform::{Fault, FaultKind, Platform};
use crate::size_class::class_size;
use crate::span::CLASS_LARGE;
use crate::sync::{AtomicUsize, Ordering};

impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> Heap<S, P, R, CPUS> {
    /// The live bit of the object at `addr`.
    fn live_bit<'a>(&self, pr: &PageRef<'a>, addr: usize) -> (&'a AtomicUsize, usize) {
        let bit = (addr - pr.live_base) / 8;
        // SAFETY: the run's live bits cover every 8 bytes of the run, which holds `addr`.
        let word = unsafe { &*pr.live.add(bit / LIVE_BITS) };
        (word, 1usize << (bit % LIVE_BITS))
    }

    pub(super) fn mark_live(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        if let Some(pr) = self.map().page(p as usize, self.page_shift()) {
            let (word, bit) = self.live_bit(&pr, p as usize);
            let old = word.fetch_or(bit, Ordering::Relaxed);
            debug_assert_eq!(old & bit, 0, "object handed out twice");
        }
    }

    /// A remapped block moved from `old` (described by `pr`, read before the move) to `new`:
    /// its live bit moves with it. The old bit's memory stays valid: radix leaves are never
    /// freed, only discarded, and a discarded leaf is still mapped.
    pub(super) fn move_live(&self, pr: &PageRef<'_>, old: usize, new: *mut u8) {
        let (word, bit) = self.live_bit(pr, old);
        word.fetch_and(!bit, Ordering::Relaxed);
        self.mark_live(new);
    }

    /// Check a free (or realloc) of a live-looking page: interior pointer, size class, and
    /// the live bit (cleared when `clear`).
    pub(super) fn check_free(&self, pr: &PageRef<'_>, addr: usize, layout: Layout, clear: bool) {
        let tag = pr.class.load(Ordering::Relaxed);
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page in use points at its live span record.
        let s = unsafe { &*span };
        let object_size = if tag == CLASS_LARGE {
            s.pages << self.page_shift()
        } else {
            class_size(tag as usize)
        };
        if (addr - s.start) % object_size != 0 {
            let mut f = Fault::new(FaultKind::InteriorPointer, addr);
            f.object_size = object_size;
            self.cpu.platform.fatal(&f);
        }
        let expected = self.class_for(layout.size(), layout.align());
        let matches = if tag == CLASS_LARGE {
            expected.is_none() && layout.size().div_ceil(self.page_size()).max(1) == s.pages
        } else {
            expected == Some(tag as usize)
        };
        let (word, bit) = self.live_bit(pr, addr);
        if word.load(Ordering::Relaxed) & bit == 0 {
            self.fault(FaultKind::DoubleFree, addr);
        }
        if !matches {
            let mut f = Fault::new(FaultKind::SizeMismatch, addr);
            f.layout_size = layout.size();
            f.object_size = object_size;
            self.cpu.platform.fatal(&f);
        }
        // The atomic clear decides between two racing frees of the same object.
        if clear && word.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
            self.fault(FaultKind::DoubleFree, addr);
        }
    }
}
