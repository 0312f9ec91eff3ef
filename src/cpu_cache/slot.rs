//! A CPU slot: its guard flags, its lists and its counters, on a cache line of its own, and
//! the guard value that proves exclusive access to the lists.

use core::cell::UnsafeCell;

use super::free_list::FreeList;
use crate::size_class::NUM_CLASSES;
pub(crate) use crate::stats::SlotStats;
use crate::sync::SlotLock;

/// The lists of one slot. Only the context inside the slot touches it.
pub(crate) struct SlotCache {
    pub(crate) lists: [FreeList; NUM_CLASSES],
}

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
    pub(crate) cache: UnsafeCell<SlotCache>,
}

// SAFETY: `cache` is only accessed through a `SlotGuard`, which exists only while its context
// is inside the slot (owner, shared holder or remote operation), and `SlotLock` admits one at
// a time.
unsafe impl Sync for CpuSlot {}

impl CpuSlot {
    pub(crate) const fn new() -> Self {
        Self {
            lock: SlotLock::new(),
            cache: UnsafeCell::new(SlotCache {
                lists: [FreeList::EMPTY; NUM_CLASSES],
            }),
            stats: SlotStats::new(),
        }
    }

    /// Enter as the slot's owner (plain loads and stores), or `None` if the owner is already
    /// inside (a re-entering interrupt) or a remote operation is.
    ///
    /// # Safety
    /// The caller must be the context that owns the slot (see `ExclusiveSlots::new`).
    #[inline(always)]
    pub(crate) unsafe fn enter_owned(&self) -> Option<SlotGuard<'_>> {
        if self.lock.enter_owned() {
            Some(SlotGuard {
                slot: self,
                remote: false,
            })
        } else {
            None
        }
    }

    /// Take a shared slot (a try-lock), or `None` if someone holds it.
    #[inline(always)]
    pub(crate) fn try_lock(&self) -> Option<SlotGuard<'_>> {
        if self.lock.enter_shared() {
            Some(SlotGuard {
                slot: self,
                remote: false,
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
                remote: true,
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
                remote: true,
            })
        } else {
            None
        }
    }
}

/// Exclusive access to a slot's lists; leaves the slot on drop.
pub(crate) struct SlotGuard<'a> {
    pub(crate) slot: &'a CpuSlot,
    remote: bool,
}

impl SlotGuard<'_> {
    /// The slot's lists.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn cache(&self) -> &mut SlotCache {
        // SAFETY: the guard proves its context is inside the slot, so no one else touches the
        // cache; callers do not keep two of these references alive at once.
        unsafe { &mut *self.slot.cache.get() }
    }
}

impl Drop for SlotGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.remote {
            self.slot.lock.leave_remote();
        } else {
            self.slot.lock.leave();
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
        let g = unsafe { s.enter_owned() }.expect("free slot");
        // SAFETY: as above (a second entry by the same context, as a re-entering handler).
        let again = unsafe { s.enter_owned() };
        assert!(again.is_none(), "re-entry backs off");
        assert!(
            s.enter_remote(barrier).is_none(),
            "remote backs off from the owner"
        );
        drop(g);
        let r = s.enter_remote(barrier).expect("idle slot");
        // SAFETY: as above.
        let owner = unsafe { s.enter_owned() };
        assert!(owner.is_none(), "owner backs off from a remote");
        assert!(s.enter_remote(barrier).is_none(), "one remote at a time");
        drop(r);
        assert!(s.enter_remote(|| false).is_none(), "no barrier, no remote");
        // SAFETY: as above.
        let free = unsafe { s.enter_owned() };
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
