//! The SMP scenarios. Every hart runs `run_all`; each scenario ends with a barrier and
//! hart 0 prints its verdict line.
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::Barrier;
use crate::{println, HARTS};

static BARRIER: Barrier = Barrier::new();
static FAILED: AtomicUsize = AtomicUsize::new(0);
static SCENARIO_FAILS: AtomicUsize = AtomicUsize::new(0);

fn sync() {
    BARRIER.wait(HARTS);
}

/// Record a failed check from any hart.
pub fn fail(hart: usize, what: core::fmt::Arguments<'_>) {
    println!("  hart {hart}: check failed: {what}");
    SCENARIO_FAILS.fetch_add(1, Ordering::Relaxed);
}

macro_rules! check {
    ($hart:expr, $cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::tests::fail($hart, format_args!($($arg)*));
        }
    };
}
#[allow(unused_imports)]
pub(crate) use check;

fn scenario(hart: usize, name: &str, body: fn(usize)) {
    sync();
    body(hart);
    sync();
    if hart == 0 {
        let fails = SCENARIO_FAILS.swap(0, Ordering::Relaxed);
        if fails == 0 {
            println!("test {name} ... ok");
        } else {
            println!("test {name} ... FAILED ({fails} failed checks)");
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
    sync();
}

/// A scenario: its name and the body every hart runs.
type Scenario = (&'static str, fn(usize));

/// Every scenario, in order.
const SCENARIOS: &[Scenario] = &[
    ("smp_all_harts_boot", all_harts_boot),
    ("frame_allocator_concurrent", frames_concurrent),
    ("heap_cpu_slot_per_hart", slot_per_hart),
    ("heap_collections_on_every_hart", collections),
    ("heap_concurrent_alloc_free", concurrent_alloc_free),
    ("heap_cross_hart_frees", cross_hart_frees),
    ("heap_large_aligned_and_growth", large_and_growth),
    ("heap_invariants_and_stats", final_checks),
];

/// Returns the number of failed scenarios (meaningful on hart 0).
///
/// Hart 0 first prints `running N tests` and one `scenario <name>` line per scenario, so
/// the runner can report every scenario that never printed a verdict (a hang or a crash
/// part-way) as failed by name.
pub fn run_all(hart: usize) -> usize {
    if hart == 0 {
        println!("running {} tests", SCENARIOS.len());
        for (name, _) in SCENARIOS {
            println!("scenario {name}");
        }
    }
    for &(name, body) in SCENARIOS {
        scenario(hart, name, body);
    }
    FAILED.load(Ordering::Relaxed)
}

static CHECKED_IN: AtomicUsize = AtomicUsize::new(0);

fn all_harts_boot(hart: usize) {
    check!(hart, crate::hart_id() == hart, "hart id {} != {}", crate::hart_id(), hart);
    CHECKED_IN.fetch_or(1 << hart, Ordering::AcqRel);
    sync();
    let seen = CHECKED_IN.load(Ordering::Acquire);
    check!(hart, seen == (1 << HARTS) - 1, "harts checked in: {seen:#b}");
}

fn frames_concurrent(hart: usize) {
    let before = if hart == 0 { crate::frames::FRAMES.lock().in_use() } else { 0 };
    sync();
    let mut held = [0usize; 16];
    for round in 0..200 {
        for (k, slot) in held.iter_mut().enumerate() {
            let n = 1 + (k + round + hart) % 3;
            let align = crate::frames::FRAME << (k % 3);
            let f = crate::frames::FRAMES.lock().alloc(n, align);
            match f {
                Some(a) => {
                    check!(hart, a % align == 0, "frame {a:#x} not aligned to {align:#x}");
                    // Write a hart-specific pattern, read it back later.
                    // SAFETY: the frames are ours until freed.
                    unsafe { core::ptr::write_bytes(a as *mut u8, hart as u8 + 1, n * crate::frames::FRAME) };
                    *slot = a | n;
                }
                None => fail(hart, format_args!("frame allocator exhausted")),
            }
        }
        for slot in held.iter_mut() {
            if *slot != 0 {
                let (a, n) = (*slot & !0xfff, *slot & 0xfff);
                // SAFETY: still ours.
                let ok = unsafe { core::slice::from_raw_parts(a as *const u8, n * crate::frames::FRAME) }
                    .iter()
                    .all(|&b| b == hart as u8 + 1);
                check!(hart, ok, "frames at {a:#x} overwritten by another hart");
                crate::frames::FRAMES.lock().free(a, n);
                *slot = 0;
            }
        }
    }
    sync();
    if hart == 0 {
        let after = crate::frames::FRAMES.lock().in_use();
        check!(hart, after == before, "frames leaked: {before} -> {after}");
    }
}

// ----- the heap ------------------------------------------------------------------------

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;

use crate::heap::HEAP;

use cpuheap_testkit::Rng;

/// A generator for `hart`'s stream number `salt`.
fn rng_for(hart: usize, salt: u64) -> Rng {
    Rng::new(((hart as u64 + 1) << 32) ^ salt)
}

/// Fill `size` bytes at `p` with a tag derived from `tag`.
fn stamp(p: *mut u8, size: usize, tag: u8) {
    // SAFETY: the caller owns `size` bytes at `p`.
    unsafe { p.write_bytes(tag, size) };
}

fn stamped(p: *const u8, size: usize, tag: u8) -> bool {
    // SAFETY: the caller owns `size` bytes at `p`.
    unsafe { core::slice::from_raw_parts(p, size) }.iter().all(|&b| b == tag)
}

static CACHED_BEFORE: AtomicUsize = AtomicUsize::new(0);

/// Each hart's frees land in its own CPU slot: after every hart has freed into its cache,
/// draining the slots one hart id at a time empties a non-empty cache each time.
fn slot_per_hart(hart: usize) {
    check!(hart, <crate::heap::HartPlatform as cpuheap::Platform>::current_cpu(&crate::heap::HartPlatform) == hart, "current_cpu != hart id");
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
            check!(hart, after < before, "draining slot {turn} freed nothing ({before} -> {after}): hart {turn} did not use its own slot");
        }
        sync();
    }
}

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
        check!(hart, v.iter().enumerate().all(|(i, &x)| x == i as u64 ^ round), "vec corrupted");
        check!(hart, m.len() == 200 && m.get(&(7 * 31 % 200)).map(|s| s.as_str()) == Some(alloc::format!("{hart}-7").as_str()), "btreemap corrupted");
    }
}

