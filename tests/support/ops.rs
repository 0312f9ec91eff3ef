//! The operation-stream harness shared by the proptest state machine (`tests/ops_proptest.rs`)
//! and the cargo-fuzz target (`fuzz/fuzz_targets/heap_ops.rs`).
//!
//! A [`Harness`] owns a heap with [`SLOTS`] CPU slots over one buffer, and a model of every
//! live allocation. Each [`Op`] is applied to both; the harness panics (a test failure, or a
//! crash for the fuzzer) as soon as the heap disagrees with the model:
//!
//! - every pointer lies inside the buffer, is aligned as asked and overlaps no live allocation;
//! - every allocation is filled with its own byte pattern, verified on free and on realloc
//!   (and the prefix that realloc keeps must survive a move);
//! - `usable_size` covers the request;
//! - `check_invariants` holds every [`CHECK_EVERY`] operations and at the end;
//! - once nothing is live and the slots are drained, every span is back in the page heap.
#![allow(dead_code)]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::ptr::NonNull;

use cpuheap::{
    Config, DefaultRawMutex, Fault, FlatMap, Heap, PageSource, Platform, Run, StaticRegion,
};

/// CPU slots of the heap under test.
pub const SLOTS: usize = 4;
/// Operations between two `check_invariants` calls.
pub const CHECK_EVERY: usize = 16;
/// Largest alignment an operation asks for (64 KiB).
pub const MAX_ALIGN_SHIFT: u8 = 16;

/// A platform whose current CPU is whatever the last [`Op::SwitchCpu`] said, and whose fatal
/// hook panics with the fault's message (the harness never misuses the heap, so any fault is a
/// finding).
pub struct SwitchableCpu(AtomicUsize);

impl Platform for SwitchableCpu {
    fn current_cpu(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    fn fatal(&self, fault: &Fault) -> ! {
        panic!("unexpected fault: {fault}")
    }
}

/// The heap type under test, over source `S`.
pub type OpsHeap<S> = Heap<S, SwitchableCpu, DefaultRawMutex, SLOTS>;

/// A page source the harness can build over its buffer.
pub trait Source: PageSource + Sized {
    /// A source over all of `buf`.
    fn over(buf: &'static mut [MaybeUninit<u8>]) -> Self;
}

impl Source for StaticRegion<1> {
    fn over(buf: &'static mut [MaybeUninit<u8>]) -> Self {
        let mut s = StaticRegion::new();
        assert!(s.add(buf));
        s
    }
}

/// Byte written over runs the heap releases: if the heap still needed one, a pattern check,
/// a free list or the metadata breaks right after.
pub const SCRIBBLE: u8 = 0xDB;

/// A source that exercises the optional half of [`PageSource`]: it hands its buffer out in
/// growth steps, zero-filled, serves huge spans as direct runs (reusing released ones),
/// keeps a small idle limit, zeroes every range the heap discards (its contents are lost, as
/// with `madvise(MADV_DONTNEED)`) and scribbles over every run the heap releases.
pub struct ScribbleSource {
    next: usize,
    end: usize,
    /// Runs handed out and not taken back.
    out: Vec<(usize, usize)>,
    /// Direct runs taken back, ready to be handed out again.
    released: Vec<(usize, usize)>,
    pub discards: usize,
    pub releases: usize,
}

// SAFETY: the buffer is exclusively owned by the source (and the heap it feeds).
unsafe impl Send for ScribbleSource {}

impl Source for ScribbleSource {
    fn over(buf: &'static mut [MaybeUninit<u8>]) -> Self {
        let next = buf.as_mut_ptr() as usize;
        Self {
            next,
            end: next + buf.len(),
            out: Vec::new(),
            released: Vec::new(),
            discards: 0,
            releases: 0,
        }
    }
}

impl ScribbleSource {
    fn bump(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        let base = self.next.checked_next_multiple_of(align)?;
        let end = base.checked_add(min_bytes.next_multiple_of(align))?;
        if end > self.end {
            return None;
        }
        self.next = end;
        self.out.push((base, end - base));
        // ZERO_FILLED: fresh memory reads as zero (the buffer may be a reused one).
        // SAFETY: `[base, end)` is an unused part of the buffer.
        unsafe { std::ptr::write_bytes(base as *mut u8, 0, end - base) };
        Some(Run {
            base: NonNull::new(base as *mut u8)?,
            len: end - base,
        })
    }

