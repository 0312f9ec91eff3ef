//! A CPU slot: its try-lock, its lists and its counters, on a cache line of its own, and the
//! guard that proves exclusive access to the lists.

use core::cell::UnsafeCell;

use super::free_list::FreeList;
use crate::size_class::NUM_CLASSES;
pub(crate) use crate::stats::SlotStats;
use crate::sync::TryLock;

/// The lists of one slot. Only the holder of the slot's try-lock touches it.
pub(crate) struct SlotCache {
    pub(crate) lists: [FreeList; NUM_CLASSES],
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
            stats: SlotStats::new(),
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
    use super::*;

    #[test]
    fn try_lock_excludes() {
        let s = CpuSlot::new();
        let g = s.try_lock().expect("free slot");
        assert!(s.try_lock().is_none(), "taken slot");
        drop(g);
        assert!(s.try_lock().is_some());
    }
}
