//! The page map: from any address to the span that owns its page, read without locks.
//!
//! For every page the map holds two words: the page's class byte (what the free fast path
//! needs) and a pointer to its span record. In checked builds it also holds one "live" bit for
//! every 8 bytes, set while an object starting there is allocated to the user.
//!
//! Entries are written only under the page-heap lock, and only for pages that no live object
//! occupies, so a reader that asks about a live object always sees a stable entry.

use core::ptr::{self, NonNull};

use crate::span::Span;
use crate::sync::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// The entries of one page.
#[doc(hidden)]
pub struct PageRef<'a> {
    pub(crate) class: &'a AtomicU8,
    pub(crate) span: &'a AtomicPtr<Span>,
    /// Live bits (checked builds): bit `i` covers the 8 bytes at `live_base + 8 * i`.
    #[cfg(feature = "checked")]
    pub(crate) live: *const AtomicUsize,
    /// The address that live bit 0 covers.
    #[cfg(feature = "checked")]
    pub(crate) live_base: usize,
}

/// Bits in a live-bit word.
#[cfg(feature = "checked")]
pub(crate) const LIVE_BITS: usize = usize::BITS as usize;

/// Words of live bits needed for `bytes` bytes of heap memory (checked builds).
#[cfg(feature = "checked")]
const fn live_words(bytes: usize) -> usize {
    (bytes / 8).div_ceil(LIVE_BITS)
}

mod sealed {
    pub trait Sealed {}
}

/// A page-map implementation. Choose one in [`PageSource::Map`](crate::PageSource::Map);
/// the trait itself is sealed.
pub trait PageMap: sealed::Sealed + Sync + Send + Sized {
    /// An empty map, usable in a `static`.
    #[doc(hidden)]
    const EMPTY: Self;

    /// An upper bound of the metadata bytes that [`register`](Self::register) asks for to
    /// cover `pages` pages.
    #[doc(hidden)]
    fn meta_bound(pages: usize, page_shift: u32) -> usize;

    /// Whether another run can be registered.
    #[doc(hidden)]
    fn has_room(&self) -> bool;

    /// Cover the pages `[base, base + pages << page_shift)`. Metadata comes from `meta`,
    /// which returns zeroed, exclusively owned memory of the given size and alignment.
    /// Returns `false` if the map cannot take the run (it is full, or `meta` failed).
    ///
    /// # Safety
    /// Must be called under the page-heap lock; the run must not overlap a covered one.
    #[doc(hidden)]
    unsafe fn register(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        meta: &mut dyn FnMut(usize, usize) -> Option<NonNull<u8>>,
    ) -> bool;

    /// The entries of the page holding `addr`, or `None` if no covered run holds it.
    #[doc(hidden)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>>;
}

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

impl<const N: usize> PageMap for FlatMap<N> {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Self {
        count: AtomicUsize::new(0),
        runs: [FlatRun::EMPTY; N],
    };

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

    fn has_room(&self) -> bool {
        self.count.load(Ordering::Relaxed) < N
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
        run.len.store(pages << page_shift, Ordering::Relaxed);
        run.classes
            .store(classes.as_ptr().cast(), Ordering::Relaxed);
        run.spans.store(spans.as_ptr().cast(), Ordering::Relaxed);
        #[cfg(feature = "checked")]
        run.live.store(live.as_ptr().cast(), Ordering::Relaxed);
        // Publishes the run's fields to lock-free readers.
        self.count.store(n + 1, Ordering::Release);
        true
    }

    #[inline(always)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>> {
        let n = self.count.load(Ordering::Acquire);
        for run in &self.runs[..n] {
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
    extern crate std;
    use super::*;
    use std::alloc::{alloc_zeroed, Layout};

    fn meta(size: usize, align: usize) -> Option<NonNull<u8>> {
        // SAFETY: test allocation, leaked on purpose.
        NonNull::new(unsafe { alloc_zeroed(Layout::from_size_align(size.max(1), align).ok()?) })
    }

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
