//! A CPU slot: its guard flags, its lists and its counters, on a cache line of its own, and
//! the guard value that proves exclusive access to the lists.

use super::free_list::FreeLists;
pub(crate) use crate::stats::SlotStats;
use crate::sync::{BackOff, SlotLock};

/// A CPU slot: its guard, lists and counters, on its own cache line.
///
/// In this order (`repr(C)`): the guard flags and the counters the fast paths touch sit at
/// small offsets from the slot's start, which Thumb-1 loads and stores can address with an
/// immediate (at most 124 bytes), so the fast paths need one base address for all of them.
#[repr(C)]
#[cfg_attr(target_pointer_width = "64", repr(align(64)))]
pub(crate) struct CpuSlot {
    pub(crate) lock: SlotLock,
    pub(crate) stats: SlotStats,
    /// Only the context inside the slot (holding a [`SlotGuard`]) may use the lists'
    /// `unsafe` methods; anyone may read their lengths.
    pub(crate) lists: FreeLists,
}

impl CpuSlot {
    pub(crate) const fn new() -> Self {
        Self {
            lock: SlotLock::new(),
            stats: SlotStats::new(),
            lists: FreeLists::new(),
        }
    }

    /// Enter as the slot's owner (plain loads and stores), or `None` if the owner is already
    /// inside (a re-entering interrupt) or a remote operation is.
    ///
    /// # Safety
    /// The caller must be the context that owns the slot (see `ExclusiveSlots::new`).
    #[inline(always)]
    pub(crate) unsafe fn enter_owned(&self, one_core: bool) -> Option<SlotGuard<'_>> {
        if self.lock.enter_owned(one_core) {
            Some(SlotGuard {
                slot: self,
                how: Entry::Owned { one_core },
            })
        } else {
            None
        }
    }

    /// [`enter_owned`](Self::enter_owned), leaving the undo of a failed entry to the caller
    /// (see [`SlotLock::try_enter_owned`]).
    ///
    /// # Safety
    /// As for [`enter_owned`](Self::enter_owned).
    #[inline(always)]
    pub(crate) unsafe fn try_enter_owned(&self, one_core: bool) -> Result<SlotGuard<'_>, BackOff> {
        self.lock.try_enter_owned(one_core).map(|()| SlotGuard {
            slot: self,
            how: Entry::Owned { one_core },
        })
    }

    /// Take a shared slot (a try-lock), or `None` if someone holds it.
    #[inline(always)]
    pub(crate) fn try_lock(&self) -> Option<SlotGuard<'_>> {
        if self.lock.enter_shared() {
            Some(SlotGuard {
                slot: self,
                how: Entry::Shared,
            })
        } else {
            None
        }
    }

    /// Enter an owned slot from outside, after `barrier` (the platform's heavy barrier), or
    /// `None` if it is in use or there is no barrier.
    pub(crate) fn enter_remote(&self, barrier: impl FnOnce() -> bool) -> Option<SlotGuard<'_>> {
        if self.lock.enter_remote(barrier) {
            Some(SlotGuard {
                slot: self,
                how: Entry::Remote,
            })
        } else {
            None
        }
    }
}

impl CpuSlot {
    /// Complete a remote entry whose flag [`SlotLock::claim_remote`] set (and whose barrier
    /// has run): the slot is ours unless its owner is inside.
    pub(crate) fn confirm_remote(&self) -> Option<SlotGuard<'_>> {
        if self.lock.confirm_remote() {
            Some(SlotGuard {
                slot: self,
                how: Entry::Remote,
            })
        } else {
            None
        }
    }
}

/// How a guard entered its slot, which says how it leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// `one_core`: see `SlotLock::enter_owned`.
    Owned {
        one_core: bool,
    },
    Shared,
    Remote,
}

/// Exclusive access to a slot's lists; leaves the slot on drop.
pub(crate) struct SlotGuard<'a> {
    pub(crate) slot: &'a CpuSlot,
    how: Entry,
}

impl SlotGuard<'_> {
    /// The slot's lists, whose `unsafe` methods the guard's holder may call: it is inside
    /// the slot.
    #[inline(always)]
    pub(crate) fn lists(&self) -> &FreeLists {
        &self.slot.lists
    }
}

impl Drop for SlotGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        match self.how {
            Entry::Owned { one_core } => self.slot.lock.leave_owned(one_core),
            Entry::Shared => self.slot.lock.leave_shared(),
            Entry::Remote => self.slot.lock.leave_remote(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_shared_and_remote_exclude_each_other() {
        let s = CpuSlot::new();
        let barrier = || true;
        // SAFETY: this test is the slot's only context.
        let g = unsafe { s.enter_owned(false) }.expect("free slot");
        // SAFETY: as above (a second entry by the same context, as a re-entering handler).
        let again = unsafe { s.enter_owned(false) };
        assert!(again.is_none(), "re-entry backs off");
        assert!(
            s.enter_remote(barrier).is_none(),
            "remote backs off from the owner"
        );
        drop(g);
        let r = s.enter_remote(barrier).expect("idle slot");
        // SAFETY: as above.
        let owner = unsafe { s.enter_owned(false) };
        assert!(owner.is_none(), "owner backs off from a remote");
        assert!(s.enter_remote(barrier).is_none(), "one remote at a time");
        drop(r);
        assert!(s.enter_remote(|| false).is_none(), "no barrier, no remote");
        // SAFETY: as above.
        let free = unsafe { s.enter_owned(false) };
        assert!(free.is_some(), "free again");
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
