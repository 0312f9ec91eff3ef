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

    /// The metadata bytes that [`register`](Self::register) would ask for right now to cover
    /// `pages` pages at `base` (at most [`meta_bound`](Self::meta_bound)). Call it under the
    /// page-heap lock, so that nothing is registered in between.
    #[doc(hidden)]
    fn meta_need(&self, base: usize, pages: usize, page_shift: u32) -> usize {
        let _ = base;
        Self::meta_bound(pages, page_shift)
    }

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

    /// Stop covering `[base, base + pages << page_shift)`, which [`register`](Self::register)
    /// covered and whose entries all say free or never used. The map may hand `discard`
    /// page-aligned ranges `(addr, len)` of its own metadata that now describe nothing; they
    /// may be discarded (contents lost, reading as zero afterwards) but stay mapped, because
    /// a lock-free reader may still look at them. The default keeps everything.
    ///
    /// # Safety
    /// Must be called under the page-heap lock, once per registration of the range.
    #[doc(hidden)]
    unsafe fn unregister(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        discard: &mut dyn FnMut(usize, usize),
    ) {
        let _ = (base, pages, page_shift, discard);
    }

    /// The entries of the page holding `addr`, or `None` if no covered run holds it.
    #[doc(hidden)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>>;

    /// The class byte of the page holding `addr` (what the free fast path needs), or `None`.
    #[doc(hidden)]
    #[inline(always)]
    fn class_of(&self, addr: usize, page_shift: u32) -> Option<u8> {
        self.page(addr, page_shift)
            .map(|p| p.class.load(Ordering::Relaxed))
    }
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
    fn class_of(&self, addr: usize, page_shift: u32) -> Option<u8> {
        // Run 0 first, without the count: its length is 0 until it is published, and most
        // heaps have one run.
        if let Some(run) = self.runs.first() {
            // Length first (Acquire), then the fields it publishes.
            let len = run.len.load(Ordering::Acquire);
            let off = addr.wrapping_sub(run.base.load(Ordering::Relaxed));
            if off < len {
                // SAFETY: `off >> page_shift` is below the run's page count; the Acquire load
                // of the nonzero length saw the array published.
                return Some(unsafe {
                    (*run.classes.load(Ordering::Relaxed).add(off >> page_shift))
                        .load(Ordering::Relaxed)
                });
            }
        }
        self.page(addr, page_shift)
            .map(|p| p.class.load(Ordering::Relaxed))
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

/// Address bits the radix map covers: the 48-bit virtual address space of x86-64 and AArch64
/// user space (and of Sv48 on RISC-V).
#[cfg(target_pointer_width = "64")]
const ADDR_BITS: u32 = 48;

/// Pages per radix leaf (2^12: with 4 KiB pages one leaf covers 16 MiB).
#[cfg(target_pointer_width = "64")]
const LEAF_BITS: u32 = 12;
#[cfg(target_pointer_width = "64")]
const LEAF_LEN: usize = 1 << LEAF_BITS;

/// One leaf of the radix map: the entries of `LEAF_LEN` consecutive pages. All-zero memory is
/// a valid, empty leaf.
#[cfg(target_pointer_width = "64")]
#[repr(C)]
struct Leaf {
    classes: [AtomicU8; LEAF_LEN],
    spans: [AtomicPtr<Span>; LEAF_LEN],
    /// Registrations that cover some page of the leaf (written under the page-heap lock).
    /// When the last goes, the entry arrays describe nothing and their pages are discarded.
    users: AtomicUsize,
    /// Live bits of the bytes the leaf covers (checked builds).
    #[cfg(feature = "checked")]
    live: AtomicPtr<AtomicUsize>,
}

/// An interior node: an array of pointers to the next level (null = absent).
#[cfg(target_pointer_width = "64")]
type Mid = AtomicPtr<Leaf>;
#[cfg(target_pointer_width = "64")]
type Root = AtomicPtr<Mid>;

/// The shape of the tree for one page size: the page-number bits above a leaf are split
/// between the root and the middle level.
#[cfg(target_pointer_width = "64")]
#[derive(Clone, Copy)]
struct Shape {
    /// Address bits below the middle-level index (the bytes one leaf covers).
    leaf_shift: u32,
    /// Address bits below the root index.
    root_shift: u32,
    mid_len: usize,
    root_len: usize,
}

#[cfg(target_pointer_width = "64")]
impl Shape {
    #[inline(always)]
    const fn of(page_shift: u32) -> Self {
        let upper = ADDR_BITS - page_shift - LEAF_BITS;
        let mid_bits = upper / 2;
        let leaf_shift = page_shift + LEAF_BITS;
        Self {
            leaf_shift,
            root_shift: leaf_shift + mid_bits,
            mid_len: 1 << mid_bits,
            root_len: 1 << (upper - mid_bits),
        }
    }

    /// Bytes of the root or of one middle node (with alignment slack).
    fn root_bytes(&self) -> usize {
        self.root_len * size_of::<Root>() + 8
    }
    fn mid_bytes(&self) -> usize {
        self.mid_len * size_of::<Mid>() + 8
    }
    /// Bytes of one leaf, with its live bits in checked builds (and alignment slack).
    fn leaf_bytes(&self) -> usize {
        #[cfg(feature = "checked")]
        let live = live_words(1 << self.leaf_shift) * size_of::<AtomicUsize>() + 8;
        #[cfg(not(feature = "checked"))]
        let live = 0;
        size_of::<Leaf>() + 8 + live
    }
}

#[cfg(target_pointer_width = "64")]
use core::mem::{align_of, size_of};

/// A three-level radix tree over the whole 48-bit address space: the page map of sources that
/// hand out many runs anywhere in memory (mmap). 64-bit targets only.
///
/// A lookup is three dependent loads (root, middle node, leaf), whatever the number of runs.
/// With 4 KiB pages the root and each middle node hold 4096 pointers (32 KiB) and a leaf covers
/// 4096 pages (16 MiB) with 36 KiB of entries (plus 256 KiB of live bits in checked builds).
/// Nodes are taken from the page heap's metadata as runs are registered, the root on the
/// first one, so an unused map is two words. Nodes are never freed: a lock-free reader may
/// hold any of them. A leaf counts the registrations that cover it; when a direct run goes
/// and its leaf is left covering nothing, the leaf's entry pages are discarded (they read as
/// zero, an empty leaf, and cost no memory until a run at that address registers again and
/// the same leaf is reused).
#[cfg(target_pointer_width = "64")]
pub struct RadixMap {
    root: AtomicPtr<Root>,
    leaves: AtomicUsize,
}

#[cfg(target_pointer_width = "64")]
impl sealed::Sealed for RadixMap {}

#[cfg(target_pointer_width = "64")]
impl RadixMap {
    /// Leaves allocated so far.
    pub fn leaves(&self) -> usize {
        self.leaves.load(Ordering::Relaxed)
    }

    /// Whether `[base, base + bytes)` lies in the covered address space.
    fn in_range(base: usize, bytes: usize) -> bool {
        base.checked_add(bytes)
            .is_some_and(|end| bytes > 0 && end <= 1 << ADDR_BITS)
    }
}

#[cfg(target_pointer_width = "64")]
impl PageMap for RadixMap {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Self {
        root: AtomicPtr::new(ptr::null_mut()),
        leaves: AtomicUsize::new(0),
    };

    fn meta_bound(pages: usize, page_shift: u32) -> usize {
        let sh = Shape::of(page_shift);
        let mids = pages / (LEAF_LEN * sh.mid_len) + 2;
        let leaves = pages / LEAF_LEN + 2;
        sh.root_bytes() + mids * sh.mid_bytes() + leaves * sh.leaf_bytes()
    }

    fn meta_need(&self, base: usize, pages: usize, page_shift: u32) -> usize {
        let sh = Shape::of(page_shift);
        let Some(bytes) = pages.checked_mul(1 << page_shift) else {
            return usize::MAX;
        };
        if !Self::in_range(base, bytes) {
            return usize::MAX;
        }
        let root = self.root.load(Ordering::Relaxed);
        if root.is_null() {
            return Self::meta_bound(pages, page_shift);
        }
        let end = base + bytes;
        let mut need = 0;
        let mut a = base >> sh.leaf_shift << sh.leaf_shift;
        let mut last_mid = usize::MAX;
        while a < end {
            // SAFETY: the root has `root_len` entries and `a < 2^48` indexes below it.
            let mid = unsafe { (*root.add(a >> sh.root_shift)).load(Ordering::Relaxed) };
            if mid.is_null() {
                if a >> sh.root_shift != last_mid {
                    need += sh.mid_bytes();
                    last_mid = a >> sh.root_shift;
                }
                need += sh.leaf_bytes();
            } else {
                // SAFETY: a middle node has `mid_len` entries; the index is masked below it.
                let leaf = unsafe {
                    (*mid.add((a >> sh.leaf_shift) & (sh.mid_len - 1))).load(Ordering::Relaxed)
                };
                if leaf.is_null() {
                    need += sh.leaf_bytes();
                }
            }
            a += 1 << sh.leaf_shift;
        }
        need
    }

    fn has_room(&self) -> bool {
        true
    }

    unsafe fn register(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        meta: &mut dyn FnMut(usize, usize) -> Option<NonNull<u8>>,
    ) -> bool {
        let sh = Shape::of(page_shift);
        let Some(bytes) = pages.checked_mul(1 << page_shift) else {
            return false;
        };
        if !Self::in_range(base, bytes) {
            return false;
        }
        let mut root = self.root.load(Ordering::Relaxed);
        if root.is_null() {
            let Some(r) = meta(sh.root_len * size_of::<Root>(), align_of::<Root>()) else {
                return false;
            };
            root = r.as_ptr().cast();
            // Publishes the zeroed root to lock-free readers.
            self.root.store(root, Ordering::Release);
        }
        let end = base + bytes;
        let mut a = base >> sh.leaf_shift << sh.leaf_shift;
        while a < end {
            // SAFETY: `a < 2^48`, so the index is below `root_len`.
            let mid_slot = unsafe { &*root.add(a >> sh.root_shift) };
            let mut mid = mid_slot.load(Ordering::Relaxed);
            if mid.is_null() {
                let Some(m) = meta(sh.mid_len * size_of::<Mid>(), align_of::<Mid>()) else {
                    return false;
                };
                mid = m.as_ptr().cast();
                mid_slot.store(mid, Ordering::Release);
            }
            // SAFETY: the index is masked below `mid_len`.
            let leaf_slot = unsafe { &*mid.add((a >> sh.leaf_shift) & (sh.mid_len - 1)) };
            let mut leaf = leaf_slot.load(Ordering::Relaxed);
            if leaf.is_null() {
                let Some(got) = meta(size_of::<Leaf>(), align_of::<Leaf>()) else {
                    return false;
                };
                let new = got.as_ptr().cast::<Leaf>();
                #[cfg(feature = "checked")]
                {
                    let words = live_words(1 << sh.leaf_shift);
                    let Some(live) =
                        meta(words * size_of::<AtomicUsize>(), align_of::<AtomicUsize>())
                    else {
                        return false;
                    };
                    // SAFETY: `new` is fresh, zeroed, exclusively owned memory for a `Leaf`.
                    unsafe { (*new).live.store(live.as_ptr().cast(), Ordering::Relaxed) };
                }
                // Publishes the zeroed leaf (and its live-bit pointer) to lock-free readers.
                leaf_slot.store(new, Ordering::Release);
                self.leaves.fetch_add(1, Ordering::Relaxed);
                leaf = new;
            }
            // SAFETY: a published leaf stays valid for the map's life.
            unsafe { (*leaf).users.fetch_add(1, Ordering::Relaxed) };
            a += 1 << sh.leaf_shift;
        }
        true
    }

    unsafe fn unregister(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        discard: &mut dyn FnMut(usize, usize),
    ) {
        let sh = Shape::of(page_shift);
        let page = 1usize << page_shift;
        let Some(end) = pages.checked_mul(page).and_then(|b| base.checked_add(b)) else {
            return;
        };
        // Discard the whole pages inside `[lo, hi)`.
        let mut inside = |lo: usize, hi: usize| {
            let (lo, hi) = (lo.next_multiple_of(page), hi & !(page - 1));
            if hi > lo {
                discard(lo, hi - lo);
            }
        };
        let mut a = base >> sh.leaf_shift << sh.leaf_shift;
        while a < end {
            if let Some((leaf, _, _)) = self.leaf_of(a, page_shift) {
                let users = leaf.users.load(Ordering::Relaxed);
                debug_assert!(users > 0, "unregistering a range not registered");
                leaf.users.store(users.saturating_sub(1), Ordering::Relaxed);
                if users == 1 {
                    // SAFETY (of discarding): no registered run has a page in this leaf, so
                    // no live object does, and a reader on a legitimate free never looks at
                    // it. A reader with a stale or foreign pointer may: it reads the old
                    // entries (free or never used) or zeros (never used), both of which it
                    // reports, because the memory stays mapped; the leaf is never freed, so
                    // a run registered here later reuses it. `users` and `live` lie outside
                    // the discarded range.
                    let start = leaf as *const Leaf as usize;
                    inside(start, &leaf.users as *const AtomicUsize as usize);
                    #[cfg(feature = "checked")]
                    {
                        let live = leaf.live.load(Ordering::Relaxed) as usize;
                        let bytes = live_words(1 << sh.leaf_shift) * size_of::<AtomicUsize>();
                        inside(live, live + bytes);
                    }
                }
            }
            a += 1 << sh.leaf_shift;
        }
    }

    #[inline(always)]
    fn class_of(&self, addr: usize, page_shift: u32) -> Option<u8> {
        // `page` without building a `PageRef`: the free fast path needs the class byte only.
        let (leaf, i, _) = self.leaf_of(addr, page_shift)?;
        Some(leaf.classes[i].load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>> {
        let (leaf, i, _leaf_shift) = self.leaf_of(addr, page_shift)?;
        Some(PageRef {
            class: &leaf.classes[i],
            span: &leaf.spans[i],
            #[cfg(feature = "checked")]
            live: leaf.live.load(Ordering::Relaxed),
            #[cfg(feature = "checked")]
            live_base: addr >> _leaf_shift << _leaf_shift,
        })
    }
}

#[cfg(target_pointer_width = "64")]
impl RadixMap {
    /// The leaf covering `addr`, the page's index in it, and the leaf's address shift; `None`
    /// if no registered run covers `addr`.
    #[inline(always)]
    fn leaf_of(&self, addr: usize, page_shift: u32) -> Option<(&Leaf, usize, u32)> {
        let sh = Shape::of(page_shift);
        let root = self.root.load(Ordering::Acquire);
        if root.is_null() || addr >> ADDR_BITS != 0 {
            return None;
        }
        // SAFETY: `addr < 2^48`, so the index is below `root_len`; published nodes stay valid
        // for the map's life and were zeroed before the Release store that published them.
        let mid = unsafe { (*root.add(addr >> sh.root_shift)).load(Ordering::Acquire) };
        if mid.is_null() {
            return None;
        }
        // SAFETY: the index is masked below `mid_len`; as above.
        let leaf = unsafe {
            (*mid.add((addr >> sh.leaf_shift) & (sh.mid_len - 1))).load(Ordering::Acquire)
        };
        // SAFETY: a published leaf stays valid for the map's life.
        let leaf = unsafe { leaf.as_ref()? };
        Some((leaf, (addr >> page_shift) & (LEAF_LEN - 1), sh.leaf_shift))
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
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn radix_map_covers_runs_anywhere_in_48_bits() {
        let map = RadixMap::EMPTY;
        assert!(
            map.page(0x10_0000, 12).is_none(),
            "nothing before the first run"
        );
        let runs = [
            (0x7f12_3456_7000usize, 3usize),
            (0x7f12_3456_a000, 5000), // spans two leaves
            (0x0000_5555_0000_0000, 1),
            (0xffff_ffff_f000, 1), // the last page of the address space
        ];
        let mut asked = 0usize;
        for (base, pages) in runs {
            let need = map.meta_need(base, pages, 12);
            assert!(need <= RadixMap::meta_bound(pages, 12));
            let mut got = 0usize;
            // SAFETY: single-threaded test; the runs do not overlap.
            assert!(unsafe {
                map.register(base, pages, 12, &mut |size, align| {
                    got += size;
                    meta(size, align)
                })
            });
            assert!(
                got <= need,
                "register asked for {got}, more than meta_need {need}"
            );
            asked += got;
            assert_eq!(map.meta_need(base, pages, 12), 0, "now covered");
        }
        assert!(asked > 0);
        for (base, pages) in runs {
            let last = base + (pages << 12) - 1;
            for a in [base, base + 4096 * (pages / 2), last] {
                let p = map.page(a, 12).expect("covered");
                assert_eq!(p.class.load(Ordering::Relaxed), 0);
            }
            map.page(last, 12)
                .unwrap()
                .class
                .store(9, Ordering::Relaxed);
            assert_eq!(
                map.page(last & !0xfff, 12)
                    .unwrap()
                    .class
                    .load(Ordering::Relaxed),
                9,
                "every byte of a page shares its entry"
            );
        }
        // Neighbouring pages of the first run's page share its entry array but not its entry.
        assert_eq!(
            map.page(0x7f12_3456_6000, 12)
                .unwrap()
                .class
                .load(Ordering::Relaxed),
            0
        );
        assert!(map.page(0x1_0000_0000_0000, 12).is_none(), "above 48 bits");
        assert!(map.page(0x4000_0000, 12).is_none(), "no leaf there");
        assert_eq!(
            map.leaves(),
            4,
            "two leaves for the first runs, one each for the others"
        );
        // SAFETY: single-threaded test.
        unsafe {
            assert!(
                !map.register(0xffff_ffff_f000, 2, 12, &mut meta),
                "past 2^48"
            );
            assert!(!map.register(0, usize::MAX, 12, &mut meta), "overflow");
        }
        assert_eq!(map.meta_need(0xffff_ffff_f000, 2, 12), usize::MAX);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn radix_map_shapes_for_every_page_size() {
        for shift in 8..=16 {
            let map = RadixMap::EMPTY;
            let base = 0x7000_0000_0000usize + (3 << shift);
            // SAFETY: single-threaded test.
            assert!(unsafe { map.register(base, 10_000, shift, &mut meta) });
            let p = map.page(base + (9_999 << shift), shift).unwrap();
            p.span
                .store(NonNull::dangling().as_ptr(), Ordering::Relaxed);
            assert!(map
                .page(base + (10_000 << shift) + (1 << 40), shift)
                .is_none());
            assert!(RadixMap::meta_bound(10_000, shift) >= map.meta_need(base, 1, shift));
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn radix_map_reads_race_with_registration() {
        use std::sync::atomic::AtomicBool;
        let map: &'static RadixMap = std::boxed::Box::leak(std::boxed::Box::new(RadixMap::EMPTY));
        let done: &'static AtomicBool =
            std::boxed::Box::leak(std::boxed::Box::new(AtomicBool::new(false)));
        let reader = std::thread::spawn(move || {
            let mut seen = 0usize;
            while !done.load(Ordering::Acquire) {
                for i in 0..64usize {
                    if let Some(p) = map.page(0x6000_0000_0000 + (i << 26), 12) {
                        let c = p.class.load(Ordering::Relaxed) as usize;
                        assert!(c <= 1, "a reader saw an unpublished entry");
                        seen = seen.saturating_add(c);
                    }
                }
            }
            seen
        });
        for i in 0..64usize {
            // SAFETY: the only writer; the runs do not overlap.
            assert!(unsafe { map.register(0x6000_0000_0000 + (i << 26), 1, 12, &mut meta) });
            map.page(0x6000_0000_0000 + (i << 26), 12)
                .unwrap()
                .class
                .store(1, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() <= usize::MAX / 2);
    }
}
