//! Per-CPU caches: one slot per CPU, a free list per size class in each.
//!
//! A slot is guarded by a try-lock, never a waiting lock. The CPU index that picks a slot is a
//! hint: if the slot is taken (a stale index, a migrated task, an interrupt that re-entered on
//! the same CPU), the operation goes to the central cache instead. So the slot's lists are only
//! ever touched by the one holder of its try-lock, and the common case touches no shared
//! cache line.
//!
//! Each list's length limit starts at one object and grows each time the list runs dry (slow
//! start), so a class that is used rarely keeps little memory parked here. A slot whose cached
//! bytes exceed its budget sends objects back.

use core::cell::UnsafeCell;
use core::ptr;

use crate::central_cache::Chain;
use crate::size_class::NUM_CLASSES;
use crate::span::FreeObj;
use crate::sync::{AtomicUsize, Ordering, TryLock};

/// One class's free list in a slot.
#[derive(Clone, Copy)]
pub(crate) struct FreeList {
    pub(crate) head: *mut FreeObj,
    pub(crate) len: u16,
    /// Length above which a free sends a batch back; grows on each refill (slow start).
    pub(crate) max_len: u16,
}

impl FreeList {
    const EMPTY: FreeList = FreeList {
        head: ptr::null_mut(),
        len: 0,
        max_len: 1,
    };

    /// Pop the first object, or null.
    ///
    /// # Safety
    /// The caller must hold the slot's lock.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self) -> *mut FreeObj {
        let obj = self.head;
        if !obj.is_null() {
            // SAFETY: listed objects are free and hold their link.
            self.head = unsafe { (*obj).next };
            self.len -= 1;
        }
        obj
    }

    /// Push a free object.
    ///
    /// # Safety
    /// The caller must hold the slot's lock and own the free object.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, obj: *mut FreeObj) {
        // SAFETY: the caller owns the object; its first word becomes the link.
        unsafe { (*obj).next = self.head };
        self.head = obj;
        self.len += 1;
    }

    /// Detach up to `n` objects from the front as a chain.
    ///
    /// # Safety
    /// The caller must hold the slot's lock.
    pub(crate) unsafe fn pop_chain(&mut self, n: usize) -> Chain {
        let mut chain = Chain::EMPTY;
        let n = n.min(self.len as usize);
        if n == 0 {
            return chain;
        }
        chain.head = self.head;
        let mut tail = self.head;
        for _ in 1..n {
            // SAFETY: the list has at least `n` linked objects.
            tail = unsafe { (*tail).next };
        }
        // SAFETY: `tail` is the n-th object; cut the list after it.
        unsafe {
            self.head = (*tail).next;
            (*tail).next = ptr::null_mut();
        }
        chain.tail = tail;
        chain.len = n;
        self.len -= n as u16;
        chain
    }

    /// Prepend a chain.
    ///
    /// # Safety
    /// The caller must hold the slot's lock and own the chain's objects.
    pub(crate) unsafe fn push_chain(&mut self, chain: Chain) {
        if chain.len == 0 {
            return;
        }
        // SAFETY: the chain's tail is a free object the caller owns.
        unsafe { (*chain.tail).next = self.head };
        self.head = chain.head;
        self.len += chain.len as u16;
    }

    /// After a refill: raise the limit by one up to a batch, then by a batch up to `cap`.
    pub(crate) fn grow_limit(&mut self, batch: usize, cap: usize) {
        let max = self.max_len as usize;
        let next = if max < batch { max + 1 } else { max + batch };
        self.max_len = next.min(cap).max(1) as u16;
    }
}

/// The lists of one slot. Only the holder of the slot's try-lock touches it.
pub(crate) struct SlotCache {
    pub(crate) lists: [FreeList; NUM_CLASSES],
}

/// Counters of one slot, written only by the slot's holder (plain load and store, no
/// read-modify-write) and read by anyone.
///
/// The fast path touches two of them: `allocs` or `frees`, and `cached_bytes`. The bytes a slot
/// has handed out net of those it took back follow from the slow-path counters:
/// objects enter a slot by refills and frees and leave it by allocations and flushes, so
/// `allocated - freed = refill_bytes - flush_bytes - cached_bytes`.
pub(crate) struct SlotStats {
    pub(crate) allocs: AtomicUsize,
    pub(crate) frees: AtomicUsize,
    pub(crate) refills: AtomicUsize,
    pub(crate) flushes: AtomicUsize,
    /// Bytes of objects on the slot's lists.
    pub(crate) cached_bytes: AtomicUsize,
    /// Bytes taken from the central cache.
    pub(crate) refill_bytes: AtomicUsize,
    /// Bytes given back to the central cache.
    pub(crate) flush_bytes: AtomicUsize,
    /// The slot's net in-use bytes as last folded into the heap-wide counter.
    pub(crate) published: AtomicUsize,
    /// `realloc` calls made on this CPU, and how many stayed in place. Updated with atomic
    /// read-modify-writes (realloc does not hold the slot), on this CPU's own cache line.
    pub(crate) reallocs: AtomicUsize,
    pub(crate) reallocs_in_place: AtomicUsize,
}

