//! Atomics and locks used by every tier.
//!
//! Atomics come from `portable-atomic`, which is `core`'s own types where the target has them
//! and an emulation through `critical-section` where it lacks compare-and-swap (thumbv6m).

pub(crate) use portable_atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Atomics that are only ever loaded and stored, never read-modify-written: `core`'s own
/// types, which every target this crate supports has natively, thumbv6m included. (There
/// `portable-atomic` wraps even a load in a critical section, since its emulated
/// read-modify-writes must exclude other cores' stores.) The fast paths' counters and free
/// lists use them; only one context writes each.
pub(crate) use core::sync::atomic::{
    AtomicI16 as PlainI16, AtomicU16 as PlainU16, AtomicUsize as PlainUsize,
};

/// `core`'s view of a `portable-atomic` flag, for the loads and stores of the one context
/// that writes it: native on every target, where `portable-atomic`'s emulation (thumbv6m)
/// would wrap each in a critical section.
#[inline(always)]
fn plain(flag: &AtomicBool) -> &core::sync::atomic::AtomicBool {
    // SAFETY: `as_ptr` points at the flag's byte, valid and aligned (a `bool` has alignment
    // 1) for as long as `flag` is borrowed. Every access to it is atomic: `core`'s native
    // loads and stores, or `portable-atomic`'s operations, which are `core`'s on targets with
    // them and otherwise run inside a critical section. A native load never tears such an
    // operation; the only native stores are those of a flag's single writer (see
    // `SlotLock`), on a flag that no emulated read-modify-write touches.
    unsafe { core::sync::atomic::AtomicBool::from_ptr(flag.as_ptr()) }
}

/// `core`'s view of a `portable-atomic` word that is only ever loaded and stored, never
/// read-modify-written (the page map's run fields and class bytes), for a lock-free reader
/// on the free path: a native load, where `portable-atomic`'s emulation (thumbv6m) would
/// wrap it in a critical section.
#[inline(always)]
pub(crate) fn native_usize(a: &AtomicUsize) -> &core::sync::atomic::AtomicUsize {
    // SAFETY: `as_ptr` points at the word, valid and aligned (same size and alignment as
    // `core`'s) while `a` is borrowed. The callers' words are only loaded and stored, by
    // `portable-atomic` (native, or inside a critical section) or natively, so a native
    // load never tears an operation.
    unsafe { core::sync::atomic::AtomicUsize::from_ptr(a.as_ptr()) }
}

/// [`native_usize`] for a pointer.
#[inline(always)]
pub(crate) fn native_ptr<T>(a: &AtomicPtr<T>) -> &core::sync::atomic::AtomicPtr<T> {
    // SAFETY: as in `native_usize`.
    unsafe { core::sync::atomic::AtomicPtr::from_ptr(a.as_ptr()) }
}

/// [`native_usize`] for a byte.
#[inline(always)]
pub(crate) fn native_u8(a: &AtomicU8) -> &core::sync::atomic::AtomicU8 {
    // SAFETY: as in `native_usize`.
    unsafe { core::sync::atomic::AtomicU8::from_ptr(a.as_ptr()) }
}

/// The default lock of the central cache and the page heap: a spin lock from `spin`.
pub type DefaultRawMutex = spin::mutex::SpinMutex<()>;

/// A lock that masks interrupts while held, through the `critical-section` crate.
///
/// Use it on single-core firmware whose interrupt handlers allocate: the central cache and the
/// page heap are then never interrupted while locked, so an allocating handler cannot deadlock
/// against the code it interrupted. On a multi-core target the `critical-section`
/// implementation must also exclude the other cores (most multi-core implementations do).
///
/// Each lock is one byte, its held flag. The critical section is shared by every lock of this
/// type: the first lock taken enters it and keeps its restore state (in one static, not in
/// each lock), later ones only count, and the last one released leaves it, in whatever order
/// they are released. (A heap has one such lock per size class; a restore state in each would
/// be 4 bytes more apiece with `cortex-m`'s `u32` state.)
#[cfg(feature = "critical-section")]
pub struct CriticalSectionRawMutex {
    locked: core::cell::Cell<bool>,
}

/// The critical section that every held [`CriticalSectionRawMutex`] shares: how many are
/// held, and the restore state of the `acquire` that entered it.
#[cfg(feature = "critical-section")]
struct SharedSection {
    held: core::cell::Cell<usize>,
    restore: core::cell::Cell<critical_section::RestoreState>,
}

// SAFETY: the cells are only accessed inside a critical section (between an `acquire` and
// its `release`), which excludes all other code that could touch them (interrupts, and other
// cores if the implementation covers them).
#[cfg(feature = "critical-section")]
unsafe impl Sync for SharedSection {}

#[cfg(feature = "critical-section")]
static SECTION: SharedSection = SharedSection {
    held: core::cell::Cell::new(0),
    restore: core::cell::Cell::new(critical_section::RestoreState::invalid()),
};

