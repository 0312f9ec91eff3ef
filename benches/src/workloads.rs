//! The workloads. Each is generic over the allocator so its fast path inlines.
//!
//! Throughput workloads run for a fixed wall-time window (`Params::window`) or an
//! op cap, whichever comes first, after an untimed prefill of the live set; every
//! worker thread calls `thread_start`/`thread_end` around its use of the allocator.

use core::alloc::Layout;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::iface::BenchAlloc;
use crate::rng::Rng;

/// Knobs shared by all workloads.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Timed window per measurement.
    pub window: Duration,
    /// Op cap per thread per measurement.
    pub max_ops: u64,
    /// Seed of this run.
    pub seed: u64,
}

/// Ops completed and the wall time they took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    /// Operations (alloc, free or realloc) completed by all threads.
    pub ops: u64,
    /// Seconds from the start barrier to the last thread's finish.
    pub secs: f64,
}

impl Throughput {
    /// Millions of operations per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.secs / 1e6
    }
}

const CHUNK: u64 = 256;

/// Run `f(tid)` on `threads` scoped worker threads, each between `thread_start` and
/// `thread_end`. `f` returns (ops, timed seconds).
fn on_threads<A: BenchAlloc>(
    a: &A,
    threads: usize,
    f: impl Fn(usize, &Barrier) -> (u64, f64) + Sync,
) -> Throughput {
    let barrier = Barrier::new(threads);
    let results: Vec<(u64, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|tid| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    a.thread_start(tid);
                    let r = f(tid, barrier);
                    a.thread_end();
                    r
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    Throughput {
        ops: results.iter().map(|r| r.0).sum(),
        secs: results.iter().map(|r| r.1).fold(0.0, f64::max),
    }
}

#[inline(always)]
unsafe fn stamp(p: *mut u8, size: usize, tag: u8) {
    p.write(tag);
    p.add(size - 1).write(tag);
}

#[inline(always)]
unsafe fn check(p: *mut u8, tag: u8) {
    if p.read() != tag {
        oops("heap corruption detected: object content changed");
    }
}

#[cold]
#[inline(never)]
fn oops(msg: &str) -> ! {
    panic!("{msg}")
}

#[cold]
#[inline(never)]
fn oom(layout: Layout) -> ! {
    panic!(
        "allocation of {} B (align {}) failed",
        layout.size(),
        layout.align()
    )
}

/// A slot of a live set: pointer (null = empty), requested size, alignment.
#[derive(Clone, Copy)]
struct Obj {
    p: *mut u8,
    size: usize,
    align: usize,
}

const EMPTY: Obj = Obj {
    p: core::ptr::null_mut(),
    size: 0,
    align: 8,
};

/// Workload (a)/(b): random small churn. Each thread owns `slots` slots; an op picks
/// a random slot and frees it if full, else allocates 8..=1024 B (align 8) into it.
pub fn churn<A: BenchAlloc>(a: &A, threads: usize, slots: usize, p: Params) -> Throughput {
    on_threads(a, threads, |tid, barrier| unsafe {
        let mut rng = Rng::new(p.seed ^ (tid as u64) << 32);
        let mut live = vec![EMPTY; slots];
        let op = |rng: &mut Rng, live: &mut Vec<Obj>| {
            let i = rng.below(slots as u64) as usize;
            let o = live.get_unchecked_mut(i);
            if o.p.is_null() {
                let size = rng.range(8, 1024) as usize;
                let l = Layout::from_size_align_unchecked(size, 8);
                let q = a.alloc(l);
                if q.is_null() {
                    oom(l)
                }
                stamp(q, size, size as u8);
                *o = Obj {
                    p: black_box(q),
                    size,
                    align: 8,
                };
            } else {
                check(o.p, o.size as u8);
                a.dealloc(o.p, Layout::from_size_align_unchecked(o.size, 8));
                o.p = core::ptr::null_mut();
            }
        };
        // Prefill to about half full (the steady state of the op mix).
        let r = timed_window(&p, barrier, slots, |_| op(&mut rng, &mut live));
        free_all(a, &mut live);
        r
    })
}

/// Run `prefill` untimed calls of `op(false)`, wait for the other threads, then call
/// `op(true)` in chunks until the window closes or `p.max_ops` is reached. Returns the timed
/// operations and the seconds they took.
fn timed_window(
    p: &Params,
    barrier: &Barrier,
    prefill: usize,
    mut op: impl FnMut(bool),
) -> (u64, f64) {
    for _ in 0..prefill {
        op(false);
    }
    barrier.wait();
    let t0 = Instant::now();
    let deadline = t0 + p.window;
    let mut ops = 0;
    while ops < p.max_ops {
        for _ in 0..CHUNK {
            op(true);
        }
        ops += CHUNK;
        if Instant::now() >= deadline {
            break;
        }
    }
    (ops, t0.elapsed().as_secs_f64())
}

unsafe fn free_all<A: BenchAlloc>(a: &A, live: &mut [Obj]) {
    for o in live.iter_mut() {
        if !o.p.is_null() {
            a.dealloc(o.p, Layout::from_size_align_unchecked(o.size, o.align));
            o.p = core::ptr::null_mut();
        }
    }
}

/// Size for the mixed workloads: log-uniform-ish from 8 B up to 30 000 B.
#[inline(always)]
pub fn mixed_size(rng: &mut Rng) -> usize {
    let e = rng.below(12); // 8 << 0 ..= 8 << 11 = 16 KiB
    let lo = 8u64 << e;
    (lo + rng.below(lo)).min(30_000) as usize
}

/// Alignment for the mixed workloads: 3/4 of requests at 8 or 16, the rest 32..=2048.
#[inline(always)]
pub fn mixed_align(rng: &mut Rng) -> usize {
    let r = rng.below(16);
    if r < 12 {
        8 << (r & 1)
    } else {
        32 << rng.below(7)
    }
}

/// Workload (d): mixed random actions. A random slot: empty -> alloc (mixed size and
/// alignment); full -> free (1/2) or realloc to a new mixed size (1/2).
pub fn mixed<A: BenchAlloc>(a: &A, threads: usize, slots: usize, p: Params) -> Throughput {
    on_threads(a, threads, |tid, barrier| unsafe {
        let mut rng = Rng::new(p.seed ^ (tid as u64) << 32 ^ 0xd);
        let mut live = vec![EMPTY; slots];
        let op = |rng: &mut Rng, live: &mut Vec<Obj>| {
            let i = rng.below(slots as u64) as usize;
            let o = live.get_unchecked_mut(i);
            if o.p.is_null() {
                let size = mixed_size(rng);
                let align = mixed_align(rng);
                let l = Layout::from_size_align_unchecked(size, align);
                let q = a.alloc(l);
                if q.is_null() {
                    oom(l)
                }
                if q as usize & (align - 1) != 0 {
                    oops("misaligned block")
                }
                stamp(q, size, size as u8);
                *o = Obj {
                    p: black_box(q),
                    size,
                    align,
                };
            } else if rng.next() & 1 == 0 {
                check(o.p, o.size as u8);
                a.dealloc(o.p, Layout::from_size_align_unchecked(o.size, o.align));
                o.p = core::ptr::null_mut();
            } else {
                check(o.p, o.size as u8);
                let ns = mixed_size(rng);
                let l = Layout::from_size_align_unchecked(o.size, o.align);
                let q = a.realloc(o.p, l, ns);
                if q.is_null() {
                    oom(Layout::from_size_align_unchecked(ns, o.align))
                }
                check(q, o.size as u8);
                stamp(q, ns, ns as u8);
                o.p = q;
                o.size = ns;
            }
        };
        let r = timed_window(&p, barrier, slots, |_| op(&mut rng, &mut live));
        free_all(a, &mut live);
        r
    })
}

/// Single-producer single-consumer ring of (pointer, size).
struct Ring {
    buf: Box<[core::cell::UnsafeCell<(usize, usize)>]>,
    head: CachePadded<AtomicUsize>, // next slot to write (producer)
    tail: CachePadded<AtomicUsize>, // next slot to read (consumer)
}
unsafe impl Sync for Ring {}

#[repr(align(128))]
struct CachePadded<T>(T);

impl Ring {
    fn new(cap: usize) -> Ring {
        assert!(cap.is_power_of_two());
        Ring {
            buf: (0..cap)
                .map(|_| core::cell::UnsafeCell::new((0, 0)))
                .collect(),
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
        }
    }
}

/// Workload (c): producer/consumer. Thread 0 allocates 8..=1024 B objects and passes
/// them through a lock-free SPSC ring to thread 1, which frees them. An op is one
/// object's alloc+free.
pub fn producer_consumer<A: BenchAlloc>(a: &A, p: Params) -> Throughput {
    let ring = Ring::new(4096);
    let mask = ring.buf.len() - 1;
    let done = AtomicBool::new(false);
    let ring = &ring;
    on_threads(a, 2, |tid, barrier| unsafe {
        barrier.wait();
        let t0 = Instant::now();
        if tid == 0 {
            let mut rng = Rng::new(p.seed ^ 0xc);
            let deadline = t0 + p.window;
            let mut ops = 0u64;
            let mut head = 0usize;
            'outer: while ops < p.max_ops {
                for _ in 0..CHUNK {
                    let size = rng.range(8, 1024) as usize;
                    let l = Layout::from_size_align_unchecked(size, 8);
                    let q = a.alloc(l);
                    if q.is_null() {
                        oom(l)
                    }
                    stamp(q, size, size as u8);
                    let mut spins = 0u32;
                    while head - ring.tail.0.load(Ordering::Acquire) > mask {
                        spins += 1;
                        if spins > 1000 {
                            std::thread::yield_now();
                        } else {
                            core::hint::spin_loop();
                        }
                    }
                    *ring.buf[head & mask].get() = (q as usize, size);
                    head += 1;
                    ring.head.0.store(head, Ordering::Release);
                }
                ops += CHUNK;
                if Instant::now() >= deadline {
                    break 'outer;
                }
            }
            done.store(true, Ordering::Release);
            (0, t0.elapsed().as_secs_f64())
        } else {
            let mut tail = 0usize;
            let mut spins = 0u32;
            loop {
                let head = ring.head.0.load(Ordering::Acquire);
                if tail == head {
                    if done.load(Ordering::Acquire) && ring.head.0.load(Ordering::Acquire) == tail {
                        break;
                    }
                    spins += 1;
                    if spins > 1000 {
                        std::thread::yield_now();
                    } else {
                        core::hint::spin_loop();
                    }
                    continue;
                }
                spins = 0;
                while tail != head {
                    let (q, size) = *ring.buf[tail & mask].get();
                    let q = q as *mut u8;
                    check(q, size as u8);
                    a.dealloc(q, Layout::from_size_align_unchecked(size, 8));
                    tail += 1;
                }
                ring.tail.0.store(tail, Ordering::Release);
            }
            (tail as u64, t0.elapsed().as_secs_f64())
        }
    })
}

