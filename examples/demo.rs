//! The main job: a cpuheap instance over a 64 MiB region under a multi-threaded workload,
//! with the statistics of each tier printed as it goes.
//!
//! Run: `cargo run --release --example demo`

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::mpsc;
use std::time::Instant;

use cpuheap::{Config, DefaultRawMutex, Fault, Heap, Platform, StaticRegion, Stats};

const THREADS: usize = 4;
const OPS: usize = 2_000_000;

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Each demo thread sets its slot index once; the heap reads it as the CPU index.
struct Threads;

impl Platform for Threads {
    fn current_cpu(&self) -> usize {
        SLOT.with(|s| s.get())
    }
    fn fatal(&self, fault: &Fault) -> ! {
        cpuheap::default_fatal(fault)
    }
}

type DemoHeap = Heap<StaticRegion<1>, Threads, DefaultRawMutex, THREADS>;

fn print_stats(label: &str, s: &Stats) {
    let kib = |b: usize| format!("{:.1} KiB", b as f64 / 1024.0);
    println!("\n{label}");
    println!(
        "  in use            {:>14}   (peak {})",
        kib(s.in_use_bytes),
        kib(s.peak_in_use_bytes)
    );
    println!(
        "  tier 1 CPU caches {:>14}   ({} refills, {} flushes)",
        kib(s.cpu_cache_bytes),
        s.refills,
        s.flushes
    );
    println!("  tier 2 central    {:>14}", kib(s.central_cache_bytes));
    println!(
        "  tier 3 page heap  {:>14} in spans, {} free",
        kib(s.span_bytes),
        kib(s.page_heap_free_bytes)
    );
    println!("  metadata          {:>14}", kib(s.metadata_bytes));
    println!(
        "  from the source   {:>14}   ({} grows)",
        kib(s.source_bytes),
        s.source_grows
    );
    println!(
        "  operations        {} allocs, {} frees, {} reallocs ({} in place), {} large, {} slot fallbacks, {} spans made, {} returned",
        s.allocs, s.frees, s.reallocs, s.reallocs_in_place, s.large_allocs, s.slot_fallbacks, s.spans_allocated, s.spans_freed
    );
}

fn main() {
    let region: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(64 << 20));
    let heap: &'static DemoHeap = Box::leak(Box::new(Heap::new(
        StaticRegion::new(),
        Threads,
        Config::new(),
    )));
    assert!(heap.add_region(region));
    println!("cpuheap demo: {THREADS} threads on {THREADS} CPU slots, 64 MiB region, {OPS} operations per thread");
    println!(
        "each thread keeps a live set of random 8..2048-byte objects, reallocs some, and passes"
    );
    println!("every 8th object to the next thread (a queue of at most 1024), which frees it on its own slot");

    let start = Instant::now();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::sync_channel::<(usize, usize)>(1024))
        .unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let next = txs[(t + 1) % THREADS].clone();
            s.spawn(move || {
                SLOT.with(|c| c.set(t));
                let mut rng = 0x2545_f491_4f6c_dd1du64 ^ t as u64;
                let mut step = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut live: Vec<(usize, usize)> = Vec::with_capacity(4096);
                for i in 0..OPS {
                    while let Ok((p, size)) = rx.try_recv() {
                        unsafe {
                            heap.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap())
                        };
                    }
                    let r = step();
                    if live.len() < 4000 && (r % 2 == 0 || live.is_empty()) {
                        let size = 8 + (r >> 8) as usize % 2041;
                        let p = unsafe { heap.alloc(Layout::from_size_align(size, 8).unwrap()) };
                        assert!(!p.is_null());
                        unsafe { p.write_bytes(i as u8, size.min(64)) };
                        // Hand every 8th object to the next thread (a queue of at most 1024), unless its queue is full.
                        if r % 16 != 2 || next.try_send((p as usize, size)).is_err() {
                            live.push((p as usize, size));
                        }
                    } else if r % 7 == 1 {
                        let k = (r >> 16) as usize % live.len();
                        let (p, size) = live[k];
                        let new = 8 + (r >> 24) as usize % 4000;
                        let q = unsafe {
                            heap.realloc(
                                p as *mut u8,
                                Layout::from_size_align(size, 8).unwrap(),
                                new,
                            )
                        };
                        assert!(!q.is_null());
                        live[k] = (q as usize, new);
                    } else {
                        let (p, size) = live.swap_remove((r >> 16) as usize % live.len());
                        unsafe {
                            heap.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap())
                        };
                    }
                }
                if t == 0 {
                    print_stats("mid-run (thread 0 finished its operations):", &heap.stats());
                }
                drop(next);
                for (p, size) in live {
                    unsafe {
                        heap.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap())
                    };
                }
                // Senders are gone once every thread has finished; free what is left.
                while let Ok((p, size)) = rx.recv() {
                    unsafe {
                        heap.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap())
                    };
                }
            });
        }
        drop(txs);
    });
    let elapsed = start.elapsed();
    let s = heap.stats();
    print_stats("after every thread freed everything:", &s);
    let ops = s.allocs + s.frees + s.reallocs;
    println!(
        "\n{} heap operations in {:.2} s: {:.1} M ops/s over {THREADS} threads",
        ops,
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64() / 1e6
    );
    for cpu in 0..THREADS {
        heap.drain_cpu(cpu);
    }
    print_stats("after draining the CPU caches:", &heap.stats());
    match heap.check_invariants() {
        Ok(()) => println!("\ninvariants hold: objects conserved, bitmap / spans / page map agree"),
        Err(e) => {
            eprintln!("\n{e}");
            std::process::exit(1);
        }
    }
}
