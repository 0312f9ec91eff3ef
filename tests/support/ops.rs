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

use cpuheap::{Config, DefaultRawMutex, Fault, Heap, Platform, StaticRegion};

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

/// The heap type under test.
pub type OpsHeap = Heap<StaticRegion<1>, SwitchableCpu, DefaultRawMutex, SLOTS>;

/// One step of an operation stream.
#[derive(Clone, Debug)]
pub enum Op {
    /// Allocate `size` bytes aligned to `1 << align_shift` (the shift is capped at 16).
    Alloc { size: usize, align_shift: u8 },
    /// Free the live allocation number `idx` (modulo the number of live allocations).
    Free { idx: usize },
    /// Resize the live allocation number `idx` to `new_size` bytes.
    Realloc { idx: usize, new_size: usize },
    /// Make the platform report CPU `cpu` (taken modulo the slot count by the heap).
    SwitchCpu { cpu: usize },
    /// Drain CPU slot `cpu`.
    DrainCpu { cpu: usize },
    /// Give free memory back: drain every slot (the heap has no call that hands whole free
    /// regions back to its source yet; see docs/reliability.md).
    Release,
    /// Run `check_invariants` now.
    Check,
}

/// The heap configurations a stream can run on: (config, buffer bytes).
pub fn configs() -> [(Config, usize); 3] {
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
    ]
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
pub struct Harness {
    heap: Box<OpsHeap>,
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

impl Harness {
    /// A fresh heap with configuration number `config` (modulo [`configs`]).
    pub fn new(config: usize) -> Self {
        let all = configs();
        let (cfg, bytes) = all[config % all.len()];
        let region_ptr = take_buffer(bytes);
        let lo = region_ptr.cast::<u8>() as usize;
        let heap = Box::new(Heap::new(
            StaticRegion::new(),
            SwitchableCpu(AtomicUsize::new(0)),
            cfg,
        ));
        // SAFETY: the buffer is ours alone (fresh, or pooled by a finished harness); the heap
        // is its only user until `Drop`, which drops the heap before pooling the buffer again.
        assert!(heap.add_region(unsafe { &mut *region_ptr }));
        Self {
            heap,
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
    pub fn heap(&self) -> &OpsHeap {
        &self.heap
    }

    /// Live allocations in the model.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    fn check_invariants(&self, after: &Op) {
        if let Err(e) = self.heap.check_invariants() {
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
        let usable = self.heap.usable_size(a as *const u8);
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
            Op::Alloc { size, align_shift } => {
                let align = 1usize << align_shift.min(MAX_ALIGN_SHIFT);
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    return;
                };
                let p = std::hint::black_box(self.heap.allocate(layout));
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
                        self.heap.deallocate(std::hint::black_box(p), layout);
                    }
                }
            }
            Op::Realloc { idx, new_size } => {
                let Some((a, l)) = self.take(idx) else { return };
                let p = a as *mut u8;
                // SAFETY: a live allocation of `l.size` bytes with this layout.
                let q = unsafe {
                    check(p, l.size, l.seed, "before realloc");
                    let layout = Layout::from_size_align_unchecked(l.size, l.align);
                    self.heap.reallocate(p, layout, new_size)
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
            Op::SwitchCpu { cpu } => self.heap.platform().0.store(cpu, Ordering::Relaxed),
            Op::DrainCpu { cpu } => {
                assert!(
                    self.heap.drain_cpu(cpu),
                    "slot {cpu} busy with no thread in it"
                );
            }
            Op::Release => {
                self.heap.drain_all_cpus();
                let s = self.heap.stats();
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
        let in_use: usize = self.heap.stats().in_use_bytes;
        assert!(in_use >= self.live.values().map(|l| l.size).sum::<usize>());
        while !self.order.is_empty() {
            self.apply(&Op::Free { idx: 0 });
        }
        self.apply(&Op::Release);
        self.check_invariants(&Op::Check);
        let s = self.heap.stats();
        assert_eq!(s.in_use_bytes, 0, "{s:?}");
        assert_eq!(s.allocs, s.frees, "{s:?}");
        assert_eq!(s.span_bytes, 0, "{s:?}");
        assert_eq!(s.cpu_cache_bytes + s.central_cache_bytes, 0, "{s:?}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Replace the heap with a fresh one (which holds no memory) so the old one, the only
        // user of the buffer, is gone before the buffer is freed. Blocks still live in the
        // model are simply forgotten.
        *self.heap = Heap::new(
            StaticRegion::new(),
            SwitchableCpu(AtomicUsize::new(0)),
            Config::small(),
        );
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
                Op::Alloc {
                    size: size_from(a, b),
                    align_shift: c % (MAX_ALIGN_SHIFT + 1),
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

/// A size from two bytes: the top bits of `a` pick a range, the rest a size in it.
fn size_from(a: u8, b: u8) -> usize {
    let v = (a as usize & 0x3f) << 8 | b as usize;
    match a >> 6 {
        0 => v % 129,          // tiny, including 0
        1 => v % 2049,         // small classes
        2 => v % 40_001,       // large classes and small spans
        _ => v * 37 % 600_001, // page spans up to ~600 KB
    }
}