const LIVE: usize = 64;

fn concurrent_alloc_free(hart: usize) {
    let mut rng = rng_for(hart, 1);
    let mut live = [(0usize, 0usize); LIVE];
    for it in 0..20_000u32 {
        let i = rng.below(LIVE as u64) as usize;
        let (p, size) = live[i];
        if p != 0 {
            check!(hart, stamped(p as *const u8, size, (i as u8) ^ (hart as u8)), "block {p:#x} ({size}) corrupted");
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
            fail(hart, format_args!("alloc of {size} failed at iteration {it}"));
            break;
        }
        stamp(q, size, (i as u8) ^ (hart as u8));
        live[i] = (q as usize, size);
    }
    for (i, (p, size)) in live.into_iter().enumerate() {
        if p != 0 {
            check!(hart, stamped(p as *const u8, size, (i as u8) ^ (hart as u8)), "block corrupted at the end");
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
        let v = (self.slots[tail % RING].load(Ordering::Relaxed), self.sizes[tail % RING].load(Ordering::Relaxed));
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
        let ok = stamped(p as *const u8, size, from as u8 + 0x40);
        // SAFETY: the producing hart allocated it with this layout and gave it up.
        unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 16).unwrap()) };
        ok
    };
    while sent < PER_HART {
        let size = if rng.below(50) == 0 { 4096 + rng.below(20_000) as usize } else { 1 + rng.below(700) as usize };
        // SAFETY: nonzero size.
        let p = unsafe { HEAP.alloc(Layout::from_size_align(size, 16).unwrap()) };
        if p.is_null() {
            fail(hart, format_args!("alloc of {size} failed"));
            break;
        }
        stamp(p, size, hart as u8 + 0x40);
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
        check!(hart, total == PER_HART * HARTS, "cross-hart frees {total} != {}", PER_HART * HARTS);
        let st = HEAP.stats();
        check!(hart, st.in_use_bytes == 0, "in use after cross-hart frees: {}", st.in_use_bytes);
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
            fail(hart, format_args!("large alloc {size} align {align} failed"));
            continue;
        }
        check!(hart, (p as usize).is_multiple_of(align), "{p:?} not aligned to {align}");
        stamp(p, size, 0x80 | hart as u8);
        *slot = (p as usize, size, align);
    }
    for (p, size, align) in held {
        if p != 0 {
            check!(hart, stamped(p as *const u8, size, 0x80 | hart as u8), "large block corrupted");
            // SAFETY: allocated above with this layout.
            unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, align).unwrap()) };
        }
    }
    sync();
    if hart == 0 {
        let st = HEAP.stats();
        check!(hart, st.source_grows > grows_before, "heap did not grow through the frame allocator ({} grows)", st.source_grows);
    }
}

fn final_checks(hart: usize) {
    if hart != 0 {
        return;
    }
    // Every hart is parked at the barrier: nobody is inside the heap.
    if let Err(e) = HEAP.check_invariants() {
        fail(hart, format_args!("{e}"));
    }
    let st = HEAP.stats();
    println!("  heap stats: {st:?}");
    check!(hart, st.in_use_bytes == 0, "in use at the end: {}", st.in_use_bytes);
    check!(hart, st.allocs == st.frees, "allocs {} != frees {}", st.allocs, st.frees);
    check!(hart, st.allocs > 4 * 40_000, "allocs {}", st.allocs);
    check!(hart, st.source_grows >= 2, "source grows {}", st.source_grows);
    check!(hart, st.failed_allocs == 0, "failed allocs {}", st.failed_allocs);
    check!(hart, st.slot_fallbacks < st.allocs / 10, "slot fallbacks {} of {} allocs: harts share slots?", st.slot_fallbacks, st.allocs);
    // The heap's memory is exactly the frames its source holds.
    let (runs, bytes, released) = HEAP.with_source(|s| (s.runs_out, s.bytes_out, s.released));
    let frames_in_use = crate::frames::FRAMES.lock().in_use();
    println!("  source: {runs} runs, {bytes} bytes out, {released} released; frames in use {frames_in_use}");
    check!(hart, st.source_bytes == bytes, "source bytes {} != frames handed out {bytes}", st.source_bytes);
    check!(hart, frames_in_use * crate::frames::FRAME == bytes, "frame allocator holds {frames_in_use} frames, heap {bytes} bytes");
    HEAP.drain_all_cpus();
    if let Err(e) = HEAP.check_invariants() {
        fail(hart, format_args!("after drain: {e}"));
    }
}