// SAFETY: every access to `locked` happens inside a critical section, which excludes all
// other code that could touch it (see `SharedSection`).
#[cfg(feature = "critical-section")]
unsafe impl Sync for CriticalSectionRawMutex {}

// SAFETY: `try_lock` sets `locked` inside a critical section only if it was clear, and the
// critical section stays entered (`SECTION.held > 0`) until every held lock is unlocked, so
// at most one holder of each lock exists at a time; `locked` turns a re-entrant `lock` into
// a failed `try_lock`.
#[cfg(feature = "critical-section")]
unsafe impl lock_api::RawMutex for CriticalSectionRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
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
        // SAFETY: every `acquire` here is matched by a `release` of its state: at once (a
        // failed attempt, or a lock taken while the section is already entered, which is
        // the innermost acquire, so the order is LIFO), or, for the acquire that entered the
        // section, by the `unlock` that leaves it, with every later acquire released before.
        let state = unsafe { critical_section::acquire() };
        if self.locked.get() {
            // SAFETY: releases the section acquired just above.
            unsafe { critical_section::release(state) };
            return false;
        }
        self.locked.set(true);
        let held = SECTION.held.get();
        if held == 0 {
            SECTION.restore.set(state);
        } else {
            // SAFETY: the section is already entered by a held lock; this nested acquire is
            // the innermost one.
            unsafe { critical_section::release(state) };
        }
        SECTION.held.set(held + 1);
        true
    }

    // Out of line: a guard's drop at each of a dozen lock sites inlined it, 30 bytes each.
    #[inline(never)]
    unsafe fn unlock(&self) {
        // The caller holds the lock, so the section is entered and the cells are ours.
        self.locked.set(false);
        let held = SECTION.held.get() - 1;
        SECTION.held.set(held);
        if held == 0 {
            let state = SECTION
                .restore
                .replace(critical_section::RestoreState::invalid());
            // SAFETY: the last held lock: `state` came from the acquire that entered the
            // section, and every acquire after it has been released.
            unsafe { critical_section::release(state) };
        }
    }
}

/// The guard of a CPU slot: two flags, `busy` (a context is inside the slot) and `remote` (a
/// rare operation from outside, such as a drain or an invariant check, is inside it).
///
/// Two ways in, chosen by the platform (see [`ExclusiveSlots`](crate::ExclusiveSlots)):
/// - *owned*: the one context that owns the slot enters with plain loads and stores and a
///   compiler fence, no read-modify-write. A remote operation pairs its store of `remote`
///   with a heavy barrier (the platform's [`remote_barrier`](crate::Platform::remote_barrier):
///   `membarrier` on Linux, nothing but a compiler fence on one core), so that of the owner's
///   `busy` and the remote's `remote` at least one side sees the other's (Dekker's protocol
///   with an asymmetric fence). Whoever loses backs off without waiting.
/// - *shared*: a try-lock, `busy` taken with an atomic swap; for slots several contexts may
///   use at once. Remote operations take such a slot the same way.
///
/// Nobody ever waits for a slot: whoever finds it taken goes to the central cache instead.
pub(crate) struct SlotLock {
    busy: AtomicBool,
    remote: AtomicBool,
}

impl SlotLock {
    pub(crate) const fn new() -> Self {
        Self {
            busy: AtomicBool::new(false),
            remote: AtomicBool::new(false),
        }
    }

    /// The owner enters; `false` if it is already inside (an interrupt or signal handler
    /// that re-entered the heap) or a remote operation is. `one_core`: every context that
    /// uses the slot runs on one core ([`ExclusiveSlots::on_one_core`]).
    ///
    /// [`ExclusiveSlots::on_one_core`]: crate::ExclusiveSlots::on_one_core
    #[inline(always)]
    pub(crate) fn enter_owned(&self, one_core: bool) -> bool {
        match self.try_enter_owned(one_core) {
            Ok(()) => true,
            Err(b) => {
                self.back_off(b);
                false
            }
        }
    }

    /// [`enter_owned`](Self::enter_owned) without its undo: on `Err`, the caller must pass
    /// the [`BackOff`] to [`back_off`](Self::back_off) before anything else touches the slot.
    /// (The fast paths do that in a tail-called slow path, so that they make no call that
    /// returns.)
    #[inline(always)]
    pub(crate) fn try_enter_owned(&self, one_core: bool) -> Result<(), BackOff> {
        // Whether this context interrupted itself inside the slot. The flag is set before
        // it is tested, so one branch serves both tests: a re-entering handler stores the
        // `true` that is already there, and must not clear it when it backs off.
        let busy = plain(&self.busy);
        let inside = busy.load(Ordering::Relaxed);
        busy.store(true, Ordering::Relaxed);
        // Keeps the compiler from moving the load of `remote` above the store of `busy`; the
        // processor's reordering is ruled out by the remote side's heavy barrier.
        #[cfg(not(loom))]
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        if inside | self.remote_for_owner(one_core) {
            return Err(BackOff { inside });
        }
        Ok(())
    }