    /// `range` must lie inside one run handed out and not taken back.
    fn check_inside(&self, range: Run, what: &str) {
        let (a, n) = (range.base.as_ptr() as usize, range.len);
        assert!(
            self.out.iter().any(|&(b, m)| a >= b && a + n <= b + m),
            "{what} of {a:#x}+{n:#x}, not inside a run handed out"
        );
    }

    fn scribble(range: Run, byte: u8) {
        // SAFETY: the range lies in the buffer (checked by the caller) and the heap has
        // given up its contents.
        unsafe { std::ptr::write_bytes(range.base.as_ptr(), byte, range.len) };
    }
}

// SAFETY: runs are disjoint pieces of the source's buffer; a released run is handed out again
// only after the heap gave it back.
unsafe impl PageSource for ScribbleSource {
    type Map = FlatMap<64>;

    const ZERO_FILLED: bool = true;
    const DIRECT_RUNS: bool = true;

    fn grow(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        self.bump(min_bytes, align)
    }

    fn direct_threshold(&self) -> usize {
        128 << 10
    }

    fn grow_direct(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        if let Some(i) = self
            .released
            .iter()
            .position(|&(b, n)| n >= min_bytes && b % align == 0)
        {
            let (b, n) = self.released.swap_remove(i);
            self.out.push((b, n));
            // SAFETY: a released run, no longer used by the heap; it must read as zero.
            unsafe { std::ptr::write_bytes(b as *mut u8, 0, n) };
            return Some(Run {
                base: NonNull::new(b as *mut u8)?,
                len: n,
            });
        }
        self.bump(min_bytes, align)
    }

    unsafe fn release(&mut self, run: Run) -> bool {
        let key = (run.base.as_ptr() as usize, run.len);
        let i = self
            .out
            .iter()
            .position(|&r| r == key)
            .unwrap_or_else(|| panic!("release of {key:x?}, not a run handed out"));
        self.out.swap_remove(i);
        Self::scribble(run, SCRIBBLE);
        self.released.push(key);
        self.releases += 1;
        true
    }

    fn idle_limit(&self) -> usize {
        64 << 10
    }

