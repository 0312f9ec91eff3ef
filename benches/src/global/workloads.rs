//! Global-allocator workloads: one source, included (`#[path] mod workloads;`) by every
//! `src/bin/global-*.rs` binary, each of which installs one allocator as its own
//! `#[global_allocator]`. Everything here allocates through plain `Box`, `Vec` and
//! `std::alloc::{alloc, dealloc, realloc}`, so the allocator is reached exactly as in a
//! user's program (`__rust_alloc` and friends), not through the harness's adapter.
//!
//! Usage: `global-<alloc> WORKLOAD [--ms N] [--seed S]`, or `global-<alloc> --list`.
//! Each run prints one machine-readable line on stdout:
//! `GLOBALBENCH alloc=<name> workload=<id> key=value ...` with at least `value=` and
//! `unit=` (`mops` = million operations per second, higher is better; `ms` = milliseconds,
//! lower is better).
//!
//! The workloads do not know which allocator they run on: nothing here is tuned to any of them.

#![allow(dead_code)]

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Workload ids, in table order.
pub const WORKLOADS: &[&str] = &[
    "churn1",
    "churn2",
    "bare",
    "threadchurn",
    "mixed1",
    "mixed2",
    "prodcons",
    "ring",
    "larson",
    "realloc-grow",
    "rss",
];

/// The project's deterministic PRNG (`testkit/`), the same for every allocator, with the
/// workloads' size distributions.
use cpuheap_testkit::Rng;

trait Sizes {
    /// 8..=1024 B, uniform.
    fn small(&mut self) -> usize;
    /// 8 B..64 KiB, log-uniform (each power-of-two octave equally likely, uniform inside).
    fn log_size(&mut self) -> usize;
}

impl Sizes for Rng {
    #[inline(always)]
    fn small(&mut self) -> usize {
        self.range(8, 1024) as usize
    }
    #[inline(always)]
    fn log_size(&mut self) -> usize {
        let bits = self.range(3, 15);
        ((1u64 << bits) + self.below(1u64 << bits)) as usize
    }
}

/// One heap object: its address and the layout it was allocated with. The first 8 bytes
/// hold the requested size (a stamp checked before free and after realloc).
#[derive(Clone, Copy)]
struct Obj {
    p: *mut u8,
    layout: Layout,
}

// SAFETY: an `Obj` is a plain heap block, owned by whoever holds it.
unsafe impl Send for Obj {}

impl Obj {
    const EMPTY: Obj = Obj {
        p: std::ptr::null_mut(),
        layout: Layout::new::<u64>(),
    };

    #[inline(always)]
    fn new(size: usize, align: usize) -> Obj {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: size >= 8 > 0.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: at least 8 bytes, aligned to at least 8.
        unsafe { (p as *mut u64).write(size as u64) };
        Obj {
            p: black_box(p),
            layout,
        }
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.p.is_null()
    }

    #[inline(always)]
    fn check(&self) {
        // SAFETY: a live object of at least 8 bytes.
        let s = unsafe { (self.p as *const u64).read() };
        if s != self.layout.size() as u64 {
            corrupt(self.p, s, self.layout.size());
        }
    }

    #[inline(always)]
    fn free(self) {
        self.check();
        // SAFETY: allocated by `alloc` with this layout, freed once.
        unsafe { dealloc(black_box(self.p), self.layout) };
    }

    #[inline(always)]
    fn realloc(&mut self, new_size: usize) {
        // SAFETY: a live object with this layout; new_size >= 8.
        let p = unsafe { realloc(self.p, self.layout, new_size) };
        let layout = Layout::from_size_align(new_size, self.layout.align()).unwrap();
        if p.is_null() {
            handle_alloc_error(layout);
        }
        // The copy kept the old stamp: check it, then stamp the new size.
        // SAFETY: at least 8 bytes, aligned to at least 8.
        let old = unsafe { (p as *const u64).read() };
        if old != self.layout.size() as u64 {
            corrupt(p, old, self.layout.size());
        }
        unsafe { (p as *mut u64).write(new_size as u64) };
        *self = Obj {
            p: black_box(p),
            layout,
        };
    }
}