/// Workload (e): fill a fixed region with mixed alloc (3/5), realloc (1/5) and free
/// (1/5) until the first failure; the result is live requested bytes / region bytes.
pub fn efficiency<A: BenchAlloc>(a: &A, region_bytes: usize, seed: u64) -> f64 {
    a.thread_start(0);
    let mut rng = Rng::new(seed ^ 0xe);
    let mut live: Vec<Obj> = Vec::with_capacity(1 << 16);
    let mut live_bytes = 0usize;
    unsafe {
        loop {
            let r = rng.below(5);
            if r < 3 || live.is_empty() {
                let size = mixed_size(&mut rng);
                let align = mixed_align(&mut rng);
                let l = Layout::from_size_align_unchecked(size, align);
                let q = a.alloc(l);
                if q.is_null() {
                    break;
                }
                stamp(q, size, size as u8);
                live.push(Obj { p: q, size, align });
                live_bytes += size;
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let o = live[i];
                check(o.p, o.size as u8);
                if r == 3 {
                    a.dealloc(o.p, Layout::from_size_align_unchecked(o.size, o.align));
                    live.swap_remove(i);
                    live_bytes -= o.size;
                } else {
                    let ns = mixed_size(&mut rng);
                    let q = a.realloc(o.p, Layout::from_size_align_unchecked(o.size, o.align), ns);
                    if q.is_null() {
                        break;
                    }
                    check(q, o.size as u8);
                    stamp(q, ns, ns as u8);
                    live[i] = Obj {
                        p: q,
                        size: ns,
                        align: o.align,
                    };
                    live_bytes = live_bytes - o.size + ns;
                }
            }
        }
        let eff = live_bytes as f64 / region_bytes as f64;
        free_all(a, &mut live);
        a.thread_end();
        eff
    }
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// alloc p50, p99, max.
    pub alloc: [f64; 3],
    /// free p50, p99, max.
    pub free: [f64; 3],
}