impl SlotStats {
    /// Bytes allocated through this slot net of bytes freed through it (two's complement:
    /// a slot that frees what others allocated goes negative).
    pub(crate) fn net_in_use(&self) -> usize {
        self.refill_bytes
            .load(Ordering::Relaxed)
            .wrapping_sub(self.flush_bytes.load(Ordering::Relaxed))
            .wrapping_sub(self.cached_bytes.load(Ordering::Relaxed))
    }
}

/// Add `n` to a counter that only the slot holder writes.
#[inline(always)]
pub(crate) fn bump(c: &AtomicUsize, n: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A CPU slot: try-lock, lists and counters, on its own cache line.
#[cfg_attr(target_pointer_width = "64", repr(align(64)))]
pub(crate) struct CpuSlot {
    pub(crate) lock: TryLock,
    pub(crate) cache: UnsafeCell<SlotCache>,
    pub(crate) stats: SlotStats,
}

// SAFETY: `cache` is only accessed by the holder of `lock` (see `CpuSlot::try_lock`).
unsafe impl Sync for CpuSlot {}

impl CpuSlot {
    pub(crate) const fn new() -> Self {
        Self {
            lock: TryLock::new(),
            cache: UnsafeCell::new(SlotCache {
                lists: [FreeList::EMPTY; NUM_CLASSES],
            }),
            stats: SlotStats {
                allocs: AtomicUsize::new(0),
                frees: AtomicUsize::new(0),
                refills: AtomicUsize::new(0),
                flushes: AtomicUsize::new(0),
                cached_bytes: AtomicUsize::new(0),
                refill_bytes: AtomicUsize::new(0),
                flush_bytes: AtomicUsize::new(0),
                published: AtomicUsize::new(0),
                reallocs: AtomicUsize::new(0),
                reallocs_in_place: AtomicUsize::new(0),
            },
        }
    }

    /// Take the slot, or `None` if someone holds it.
    #[inline(always)]
    pub(crate) fn try_lock(&self) -> Option<SlotGuard<'_>> {
        if self.lock.try_lock() {
            Some(SlotGuard { slot: self })
        } else {
            None
        }
    }
}

/// Exclusive access to a slot's lists; unlocks on drop.
pub(crate) struct SlotGuard<'a> {
    pub(crate) slot: &'a CpuSlot,
}

impl SlotGuard<'_> {
    /// The slot's lists.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn cache(&self) -> &mut SlotCache {
        // SAFETY: the guard holds the try-lock, so no one else touches the cache; callers do
        // not keep two of these references alive at once.
        unsafe { &mut *self.slot.cache.get() }
    }
}

impl Drop for SlotGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.slot.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn list_push_pop_and_chains() {
        let mut objs: Vec<[usize; 2]> = std::vec![[0; 2]; 10];
        let ptrs: Vec<*mut FreeObj> = objs.iter_mut().map(|o| o.as_mut_ptr().cast()).collect();
        let mut l = FreeList::EMPTY;
        // SAFETY: the objects are distinct two-word buffers owned by the test.
        unsafe {
            for &p in &ptrs {
                l.push(p);
            }
            assert_eq!(l.len, 10);
            let c = l.pop_chain(4);
            assert_eq!((c.len, l.len), (4, 6));
            assert_eq!(c.head, ptrs[9]);
            assert_eq!(c.tail, ptrs[6]);
            assert!((*c.tail).next.is_null());
            assert_eq!(l.pop(), ptrs[5]);
            l.push_chain(c);
            assert_eq!(l.len, 9);
            assert_eq!(l.pop(), ptrs[9]);
            let all = l.pop_chain(100);
            assert_eq!(all.len, 8);
            assert!(l.pop().is_null());
        }
    }

    #[test]
    fn slow_start_grows_to_the_cap() {
        let mut l = FreeList::EMPTY;
        let mut seen = Vec::new();
        for _ in 0..8 {
            l.grow_limit(4, 12);
            seen.push(l.max_len);
        }
        assert_eq!(seen, [2, 3, 4, 8, 12, 12, 12, 12]);
    }

    #[test]
    fn try_lock_excludes() {
        let s = CpuSlot::new();
        let g = s.try_lock().expect("free slot");
        assert!(s.try_lock().is_none(), "taken slot");
        drop(g);
        assert!(s.try_lock().is_some());
    }
}
