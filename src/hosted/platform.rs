//! Platforms and a lock for hosted (`std`) programs: how a thread picks its CPU slot, and a
//! spin-then-yield mutex for the central cache and the page heap.
//!
//! Two ways to pick a slot, both free of allocation and of thread-local destructors:
//! - [`SchedCpu`]: the CPU the thread runs on, from `sched_getcpu` (glibc reads it from the
//!   thread's rseq area, or the vDSO). Threads that share a CPU share its slot, so the number
//!   of slots in use (and of objects parked in them) follows the CPUs, not the threads.
//! - [`ThreadSlot`]: a slot index each thread *owns*: claimed on its first call (the lowest
//!   free index), kept in a `const`-initialised thread-local `Cell` (no destructor), and
//!   given back when the thread exits (a `pthread` key destructor, which allocates nothing).
//!   Indices are dense and reused, so the slots in use follow the live threads, and a heap
//!   enters an owned slot without atomics. Threads beyond [`OWNED_IDS`] share the try-locked
//!   slots above them.
//!
//! [`StdPlatform`] is the one `StdHeap` uses; `docs/cpu-slot.md` has the measurements that
//! chose it.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::cell::Cell;

use crate::platform::{default_fatal, ExclusiveSlots, Fault, Platform};

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

/// Thread indices that can be owned; a heap with `CPUS` slots owns slots
/// `0..CPUS - SHARED_SLOTS` (see [`ExclusiveSlots`]).
pub const OWNED_IDS: usize = 56;
/// Try-locked slots at the top of a heap, for threads beyond the owned indices.
pub const SHARED_SLOTS: usize = 8;

/// Slot = an index the thread owns from its first call until it exits (the lowest free one),
/// so that a heap enters the slot without atomics; a dead thread's slot is drained by the
/// heap and reused by the next thread. Past [`OWNED_IDS`] live threads, the others share
/// [`SHARED_SLOTS`] try-locked slots. Fatal faults print and abort.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSlot;

/// Per index: who has it.
const VACANT: u8 = 0;
const OWNED: u8 = 1;
/// A heap is draining the slot of a thread that exited; nobody may claim it meanwhile.
const HELD: u8 = 2;
static IDS: [AtomicU8; OWNED_IDS] = [const { AtomicU8::new(VACANT) }; OWNED_IDS];
/// Indices given back so far (threads that exited).
static VACATED: AtomicUsize = AtomicUsize::new(0);
/// Round robin over the shared slots for threads that found no free index.
static NEXT_SHARED: AtomicUsize = AtomicUsize::new(0);

/// The thread's index: `UNSET` before its first call, `EXITED` once it has given it back.
const UNSET: usize = usize::MAX;
const EXITED: usize = usize::MAX - 1;

std::thread_local! {
    /// `const`-initialised and without a destructor: no registration, no allocation, usable
    /// from inside the allocator at any point of the thread's life.
    static SLOT: Cell<usize> = const { Cell::new(UNSET) };
}

/// The `pthread` key whose destructor gives the index back (0 = not made yet, else key + 1).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);

impl ThreadSlot {
    /// The platform.
    pub const fn new() -> Self {
        Self
    }

    /// In the child after `fork()`: only the forking thread survives, so every index but its
    /// own is free again. (A slot some other thread was inside at the fork stays busy and is
    /// never entered: its lists may be half-updated.) Call it from a `pthread_atfork` child
    /// handler, as `libcpuheap.so` does.
    pub fn after_fork_in_child() {
        let mine = SLOT.try_with(Cell::get).unwrap_or(UNSET);
        for (i, id) in IDS.iter().enumerate() {
            if i != mine {
                id.store(VACANT, Ordering::Release);
            }
        }
    }

    /// The index of a thread that owns none: a shared one it was given, or a claim now.
    #[cold]
    fn not_owned(cell: &Cell<usize>) -> usize {
        match cell.get() {
            UNSET | EXITED => Self::claim(cell),
            shared => shared,
        }
    }

    fn claim(cell: &Cell<usize>) -> usize {
        if cell.get() == EXITED {
            // Called again from a destructor that ran after ours: share a slot.
            return Self::next_shared();
        }
        for (i, id) in IDS.iter().enumerate() {
            if id.load(Ordering::Relaxed) == VACANT
                && id
                    .compare_exchange(VACANT, OWNED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // Set first: should `pthread_setspecific` allocate, the allocation it makes
                // finds the index already there instead of claiming another.
                cell.set(i);
                Self::arm_exit_hook(i);
                return i;
            }
        }
        let shared = Self::next_shared();
        cell.set(shared);
        shared
    }

    /// A shared slot's index, round robin.
    fn next_shared() -> usize {
        OWNED_IDS + NEXT_SHARED.fetch_add(1, Ordering::Relaxed) % SHARED_SLOTS
    }