#[inline(always)]
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Nanoseconds per tick of [`ticks`], calibrated once.
pub fn ns_per_tick() -> f64 {
    static V: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        let (t0, c0) = (Instant::now(), ticks());
        std::thread::sleep(Duration::from_millis(50));
        let (t1, c1) = (Instant::now(), ticks());
        (t1 - t0).as_nanos() as f64 / (c1 - c0) as f64
    })
}

/// The timer's own cost in ticks (median of back-to-back reads), subtracted from
/// every latency sample.
pub fn timer_overhead_ticks() -> u64 {
    static V: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| {
                let t0 = ticks();
                let t1 = ticks();
                t1 - t0
            })
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    })
}

fn percentiles(v: &mut [u32]) -> [f64; 3] {
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    v.sort_unstable();
    let k = ns_per_tick();
    let o = timer_overhead_ticks() as f64;
    let ns = |t: u32| (t as f64 - o).max(0.0) * k;
    [
        ns(v[(v.len() - 1) / 2]),
        ns(v[((v.len() - 1) as f64 * 0.99) as usize]),
        ns(*v.last().unwrap()),
    ]
}

/// Workload (f): churn as in (a), timing every alloc and every free with the TSC.
/// `threads` > 1 measures under contention (each thread its own live set).
pub fn latency<A: BenchAlloc>(a: &A, threads: usize, slots: usize, p: Params) -> Latency {
    let samples = std::sync::Mutex::new((Vec::new(), Vec::new()));
    let cap = p.max_ops as usize;
    on_threads(a, threads, |tid, barrier| unsafe {
        let mut rng = Rng::new(p.seed ^ (tid as u64) << 32 ^ 0xf);
        let mut live = vec![EMPTY; slots];
        let mut ta: Vec<u32> = Vec::with_capacity(cap);
        let mut tf: Vec<u32> = Vec::with_capacity(cap);
        // Touch the sample buffers: no page faults inside the timed loop.
        ta.as_mut_ptr().write_bytes(0, cap);
        tf.as_mut_ptr().write_bytes(0, cap);
        let mut op = |rng: &mut Rng, live: &mut Vec<Obj>, rec: bool| {
            let i = rng.below(slots as u64) as usize;
            let o = live.get_unchecked_mut(i);
            if o.p.is_null() {
                let size = rng.range(8, 1024) as usize;
                let l = Layout::from_size_align_unchecked(size, 8);
                let t0 = ticks();
                let q = a.alloc(l);
                let t1 = ticks();
                if q.is_null() {
                    oom(l)
                }
                if rec && ta.len() < cap {
                    ta.push((t1 - t0).min(u32::MAX as u64) as u32);
                }
                stamp(q, size, size as u8);
                *o = Obj {
                    p: black_box(q),
                    size,
                    align: 8,
                };
            } else {
                let l = Layout::from_size_align_unchecked(o.size, 8);
                let t0 = ticks();
                a.dealloc(o.p, l);
                let t1 = ticks();
                if rec && tf.len() < cap {
                    tf.push((t1 - t0).min(u32::MAX as u64) as u32);
                }
                o.p = core::ptr::null_mut();
            }
        };
        let (ops, secs) = timed_window(&p, barrier, slots, |timed| op(&mut rng, &mut live, timed));
        free_all(a, &mut live);
        let mut s = samples.lock().unwrap();
        s.0.extend_from_slice(&ta);
        s.1.extend_from_slice(&tf);
        (ops, secs)
    });
    let (mut va, mut vf) = samples.into_inner().unwrap();
    Latency {
        alloc: percentiles(&mut va),
        free: percentiles(&mut vf),
    }
}

/// How much CPU two threads get compared with one: the same pure-compute loop run for
/// `window` on 1 and then on 2 threads, total iterations 2T / 1T. About 2.0 on an idle
/// 2-core machine; lower when other processes compete (then read the 2-thread rows with care).
pub fn cpu_scaling(window: Duration) -> f64 {
    fn spin(window: Duration) -> u64 {
        let t0 = Instant::now();
        let mut n = 0u64;
        let mut x = 1u64;
        while t0.elapsed() < window {
            for _ in 0..1000 {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            n += 1;
        }
        n
    }
    let one = spin(window) as f64;
    let two: u64 = std::thread::scope(|s| {
        let h: Vec<_> = (0..2).map(|_| s.spawn(|| spin(window))).collect();
        h.into_iter().map(|h| h.join().unwrap()).sum()
    });
    two as f64 / one
}

/// The 1-minute load average, if the OS tells it.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
