//! Measurements behind `docs/cpu-slot.md`: the cost of each way to pick a CPU slot, and its
//! effect (with each lock type) on multi-threaded alloc/free loops. Ignored by default; it
//! asserts nothing about time. Run with
//! `cargo test --release -p cpuheap --features std --test std_cpu_slot -- --ignored --nocapture`.
#![cfg(all(feature = "std", target_os = "linux"))]

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use common::Rng;
use cpuheap::{
    Config, DefaultRawMutex, Heap, MmapSource, Platform, SchedCpu, ThreadSlot, YieldMutex,
};

fn ns_per_call(f: impl Fn() -> usize) -> f64 {
    let n = 20_000_000u32;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0usize;
        for _ in 0..n {
            acc = acc.wrapping_add(f());
        }
        black_box(acc);
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

/// Million alloc+free pairs per second over `threads` threads, each churning its own live
/// set of 1000 objects of 8..1024 bytes (`cross`: every other object is freed by the next
/// thread, through a channel-free hand-off of a shared slot array).
fn churn<A: GlobalAlloc + Sync>(heap: &A, threads: usize, ops: usize) -> f64 {
    let barrier = Barrier::new(threads);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(1000);
                barrier.wait();
                for _ in 0..ops {
                    let size = 8 + (rng.next() % 1017) as usize;
                    let l = Layout::from_size_align(size, 8).unwrap();
                    // SAFETY: valid layout; freed below with the same layout.
                    let p = unsafe { heap.alloc(l) };
                    assert!(!p.is_null());
                    // SAFETY: `p` holds at least 1 byte.
                    unsafe { p.write(1) };
                    if live.len() < 1000 {
                        live.push((p, l));
                    } else {
                        let i = (rng.next() % 1000) as usize;
                        let (q, ql) = std::mem::replace(&mut live[i], (p, l));
                        // SAFETY: allocated above with `ql`.
                        unsafe { heap.dealloc(q, ql) };
                    }
                }
                for (q, ql) in live {
                    // SAFETY: allocated above with `ql`.
                    unsafe { heap.dealloc(q, ql) };
                }
            });
        }
    });
    (threads * ops) as f64 / t0.elapsed().as_secs_f64() / 1e6
}

/// Producer/consumer: thread 0 allocates, thread 1 frees, through a bounded ring.
fn producer_consumer<A: GlobalAlloc + Sync>(heap: &A, ops: usize) -> f64 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const RING: usize = 4096;
    let ring: Vec<AtomicUsize> = (0..RING).map(|_| AtomicUsize::new(0)).collect();
    let (head, tail) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let l = Layout::from_size_align(64, 8).unwrap();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..ops {
                while i - tail.load(Ordering::Acquire) >= RING {
                    std::hint::spin_loop();
                }
                // SAFETY: valid layout; the consumer frees it.
                let p = unsafe { heap.alloc(l) };
                ring[i % RING].store(p as usize, Ordering::Relaxed);
                head.store(i + 1, Ordering::Release);
            }
        });
        s.spawn(|| {
            for i in 0..ops {
                while head.load(Ordering::Acquire) <= i {
                    std::hint::spin_loop();
                }
                let p = ring[i % RING].load(Ordering::Relaxed) as *mut u8;
                // SAFETY: allocated by the producer with `l`.
                unsafe { heap.dealloc(p, l) };
                tail.store(i + 1, Ordering::Release);
            }
        });
    });
    ops as f64 / t0.elapsed().as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench_heap<P: Platform + Send + 'static, R: lock_api::RawMutex + Send + Sync + 'static>(
    name: &str,
    platform: P,
) {
    let h: &'static Heap<MmapSource, P, R, 64> = Box::leak(Box::new(Heap::new(
        MmapSource::new(),
        platform,
        Config::new(),
    )));
    let ops = 2_000_000;
    let one = median((0..5).map(|_| churn(h, 1, ops)).collect());
    let two = median((0..5).map(|_| churn(h, 2, ops)).collect());
    let four = median((0..5).map(|_| churn(h, 4, ops / 2)).collect());
    let pc = median((0..5).map(|_| producer_consumer(h, ops)).collect());
    let st = h.stats();
    println!(
        "| {name} | {one:.1} | {two:.1} | {four:.1} | {pc:.1} | {} |",
        st.slot_fallbacks
    );
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture in release"]
fn measure_cpu_slot_choices() {
    println!("\n| way | ns/call |\n|---|---|");
    println!(
        "| constant 0 (baseline) | {:.2} |",
        ns_per_call(|| black_box(0))
    );
    let ts = ThreadSlot::new();
    println!(
        "| thread-local slot index | {:.2} |",
        ns_per_call(|| black_box(&ts).current_cpu())
    );
    let sc = SchedCpu::new();
    println!(
        "| sched_getcpu (glibc, rseq) | {:.2} |",
        ns_per_call(|| black_box(&sc).current_cpu())
    );
    println!(
        "| getcpu syscall | {:.2} |",
        ns_per_call(|| {
            let mut cpu = 0u32;
            // SAFETY: the getcpu syscall writes the CPU number to `cpu`.
            unsafe {
                libc::syscall(
                    libc::SYS_getcpu,
                    &mut cpu as *mut u32,
                    std::ptr::null_mut::<u32>(),
                    std::ptr::null_mut::<u8>(),
                )
            };
            cpu as usize
        })
    );

    println!(
        "\n| platform, lock | 1 thread Mops/s | 2 threads Mops/s | 4 threads Mops/s | producer/consumer Mops/s | slot fallbacks |"
    );
    println!("|---|---|---|---|---|---|");
    let sys = &std::alloc::System;
    let sys_pc = median((0..5).map(|_| producer_consumer(sys, 2_000_000)).collect());
    let sys_two = median((0..5).map(|_| churn(sys, 2, 2_000_000)).collect());
    println!("| (glibc System, for reference) | - | {sys_two:.1} | - | {sys_pc:.1} | - |");
    bench_heap::<_, YieldMutex>("thread-local slot, spin-then-yield", ThreadSlot::new());
    bench_heap::<_, YieldMutex>("sched_getcpu, spin-then-yield", SchedCpu::new());
    bench_heap::<_, DefaultRawMutex>("thread-local slot, spin", ThreadSlot::new());
    bench_heap::<_, DefaultRawMutex>("sched_getcpu, spin", SchedCpu::new());
}