    unsafe fn discard(&mut self, range: Run) -> bool {
        self.check_inside(range, "discard");
        // The contents are lost: as a kernel would, hand back zero pages.
        Self::scribble(range, 0);
        self.discards += 1;
        true
    }
}

/// One step of an operation stream.
#[derive(Clone, Debug)]
pub enum Op {
    /// Allocate `size` bytes aligned to `1 << align_shift` (the shift is capped at 16).
    Alloc { size: usize, align_shift: u8 },
    /// `allocate_zeroed`: the block must read as zero before it is filled.
    AllocZeroed { size: usize, align_shift: u8 },
    /// Free the live allocation number `idx` (modulo the number of live allocations).
    Free { idx: usize },
    /// Resize the live allocation number `idx` to `new_size` bytes.
    Realloc { idx: usize, new_size: usize },
    /// Make the platform report CPU `cpu` (taken modulo the slot count by the heap).
    SwitchCpu { cpu: usize },
    /// Drain CPU slot `cpu`.
    DrainCpu { cpu: usize },
    /// Give free memory back: drain every slot, so empty spans return to the page heap (which
    /// discards idle pages past the source's limit and releases direct runs on its own).
    Release,
    /// Run `check_invariants` now.
    Check,
}

/// The heap configurations a stream can run on: (config, buffer bytes). Configuration 3 and
/// up run over a [`ScribbleSource`], the rest over a [`StaticRegion`].
pub fn configs() -> [(Config, usize); 4] {
    [
        // Desktop/kernel pages; large objects and 64 KiB alignments exercise page spans.
        (Config::new(), 8 << 20),
        // Firmware: 256-byte pages, tiny caches, every alignment above 256 is a span.
        (Config::small(), 512 << 10),
        // 1 KiB pages, small caches and batches: many flushes and refills.
        (
            Config::new()
                .with_page_size(1024)
                .with_cpu_cache_bytes(4096)
                .with_batch_bytes(1024)
                .with_grow_bytes(0),
            2 << 20,
        ),
        // Growth in 64 KiB steps, direct runs, discards: the optional source hooks.
        (Config::new().with_grow_bytes(64 << 10), 16 << 20),
    ]
}

/// Run one stream on configuration `config` (modulo [`configs`]), then free everything and
/// check that it all came back. Returns the number of null returns.
pub fn run_stream(config: usize, ops: &[Op]) -> usize {
    fn go<S: Source>(config: usize, ops: &[Op]) -> usize {
        let mut h = Harness::<S>::new(config);
        for op in ops {
            h.apply(op);
        }
        h.finish();
        h.nulls
    }
    if config % configs().len() >= 3 {
        go::<ScribbleSource>(config, ops)
    } else {
        go::<StaticRegion<1>>(config, ops)
    }
}

#[derive(Clone, Copy, Debug)]
struct Live {
    size: usize,
    align: usize,
    seed: u64,
}

/// The byte at offset `i` of an allocation with pattern `seed`.
#[inline(always)]
fn pattern(seed: u64, i: usize) -> u8 {
    (seed as usize)
        .wrapping_add(i.wrapping_mul(0x9d))
        .wrapping_add(i >> 8) as u8
}

/// Fill `[from, to)` of the allocation at `p` with its pattern.
///
/// # Safety
/// `p` must be valid for writes of `to` bytes.
unsafe fn fill(p: *mut u8, from: usize, to: usize, seed: u64) {
    for i in from..to {
        // SAFETY: `i < to`, within the allocation.
        unsafe { p.add(i).write(pattern(seed, i)) };
    }
}

/// Check `[0, len)` of the allocation at `p` against its pattern.
///
/// # Safety
/// `p` must be valid for reads of `len` bytes.
unsafe fn check(p: *const u8, len: usize, seed: u64, what: &str) {
    for i in 0..len {
        // SAFETY: `i < len`, within the allocation.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            pattern(seed, i),
            "{what}: byte {i} of the allocation at {p:p} (len {len}) was overwritten"
        );
    }
}

/// A heap, its buffer, and the model of what is live.
pub struct Harness<S: Source> {
    heap: Option<Box<OpsHeap<S>>>,
    region: *mut [MaybeUninit<u8>],
    lo: usize,
    hi: usize,
    live: BTreeMap<usize, Live>,
    order: Vec<usize>,
    next_seed: u64,
    steps: usize,
    /// Allocations that returned null (memory exhausted); for reports.
    pub nulls: usize,
}

impl<S: Source> Harness<S> {
    /// A fresh heap with configuration number `config` (modulo [`configs`]).
    pub fn new(config: usize) -> Self {
        let all = configs();
        let (cfg, bytes) = all[config % all.len()];
        let region_ptr = take_buffer(bytes);
        let lo = region_ptr.cast::<u8>() as usize;
        // SAFETY: the buffer is ours alone (fresh, or pooled by a finished harness); the heap
        // is its only user until `Drop`, which drops the heap before pooling the buffer again.
        let source = S::over(unsafe { &mut *region_ptr });
        let heap = Box::new(Heap::new(source, SwitchableCpu(AtomicUsize::new(0)), cfg));
        Self {
            heap: Some(heap),
            region: region_ptr,
            lo,
            hi: lo + bytes,
            live: BTreeMap::new(),
            order: Vec::new(),
            next_seed: 1,
            steps: 0,
            nulls: 0,
        }
    }

    /// The heap under test.
    pub fn heap(&self) -> &OpsHeap<S> {
        self.heap.as_ref().expect("heap present until drop")
    }

    /// Live allocations in the model.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    fn check_invariants(&self, after: &Op) {
        if let Err(e) = self.heap().check_invariants() {
            panic!("{e} (after {after:?}, step {})", self.steps);
        }
    }

    /// The new block `[a, a + len)` must lie in the buffer and overlap no live block.
    fn check_placement(&self, a: usize, len: usize, align: usize) {
        let len = len.max(1);
        assert!(
            a >= self.lo && a + len <= self.hi,
            "pointer {a:#x}+{len} outside the buffer {:#x}..{:#x}",
            self.lo,
            self.hi
        );
        assert_eq!(a % align, 0, "pointer {a:#x} not aligned to {align}");
        if let Some((&prev, l)) = self.live.range(..=a).next_back() {
            assert!(
                prev + l.size.max(1) <= a,
                "{a:#x}+{len} overlaps live {prev:#x}+{}",
                l.size
            );
        }
        if let Some((&next, l)) = self.live.range(a..).next() {
            assert!(
                a + len <= next,
                "{a:#x}+{len} overlaps live {next:#x}+{}",
                l.size
            );
        }
        let usable = self.heap().usable_size(a as *const u8);
        assert!(
            usable.is_some_and(|u| u >= len),
            "usable_size {usable:?} below {len} at {a:#x}"
        );
    }

