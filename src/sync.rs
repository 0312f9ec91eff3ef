//! Atomics and locks used by every tier.
//!
//! Atomics come from `portable-atomic`, which is `core`'s own types where the target has them
//! and an emulation through `critical-section` where it lacks compare-and-swap (thumbv6m).

pub(crate) use portable_atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// The default lock of the central cache and the page heap: a spin lock from `spin`.
pub type DefaultRawMutex = spin::mutex::SpinMutex<()>;

/// A lock that masks interrupts while held, through the `critical-section` crate.
///
/// Use it on single-core firmware whose interrupt handlers allocate: the central cache and the
/// page heap are then never interrupted while locked, so an allocating handler cannot deadlock
/// against the code it interrupted. On a multi-core target the `critical-section`
/// implementation must also exclude the other cores (most multi-core implementations do).
#[cfg(feature = "critical-section")]
pub struct CriticalSectionRawMutex {
    restore: core::cell::Cell<critical_section::RestoreState>,
    locked: core::cell::Cell<bool>,
}

// SAFETY: every access to the cells happens inside a critical section, which excludes all
// other code that could touch them (interrupts, and other cores if the implementation covers
// them).
#[cfg(feature = "critical-section")]
unsafe impl Sync for CriticalSectionRawMutex {}

// SAFETY: `lock` acquires a critical section and holds it until `unlock`, so at most one
// holder exists at a time; `locked` turns a re-entrant `lock` into a failed `try_lock`.
#[cfg(feature = "critical-section")]
unsafe impl lock_api::RawMutex for CriticalSectionRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        restore: core::cell::Cell::new(critical_section::RestoreState::invalid()),
        locked: core::cell::Cell::new(false),
    };
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        // A critical section on a single core cannot be contended, so `try_lock` only fails
        // on re-entry, which the heap never does.
        while !self.try_lock() {
            core::hint::spin_loop();
        }
    }

    fn try_lock(&self) -> bool {
        // SAFETY: the state is stored and handed back to `release` in `unlock`, in LIFO order
        // because the heap takes its locks in a fixed order and drops them in reverse.
        let state = unsafe { critical_section::acquire() };
        if self.locked.get() {
            // SAFETY: releases the section acquired just above.
            unsafe { critical_section::release(state) };
            return false;
        }
        self.locked.set(true);
        self.restore.set(state);
        true
    }

    unsafe fn unlock(&self) {
        self.locked.set(false);
        let state = self
            .restore
            .replace(critical_section::RestoreState::invalid());
        // SAFETY: the caller holds the lock, so `state` came from the matching `acquire`.
        unsafe { critical_section::release(state) };
    }
}

/// The try-lock that guards a CPU slot. It never waits: a holder that finds it taken (another
/// CPU using a stale id, or an interrupt on the same CPU) goes to the central cache instead.
pub(crate) struct TryLock(AtomicBool);

impl TryLock {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    #[inline(always)]
    pub(crate) fn try_lock(&self) -> bool {
        // A swap is one instruction on x86 (`xchg`); writing `true` over a held lock changes
        // nothing, so a failed attempt needs no undo.
        !self.0.swap(true, Ordering::Acquire)
    }

    #[inline(always)]
    pub(crate) fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Pads and aligns a value to its own cache line on 64-bit targets (no padding on small
/// 32-bit targets, where RAM is scarce and there is usually one core).
#[cfg_attr(target_pointer_width = "64", repr(align(64)))]
pub(crate) struct CachePadded<T>(pub T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
