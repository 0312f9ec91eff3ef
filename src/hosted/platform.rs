//! Platforms and a lock for hosted (`std`) programs: how a thread picks its CPU slot, and a
//! spin-then-yield mutex for the central cache and the page heap.
//!
//! Two ways to pick a slot, both free of allocation and of thread-local destructors:
//! - [`SchedCpu`]: the CPU the thread runs on, from `sched_getcpu` (glibc reads it from the
//!   thread's rseq area, or the vDSO). Threads that share a CPU share its slot, so the number
//!   of slots in use (and of objects parked in them) follows the CPUs, not the threads.
//! - [`ThreadSlot`]: a slot index given to each thread on its first call (round robin) and
//!   kept in a `const`-initialised thread-local `Cell`, which has no destructor.
//!
//! [`StdPlatform`] is the one `StdHeap` uses; `docs/cpu-slot.md` has the measurements that
//! chose it.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::cell::Cell;

use crate::platform::{default_fatal, Fault, Platform};

/// The platform [`StdHeap`](crate::StdHeap) uses: a thread-local slot index. It costs a
/// third of a nanosecond where `sched_getcpu` costs 1.4–2 ns, and a thread never finds its
/// slot taken by a thread that was preempted while holding it (with `sched_getcpu`, a third
/// of the operations of a 2-thread loop on 2 cores fell back to the central cache).
pub type StdPlatform = ThreadSlot;

/// Slot = the CPU the thread runs on (`sched_getcpu`); fatal faults print and abort.
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedCpu;

impl SchedCpu {
    /// The platform.
    pub const fn new() -> Self {
        Self
    }
}

impl Platform for SchedCpu {
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        // SAFETY: `sched_getcpu` has no preconditions; it returns -1 on error, which maps to
        // some slot (any slot is correct).
        unsafe { libc::sched_getcpu() as usize }
    }

    fn fatal(&self, fault: &Fault) -> ! {
        default_fatal(fault)
    }
}

/// Slot = an index given to each thread on first use, round robin; fatal faults print and
/// abort.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSlot;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// The thread's slot, `usize::MAX` until first asked. `const` and without `Drop`: no
    /// destructor is registered, and it stays readable while the thread exits.
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl ThreadSlot {
    /// The platform.
    pub const fn new() -> Self {
        Self
    }
}

impl Platform for ThreadSlot {
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        SLOT.try_with(|s| {
            let v = s.get();
            if v != usize::MAX {
                v
            } else {
                let v = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
                s.set(v);
                v
            }
        })
        .unwrap_or(0)
    }

    fn fatal(&self, fault: &Fault) -> ! {
        default_fatal(fault)
    }
}

/// A mutex that spins briefly, then yields the CPU (`sched_yield`) while it waits.
///
/// A pure spin lock is a poor fit for threads that the OS can preempt: when the holder is
/// descheduled, waiters burn their whole time slice. The central cache and page-heap locks
/// are held for short, bounded work, so a few spins usually suffice; past that the waiter
/// gives its CPU to the holder.
pub struct YieldMutex {
    locked: AtomicBool,
}

/// Spins before a waiter starts to yield.
const SPINS: u32 = 100;

// SAFETY: `locked` is taken with an Acquire swap from false to true and given back with a
// Release store, so at most one holder exists and its critical section is ordered.
unsafe impl lock_api::RawMutex for YieldMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        locked: AtomicBool::new(false),
    };
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_slow();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        !self.locked.swap(true, Ordering::Acquire)
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl YieldMutex {
    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < SPINS {
                    spins += 1;
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if lock_api::RawMutex::try_lock(self) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock_api::Mutex;

    #[test]
    fn thread_slots_are_stable_and_distinct() {
        let p = ThreadSlot::new();
        let mine = p.current_cpu();
        assert_eq!(p.current_cpu(), mine, "stable within a thread");
        let other = std::thread::spawn(move || ThreadSlot::new().current_cpu())
            .join()
            .unwrap();
        assert_ne!(other, mine, "another thread gets another slot");
    }

    #[test]
    fn sched_cpu_is_a_cpu_index() {
        let cpu = SchedCpu::new().current_cpu();
        let n = std::thread::available_parallelism().map_or(1024, |n| n.get());
        assert!(cpu < n.max(1024), "cpu {cpu}");
    }

    #[test]
    fn yield_mutex_excludes() {
        let m: &'static Mutex<YieldMutex, usize> = Box::leak(Box::new(Mutex::new(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 80_000);
        let g = m.lock();
        assert!(m.try_lock().is_none());
        drop(g);
        assert!(m.try_lock().is_some());
    }
}
