//! [`RadixMap`]: a three-level radix tree over the 48-bit address space (64-bit targets).

use core::ptr::{self, NonNull};

#[cfg(feature = "checked")]
use super::live_words;
use super::{sealed, PageMap, PageRef};
use crate::span::{Span, CLASS_NONE};
use crate::sync::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Address bits the radix map covers: the 48-bit virtual address space of x86-64 and AArch64
/// user space (and of Sv48 on RISC-V).
const ADDR_BITS: u32 = 48;

/// Pages per radix leaf (2^12: with 4 KiB pages one leaf covers 16 MiB).
const LEAF_BITS: u32 = 12;
const LEAF_LEN: usize = 1 << LEAF_BITS;

/// One leaf of the radix map: the entries of `LEAF_LEN` consecutive pages. All-zero memory is
/// a valid, empty leaf.
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
type Mid = AtomicPtr<Leaf>;
type Root = AtomicPtr<Mid>;

/// The shape of the tree for one page size: the page-number bits above a leaf are split
/// between the root and the middle level.
#[derive(Clone, Copy)]
struct Shape {
    /// Address bits below the middle-level index (the bytes one leaf covers).
    leaf_shift: u32,
    /// Address bits below the root index.
    root_shift: u32,
    mid_len: usize,
    root_len: usize,
}

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
pub struct RadixMap {
    root: AtomicPtr<Root>,
    leaves: AtomicUsize,
}

impl sealed::Sealed for RadixMap {}

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

    fn runs_left(&self) -> usize {
        usize::MAX
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
    fn class_of(&self, addr: usize, page_shift: u32) -> u8 {
        // `page` without building a `PageRef`: the free fast path needs the class byte only.
        self.leaf_of(addr, page_shift)
            .map_or(CLASS_NONE, |(leaf, i, _)| {
                leaf.classes[i].load(Ordering::Relaxed)
            })
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
    use super::super::test_meta as meta;
    use super::*;

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