#[cold]
#[inline(never)]
fn corrupt(p: *mut u8, found: u64, want: usize) -> ! {
    eprintln!("memory corrupted at {p:p}: stamp {found}, expected {want}");
    std::process::abort()
}

/// A `Send` wrapper to move a raw slot table into a thread.
struct Slots(Vec<Obj>);

impl Slots {
    fn free_all(self) {
        for o in self.0 {
            if !o.is_empty() {
                o.free();
            }
        }
    }
}

/// Throughput result: operations and the slowest thread's seconds.
struct Tp {
    ops: u64,
    secs: f64,
}

fn run_threads<F>(threads: usize, f: F) -> Tp
where
    F: Fn(usize, &Barrier) -> (u64, f64) + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let f = f.clone();
            let b = barrier.clone();
            thread::spawn(move || f(t, &b))
        })
        .collect();
    let mut tp = Tp { ops: 0, secs: 0.0 };
    for h in hs {
        let (o, s) = h.join().unwrap();
        tp.ops += o;
        tp.secs = tp.secs.max(s);
    }
    tp
}

/// churn: `slots` slots per thread, half filled; an op picks a random slot and frees it if
/// full, else allocates 8..=1024 B into it.
fn churn(threads: usize, window: Duration, seed: u64) -> Tp {
    const SLOTS: usize = 2048;
    run_threads(threads, move |t, barrier| {
        let mut rng = Rng::new(seed ^ ((t as u64 + 1) * 0x1000));
        let mut s = vec![Obj::EMPTY; SLOTS];
        for o in s.iter_mut() {
            if rng.below(2) == 0 {
                *o = Obj::new(rng.small(), 8);
            }
        }
        barrier.wait();
        let t0 = Instant::now();
        let end = t0 + window;
        let mut ops = 0u64;
        loop {
            for _ in 0..64 {
                let i = rng.below(SLOTS as u64) as usize;
                let o = &mut s[i];
                if o.is_empty() {
                    *o = Obj::new(rng.small(), 8);
                } else {
                    o.free();
                    *o = Obj::EMPTY;
                }
            }
            ops += 64;
            if Instant::now() >= end {
                break;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        Slots(s).free_all();
        (ops, secs)
    })
}

/// bare: `Box::new([u64; 4])` (32 B) then drop, in a loop; an op is one alloc+free pair.
fn bare(window: Duration) -> Tp {
    let t0 = Instant::now();
    let end = t0 + window;
    let mut ops = 0u64;
    loop {
        for i in 0..256u64 {
            let b = Box::new([i; 4]);
            black_box(&b);
            drop(b);
        }
        ops += 256;
        if Instant::now() >= end {
            break;
        }
    }
    Tp {
        ops,
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// Body of one short-lived thread of threadchurn / rss: `ops` random alloc/free actions
/// over 256 slots (8..=1024 B), then frees what is left.
fn short_thread(seed: u64, ops: u64) {
    let mut rng = Rng::new(seed);
    let mut s = vec![Obj::EMPTY; 256];
    for _ in 0..ops {
        let i = rng.below(256) as usize;
        let o = &mut s[i];
        if o.is_empty() {
            *o = Obj::new(rng.small(), 8);
        } else {
            o.free();
            *o = Obj::EMPTY;
        }
    }
    Slots(s).free_all();
}

const WAVE: usize = 8;
const SHORT_OPS: u64 = 4000;

/// Waves of `WAVE` threads, spawned then joined; until `window` has passed (at least
/// `min_threads` threads in all). Returns (threads, seconds).
fn thread_waves(window: Duration, min_threads: usize, max_threads: usize, seed: u64) -> (u64, f64) {
    let t0 = Instant::now();
    let mut n = 0usize;
    while n < max_threads && (n < min_threads || t0.elapsed() < window) {
        let hs: Vec<_> = (0..WAVE)
            .map(|i| {
                let sd = seed ^ (((n + i) as u64) << 16);
                thread::spawn(move || short_thread(sd, SHORT_OPS))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        n += WAVE;
    }
    (n as u64, t0.elapsed().as_secs_f64())
}

/// threadchurn: waves of 8 short-lived threads (each 4000 random alloc/free actions over
/// 256 slots) for the window, at least 256 threads; ops = alloc/free actions, and thread
/// creation and exit are inside the timed section.
fn threadchurn(window: Duration, seed: u64) -> (Tp, u64) {
    let (n, secs) = thread_waves(window, 256, usize::MAX, seed);
    (
        Tp {
            ops: n * SHORT_OPS,
            secs,
        },
        n,
    )
}

/// Resident set (`VmRSS`) and peak (`VmHWM`) in KiB, from /proc/self/status.
fn rss_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// mixed: 2048 slots per thread, half filled; empty slot: allocate; full slot: free or
/// realloc (1/2 each); sizes log-uniform 8 B..64 KiB, alignment 8 (3/4) or 16 (1/4).
fn mixed(threads: usize, window: Duration, seed: u64) -> Tp {
    const SLOTS: usize = 2048;
    run_threads(threads, move |t, barrier| {
        let mut rng = Rng::new(seed ^ ((t as u64 + 1) * 0x2000));
        let align = |r: &mut Rng| if r.below(4) == 0 { 16 } else { 8 };
        let mut s = vec![Obj::EMPTY; SLOTS];
        for o in s.iter_mut() {
            if rng.below(2) == 0 {
                let a = align(&mut rng);
                *o = Obj::new(rng.log_size(), a);
            }
        }
        barrier.wait();
        let t0 = Instant::now();
        let end = t0 + window;
        let mut ops = 0u64;
        loop {
            for _ in 0..64 {
                let i = rng.below(SLOTS as u64) as usize;
                let o = &mut s[i];
                if o.is_empty() {
                    let a = align(&mut rng);
                    *o = Obj::new(rng.log_size(), a);
                } else if rng.below(2) == 0 {
                    o.free();
                    *o = Obj::EMPTY;
                } else {
                    o.realloc(rng.log_size());
                }
            }
            ops += 64;
            if Instant::now() >= end {
                break;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        Slots(s).free_all();
        (ops, secs)
    })
}

/// A bounded single-producer single-consumer ring of object addresses (0 = end).
struct Spsc {
    buf: Box<[AtomicUsize]>,
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
}

#[repr(align(128))]
struct CachePadded<T>(T);

impl Spsc {
    const CAP: usize = 4096;
    fn new() -> Spsc {
        Spsc {
            // `black_box`: with a constant 32 KiB layout, rustc 1.95 compiled this whole
            // workload to `ud2` in global-cpuheap (see benches/README.md, caveats).
            buf: (0..black_box(Self::CAP))
                .map(|_| AtomicUsize::new(0))
                .collect(),
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
        }
    }
    fn push(&self, v: usize) {
        let t = self.tail.0.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while t.wrapping_sub(self.head.0.load(Ordering::Acquire)) >= Self::CAP {
            backoff(&mut spins);
        }
        self.buf[t % Self::CAP].store(v, Ordering::Relaxed);
        self.tail.0.store(t.wrapping_add(1), Ordering::Release);
    }
    fn pop(&self) -> usize {
        let h = self.head.0.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while self.tail.0.load(Ordering::Acquire) == h {
            backoff(&mut spins);
        }
        let v = self.buf[h % Self::CAP].load(Ordering::Relaxed);
        self.head.0.store(h.wrapping_add(1), Ordering::Release);
        v
    }
}

/// Spin briefly, then yield (the machine may have fewer free cores than threads).
#[inline(always)]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

/// prodcons: thread 0 allocates 8..=1024 B objects and passes them through a 4096-entry
/// SPSC ring to thread 1, which frees them; an op is one object.
fn prodcons(window: Duration, seed: u64) -> Tp {
    let q = Arc::new(Spsc::new());
    let barrier = Arc::new(Barrier::new(2));
    let consumer = {
        let q = q.clone();
        let b = barrier.clone();
        thread::spawn(move || {
            b.wait();
            let t0 = Instant::now();
            let mut n = 0u64;
            loop {
                let v = q.pop();
                if v == 0 {
                    break;
                }
                // SAFETY: the producer wrote the size stamp; align 8 as allocated.
                let size = unsafe { (v as *const u64).read() } as usize;
                let o = Obj {
                    p: v as *mut u8,
                    layout: Layout::from_size_align(size, 8).unwrap(),
                };
                o.free();
                n += 1;
            }
            (n, t0.elapsed().as_secs_f64())
        })
    };
    let producer = {
        let q = q.clone();
        let b = barrier.clone();
        thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0x3000);
            b.wait();
            let t0 = Instant::now();
            let end = t0 + window;
            loop {
                for _ in 0..64 {
                    let o = Obj::new(rng.small(), 8);
                    q.push(o.p as usize);
                }
                if Instant::now() >= end {
                    break;
                }
            }
            q.push(0);
            t0.elapsed().as_secs_f64()
        })
    };
    let ps = producer.join().unwrap();
    let (n, cs) = consumer.join().unwrap();
    Tp {
        ops: n,
        secs: ps.max(cs),
    }
}

/// A batch of objects passed between threads (addresses; the size is in each stamp).
struct Batch(Vec<usize>);

/// ring: `RING` threads in a ring of bounded channels (`mpsc::sync_channel(4)`); each round a
/// thread allocates a batch of 64 objects (8..=1024 B, in a fresh `Vec`), sends it to the
/// next thread, receives one from the previous thread and frees it (objects and the `Vec`).
/// A fixed number of rounds; an op is one object.
fn ring(window: Duration, seed: u64) -> Tp {
    const RING: usize = 4;
    const BATCH: usize = 64;
    // Fixed work, scaled by the window (25 rounds per millisecond of window).
    let rounds = (window.as_millis() as usize * 25).max(200);
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..RING {
        let (tx, rx) = mpsc::sync_channel::<Batch>(4);
        txs.push(tx);
        rxs.push(Some(rx));
    }
    let barrier = Arc::new(Barrier::new(RING));
    let hs: Vec<_> = (0..RING)
        .map(|t| {
            let tx = txs[(t + 1) % RING].clone();
            let rx = rxs[t].take().unwrap();
            let b = barrier.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ ((t as u64 + 1) * 0x4000));
                b.wait();
                let t0 = Instant::now();
                for _ in 0..rounds {
                    let mut v = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        v.push(Obj::new(rng.small(), 8).p as usize);
                    }
                    tx.send(Batch(v)).unwrap();
                    let got = rx.recv().unwrap();
                    for a in got.0 {
                        // SAFETY: the stamp holds the size; align 8 as allocated.
                        let size = unsafe { (a as *const u64).read() } as usize;
                        Obj {
                            p: a as *mut u8,
                            layout: Layout::from_size_align(size, 8).unwrap(),
                        }
                        .free();
                    }
                }
                (rounds as u64 * BATCH as u64, t0.elapsed().as_secs_f64())
            })
        })
        .collect();
    drop(txs);
    let mut tp = Tp { ops: 0, secs: 0.0 };
    for h in hs {
        let (o, s) = h.join().unwrap();
        tp.ops += o;
        tp.secs = tp.secs.max(s);
    }
    tp
}

/// larson: 2 lanes, each a table of 1024 slots filled (8..=1024 B) by the main thread; a
/// lane's thread does 10 000 actions (free a random slot's object, allocate a new one in
/// its place), then spawns its successor with the table and exits, until the window has
/// passed. Each slot's first free in a generation (about 1 in 10 frees) frees an object
/// that another thread allocated. An op is one free+alloc.
fn larson(window: Duration, seed: u64) -> (Tp, u64) {
    const LANES: usize = 2;
    const SLOTS: usize = 1024;
    let ops = Arc::new(AtomicU64::new(0));
    let gens = Arc::new(AtomicU64::new(0));
    let mut rng = Rng::new(seed ^ 0x5000);
    let tables: Vec<Slots> = (0..LANES)
        .map(|_| Slots((0..SLOTS).map(|_| Obj::new(rng.small(), 8)).collect()))
        .collect();
    let t0 = Instant::now();
    let end = t0 + window;
    let drivers: Vec<_> = tables
        .into_iter()
        .enumerate()
        .map(|(l, s)| {
            let (ops, gens) = (ops.clone(), gens.clone());
            let r = Rng::new(seed ^ ((l as u64 + 1) * 0x6000));
            thread::spawn(move || lane(s, r, end, ops, gens))
        })
        .collect();
    for d in drivers {
        d.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    (
        Tp {
            ops: ops.load(Ordering::Relaxed),
            secs,
        },
        gens.load(Ordering::Relaxed),
    )
}

/// One larson lane: generation threads in sequence, each spawned by its predecessor, which
/// sends the successor's handle back over a channel so the lane's driver can join it.
fn lane(s: Slots, rng: Rng, end: Instant, ops: Arc<AtomicU64>, gens: Arc<AtomicU64>) {
    const SLOTS: u64 = 1024;
    const GEN_OPS: u64 = 10_000;
    /// The successor's handle and its report channel; `None` = the lane is done.
    struct Msg2(Option<(thread::JoinHandle<()>, mpsc::Receiver<Msg2>)>);
    fn gen(
        mut s: Slots,
        mut rng: Rng,
        end: Instant,
        ops: Arc<AtomicU64>,
        gens: Arc<AtomicU64>,
        report: mpsc::Sender<Msg2>,
    ) {
        for _ in 0..GEN_OPS {
            let i = rng.below(SLOTS) as usize;
            let o = std::mem::replace(&mut s.0[i], Obj::EMPTY);
            o.free();
            s.0[i] = Obj::new(rng.small(), 8);
        }
        ops.fetch_add(GEN_OPS, Ordering::Relaxed);
        gens.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= end {
            s.free_all();
            let _ = report.send(Msg2(None));
            return;
        }
        let (tx, rx) = mpsc::channel();
        let h = thread::spawn(move || gen(s, rng, end, ops, gens, tx));
        let _ = report.send(Msg2(Some((h, rx))));
    }
    let (tx, mut rx) = mpsc::channel();
    let mut h = thread::spawn(move || gen(s, rng, end, ops, gens, tx));
    loop {
        let msg = rx.recv().unwrap();
        h.join().unwrap();
        match msg.0 {
            None => break,
            Some((nh, nrx)) => {
                h = nh;
                rx = nrx;
            }
        }
    }
}

/// realloc-grow: one `Vec<u8>` grown from 4 KiB to 64 MiB by `reserve_exact(4096)` (each a
/// `realloc` to exactly 4 KiB more) and filled 4 KiB at a time, as a growing buffer would be;
/// repeated until the window has passed (at least once). Reports milliseconds per full grow
/// and how often the buffer moved per grow. A grow still short of 64 MiB after `CAP_MS`
/// (10x glibc's time here) is cut off: then `complete=0`, `value` is the time so far (a
/// lower bound) and `reached_kib` how far it got.
fn realloc_grow(window: Duration) -> (f64, f64, u64, bool, usize) {
    const CAP_MS: u128 = 2000;
    const STEP: usize = 4096;
    const TOP: usize = 64 << 20;
    let t0 = Instant::now();
    let mut reps = 0u64;
    let mut moves = 0u64;
    while reps == 0 || t0.elapsed() < window {
        let mut v: Vec<u8> = Vec::with_capacity(STEP);
        v.resize(STEP, 1);
        while v.len() < TOP {
            if v.len() & ((1 << 20) - 1) == 0 && t0.elapsed().as_millis() > CAP_MS {
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                return (ms, moves as f64, 1, false, v.len() >> 10);
            }
            let old = v.as_ptr() as usize;
            v.reserve_exact(STEP);
            if v.as_ptr() as usize != old {
                moves += 1;
            }
            v.resize(v.len() + STEP, 1);
        }
        let v = black_box(v);
        if v.capacity() != TOP || v[0] != 1 || v[TOP - 1] != 1 {
            corrupt(v.as_ptr() as *mut u8, v.capacity() as u64, TOP);
        }
        drop(v);
        reps += 1;
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
    (ms, moves as f64 / reps as f64, reps, true, TOP >> 10)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn print_tp(name: &str, w: &str, threads: usize, tp: &Tp, extra: &str) {
    let mops = tp.ops as f64 / tp.secs / 1e6;
    println!(
        "GLOBALBENCH alloc={name} workload={w} threads={threads} ops={} secs={:.4} value={mops:.4} unit=mops load1={:.2}{extra}",
        tp.ops,
        tp.secs,
        load1()
    );
}

/// Entry point of every `global-*` binary; `name` is the allocator's short name.
pub fn main(name: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut ms = 300u64;
    let mut seed = 1u64;
    let mut work: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => {
                println!("{}", WORKLOADS.join(" "));
                return;
            }
            "--ms" => ms = it.next().and_then(|v| v.parse().ok()).expect("--ms N"),
            "--seed" => seed = it.next().and_then(|v| v.parse().ok()).expect("--seed N"),
            "-h" | "--help" => {
                println!(
                    "global-{name} WORKLOAD [--ms N] [--seed S]   (allocator: {name}, the #[global_allocator])\n\
                     workloads: {}",
                    WORKLOADS.join(" ")
                );
                return;
            }
            w if !w.starts_with('-') => work = Some(w.to_string()),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(w) = work else {
        eprintln!("usage: global-{name} WORKLOAD [--ms N] [--seed S]; --list");
        std::process::exit(2);
    };
    let window = Duration::from_millis(ms);
    match w.as_str() {
        "churn1" => print_tp(name, &w, 1, &churn(1, window, seed), ""),
        "churn2" => print_tp(name, &w, 2, &churn(2, window, seed), ""),
        "bare" => print_tp(name, &w, 1, &bare(window), ""),
        "threadchurn" => {
            let (tp, n) = threadchurn(window, seed);
            print_tp(name, &w, WAVE, &tp, &format!(" spawned={n}"));
        }
        "mixed1" => print_tp(name, &w, 1, &mixed(1, window, seed), ""),
        "mixed2" => print_tp(name, &w, 2, &mixed(2, window, seed), ""),
        "prodcons" => print_tp(name, &w, 2, &prodcons(window, seed), ""),
        "ring" => print_tp(name, &w, 4, &ring(window, seed), ""),
        "larson" => {
            let (tp, g) = larson(window, seed);
            print_tp(name, &w, 2, &tp, &format!(" generations={g}"));
        }
        "realloc-grow" => {
            let (ms, moves, reps, complete, kib) = realloc_grow(window);
            println!(
                "GLOBALBENCH alloc={name} workload={w} threads=1 reps={reps} moves={moves:.1} complete={} reached_kib={kib} value={ms:.3} unit=ms load1={:.2}",
                complete as u8,
                load1()
            );
        }
        "rss" => {
            let (before, _) = rss_kib();
            let (n, secs) = thread_waves(Duration::ZERO, 1000, 1000, seed);
            let (after, hwm) = rss_kib();
            println!(
                "GLOBALBENCH alloc={name} workload={w} threads={n} secs={secs:.4} rss_before_kib={before} rss_after_kib={after} hwm_kib={hwm} value={} unit=kib load1={:.2}",
                after,
                load1()
            );
        }
        other => {
            eprintln!("unknown workload {other}; one of: {}", WORKLOADS.join(" "));
            std::process::exit(2);
        }
    }
}
