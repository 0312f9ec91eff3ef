//! The free lists of one CPU slot: for each size class a singly linked stack through the
//! objects' first words, its length limit, and the room left under the limit.
//!
//! The layout is chosen for the fast paths, which index by class:
//! - the heads are an array of pointers, so a pop is one indexed load of the head, one of its
//!   link and one store;
//! - a push needs no length and no limit: it decrements the class's *room* (limit less length)
//!   and sends a batch back when the room goes negative, one read-modify-write of a 16-bit word
//!   and a sign test. A pop increments it.
//!
//! Length and limit follow from the room and the limit (`len = limit - room`). Both are atomics
//! that only the context inside the slot writes (a load and a store, never a read-modify-write,
//! see [`add_owned`](crate::stats::add_owned)), so statistics can read them without entering
//! the slot. The slot's *capacity*, the bytes its limits allow (`sum of limit × class size`),
//! changes only when a limit does, off the fast path; it is what the slot's byte budget bounds.
//!
//! An all-zero `FreeLists` is empty with every limit 0, so a heap in a `static` is zero bytes
//! (`.bss`). A list whose limit is 0 is over it at its first push; tier 1's flush then keeps
//! the object and sets the limit to 1 (slow start), and each refill raises it.

use core::cell::UnsafeCell;
use core::ptr;

use crate::central_cache::Chain;
use crate::size_class::{class_size, NUM_CLASSES};
use crate::span::FreeObj;
use crate::sync::{Ordering, PlainI16, PlainU16, PlainUsize};

/// Longest list limit a slot keeps: 14 bits, since the top two bits of a stored limit count
/// the list's overflows since its limit last changed ([`FreeLists::overflowed`]). (The room
/// is an `i16`: `limit - len` stays within it because a list never holds more than its limit
/// plus one.)
pub(crate) const MAX_LIMIT: usize = LIMIT_MASK as usize;

/// The limit's bits of a stored limit; above them, the overflow count.
const LIMIT_MASK: u16 = (1 << 14) - 1;
/// One overflow in a stored limit.
const OVERFLOW_ONE: u16 = 1 << 14;
/// Overflows with no change of the limit between them after which a list's limit drops by a
/// batch (TCMalloc's thread caches use the same number).
const OVERFLOWS_TO_SHRINK: u16 = 3;

/// The free lists of one slot.
#[repr(C)]
pub(crate) struct FreeLists {
    /// First free object of each class (null: empty). Only the context inside the slot
    /// touches them.
    heads: UnsafeCell<[*mut FreeObj; NUM_CLASSES]>,
    /// Each class's limit less its length: negative when a push took the list past its limit.
    room: [PlainI16; NUM_CLASSES],
    /// Each class's length limit (the low 14 bits), and how often the list overflowed since
    /// the limit last changed (the top two).
    limit: [PlainU16; NUM_CLASSES],
    /// Bytes the limits allow: the sum over classes of limit × class size.
    pub(crate) capacity: PlainUsize,
    /// A bit per class whose limit is not 0, so that the walks over a slot's classes (the
    /// budget's shrink, a drain) visit only those: with a small budget the shrink runs on
    /// many refills, and a walk over every class cost more than the refill.
    active: [PlainUsize; ACTIVE_WORDS],
}

/// Words of [`FreeLists::active`].
const ACTIVE_WORDS: usize = NUM_CLASSES.div_ceil(usize::BITS as usize);

// SAFETY: `heads` is only accessed by the context inside the slot (every method that touches
// it is `unsafe` with that requirement); the other fields are atomics.
unsafe impl Sync for FreeLists {}

/// Ask the CPU to bring the cache line at `p` into its caches (x86-64; nothing elsewhere).
#[inline(always)]
fn prefetch(p: *mut FreeObj) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program can observe and never
    // faults, whatever the address (null included). SSE is part of x86-64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            p.cast::<i8>().cast_const(),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Add `d` to an owner-written 16-bit counter: a load and a store.
#[inline(always)]
fn add_i16(c: &PlainI16, d: i16) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(d), Ordering::Relaxed);
}

impl FreeLists {
    pub(crate) const fn new() -> Self {
        Self {
            heads: UnsafeCell::new([ptr::null_mut(); NUM_CLASSES]),
            room: [const { PlainI16::new(0) }; NUM_CLASSES],
            limit: [const { PlainU16::new(0) }; NUM_CLASSES],
            capacity: PlainUsize::new(0),
            active: [const { PlainUsize::new(0) }; ACTIVE_WORDS],
        }
    }

