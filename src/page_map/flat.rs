//! [`FlatMap`]: one flat array of entries per registered run.

use core::ptr::{self, NonNull};

#[cfg(feature = "checked")]
use super::live_words;
use super::{sealed, PageMap, PageRef};
use crate::span::{Span, CLASS_NONE};
use crate::sync::{
    native_ptr, native_u8, native_usize, AtomicPtr, AtomicU8, AtomicUsize, Ordering,
};

/// A page map over at most `N` runs, each covered by a flat array: the right choice when the
/// source hands out few runs (static regions, or a source that grows in large steps).
/// A lookup walks the registered runs, so `N` should stay small.
pub struct FlatMap<const N: usize> {
    count: AtomicUsize,
    runs: [FlatRun; N],
}

struct FlatRun {
    base: AtomicUsize,
    len: AtomicUsize,
    classes: AtomicPtr<AtomicU8>,
    spans: AtomicPtr<AtomicPtr<Span>>,
    #[cfg(feature = "checked")]
    live: AtomicPtr<AtomicUsize>,
}

impl FlatRun {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Self {
        base: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        classes: AtomicPtr::new(ptr::null_mut()),
        spans: AtomicPtr::new(ptr::null_mut()),
        #[cfg(feature = "checked")]
        live: AtomicPtr::new(ptr::null_mut()),
    };
}

impl<const N: usize> sealed::Sealed for FlatMap<N> {}

