//! cpuheap as the global allocator of a 4-hart kernel, growing page by page from the frame
//! allocator: each hart in its own CPU slot, collections on every hart, all harts allocating
//! and freeing at once, objects freed on another hart than the one that allocated them, large
//! aligned blocks. Every test ends with the heap's invariant and accounting checks at a
//! quiescent point; `heap_invariants_and_stats` runs all the workloads in one boot (the heap's
//! whole history) before them.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::sync::atomic::{AtomicUsize, Ordering};

use cpuheap::Platform;
use cpuheap_qemu_kernel::frames::{FRAME, FRAMES};
use cpuheap_qemu_kernel::heap::{HartPlatform, HEAP};
use cpuheap_qemu_kernel::smp::{fail, sync};
use cpuheap_qemu_kernel::{check, println, Rng, HARTS};

/// A generator for `hart`'s stream number `salt`.
fn rng_for(hart: usize, salt: u64) -> Rng {
    Rng::new(((hart as u64 + 1) << 32) ^ salt)
}

/// Fill `size` bytes at `p` with `tag`.
///
/// # Safety
///
/// `p` is a live block of at least `size` bytes that no one else accesses meanwhile.
unsafe fn stamp(p: *mut u8, size: usize, tag: u8) {
    // SAFETY: `size` writable bytes at `p`, ours alone (the caller's promise).
    unsafe { p.write_bytes(tag, size) };
}

/// Whether the `size` bytes at `p` all still hold `tag`.
///
/// # Safety
///
/// `p` is a live block of at least `size` bytes, initialised (by [`stamp`]), that no one
/// writes meanwhile.
unsafe fn stamped(p: *const u8, size: usize, tag: u8) -> bool {
    // SAFETY: `size` initialised bytes at `p` that nobody writes (the caller's promise).
    unsafe { core::slice::from_raw_parts(p, size) }
        .iter()
        .all(|&b| b == tag)
}

/// The checks of a quiescent point, on hart 0 (every other hart waits at the barrier or has
/// finished the body, so nobody is inside the heap): the heap's invariants hold, everything
/// allocated was freed, no allocation failed, the harts used their own slots, and the heap's
/// memory is exactly the frames its source holds; again after draining every CPU slot.
fn quiescent_checks(hart: usize) {
    if let Err(e) = HEAP.check_invariants() {
        fail(hart, format_args!("{e}"));
    }
    let st = HEAP.stats();
    check!(
        hart,
        st.in_use_bytes == 0,
        "in use at the end: {}",
        st.in_use_bytes
    );
    check!(
        hart,
        st.allocs == st.frees,
        "allocs {} != frees {}",
        st.allocs,
        st.frees
    );
    check!(
        hart,
        st.failed_allocs == 0,
        "failed allocs {}",
        st.failed_allocs
    );
    check!(
        hart,
        st.slot_fallbacks < st.allocs / 10,
        "slot fallbacks {} of {} allocs: harts share slots?",
        st.slot_fallbacks,
        st.allocs
    );
    let (runs, bytes, released) = HEAP.with_source(|s| (s.runs_out, s.bytes_out, s.released));
    let frames_in_use = FRAMES.lock().in_use();
    println!("  source: {runs} runs, {bytes} bytes out, {released} released; frames in use {frames_in_use}");
    check!(
        hart,
        st.source_bytes == bytes,
        "source bytes {} != frames handed out {bytes}",
        st.source_bytes
    );
    check!(
        hart,
        frames_in_use * FRAME == bytes,
        "frame allocator holds {frames_in_use} frames, heap {bytes} bytes"
    );
    HEAP.drain_all_cpus();
    if let Err(e) = HEAP.check_invariants() {
        fail(hart, format_args!("after drain: {e}"));
    }
}

/// End of a test body: all harts meet, then hart 0 runs [`quiescent_checks`].
fn then_quiescent(hart: usize) {
    sync();
    if hart == 0 {
        quiescent_checks(hart);
    }
}

static CACHED_BEFORE: AtomicUsize = AtomicUsize::new(0);