    /// The `remote` flag as the owner reads it on entry. With several cores, Acquire: a
    /// remote operation's writes to the lists happen before it clears the flag. On one core
    /// the only other contexts are handlers that interrupt this one and finish first, and the
    /// core sees its own accesses in program order; a compiler fence (the fence for a context
    /// that races with itself) then does what Acquire would, without a `dmb`.
    #[inline(always)]
    fn remote_for_owner(&self, one_core: bool) -> bool {
        if one_core {
            let r = plain(&self.remote).load(Ordering::Relaxed);
            #[cfg(not(loom))]
            core::sync::atomic::compiler_fence(Ordering::Acquire);
            r
        } else {
            plain(&self.remote).load(Ordering::Acquire)
        }
    }

    /// The owner found the slot in use: undo its store of `busy` unless it was already set
    /// (by the context this one interrupted).
    #[cold]
    pub(crate) fn back_off(&self, b: BackOff) {
        if !b.inside {
            plain(&self.busy).store(false, Ordering::Release);
        }
    }

    /// Take a shared slot (a try-lock).
    #[inline(always)]
    pub(crate) fn enter_shared(&self) -> bool {
        // A swap is one instruction on x86 (`xchg`); writing `true` over a held lock changes
        // nothing, so a failed attempt needs no undo.
        !self.busy.swap(true, Ordering::Acquire)
    }

    /// Leave after [`enter_owned`](Self::enter_owned): Release, so that whoever enters next
    /// sees the lists as the owner left them (on one core, a compiler fence; see
    /// [`remote_for_owner`](Self::remote_for_owner)).
    #[inline(always)]
    pub(crate) fn leave_owned(&self, one_core: bool) {
        if one_core {
            #[cfg(not(loom))]
            core::sync::atomic::compiler_fence(Ordering::Release);
            plain(&self.busy).store(false, Ordering::Relaxed);
        } else {
            plain(&self.busy).store(false, Ordering::Release);
        }
    }

    /// Leave after [`enter_shared`](Self::enter_shared).
    #[inline(always)]
    pub(crate) fn leave_shared(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// A remote operation enters an owned slot. `barrier` is the platform's heavy barrier; if
    /// it cannot give one (`false`), the slot is left alone. `false` too if the owner (or
    /// another remote operation) is inside.
    pub(crate) fn enter_remote(&self, barrier: impl FnOnce() -> bool) -> bool {
        if !self.claim_remote() {
            return false;
        }
        if !barrier() {
            self.leave_remote();
            return false;
        }
        self.confirm_remote()
    }

    /// First half of [`enter_remote`](Self::enter_remote), so that one barrier can serve many
    /// slots: announce the remote operation (`false` if another one is inside).
    pub(crate) fn claim_remote(&self) -> bool {
        let ok = self
            .remote
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        core::sync::atomic::fence(Ordering::SeqCst);
        ok
    }

    /// Second half, after the barrier: the slot is ours unless the owner is inside (then the
    /// claim is withdrawn and `false`).
    pub(crate) fn confirm_remote(&self) -> bool {
        if self.busy.load(Ordering::Acquire) {
            self.leave_remote();
            return false;
        }
        true
    }

    /// Leave after [`enter_remote`](Self::enter_remote).
    pub(crate) fn leave_remote(&self) {
        self.remote.store(false, Ordering::Release);
    }
}

/// What an owner that failed to enter must undo (see [`SlotLock::try_enter_owned`]).
#[must_use]
pub(crate) struct BackOff {
    /// Whether `busy` was already set (by the context this one interrupted).
    inside: bool,
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

#[cfg(all(test, feature = "critical-section"))]
mod tests {
    extern crate std;
    use super::*;
    use lock_api::RawMutex;

    #[test]
    fn critical_section_locks_share_one_section_left_by_the_last() {
        let (a, b) = (CriticalSectionRawMutex::INIT, CriticalSectionRawMutex::INIT);
        assert!(a.try_lock());
        assert!(!a.try_lock(), "re-entry fails");
        assert_eq!(SECTION.held.get(), 1);
        b.lock();
        assert_eq!(SECTION.held.get(), 2);
        // Out of order: the section stays entered until the last lock goes.
        // SAFETY: `a` is held by this test.
        unsafe { a.unlock() };
        assert_eq!(SECTION.held.get(), 1);
        assert!(a.try_lock(), "free again");
        // SAFETY: `a` and `b` are held by this test.
        unsafe {
            a.unlock();
            b.unlock();
        }
        // Left: another thread enters the critical section (the `std` implementation is a
        // process-wide lock, which it could not take while this thread still held it).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || critical_section::with(|_| tx.send(()).unwrap()));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the critical section was left");
        let m: lock_api::Mutex<CriticalSectionRawMutex, u32> = lock_api::Mutex::new(7);
        *m.lock() += 1;
        assert_eq!(*m.lock(), 8);
    }
}
