//! This whole test binary runs with `StdHeap` as its global allocator: many threads, threads
//! created and exiting in churn, objects freed on other threads than the one that allocated
//! them, huge blocks mapped and unmapped directly, and idle memory given back to the OS.
#![cfg(all(feature = "std", target_os = "linux"))]

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{mpsc, Arc, Barrier, Mutex};

use common::Rng;
use cpuheap::StdHeap;

#[global_allocator]
static GLOBAL: StdHeap = StdHeap::new();

fn fill(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

fn check(v: &[u8], seed: u64) -> bool {
    v.iter()
        .enumerate()
        .all(|(i, &b)| b == (seed as usize).wrapping_mul(31).wrapping_add(i) as u8)
}

#[test]
fn many_threads_with_their_own_live_sets() {
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x1234_5678 + t as u64);
                let mut live: Vec<(u64, Vec<u8>)> = vec![];
                barrier.wait();
                for i in 0..20_000u64 {
                    if live.len() < 500 || rng.below(2) == 0 {
                        let len = match rng.below(100) {
                            0 => 40_000 + rng.below(200_000) as usize,
                            1..=9 => 1024 + rng.below(30_000) as usize,
                            _ => 1 + rng.below(1024) as usize,
                        };
                        live.push((i, fill(i, len)));
                    } else {
                        let (seed, v) = live.swap_remove(rng.below(live.len() as u64) as usize);
                        assert!(check(&v, seed), "thread {t}: object corrupted");
                    }
                }
                for (seed, v) in &live {
                    assert!(check(v, *seed));
                }
                live.len()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() >= 500);
    }
}

#[test]
fn objects_freed_on_other_threads() {
    let threads = 6;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| mpsc::channel::<(u64, Vec<u8>)>())
        .unzip();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % threads].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(0xdead_beef + t as u64);
                barrier.wait();
                let mut received = 0;
                for i in 0..10_000u64 {
                    let len = 1 + rng.below(2000) as usize;
                    // The receiver frees it on its own thread (slot).
                    let _ = next.send((i, fill(i, len)));
                    while let Ok((seed, v)) = rx.try_recv() {
                        assert!(check(&v, seed), "cross-thread object corrupted");
                        received += 1;
                    }
                }
                drop(next);
                received
            })
        })
        .collect();
    drop(txs);
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
}

#[test]
fn threads_created_and_exiting_in_churn() {
    let shared = Arc::new(Mutex::new(HashMap::<usize, Vec<u8>>::new()));
    for round in 0..40 {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mine: Vec<Box<[u64]>> = (0..200)
                        .map(|i| vec![i as u64; 1 + i % 50].into_boxed_slice())
                        .collect();
                    black_box(&mine);
                    // Leave something behind for another thread to free later.
                    let key = round * 8 + t;
                    shared.lock().unwrap().insert(key, vec![t as u8; 100 + key]);
                    if key >= 8 {
                        shared.lock().unwrap().remove(&(key - 8));
                    }
                    format!("{round}/{t}")
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap().contains('/'));
        }
    }
    let m = shared.lock().unwrap();
    assert_eq!(m.len(), 8);
    assert!(m.iter().all(|(k, v)| v.len() == 100 + k));
}

#[test]
fn scoped_threads_panicking_inside() {
    let r = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let v = vec![t; 10_000];
                    if t % 2 == 1 {
                        panic!("thread {t} gives up with {} items", v.len());
                    }
                    v.len()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().is_ok()).collect::<Vec<_>>()
    });
    assert_eq!(r, vec![true, false, true, false]);
}

#[test]
fn huge_blocks_are_mapped_and_unmapped_directly() {
    let before = GLOBAL.stats();
    let sizes = [9usize << 20, 20 << 20, 100 << 20];
    let blocks: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![7u8; n]).collect();
    let during = GLOBAL.stats();
    assert!(during.direct_runs >= 3, "{during:?}");
    for b in &blocks {
        assert!(b.iter().step_by(4096).all(|&x| x == 7));
    }
    drop(blocks);
    let after = GLOBAL.stats();
    let total: usize = sizes.iter().sum();
    assert!(
        after.released_bytes - before.released_bytes >= total,
        "unmapped on free: {before:?} {after:?}"
    );
    // A zeroed huge block comes straight from fresh mappings.
    let z = black_box(vec![0u64; 50 << 17]);
    assert!(z.iter().step_by(512).all(|&x| x == 0));
}

#[test]
fn realloc_of_huge_blocks_across_the_direct_threshold() {
    let l = |n| Layout::from_size_align(n, 4096).unwrap();
    // SAFETY: valid layouts; each realloc passes the block's current layout.
    unsafe {
        let mut size = 6 << 20;
        let mut p = GLOBAL.alloc(l(size));
        assert!(!p.is_null());
        for i in (0..size).step_by(1000) {
            *p.add(i) = (i / 1000) as u8;
        }
        for new in [12 << 20, 7 << 20, 30 << 20, 2 << 20] {
            p = GLOBAL.realloc(p, l(size), new);
            assert!(!p.is_null());
            assert_eq!(p as usize % 4096, 0);
            for i in (0..size.min(new)).step_by(1000) {
                assert_eq!(*p.add(i), (i / 1000) as u8, "after realloc to {new}");
            }
            for i in (size.min(new).next_multiple_of(1000)..new).step_by(1000) {
                *p.add(i) = (i / 1000) as u8;
            }
            size = new;
        }
        GLOBAL.dealloc(p, l(size));
    }
}

#[test]
fn idle_memory_is_given_back() {
    // 256 MiB of 256 KiB blocks (page spans below the direct threshold), then free them:
    // more than the 32 MiB idle limit sits free, so the heap discards (madvise) the excess.
    let before = GLOBAL.stats();
    let blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8; 256 << 10]).collect();
    black_box(&blocks);
    drop(blocks);
    let after = GLOBAL.stats();
    assert!(
        after.discarded_bytes - before.discarded_bytes >= 128 << 20,
        "discarded past the idle limit: {after:?}"
    );
    assert!(after.discards > before.discards);
    // What is left idle can be given back on request.
    GLOBAL.drain_all_cpus();
    let released = GLOBAL.release_idle_pages();
    let now = GLOBAL.stats();
    assert!(now.discarded_bytes - after.discarded_bytes >= released);
    assert!(now.page_heap_idle_bytes <= now.page_heap_free_bytes);
}