/// Each hart's frees land in its own CPU slot: after every hart has freed into its cache,
/// draining the slots one hart id at a time empties a non-empty cache each time.
fn slot_per_hart(hart: usize) {
    check!(
        hart,
        HartPlatform.current_cpu() == hart,
        "current_cpu != hart id"
    );
    // Warm up: allocate and free a few objects so they sit in this hart's slot.
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut ptrs = [core::ptr::null_mut(); 16];
    for p in ptrs.iter_mut() {
        // SAFETY: nonzero size.
        *p = unsafe { HEAP.alloc(layout) };
        check!(hart, !p.is_null(), "alloc failed");
    }
    for p in ptrs {
        if !p.is_null() {
            // SAFETY: allocated above with `layout`.
            unsafe { HEAP.dealloc(black_box(p), layout) };
        }
    }
    sync();
    // One hart at a time drains its own slot; hart 0 watches the cached bytes fall.
    for turn in 0..HARTS {
        if hart == 0 {
            CACHED_BEFORE.store(HEAP.stats().cpu_cache_bytes, Ordering::SeqCst);
        }
        sync();
        if hart == turn {
            check!(hart, HEAP.drain_cpu(hart), "slot {hart} busy");
        }
        sync();
        if hart == 0 {
            let before = CACHED_BEFORE.load(Ordering::SeqCst);
            let after = HEAP.stats().cpu_cache_bytes;
            check!(
                hart,
                after < before,
                "draining slot {turn} freed nothing ({before} -> {after}): hart {turn} did not use its own slot"
            );
        }
        sync();
    }
}

/// `Box`, `Vec` and `BTreeMap<_, String>` on every hart at once.
fn collections(hart: usize) {
    for round in 0..20 {
        let b = black_box(Box::new([hart as u64; 8]));
        let mut v: Vec<u64> = Vec::new();
        for i in 0..(500 + 100 * hart as u64) {
            v.push(black_box(i ^ round));
        }
        let mut m = BTreeMap::new();
        for i in 0..200u64 {
            m.insert(black_box(i * 31 % 200), alloc::format!("{hart}-{i}"));
        }
        check!(hart, b.iter().all(|&x| x == hart as u64), "box corrupted");
        check!(
            hart,
            v.iter().enumerate().all(|(i, &x)| x == i as u64 ^ round),
            "vec corrupted"
        );
        check!(
            hart,
            m.len() == 200
                && m.get(&(7 * 31 % 200)).map(|s| s.as_str())
                    == Some(alloc::format!("{hart}-7").as_str()),
            "btreemap corrupted"
        );
    }
}

const LIVE: usize = 64;

/// 20 000 random allocations and frees per hart, all harts at once, 1 B to 48 KiB (1% large:
/// page spans), every block stamped and checked before it is freed.
fn concurrent_alloc_free(hart: usize) {
    let mut rng = rng_for(hart, 1);
    let mut live = [(0usize, 0usize); LIVE];
    for it in 0..20_000u32 {
        let i = rng.below(LIVE as u64) as usize;
        let (p, size) = live[i];
        if p != 0 {
            // SAFETY: this hart's live block of `size` bytes, stamped when allocated.
            let intact = unsafe { stamped(p as *const u8, size, (i as u8) ^ (hart as u8)) };
            check!(hart, intact, "block {p:#x} ({size}) corrupted");
            // SAFETY: allocated below with this layout.
            unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
            live[i] = (0, 0);
        }
        let size = match rng.below(100) {
            0 => 8192 + rng.below(40_000) as usize, // large: page spans
            1..=10 => 1024 + rng.below(8192) as usize,
            _ => 1 + rng.below(512) as usize,
        };
        // SAFETY: nonzero size.
        let q = unsafe { HEAP.alloc(Layout::from_size_align(size, 8).unwrap()) };
        if q.is_null() {
            fail(
                hart,
                format_args!("alloc of {size} failed at iteration {it}"),
            );
            break;
        }
        // SAFETY: a fresh block of `size` bytes, this hart's alone.
        unsafe { stamp(q, size, (i as u8) ^ (hart as u8)) };
        live[i] = (q as usize, size);
    }
    for (i, (p, size)) in live.into_iter().enumerate() {
        if p != 0 {
            // SAFETY: this hart's live block of `size` bytes, stamped when allocated.
            let intact = unsafe { stamped(p as *const u8, size, (i as u8) ^ (hart as u8)) };
            check!(hart, intact, "block corrupted at the end");
            // SAFETY: allocated above with this layout.
            unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
        }
    }
}

