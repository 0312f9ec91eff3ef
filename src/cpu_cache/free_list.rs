//! One size class's free list inside a CPU slot: a singly linked stack through the objects'
//! first words, with its slow-start length limit. An all-zero list is an empty one with the
//! starting limit, so a heap in a `static` is zero bytes (`.bss`).

use core::ptr;

use crate::central_cache::Chain;
use crate::span::FreeObj;

/// One class's free list in a slot.
#[derive(Clone, Copy)]
pub(crate) struct FreeList {
    pub(crate) head: *mut FreeObj,
    pub(crate) len: u16,
    /// The length limit less one (so that 0 is the starting limit, one object). A free that
    /// takes the list past the limit sends a batch back; the limit grows on each refill (slow
    /// start). See [`max_len`](Self::max_len).
    limit_less_one: u16,
}

impl FreeList {
    pub(crate) const EMPTY: FreeList = FreeList {
        head: ptr::null_mut(),
        len: 0,
        limit_less_one: 0,
    };

    /// Length above which a free sends a batch back (at least 1).
    #[inline]
    pub(crate) fn max_len(&self) -> usize {
        self.limit_less_one as usize + 1
    }

    /// Set the length limit: `max` clamped to 1..=65536.
    #[inline]
    pub(crate) fn set_max_len(&mut self, max: usize) {
        self.limit_less_one = (max.clamp(1, u16::MAX as usize + 1) - 1) as u16;
    }

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

    /// Push a free object. Returns whether the list is now longer than its limit (the
    /// caller then sends a batch back).
    ///
    /// # Safety
    /// The caller must hold the slot's lock and own the free object.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, obj: *mut FreeObj) -> bool {
        // SAFETY: the caller owns the object; its first word becomes the link.
        unsafe { (*obj).next = self.head };
        self.head = obj;
        // `len + 1 > limit_less_one + 1`, decided on the length before the push.
        let over = self.len > self.limit_less_one;
        self.len += 1;
        over
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

    /// Prepend a null-terminated chain. Its tail may be left null (untracked) when the list
    /// is empty.
    ///
    /// # Safety
    /// The caller must hold the slot's lock and own the chain's objects.
    pub(crate) unsafe fn push_chain(&mut self, chain: Chain) {
        if chain.len == 0 {
            return;
        }
        if !self.head.is_null() {
            // SAFETY: the list is not empty, so the chain's tail is tracked: a free object
            // the caller owns.
            unsafe { (*chain.tail).next = self.head };
        }
        self.head = chain.head;
        self.len += chain.len as u16;
    }

    /// After a refill: raise the limit by one up to a batch, then by a batch up to `cap`.
    pub(crate) fn grow_limit(&mut self, batch: usize, cap: usize) {
        let max = self.max_len();
        let next = if max < batch { max + 1 } else { max + batch };
        self.set_max_len(next.min(cap));
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
            for (i, &p) in ptrs.iter().enumerate() {
                // The starting limit is one object: every push past the first is over it.
                assert_eq!(l.push(p), i >= 1);
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
            seen.push(l.max_len());
        }
        assert_eq!(seen, [2, 3, 4, 8, 12, 12, 12, 12]);
    }

    #[test]
    fn the_limit_decides_on_the_push_that_passes_it() {
        let mut objs: Vec<[usize; 2]> = std::vec![[0; 2]; 4];
        let mut l = FreeList::EMPTY;
        assert_eq!(l.max_len(), 1, "an all-zero list starts at one object");
        l.set_max_len(3);
        assert_eq!(l.max_len(), 3);
        let over: Vec<bool> = objs
            .iter_mut()
            // SAFETY: distinct two-word buffers owned by the test.
            .map(|o| unsafe { l.push(o.as_mut_ptr().cast()) })
            .collect();
        assert_eq!(over, [false, false, false, true]);
        l.set_max_len(0);
        assert_eq!(l.max_len(), 1, "clamped to one");
        l.set_max_len(1 << 20);
        assert_eq!(l.max_len(), 65536, "clamped to the field");
    }
}