impl<const N: usize> FlatMap<N> {
    /// Number of runs covered.
    pub fn runs(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl<const N: usize> FlatMap<N> {
    /// [`class_of`](PageMap::class_of) past run 0: the walk, out of the free fast path on
    /// 64-bit targets (one instruction less per free on x86-64); inline on 32-bit ones, where
    /// the out-of-line copy cost firmware 32 bytes of flash.
    #[cfg_attr(target_pointer_width = "64", cold, inline(never))]
    #[cfg_attr(not(target_pointer_width = "64"), inline(always))]
    fn class_beyond_run_0(&self, addr: usize, page_shift: u32) -> u8 {
        self.page(addr, page_shift)
            .map_or(CLASS_NONE, |p| p.class.load(Ordering::Relaxed))
    }
}

impl<const N: usize> PageMap for FlatMap<N> {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Self {
        count: AtomicUsize::new(0),
        runs: [FlatRun::EMPTY; N],
    };
    const QUICK_IS_ALL: bool = N == 1;
    const RUNS: usize = N;

    fn meta_bound(pages: usize, page_shift: u32) -> usize {
        let ptr_size = core::mem::size_of::<AtomicPtr<Span>>();
        #[cfg(feature = "checked")]
        let live = live_words(pages << page_shift) * core::mem::size_of::<AtomicUsize>() + 8;
        #[cfg(not(feature = "checked"))]
        let live = {
            let _ = page_shift;
            0
        };
        pages + pages * ptr_size + ptr_size + live
    }

    fn runs_left(&self) -> usize {
        N - self.count.load(Ordering::Relaxed)
    }

    unsafe fn register(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        meta: &mut dyn FnMut(usize, usize) -> Option<NonNull<u8>>,
    ) -> bool {
        let n = self.count.load(Ordering::Relaxed);
        if n == N {
            return false;
        }
        let Some(classes) = meta(pages, 1) else {
            return false;
        };
        let Some(spans) = meta(
            pages * core::mem::size_of::<AtomicPtr<Span>>(),
            core::mem::align_of::<AtomicPtr<Span>>(),
        ) else {
            return false;
        };
        #[cfg(feature = "checked")]
        let Some(live) = meta(
            live_words(pages << page_shift) * core::mem::size_of::<AtomicUsize>(),
            core::mem::align_of::<AtomicUsize>(),
        ) else {
            return false;
        };
        let run = &self.runs[n];
        run.base.store(base, Ordering::Relaxed);
        run.classes
            .store(classes.as_ptr().cast(), Ordering::Relaxed);
        run.spans.store(spans.as_ptr().cast(), Ordering::Relaxed);
        #[cfg(feature = "checked")]
        run.live.store(live.as_ptr().cast(), Ordering::Relaxed);
        // A nonzero length publishes the run's fields to readers that look at this run
        // directly (run 0, on the fast path); the count publishes it to the walk.
        run.len.store(pages << page_shift, Ordering::Release);
        self.count.store(n + 1, Ordering::Release);
        true
    }

    #[inline(always)]
    fn class_of(&self, addr: usize, page_shift: u32) -> u8 {
        if let Some(tag) = self.class_quick(addr, page_shift) {
            return tag;
        }
        // One run: run 0 was the walk (compiled out).
        if N == 1 {
            return CLASS_NONE;
        }
        self.class_beyond_run_0(addr, page_shift)
    }

    #[inline(always)]
    fn class_quick(&self, addr: usize, page_shift: u32) -> Option<u8> {
        // Run 0 only, without the count: its length is 0 until it is published, and most
        // heaps have one run.
        let run = self.runs.first()?;
        // Length first (Acquire), then the fields it publishes. Native loads: these fields
        // and the class bytes are only loaded and stored (see `native_usize`).
        let len = native_usize(&run.len).load(Ordering::Acquire);
        let off = addr.wrapping_sub(native_usize(&run.base).load(Ordering::Relaxed));
        if off >= len {
            return None;
        }
        // SAFETY: `off >> page_shift` is below the run's page count; the Acquire load of the
        // nonzero length saw the array published.
        let class = unsafe {
            &*native_ptr(&run.classes)
                .load(Ordering::Relaxed)
                .add(off >> page_shift)
        };
        Some(native_u8(class).load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>> {
        let n = self.count.load(Ordering::Acquire);
        // `take`, not `[..n]`: `n <= N`, but a slice would check it (and link a panic).
        for run in self.runs.iter().take(n) {
            let base = run.base.load(Ordering::Relaxed);
            let off = addr.wrapping_sub(base);
            if off < run.len.load(Ordering::Relaxed) {
                let idx = off >> page_shift;
                // SAFETY: `idx` is below the run's page count, and the arrays hold one entry
                // per page; they were published by the Release store of `count`.
                unsafe {
                    return Some(PageRef {
                        class: &*run.classes.load(Ordering::Relaxed).add(idx),
                        span: &*run.spans.load(Ordering::Relaxed).add(idx),
                        #[cfg(feature = "checked")]
                        live: run.live.load(Ordering::Relaxed),
                        #[cfg(feature = "checked")]
                        live_base: base,
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_meta as meta;
    use super::*;

    #[test]
    fn flat_map_finds_pages_of_each_run() {
        let map: FlatMap<2> = FlatMap::EMPTY;
        assert!(map.page(0x10_0000, 12).is_none());
        // SAFETY: single-threaded test; the runs do not overlap.
        unsafe {
            assert!(map.register(0x10_0000, 4, 12, &mut meta));
            assert!(map.register(0x40_0000, 2, 12, &mut meta));
            assert!(!map.register(0x80_0000, 2, 12, &mut meta), "capacity is 2");
        }
        let p = map.page(0x10_3fff, 12).expect("last byte of the first run");
        p.class.store(7, Ordering::Relaxed);
        assert_eq!(
            map.page(0x10_3000, 12)
                .unwrap()
                .class
                .load(Ordering::Relaxed),
            7
        );
        assert_eq!(
            map.page(0x10_2000, 12)
                .unwrap()
                .class
                .load(Ordering::Relaxed),
            0
        );
        assert!(map.page(0x10_4000, 12).is_none(), "one past the first run");
        assert!(map.page(0x40_1000, 12).is_some());
        assert!(map.page(0x40_2000, 12).is_none());
        assert!(map.page(0x0fffff, 12).is_none());
        assert_eq!(map.runs(), 2);
    }
}