/// A single-producer single-consumer ring of (pointer, size) from hart h to hart h+1.
struct Ring {
    slots: [AtomicUsize; RING],
    sizes: [AtomicUsize; RING],
    head: AtomicUsize,
    tail: AtomicUsize,
}
const RING: usize = 64;

impl Ring {
    const fn new() -> Self {
        Ring {
            slots: [const { AtomicUsize::new(0) }; RING],
            sizes: [const { AtomicUsize::new(0) }; RING],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }
    fn push(&self, p: usize, size: usize) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if head - self.tail.load(Ordering::Acquire) == RING {
            return false;
        }
        self.slots[head % RING].store(p, Ordering::Relaxed);
        self.sizes[head % RING].store(size, Ordering::Relaxed);
        self.head.store(head + 1, Ordering::Release);
        true
    }
    fn pop(&self) -> Option<(usize, usize)> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        let v = (
            self.slots[tail % RING].load(Ordering::Relaxed),
            self.sizes[tail % RING].load(Ordering::Relaxed),
        );
        self.tail.store(tail + 1, Ordering::Release);
        Some(v)
    }
}

static RINGS: [Ring; HARTS] = [const { Ring::new() }; HARTS];
static PRODUCERS_DONE: AtomicUsize = AtomicUsize::new(0);
static CROSS_FREED: AtomicUsize = AtomicUsize::new(0);

/// Every hart allocates objects and hands them to the next hart, which checks and frees
/// them while the others keep allocating: objects cross CPU slots all the time.
fn cross_hart_frees(hart: usize) {
    const PER_HART: usize = 20_000;
    let outbox = &RINGS[hart];
    let inbox = &RINGS[(hart + HARTS - 1) % HARTS];
    let from = (hart + HARTS - 1) % HARTS;
    let mut rng = rng_for(hart, 2);
    let mut sent = 0;
    let mut freed = 0;
    let free_one = |(p, size): (usize, usize)| {
        // SAFETY: a live block of `size` bytes that hart `from` stamped, then gave up to
        // this hart through the ring (whose Release/Acquire orders the stamp before this).
        let ok = unsafe { stamped(p as *const u8, size, from as u8 + 0x40) };
        // SAFETY: the producing hart allocated it with this layout and gave it up.
        unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 16).unwrap()) };
        ok
    };
    while sent < PER_HART {
        let size = if rng.below(50) == 0 {
            4096 + rng.below(20_000) as usize
        } else {
            1 + rng.below(700) as usize
        };
        // SAFETY: nonzero size.
        let p = unsafe { HEAP.alloc(Layout::from_size_align(size, 16).unwrap()) };
        if p.is_null() {
            fail(hart, format_args!("alloc of {size} failed"));
            break;
        }
        // SAFETY: a fresh block of `size` bytes, this hart's alone until it is sent.
        unsafe { stamp(p, size, hart as u8 + 0x40) };
        while !outbox.push(p as usize, size) {
            // Full: free what our neighbour sent while we wait.
            if let Some(m) = inbox.pop() {
                check!(hart, free_one(m), "object from hart {from} corrupted");
                freed += 1;
            }
        }
        sent += 1;
        if let Some(m) = inbox.pop() {
            check!(hart, free_one(m), "object from hart {from} corrupted");
            freed += 1;
        }
    }
    PRODUCERS_DONE.fetch_add(1, Ordering::AcqRel);
    loop {
        match inbox.pop() {
            Some(m) => {
                check!(hart, free_one(m), "object from hart {from} corrupted");
                freed += 1;
            }
            None if PRODUCERS_DONE.load(Ordering::Acquire) == HARTS => {
                if inbox.head.load(Ordering::Acquire) == inbox.tail.load(Ordering::Acquire) {
                    break;
                }
            }
            None => core::hint::spin_loop(),
        }
    }
    CROSS_FREED.fetch_add(freed, Ordering::AcqRel);
    sync();
    if hart == 0 {
        let total = CROSS_FREED.load(Ordering::Acquire);
        check!(
            hart,
            total == PER_HART * HARTS,
            "cross-hart frees {total} != {}",
            PER_HART * HARTS
        );
        let st = HEAP.stats();
        check!(
            hart,
            st.in_use_bytes == 0,
            "in use after cross-hart frees: {}",
            st.in_use_bytes
        );
    }
}