    fn take(&mut self, idx: usize) -> Option<(usize, Live)> {
        if self.order.is_empty() {
            return None;
        }
        let a = self.order.swap_remove(idx % self.order.len());
        let l = self.live.remove(&a).expect("model out of sync");
        Some((a, l))
    }

    /// Apply one operation to the heap and the model.
    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Alloc { size, align_shift } | Op::AllocZeroed { size, align_shift } => {
                let zeroed = matches!(op, Op::AllocZeroed { .. });
                let align = 1usize << align_shift.min(MAX_ALIGN_SHIFT);
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    return;
                };
                let p = std::hint::black_box(if zeroed {
                    self.heap().allocate_zeroed(layout)
                } else {
                    self.heap().allocate(layout)
                });
                if !p.is_null() && zeroed {
                    for i in 0..size {
                        // SAFETY: a fresh allocation of `size` bytes.
                        let b = unsafe { p.add(i).read() };
                        assert_eq!(
                            b, 0,
                            "allocate_zeroed: byte {i} of {p:p} (len {size}) is {b:#x}"
                        );
                    }
                }
                assert!(
                    p.is_null() || size < HUGE[0],
                    "a request of {size:#x} bytes succeeded"
                );
                if p.is_null() {
                    self.nulls += 1;
                } else {
                    let a = p as usize;
                    self.check_placement(a, size, align);
                    let seed = self.next_seed;
                    self.next_seed += 1;
                    // SAFETY: a fresh allocation of `size` bytes.
                    unsafe { fill(p, 0, size, seed) };
                    self.live.insert(a, Live { size, align, seed });
                    self.order.push(a);
                }
            }
            Op::Free { idx } => {
                if let Some((a, l)) = self.take(idx) {
                    let p = a as *mut u8;
                    // SAFETY: a live allocation of `l.size` bytes with this layout.
                    unsafe {
                        check(p, l.size, l.seed, "free");
                        let layout = Layout::from_size_align_unchecked(l.size, l.align);
                        self.heap().deallocate(std::hint::black_box(p), layout);
                    }
                }
            }
            Op::Realloc { idx, new_size } => {
                if new_size > isize::MAX as usize - (MAX_ALIGN_SHIFT as usize) {
                    // `reallocate` requires a size that fits `isize` (a `Layout` could not
                    // even describe it); what the heap does with one is in `Alloc`.
                    return;
                }
                let Some((a, l)) = self.take(idx) else { return };
                let p = a as *mut u8;
                // SAFETY: a live allocation of `l.size` bytes with this layout.
                let q = unsafe {
                    check(p, l.size, l.seed, "before realloc");
                    let layout = Layout::from_size_align_unchecked(l.size, l.align);
                    self.heap().reallocate(p, layout, new_size)
                };
                let (b, now) = if q.is_null() {
                    // Failed (exhausted, or a size that overflows): the old block stays live.
                    self.nulls += 1;
                    (a, l)
                } else {
                    let b = q as usize;
                    self.check_placement(b, new_size, l.align);
                    // SAFETY: the new block holds `new_size` bytes, the kept prefix included.
                    unsafe {
                        check(q, l.size.min(new_size), l.seed, "after realloc");
                        fill(q, l.size.min(new_size), new_size, l.seed);
                    }
                    (
                        b,
                        Live {
                            size: new_size,
                            ..l
                        },
                    )
                };
                self.live.insert(b, now);
                self.order.push(b);
            }
            Op::SwitchCpu { cpu } => self.heap().platform().0.store(cpu, Ordering::Relaxed),
            Op::DrainCpu { cpu } => {
                assert!(
                    self.heap().drain_cpu(cpu),
                    "slot {cpu} busy with no thread in it"
                );
            }
            Op::Release => {
                self.heap().drain_all_cpus();
                // Give every idle free page back to the source (a no-op for sources that
                // cannot take memory back).
                self.heap().release_idle_pages();
                let s = self.heap().stats();
                assert_eq!(s.cpu_cache_bytes, 0, "drained slots still cache: {s:?}");
                if self.live.is_empty() {
                    assert_eq!(s.span_bytes, 0, "spans kept with nothing live: {s:?}");
                }
            }
            Op::Check => self.check_invariants(op),
        }
        self.steps += 1;
        if self.steps % CHECK_EVERY == 0 {
            self.check_invariants(op);
        }
    }

    /// Check, free everything still live, drain, and check that all memory is back in the
    /// page heap.
    pub fn finish(&mut self) {
        self.check_invariants(&Op::Check);
        let in_use: usize = self.heap().stats().in_use_bytes;
        assert!(in_use >= self.live.values().map(|l| l.size).sum::<usize>());
        while !self.order.is_empty() {
            self.apply(&Op::Free { idx: 0 });
        }
        self.apply(&Op::Release);
        self.check_invariants(&Op::Check);
        let s = self.heap().stats();
        assert_eq!(s.in_use_bytes, 0, "{s:?}");
        assert_eq!(s.allocs, s.frees, "{s:?}");
        assert_eq!(s.span_bytes, 0, "{s:?}");
        assert_eq!(
            s.cpu_cache_bytes + s.central_cache_bytes + s.transfer_cache_bytes,
            0,
            "{s:?}"
        );
    }
}

