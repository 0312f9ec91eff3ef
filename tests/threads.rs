//! Multi-threaded stress on heap instances: threads on different CPU slots, objects freed on
//! another slot than the one that allocated them, then a full invariant check.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::sync::Barrier;

use common::*;
use cpuheap::Config;

/// Each thread allocates, verifies and frees its own objects and sends a share of them to the
/// next thread, which frees them on its own slot.
fn cross_slot_stress<const CPUS: usize>(
    threads: usize,
    config: Config,
    bytes: usize,
    max: u64,
    ops: u64,
) {
    let h = heap::<CPUS>(bytes, config);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Obj>()).unzip();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let next = txs[(t + 1) % threads].clone();
            let barrier = &barrier;
            s.spawn(move || {
                set_cpu(t);
                let mut rng = Rng::new(0x9e37_79b9 * (t as u64 + 1));
                let mut live: Vec<Obj> = vec![];
                barrier.wait();
                for i in 0..ops {
                    // Free what the previous thread sent.
                    while let Ok(o) = rx.try_recv() {
                        assert!(
                            unsafe { verify(o.addr as *const u8, o.size, o.seed) },
                            "cross-thread object corrupted"
                        );
                        unsafe { h.dealloc(o.addr as *mut u8, o.layout()) };
                    }
                    if rng.below(3) > 0 || live.is_empty() {
                        let size = 1 + rng.below(max) as usize;
                        let align = 1usize << rng.below(5);
                        let l = Layout::from_size_align(size, align).unwrap();
                        let p = unsafe { h.alloc(l) };
                        if p.is_null() {
                            continue;
                        }
                        assert_eq!(p as usize % align, 0);
                        let seed = (t as u64) << 32 | i;
                        unsafe { fill(p, size, seed) };
                        let o = Obj {
                            addr: p as usize,
                            size,
                            align,
                            seed,
                        };
                        if rng.below(4) == 0 {
                            next.send(o).unwrap();
                        } else {
                            live.push(o);
                        }
                    } else {
                        let o = live.swap_remove(rng.below(live.len() as u64) as usize);
                        assert!(
                            unsafe { verify(o.addr as *const u8, o.size, o.seed) },
                            "object corrupted"
                        );
                        unsafe { h.dealloc(o.addr as *mut u8, o.layout()) };
                    }
                }
                drop(next);
                barrier.wait();
                // Everyone has stopped sending: drain the channel, then free the rest.
                while let Ok(o) = rx.try_recv() {
                    unsafe { h.dealloc(o.addr as *mut u8, o.layout()) };
                }
                for o in live {
                    assert!(unsafe { verify(o.addr as *const u8, o.size, o.seed) });
                    unsafe { h.dealloc(o.addr as *mut u8, o.layout()) };
                }
            });
        }
        drop(txs);
    });
    h.check_invariants().unwrap();
    let s = h.stats();
    assert_eq!(s.in_use_bytes, 0, "{s:?}");
    assert_eq!(s.allocs, s.frees);
    for cpu in 0..CPUS {
        assert!(h.drain_cpu(cpu));
    }
    h.check_invariants().unwrap();
    assert_eq!(h.stats().cpu_cache_bytes, 0);
    // The transfer caches and the span reserve go back with the out-of-memory drain.
    h.drain_all_cpus();
    h.check_invariants().unwrap();
    let s = h.stats();
    assert_eq!(
        s.span_bytes, 0,
        "all memory returns to the page heap: {s:?}"
    );
    assert_eq!(
        s.cpu_cache_bytes + s.central_cache_bytes + s.transfer_cache_bytes,
        0
    );
}

#[test]
fn four_threads_on_four_slots() {
    cross_slot_stress::<4>(4, Config::new(), 64 << 20, 2000, 40_000);
}

#[test]
fn more_threads_than_slots_share_slots_through_the_try_lock() {
    // Six threads on two slots: try-lock failures fall back to the central cache.
    cross_slot_stress::<2>(6, Config::new(), 64 << 20, 600, 30_000);
}

#[test]
fn small_firmware_config_under_threads() {
    cross_slot_stress::<2>(3, Config::small(), 1 << 20, 300, 20_000);
}

#[test]
fn large_objects_under_threads() {
    cross_slot_stress::<4>(4, Config::new(), 256 << 20, 100_000, 3_000);
}

#[test]
fn producer_consumer() {
    let h = heap::<2>(32 << 20, Config::new());
    let (tx, rx) = mpsc::sync_channel::<usize>(1024);
    let l = Layout::from_size_align(48, 8).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            set_cpu(0);
            for i in 0..200_000usize {
                let p = unsafe { h.alloc(l) };
                assert!(!p.is_null());
                unsafe { (p as *mut usize).write(i) };
                tx.send(p as usize).unwrap();
            }
        });
        s.spawn(move || {
            set_cpu(1);
            let mut expect = 0;
            while let Ok(p) = rx.recv() {
                assert_eq!(unsafe { (p as *const usize).read() }, expect);
                expect += 1;
                unsafe { h.dealloc(p as *mut u8, l) };
            }
            assert_eq!(expect, 200_000);
        });
    });
    h.check_invariants().unwrap();
    assert_eq!(h.stats().in_use_bytes, 0);
}