/// Large blocks with alignments up to 64 KiB, sized to make the heap grow through the
/// frame allocator; all harts at once.
fn large_and_growth(hart: usize) {
    let grows_before = HEAP.stats().source_grows;
    let mut held = [(0usize, 0usize, 0usize); 12];
    for (k, slot) in held.iter_mut().enumerate() {
        let align = 8usize << (k % 14); // 8 B .. 64 KiB
        let size = 100_000 + 50_000 * k + 1000 * hart;
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: nonzero size.
        let p = unsafe { HEAP.alloc(layout) };
        if p.is_null() {
            fail(
                hart,
                format_args!("large alloc {size} align {align} failed"),
            );
            continue;
        }
        check!(
            hart,
            (p as usize).is_multiple_of(align),
            "{p:?} not aligned to {align}"
        );
        // SAFETY: a fresh block of `size` bytes, this hart's alone.
        unsafe { stamp(p, size, 0x80 | hart as u8) };
        *slot = (p as usize, size, align);
    }
    for (p, size, align) in held {
        if p != 0 {
            // SAFETY: this hart's live block of `size` bytes, stamped when allocated.
            let intact = unsafe { stamped(p as *const u8, size, 0x80 | hart as u8) };
            check!(hart, intact, "large block corrupted");
            // SAFETY: allocated above with this layout.
            unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, align).unwrap()) };
        }
    }
    sync();
    if hart == 0 {
        let st = HEAP.stats();
        check!(
            hart,
            st.source_grows > grows_before,
            "heap did not grow through the frame allocator ({} grows)",
            st.source_grows
        );
    }
}

/// Every workload in turn, in one boot (the heap's whole history: what one boot of the
/// kernel ran before it was split into tests), then the checks that depend on all of it.
fn every_workload_then_final_checks(hart: usize) {
    for workload in [
        slot_per_hart,
        collections,
        concurrent_alloc_free,
        cross_hart_frees,
        large_and_growth,
    ] {
        sync();
        workload(hart);
    }
    sync();
    if hart != 0 {
        return;
    }
    let st = HEAP.stats();
    println!("  heap stats: {st:?}");
    check!(hart, st.allocs > 4 * 40_000, "allocs {}", st.allocs);
    check!(
        hart,
        st.source_grows >= 2,
        "source grows {}",
        st.source_grows
    );
    quiescent_checks(hart);
}

#[embedded_test::tests(default_timeout = 60)]
mod tests {
    use cpuheap_qemu_kernel::smp::{on_all_harts, Failed};

    use super::*;

    #[test]
    fn heap_cpu_slot_per_hart() -> Result<(), Failed> {
        on_all_harts(|hart| {
            slot_per_hart(hart);
            then_quiescent(hart);
        })
    }

    #[test]
    fn heap_collections_on_every_hart() -> Result<(), Failed> {
        on_all_harts(|hart| {
            collections(hart);
            then_quiescent(hart);
        })
    }

    #[test]
    fn heap_concurrent_alloc_free() -> Result<(), Failed> {
        on_all_harts(|hart| {
            concurrent_alloc_free(hart);
            then_quiescent(hart);
        })
    }

    #[test]
    fn heap_cross_hart_frees() -> Result<(), Failed> {
        on_all_harts(|hart| {
            cross_hart_frees(hart);
            then_quiescent(hart);
        })
    }

    #[test]
    fn heap_large_aligned_and_growth() -> Result<(), Failed> {
        on_all_harts(|hart| {
            large_and_growth(hart);
            then_quiescent(hart);
        })
    }

    #[test]
    fn heap_invariants_and_stats() -> Result<(), Failed> {
        on_all_harts(every_workload_then_final_checks)
    }
}