impl<S: Source> Drop for Harness<S> {
    fn drop(&mut self) {
        // The heap, the only user of the buffer, goes first. Blocks still live in the model
        // are simply forgotten.
        drop(self.heap.take());
        give_back_buffer(self.region);
    }
}

/// Buffers of finished harnesses, reused so that a fuzzer running thousands of streams a
/// second does not map and unmap megabytes for each.
struct Pool(Vec<Buffer>);
struct Buffer(*mut [MaybeUninit<u8>]);
// SAFETY: a pooled buffer is owned by the pool alone.
unsafe impl Send for Buffer {}

static POOL: std::sync::Mutex<Pool> = std::sync::Mutex::new(Pool(Vec::new()));

/// A buffer of `bytes` bytes that nothing else uses, from the pool or fresh.
fn take_buffer(bytes: usize) -> *mut [MaybeUninit<u8>] {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = pool.0.iter().position(|b| b.0.len() == bytes) {
        return pool.0.swap_remove(i).0;
    }
    Box::into_raw(vec![MaybeUninit::uninit(); bytes].into_boxed_slice())
}

/// Return a buffer that no heap uses any more.
fn give_back_buffer(b: *mut [MaybeUninit<u8>]) {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.0.push(Buffer(b));
}

/// Decode an operation stream from raw fuzzer bytes: the first byte picks the configuration,
/// then each operation takes a tag byte and a few argument bytes. Sizes are biased towards
/// small objects, with page spans and the occasional huge request mixed in.
pub fn decode(data: &[u8]) -> (usize, Vec<Op>) {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut ops = Vec::new();
    let mut byte = || -> Option<u8> {
        let (&b, r) = rest.split_first()?;
        rest = r;
        Some(b)
    };
    while let Some(tag) = byte() {
        let op = match tag % 16 {
            0..=5 => {
                let (Some(a), Some(b), Some(c)) = (byte(), byte(), byte()) else {
                    break;
                };
                let (size, align_shift) = (size_from(a, b), c % (MAX_ALIGN_SHIFT + 1));
                if tag % 16 == 5 {
                    Op::AllocZeroed { size, align_shift }
                } else {
                    Op::Alloc { size, align_shift }
                }
            }
            6..=9 => Op::Free {
                idx: byte().unwrap_or(0) as usize,
            },
            10..=11 => {
                let (Some(i), Some(a), Some(b)) = (byte(), byte(), byte()) else {
                    break;
                };
                Op::Realloc {
                    idx: i as usize,
                    new_size: size_from(a, b),
                }
            }
            12 => Op::SwitchCpu {
                cpu: byte().unwrap_or(0) as usize,
            },
            13 => Op::DrainCpu {
                cpu: byte().unwrap_or(0) as usize,
            },
            14 => Op::Release,
            _ => Op::Check,
        };
        ops.push(op);
    }
    (cfg as usize, ops)
}

/// Requests no source can meet: 16 TiB, 64 TiB, above `isize::MAX`, near `usize::MAX`.
pub const HUGE: [usize; 4] = [1 << 44, 1 << 46, isize::MAX as usize + 1, usize::MAX - 4096];

/// A size from two bytes: the top bits of `a` pick a range, the rest a size in it.
fn size_from(a: u8, b: u8) -> usize {
    let v = (a as usize & 0x3f) << 8 | b as usize;
    match a >> 6 {
        0 => v % 129,                            // tiny, including 0
        1 => v % 2049,                           // small classes
        2 => v % 40_001,                         // large classes and small spans
        _ if b >= 252 => HUGE[b as usize - 252], // impossible
        _ => v * 37 % 600_001,                   // page spans up to ~600 KB
    }
}