    /// The classes in `lo..hi` whose limit is not 0, in increasing order. Each step looks
    /// the next one up afresh, so the walker may change limits (and so the set) as it goes.
    pub(crate) fn active_classes(&self, lo: usize, hi: usize) -> impl Iterator<Item = usize> + '_ {
        let mut next = lo;
        core::iter::from_fn(move || {
            let c = self.first_active(next, hi)?;
            next = c + 1;
            Some(c)
        })
    }

    /// The lowest class in `lo..hi` whose limit is not 0.
    pub(crate) fn first_active(&self, lo: usize, hi: usize) -> Option<usize> {
        let bits = usize::BITS as usize;
        let mut w = lo / bits;
        let mut word = self.active.get(w)?.load(Ordering::Relaxed) & (usize::MAX << (lo % bits));
        loop {
            if word != 0 {
                let c = w * bits + word.trailing_zeros() as usize;
                return (c < hi).then_some(c);
            }
            w += 1;
            if w * bits >= hi {
                return None;
            }
            word = self.active.get(w)?.load(Ordering::Relaxed);
        }
    }

    /// The heads.
    ///
    /// # Safety
    /// The caller must be inside the slot, and not hold another reference from here.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn heads(&self) -> &mut [*mut FreeObj; NUM_CLASSES] {
        // SAFETY: the caller is the only context inside the slot and holds no other
        // reference to the heads.
        unsafe { &mut *self.heads.get() }
    }

    /// The first object of `class`'s list (null if it is empty).
    ///
    /// # Safety
    /// The caller must be inside the slot.
    #[inline(always)]
    pub(crate) unsafe fn head(&self, class: usize) -> *mut FreeObj {
        // SAFETY: the caller is inside the slot.
        unsafe { self.heads()[class] }
    }

    /// Length of `class`'s list. Exact inside the slot; from outside, a recent value.
    #[inline]
    pub(crate) fn len(&self, class: usize) -> usize {
        let limit = (self.limit[class].load(Ordering::Relaxed) & LIMIT_MASK) as isize;
        let room = self.room[class].load(Ordering::Relaxed) as isize;
        (limit - room).max(0) as usize
    }

    /// Length limit of `class`'s list: a free that takes the list past it sends a batch back.
    #[inline]
    pub(crate) fn max_len(&self, class: usize) -> usize {
        (self.limit[class].load(Ordering::Relaxed) & LIMIT_MASK) as usize
    }

    /// Count an overflow of `class`'s list (a free took it past its limit); `true` on the
    /// third since its limit last changed (by a refill, a flush or the budget), when the
    /// caller lowers the limit, which clears the count.
    ///
    /// # Safety
    /// The caller must be inside the slot.
    pub(crate) unsafe fn overflowed(&self, class: usize) -> bool {
        let stored = self.limit[class].load(Ordering::Relaxed);
        if stored / OVERFLOW_ONE + 1 >= OVERFLOWS_TO_SHRINK {
            return true;
        }
        self.limit[class].store(stored + OVERFLOW_ONE, Ordering::Relaxed);
        false
    }

    /// Bytes the limits allow (see the module docs). Exact inside the slot.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Objects on the lists and their bytes: a sum over every class. Exact inside the slot;
    /// from outside, a recent value of each list.
    pub(crate) fn contents(&self) -> (usize, usize) {
        (1..NUM_CLASSES).fold((0, 0), |(n, b), c| {
            let len = self.len(c);
            (n + len, b + len * class_size(c))
        })
    }

    /// Set `class`'s limit to `max` (clamped to `MAX_LIMIT`), keeping the length: the room
    /// and the capacity follow, and the overflow count starts again from 0.
    ///
    /// # Safety
    /// The caller must be inside the slot.
    pub(crate) unsafe fn set_max_len(&self, class: usize, max: usize) {
        let old = self.max_len(class);
        let new = max.min(MAX_LIMIT);
        self.limit[class].store(new as u16, Ordering::Relaxed);
        // |new - old| <= MAX_LIMIT, and the room stays within `-1..=new` plus what it was
        // below the old limit.
        add_i16(&self.room[class], (new as i16).wrapping_sub(old as i16));
        let cap = self
            .capacity()
            .wrapping_add((new.wrapping_sub(old)).wrapping_mul(class_size(class)));
        self.capacity.store(cap, Ordering::Relaxed);
        if (old == 0) != (new == 0) {
            // SAFETY: the caller is inside the slot.
            unsafe { self.flip_active(class) };
        }
    }

    /// Flip `class`'s bit in the set of classes with a limit.
    ///
    /// # Safety
    /// The caller must be inside the slot.
    pub(crate) unsafe fn flip_active(&self, class: usize) {
        let bits = usize::BITS as usize;
        let w = &self.active[class / bits];
        w.store(
            w.load(Ordering::Relaxed) ^ (1 << (class % bits)),
            Ordering::Relaxed,
        );
    }

    /// After a refill: raise the limit by one up to a batch, then by a batch up to `cap`.
    ///
    /// # Safety
    /// The caller must be inside the slot.
    pub(crate) unsafe fn grow_limit(&self, class: usize, batch: usize, cap: usize) {
        let max = self.max_len(class);
        let next = if max < batch { max + 1 } else { max + batch };
        // SAFETY: the caller is inside the slot.
        unsafe { self.set_max_len(class, next.min(cap).max(max)) };
    }

    /// Pop the first object of `class`, or null.
    ///
    /// # Safety
    /// The caller must be inside the slot.
    #[inline(always)]
    pub(crate) unsafe fn pop(&self, class: usize) -> *mut FreeObj {
        // SAFETY: the caller is inside the slot.
        let heads = unsafe { self.heads() };
        let obj = heads[class];
        if !obj.is_null() {
            // SAFETY: listed objects are free and hold their link.
            let next = unsafe { (*obj).next };
            heads[class] = next;
            // The next pop of this class reads `next`'s link: start fetching it now.
            prefetch(next);
            add_i16(&self.room[class], 1);
        }
        obj
    }

    /// Push a free object of `class`. Returns whether the list is now longer than its limit
    /// (the caller then sends a batch back).
    ///
    /// # Safety
    /// The caller must be inside the slot and own the free object.
    #[inline(always)]
    pub(crate) unsafe fn push(&self, class: usize, obj: *mut FreeObj) -> bool {
        // SAFETY: the caller is inside the slot.
        let heads = unsafe { self.heads() };
        // SAFETY: the caller owns the object; its first word becomes the link.
        unsafe { (*obj).next = heads[class] };
        heads[class] = obj;
        let room = self.room[class].load(Ordering::Relaxed).wrapping_sub(1);
        self.room[class].store(room, Ordering::Relaxed);
        room < 0
    }

    /// Detach up to `n` objects from the front of `class`'s list as a chain.
    ///
    /// # Safety
    /// The caller must be inside the slot.
    pub(crate) unsafe fn pop_chain(&self, class: usize, n: usize) -> Chain {
        let mut chain = Chain::EMPTY;
        let n = n.min(self.len(class));
        if n == 0 {
            return chain;
        }
        // SAFETY: the caller is inside the slot.
        let heads = unsafe { self.heads() };
        chain.head = heads[class];
        let mut tail = chain.head;
        for _ in 1..n {
            // SAFETY: the list has at least `n` linked objects.
            tail = unsafe { (*tail).next };
        }
        // SAFETY: `tail` is the n-th object; cut the list after it.
        unsafe {
            heads[class] = (*tail).next;
            (*tail).next = ptr::null_mut();
        }
        chain.tail = tail;
        chain.len = n;
        add_i16(&self.room[class], n as i16);
        chain
    }

    /// Prepend a null-terminated chain to `class`'s list. Its tail may be left null
    /// (untracked) when the list is empty.
    ///
    /// # Safety
    /// The caller must be inside the slot and own the chain's objects, and the list must stay
    /// within its limit plus one (`MAX_LIMIT` bounds both).
    pub(crate) unsafe fn push_chain(&self, class: usize, chain: Chain) {
        if chain.len == 0 {
            return;
        }
        // SAFETY: the caller is inside the slot.
        let heads = unsafe { self.heads() };
        if !heads[class].is_null() {
            // SAFETY: the list is not empty, so the chain's tail is tracked: a free object
            // the caller owns.
            unsafe { (*chain.tail).next = heads[class] };
        }
        heads[class] = chain.head;
        add_i16(&self.room[class], (chain.len as i16).wrapping_neg());
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const C: usize = 3;

    #[test]
    fn list_push_pop_and_chains() {
        let mut objs: Vec<[usize; 2]> = std::vec![[0; 2]; 10];
        let ptrs: Vec<*mut FreeObj> = objs.iter_mut().map(|o| o.as_mut_ptr().cast()).collect();
        let l = FreeLists::new();
        // SAFETY: the test is the slot's only context; the objects are distinct two-word
        // buffers owned by the test.
        unsafe {
            l.set_max_len(C, 1);
            for (i, &p) in ptrs.iter().enumerate() {
                // A limit of one object: every push past the first is over it.
                assert_eq!(l.push(C, p), i >= 1);
            }
            assert_eq!(l.len(C), 10);
            let c = l.pop_chain(C, 4);
            assert_eq!((c.len, l.len(C)), (4, 6));
            assert_eq!(c.head, ptrs[9]);
            assert_eq!(c.tail, ptrs[6]);
            assert!((*c.tail).next.is_null());
            assert_eq!(l.pop(C), ptrs[5]);
            l.push_chain(C, c);
            assert_eq!(l.len(C), 9);
            assert_eq!(l.pop(C), ptrs[9]);
            let all = l.pop_chain(C, 100);
            assert_eq!(all.len, 8);
            assert!(l.pop(C).is_null());
            assert_eq!(l.len(C), 0);
        }
    }

    #[test]
    fn the_active_set_follows_the_limits_across_words() {
        let l = FreeLists::new();
        let last = NUM_CLASSES - 1;
        // The last class of the first word and the first of the second, where there is a
        // second word (the firmware set's 49 classes fit one 64-bit word).
        let a = (usize::BITS as usize - 1).min(last - 2);
        let b = a + 1;
        assert_eq!(l.first_active(1, NUM_CLASSES), None);
        // SAFETY: the test is the slot's only context.
        unsafe {
            for c in [1, a, b, last] {
                l.set_max_len(c, 5);
            }
            // Raising a limit that is already set leaves the bit alone.
            l.set_max_len(a, 9);
        }
        assert_eq!(l.first_active(1, NUM_CLASSES), Some(1));
        assert_eq!(l.first_active(2, NUM_CLASSES), Some(a));
        assert_eq!(l.first_active(b, NUM_CLASSES), Some(b));
        assert_eq!(l.first_active(b + 1, NUM_CLASSES), Some(last));
        assert_eq!(l.first_active(2, a), None, "the upper bound is exclusive");
        assert_eq!(l.first_active(b + 1, last), None);
        assert!(l.active_classes(1, NUM_CLASSES).eq([1, a, b, last]));
        assert!(l.active_classes(2, b).eq([a]));
        // SAFETY: as above.
        unsafe { l.set_max_len(a, 0) };
        assert_eq!(l.first_active(2, NUM_CLASSES), Some(b));
        assert_eq!(l.first_active(NUM_CLASSES, NUM_CLASSES), None);
    }

    #[test]
    fn the_third_overflow_since_a_limit_change_says_shrink() {
        let l = FreeLists::new();
        // SAFETY: the test is the slot's only context.
        unsafe {
            l.set_max_len(3, MAX_LIMIT);
            assert!(!l.overflowed(3));
            assert!(!l.overflowed(3));
            // The count lives above the limit's bits: neither the limit nor the length moves.
            assert_eq!((l.max_len(3), l.len(3)), (MAX_LIMIT, 0));
            assert!(l.overflowed(3), "the third");
            assert!(l.overflowed(3), "still, until the limit changes");
            l.set_max_len(3, 100);
            assert_eq!(l.max_len(3), 100);
            assert!(!l.overflowed(3), "a new limit starts the count again");
            l.set_max_len(3, 100_000);
        }
        assert_eq!(l.max_len(3), MAX_LIMIT, "a limit is clamped to its 14 bits");
    }

    #[test]
    fn slow_start_grows_to_the_cap() {
        let l = FreeLists::new();
        let mut seen = Vec::new();
        for _ in 0..8 {
            // SAFETY: the test is the slot's only context.
            unsafe { l.grow_limit(C, 4, 12) };
            seen.push(l.max_len(C));
        }
        assert_eq!(seen, [1, 2, 3, 4, 8, 12, 12, 12]);
        assert_eq!(l.capacity(), 12 * class_size(C));
    }

    #[test]
    fn the_limit_decides_on_the_push_that_passes_it() {
        let mut objs: Vec<[usize; 2]> = std::vec![[0; 2]; 4];
        let l = FreeLists::new();
        assert_eq!(l.max_len(C), 0, "an all-zero list starts at a limit of 0");
        let mut first: [usize; 2] = [0; 2];
        // SAFETY: the test is the slot's only context; the buffers are the test's.
        unsafe {
            assert!(
                l.push(C, first.as_mut_ptr().cast()),
                "limit 0: over at once"
            );
            assert_eq!(l.pop_chain(C, 1).len, 1);
            l.set_max_len(C, 3);
        }
        assert_eq!(l.max_len(C), 3);
        let over: Vec<bool> = objs
            .iter_mut()
            // SAFETY: distinct two-word buffers owned by the test.
            .map(|o| unsafe { l.push(C, o.as_mut_ptr().cast()) })
            .collect();
        assert_eq!(over, [false, false, false, true]);
        // SAFETY: as above.
        unsafe { l.set_max_len(C, 1) };
        assert_eq!(
            (l.max_len(C), l.len(C)),
            (1, 4),
            "lowering keeps the length"
        );
        assert_eq!(l.capacity(), class_size(C));
        // SAFETY: as above.
        unsafe { l.set_max_len(C, 1 << 20) };
        assert_eq!(l.max_len(C), MAX_LIMIT, "clamped");
        assert_eq!(l.len(C), 4);
        assert_eq!(l.contents(), (4, 4 * class_size(C)));
    }
}
