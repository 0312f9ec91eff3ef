//! One size class's free list inside a CPU slot: a singly linked stack through the objects'
//! first words, with its slow-start length limit.

use core::ptr;

use crate::central_cache::Chain;
use crate::span::FreeObj;

/// One class's free list in a slot.
#[derive(Clone, Copy)]
pub(crate) struct FreeList {
    pub(crate) head: *mut FreeObj,
    pub(crate) len: u16,
    /// Length above which a free sends a batch back; grows on each refill (slow start).
    pub(crate) max_len: u16,
}

impl FreeList {
    pub(crate) const EMPTY: FreeList = FreeList {
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
        let max = self.max_len as usize;
        let next = if max < batch { max + 1 } else { max + batch };
        self.max_len = next.min(cap).max(1) as u16;
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
}
