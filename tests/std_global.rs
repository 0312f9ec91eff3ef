//! This whole test binary runs with `StdHeap` as its global allocator: the test harness, std's
//! collections, formatting, panics and threads all allocate from it.
#![cfg(all(feature = "std", target_os = "linux"))]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hint::black_box;

use cpuheap::StdHeap;

#[global_allocator]
static GLOBAL: StdHeap = StdHeap::new();

/// Whether `p` is memory of the global heap.
fn ours(p: *const u8) -> bool {
    GLOBAL.usable_size(p).is_some()
}

#[test]
fn collections_live_in_the_heap() {
    let v: Vec<u64> = (0..10_000).collect();
    assert!(ours(v.as_ptr().cast()));
    assert_eq!(v.iter().sum::<u64>(), 49_995_000);

    let mut s = String::new();
    for i in 0..2_000 {
        s.push_str(&i.to_string());
    }
    assert!(ours(s.as_ptr()));
    assert_eq!(s.len(), 6_890);

    let mut m = HashMap::new();
    for i in 0..50_000u32 {
        m.insert(i, format!("v{i}"));
    }
    assert_eq!(m[&4_242], "v4242");
    for i in (0..50_000u32).step_by(2) {
        m.remove(&i);
    }
    assert_eq!(m.len(), 25_000);

    let mut b = BTreeMap::new();
    for i in 0..20_000u64 {
        b.insert(
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            vec![i as u8; (i % 100) as usize],
        );
    }
    assert_eq!(b.len(), 20_000);
    assert!(b.values().all(|v| v.len() < 100));

    let mut d: VecDeque<Box<[u8]>> = VecDeque::new();
    for i in 0..5_000usize {
        d.push_back(vec![i as u8; i % 3000].into_boxed_slice());
        if d.len() > 100 {
            d.pop_front();
        }
    }
    let set: HashSet<String> = (0..1000).map(|i| format!("{i:05}")).collect();
    assert!(set.contains("00999"));
    // Other tests run concurrently in this binary: a check that finds a slot in use, or an
    // operation half-way through its statistics, is retried.
    let mut last = Ok(());
    for _ in 0..200 {
        last = GLOBAL.check_invariants();
        if last.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    last.expect("invariants");
}

#[test]
fn every_size_and_alignment_round_trips() {
    let mut live = vec![];
    for align_shift in 0..13 {
        let align = 1usize << align_shift;
        for size in [
            0usize, 1, 7, 8, 24, 100, 1000, 4095, 4096, 5000, 40_000, 300_000,
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid layout; freed below with the same layout.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            // SAFETY: `p` holds `size` bytes.
            unsafe { p.write_bytes(0x5A, size) };
            live.push((p, l));
        }
    }
    for (p, l) in live {
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
}

#[test]
fn alloc_zeroed_is_zero_even_on_reused_memory() {
    for round in 0..4 {
        for size in [16usize, 3000, 64 << 10, 9 << 20] {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: valid layout; freed below.
            unsafe {
                let p = GLOBAL.alloc(l);
                p.write_bytes(0xFF, size);
                GLOBAL.dealloc(p, l);
                let z = GLOBAL.alloc_zeroed(l);
                let s = std::slice::from_raw_parts(z, size);
                assert!(s.iter().all(|&b| b == 0), "round {round} size {size}");
                GLOBAL.dealloc(z, l);
            }
        }
    }
    let v = black_box(vec![0u8; 64 << 20]);
    assert!(v.iter().step_by(4096).all(|&b| b == 0));
}

#[test]
fn realloc_of_small_and_large_blocks_keeps_contents() {
    let mut v: Vec<u32> = Vec::new();
    for i in 0..5_000_000u32 {
        v.push(i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).collect::<Vec<_>>());

    // Large blocks grown and shrunk through realloc, across the direct-mapping threshold.
    let l = Layout::from_size_align(100_000, 16).unwrap();
    // SAFETY: valid layouts; every realloc passes the current layout.
    unsafe {
        let mut p = GLOBAL.alloc(l);
        let mut size = l.size();
        for i in 0..size {
            *p.add(i) = (i % 251) as u8;
        }
        for new in [1 << 20, 20 << 20, 3 << 20, 40 << 20, 50_000, 200] {
            let q = GLOBAL.realloc(p, Layout::from_size_align(size, 16).unwrap(), new);
            assert!(!q.is_null());
            assert_eq!(q as usize % 16, 0);
            for i in (0..size.min(new)).step_by(97) {
                assert_eq!(
                    *q.add(i),
                    (i % 251) as u8,
                    "byte {i} after realloc to {new}"
                );
            }
            for i in size.min(new)..new {
                *q.add(i) = (i % 251) as u8;
            }
            p = q;
            size = new;
        }
        GLOBAL.dealloc(p, Layout::from_size_align(size, 16).unwrap());
    }
}

#[test]
fn out_of_memory_is_null_not_a_crash() {
    for size in [1usize << 62, isize::MAX as usize - 4096, 1 << 50] {
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a valid layout; a null result is what we expect.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(p.is_null(), "{size} bytes cannot be had");
    }
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(1 << 62).is_err());
    assert!(v.try_reserve(1000).is_ok());
}

#[test]
fn panics_unwind_through_user_code() {
    for i in 0..200 {
        let r = std::panic::catch_unwind(|| {
            let v = black_box(vec![i; 1000]);
            let s = black_box(format!("boom {i} {}", v.len()));
            if i % 2 == 0 {
                panic!("{s}");
            }
            s.len()
        });
        assert_eq!(r.is_err(), i % 2 == 0);
    }
    let t = std::thread::spawn(|| {
        let _keep = vec![1u8; 100_000];
        panic!("a thread that panics");
    });
    assert!(t.join().is_err());
}