    /// Make the thread give index `i` back when it exits.
    fn arm_exit_hook(i: usize) {
        let mut key = EXIT_KEY.load(Ordering::Acquire);
        if key == 0 {
            let mut k: libc::pthread_key_t = 0;
            // SAFETY: `k` is a valid out-pointer; the destructor has the signature pthread
            // expects. glibc's `pthread_key_create` takes a slot of a static table.
            if unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) } != 0 {
                return; // No key: the index stays claimed until the process ends.
            }
            key = match EXIT_KEY.compare_exchange(
                0,
                k as usize + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => k as usize + 1,
                Err(other) => {
                    // Another thread made one first; ours is not needed.
                    // SAFETY: `k` is a key this thread just made and nobody else uses.
                    unsafe { libc::pthread_key_delete(k) };
                    other
                }
            };
        }
        // A non-null value is what makes the destructor run; it carries the index.
        // SAFETY: `key - 1` is a live key made above.
        unsafe { libc::pthread_setspecific((key - 1) as libc::pthread_key_t, (i + 1) as *const _) };
    }
}

/// The `pthread` key destructor: the exiting thread gives its index back.
extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    let i = (value as usize).wrapping_sub(1);
    // From here on, an allocation of this thread (by a later destructor) shares a slot.
    let _ = SLOT.try_with(|s| s.set(EXITED));
    if let Some(id) = IDS.get(i) {
        // Release: a heap that holds the index afterwards sees the slot as the thread left it.
        id.store(VACANT, Ordering::Release);
        VACATED.fetch_add(1, Ordering::Release);
    }
}

// SAFETY: every index below `OWNED_IDS` that `current_cpu` returns was claimed by this thread
// with a compare-and-swap from VACANT and is given back only when the thread exits (after
// which the thread gets shared indices); so no two live threads ever hold one index, and a
// heap only uses an owned slot for the thread holding its index. The other contexts that run
// on the thread are signal handlers, which finish before the code they interrupted resumes.
unsafe impl Sync for ThreadSlot {}

impl Platform for ThreadSlot {
    /// One load: the index the thread owns, a shared one it was given, or `UNSET`/`EXITED`
    /// (which name no owned slot, so the heap asks [`claim_cpu`](Self::claim_cpu)).
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        SLOT.try_with(Cell::get).unwrap_or(EXITED)
    }

    fn claim_cpu(&self) -> usize {
        SLOT.try_with(|s| {
            let v = s.get();
            if v < OWNED_IDS {
                v
            } else {
                Self::not_owned(s)
            }
        })
        .unwrap_or(OWNED_IDS)
    }

    // SAFETY: see the `unsafe impl Sync` above: an index below `OWNED_IDS` belongs to one live
    // thread, and `SHARED_SLOTS` slots above those serve every other index.
    const EXCLUSIVE: Option<ExclusiveSlots> = Some(unsafe { ExclusiveSlots::new(SHARED_SLOTS) });

    fn remote_barrier(&self) -> bool {
        membarrier()
    }

    fn vacated(&self) -> usize {
        VACATED.load(Ordering::Acquire)
    }

    fn hold_vacant(&self, slot: usize) -> bool {
        IDS.get(slot).is_some_and(|id| {
            id.compare_exchange(VACANT, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    fn release_vacant(&self, slot: usize) {
        if let Some(id) = IDS.get(slot) {
            id.store(VACANT, Ordering::Release);
        }
    }

    fn fatal(&self, fault: &Fault) -> ! {
        default_fatal(fault)
    }
}

/// A process-wide memory barrier: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which
/// makes every running thread of the process execute a full barrier (registered on first
/// use). `false` where the kernel has no such command.
fn membarrier() -> bool {
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    /// 0 = not tried, 1 = registered, 2 = not available.
    static STATE: AtomicU8 = AtomicU8::new(0);
    let mut state = STATE.load(Ordering::Acquire);
    if state == 0 {
        // SAFETY: `membarrier` takes two integer arguments and touches no memory of ours.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0) };
        state = if r == 0 { 1 } else { 2 };
        STATE.store(state, Ordering::Release);
    }
    // SAFETY: as above.
    state == 1 && unsafe { libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED, 0) } == 0
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
        let mine = p.claim_cpu();
        assert_eq!(p.current_cpu(), mine, "one load finds the claimed index");
        assert_eq!(p.claim_cpu(), mine, "stable within a thread");
        let other = std::thread::spawn(move || {
            let p = ThreadSlot::new();
            assert!(
                p.current_cpu() >= OWNED_IDS,
                "a new thread owns no index yet"
            );
            p.claim_cpu()
        })
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
