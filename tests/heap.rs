//! Integration tests on heap instances over buffers.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use cpuheap::{Config, Heap, SingleCpu, StaticRegion};

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Allocate random sizes until the heap says no; check every pointer; free all; repeat and
/// get at least as far.
fn exhaust(config: Config, bytes: usize, max_size: usize, seed: u64) {
    let (h, lo, hi) = heap_with_region::<1>(bytes, config);
    let mut first_round = 0;
    for round in 0..3 {
        let mut rng = Rng::new(seed);
        let mut live: BTreeMap<usize, (usize, Layout)> = BTreeMap::new();
        loop {
            let size = 1 + rng.below(max_size as u64) as usize;
            let align = 1 << rng.below(7);
            let l = layout(size, align);
            let p = unsafe { h.alloc(l) };
            if p.is_null() {
                break;
            }
            let a = p as usize;
            assert!(a >= lo && a + size <= hi, "pointer outside the region");
            assert_eq!(a % align, 0, "misaligned");
            if let Some((&prev, &(plen, _))) = live.range(..=a).next_back() {
                assert!(prev + plen <= a, "overlaps the previous allocation");
            }
            if let Some((&next, _)) = live.range(a..).next() {
                assert!(a + size <= next, "overlaps the next allocation");
            }
            unsafe { fill(p, size, a as u64) };
            live.insert(a, (size, l));
        }
        assert!(!live.is_empty());
        h.check_invariants().unwrap();
        if round == 0 {
            first_round = live.len();
        } else {
            // The same sequence gets exactly as far: nothing was lost.
            assert_eq!(
                live.len(),
                first_round,
                "round {round} got a different count"
            );
        }
        for (&a, &(size, l)) in &live {
            assert!(
                unsafe { verify(a as *const u8, size, a as u64) },
                "corrupted"
            );
            unsafe { h.dealloc(a as *mut u8, l) };
        }
        h.check_invariants().unwrap();
        let s = h.stats();
        assert_eq!(s.in_use_bytes, 0);
        assert!(s.failed_allocs > 0);
        assert!(s.drains > 0, "the heap drains caches before giving up");
        h.drain_all_cpus();
        let s = h.stats();
        assert_eq!(s.span_bytes, 0, "every span went back to the page heap");
        assert_eq!(
            s.cpu_cache_bytes + s.central_cache_bytes + s.transfer_cache_bytes,
            0
        );
    }
}

#[test]
fn exhaustion_small_firmware_heap() {
    exhaust(Config::small(), 32 * 1024, 300, 1);
}

#[test]
fn exhaustion_mixed_sizes() {
    exhaust(Config::new(), 4 << 20, 40_000, 2);
}

#[test]
fn exhaustion_tiny_objects() {
    exhaust(Config::new().with_page_size(1024), 256 * 1024, 64, 3);
}

#[test]
fn every_alignment_up_to_64k() {
    let h = heap::<1>(8 << 20, Config::new());
    let mut ptrs = vec![];
    for shift in 0..=16 {
        let align = 1usize << shift;
        for size in [0, 1, align / 2, align, align + 1, 3 * align] {
            let l = layout(size, align);
            let p = unsafe { h.alloc(l) };
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            unsafe { fill(p, size, 7) };
            ptrs.push((p, l));
        }
    }
    h.check_invariants().unwrap();
    for (p, l) in ptrs {
        assert!(unsafe { verify(p, l.size(), 7) });
        unsafe { h.dealloc(p, l) };
    }
    h.check_invariants().unwrap();
    assert_eq!(h.stats().in_use_bytes, 0);
}

#[test]
fn small_pages_serve_large_alignments_as_aligned_spans() {
    let h = heap::<1>(256 * 1024, Config::small());
    for shift in 0..=14 {
        let l = layout(24, 1 << shift);
        let p = unsafe { h.alloc(l) };
        assert!(!p.is_null());
        assert_eq!(p as usize % (1 << shift), 0);
        unsafe { h.dealloc(p, l) };
    }
    h.check_invariants().unwrap();
}

#[test]
fn zero_size_gives_unique_pointers() {
    let h = heap::<1>(64 * 1024, Config::small());
    let l = layout(0, 1);
    let a = unsafe { h.alloc(l) };
    let b = unsafe { h.alloc(l) };
    assert!(!a.is_null() && !b.is_null());
    assert_ne!(a, b);
    unsafe {
        h.dealloc(a, l);
        h.dealloc(b, l);
    }
    h.check_invariants().unwrap();
}

#[test]
fn impossible_requests_return_null() {
    let h = heap::<1>(64 * 1024, Config::small());
    // Larger than the region, and sizes whose page rounding overflows.
    for size in [1 << 20, isize::MAX as usize - 10, isize::MAX as usize] {
        let l = layout(size, 1);
        assert!(unsafe { h.alloc(l) }.is_null(), "size {size}");
    }
    // Alignment larger than any region can satisfy.
    let l = layout(8, 1 << 30);
    assert!(unsafe { h.alloc(l) }.is_null());
    // The heap is still usable.
    let l = layout(100, 8);
    let p = unsafe { h.alloc(l) };
    assert!(!p.is_null());
    unsafe { h.dealloc(p, l) };
    h.check_invariants().unwrap();
    // realloc to an overflowing size is null and leaves the object alone.
    let p = unsafe { h.alloc(l) };
    unsafe { fill(p, 100, 1) };
    assert!(unsafe { h.realloc(p, l, isize::MAX as usize) }.is_null());
    assert!(unsafe { verify(p, 100, 1) });
    unsafe { h.dealloc(p, l) };
}

#[test]
fn realloc_grows_and_shrinks_preserving_contents() {
    let h = heap::<1>(16 << 20, Config::new());
    let sizes = [
        1usize,
        8,
        9,
        100,
        1000,
        4000,
        5000,
        33_000,
        100_000,
        1 << 20,
        50_000,
        3000,
        16,
        1,
    ];
    let mut l = layout(sizes[0], 8);
    let mut p = unsafe { h.alloc(l) };
    unsafe { fill(p, l.size(), 42) };
    for &new in &sizes[1..] {
        let q = unsafe { h.realloc(p, l, new) };
        assert!(!q.is_null());
        let kept = l.size().min(new);
        assert!(unsafe { verify(q, kept, 42) }, "{} -> {new}", l.size());
        l = layout(new, 8);
        unsafe { fill(q, new, 42) };
        p = q;
        h.check_invariants().unwrap();
    }
    unsafe { h.dealloc(p, l) };
    let s = h.stats();
    assert_eq!(s.reallocs, sizes.len() - 1);
    assert_eq!(s.in_use_bytes, 0);
    h.check_invariants().unwrap();
}

#[test]
fn realloc_moves_between_classes_through_the_slot() {
    let h = heap::<1>(16 << 20, Config::new());
    let (a, b) = (layout(100, 8), layout(1000, 8));
    unsafe {
        // Class b's list holds `warm` on top.
        let warm = h.alloc(b);
        h.dealloc(warm, b);
        let p = h.alloc(a);
        fill(p, 100, 9);
        let q = h.realloc(p, a, 1000);
        assert_eq!(q, warm, "the move takes the new class's cached object");
        assert!(verify(q, 100, 9));
        // The old block went onto its own class's list in the slot.
        assert_eq!(h.alloc(a), p);
        // A class nobody used yet: its list is refilled for the move.
        let refills = h.stats().refills;
        let r = h.realloc(q, b, 1500);
        assert!(!r.is_null());
        assert!(verify(r, 100, 9));
        assert_eq!(h.stats().refills, refills + 1);
        assert_eq!(h.alloc(b), q);
        h.dealloc(q, b);
        h.dealloc(p, a);
        h.dealloc(r, layout(1500, 8));
    }
    let s = h.stats();
    assert_eq!((s.reallocs, s.reallocs_in_place, s.in_use_bytes), (2, 0, 0));
    h.check_invariants().unwrap();
}

#[test]
fn realloc_stays_in_place_within_a_class_and_for_spans() {
    let h = heap::<1>(16 << 20, Config::new());
    unsafe {
        let l = layout(100, 8);
        let p = h.alloc(l);
        // 100 and 104 share the 104-byte class.
        assert_eq!(h.realloc(p, l, 104), p);
        let l = layout(104, 8);
        // A large span shrinks in place and grows back into the pages it freed.
        let q = h.realloc(p, l, 200_000);
        let l = layout(200_000, 8);
        assert_eq!(h.realloc(q, l, 100_000), q);
        let l = layout(100_000, 8);
        assert_eq!(h.realloc(q, l, 190_000), q);
        let l = layout(190_000, 8);
        h.dealloc(q, l);
        assert!(h.stats().reallocs_in_place >= 3);
    }
    h.check_invariants().unwrap();
}

#[test]
fn realloc_shrinks_in_place_down_to_half_the_object() {
    let h = heap::<1>(16 << 20, Config::new());
    let object = cpuheap::size_class::class_size(cpuheap::size_class::class_of_size(1000));
    unsafe {
        let l = layout(1000, 8);
        let p = h.alloc(l);
        fill(p, 1000, 7);
        let before = h.stats().reallocs_in_place;
        // Still at least half of the object: the same block (a copy in `checked` builds,
        // which keep the class exact so that a free with a wrong size is still caught).
        let half = object / 2;
        let q = h.realloc(p, l, half);
        assert!(verify(q, half, 7));
        let in_place = h.stats().reallocs_in_place - before;
        if cfg!(feature = "checked") {
            assert_eq!(in_place, 0);
        } else {
            assert_eq!(q, p, "{object} B object shrunk to {half} B moved");
            assert_eq!(in_place, 1);
        }
        // The in-use bytes count the block's whole object; a free names the new size.
        assert_eq!(h.stats().in_use_bytes, h.usable_size(q).unwrap());
        let l = layout(half, 8);
        // Below half: the block moves to a smaller class.
        let r = h.realloc(q, l, half / 2 - 8);
        assert_ne!(r, q, "shrunk below half, it should move");
        assert!(verify(r, half / 2 - 8, 7));
        h.dealloc(r, layout(half / 2 - 8, 8));
    }
    assert_eq!(h.stats().in_use_bytes, 0);
    h.check_invariants().unwrap();
}

#[test]
fn random_operations_keep_their_patterns() {
    for (config, bytes, max) in [
        (Config::small(), 64 * 1024, 3000usize),
        (Config::new(), 8 << 20, 70_000),
    ] {
        let h = heap::<4>(bytes, config);
        let mut rng = Rng::new(99);
        let mut live: Vec<(*mut u8, Layout, u64)> = vec![];
        for i in 0..20_000u64 {
            set_cpu(rng.below(4) as usize);
            match rng.below(10) {
                0..=4 => {
                    let size = rng.below(max as u64) as usize;
                    let l = layout(size, 1 << rng.below(8));
                    let p = unsafe { h.alloc(l) };
                    if !p.is_null() {
                        unsafe { fill(p, size, i) };
                        live.push((p, l, i));
                    }
                }
                5..=7 if !live.is_empty() => {
                    let (p, l, seed) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    assert!(unsafe { verify(p, l.size(), seed) });
                    unsafe { h.dealloc(p, l) };
                }
                8 if !live.is_empty() => {
                    let k = rng.below(live.len() as u64) as usize;
                    let (p, l, seed) = live[k];
                    let new = rng.below(max as u64) as usize;
                    let q = unsafe { h.realloc(p, l, new) };
                    if !q.is_null() {
                        assert!(unsafe { verify(q, l.size().min(new), seed) });
                        unsafe { fill(q, new, i) };
                        live[k] = (q, layout(new, l.align()), i);
                    }
                }
                _ => {
                    h.drain_cpu(rng.below(4) as usize);
                }
            }
            if i % 2000 == 0 {
                h.check_invariants().unwrap();
            }
        }
        for (p, l, seed) in live {
            assert!(unsafe { verify(p, l.size(), seed) });
            unsafe { h.dealloc(p, l) };
        }
        h.check_invariants().unwrap();
        assert_eq!(h.stats().in_use_bytes, 0);
    }
}

#[test]
fn several_discontiguous_regions() {
    let h: &TestHeap<1> = Box::leak(Box::new(Heap::new(
        StaticRegion::new(),
        TestCpu,
        Config::small(),
    )));
    let regions: Vec<(usize, usize)> = (0..3)
        .map(|_| {
            let r = region(8 * 1024);
            let s = r.as_ptr() as usize;
            assert!(h.add_region(r));
            (s, s + 8 * 1024)
        })
        .collect();
    let l = layout(64, 8);
    let mut ptrs = vec![];
    loop {
        let p = unsafe { h.alloc(l) };
        if p.is_null() {
            break;
        }
        ptrs.push(p as usize);
    }
    for (s, e) in &regions {
        assert!(ptrs.iter().any(|p| p >= s && p < e), "every region is used");
    }
    assert!(
        ptrs.len() * 64 > 3 * 8 * 1024 * 8 / 10,
        "at least 80% of 3 x 8 KiB used: {}",
        ptrs.len()
    );
    for p in ptrs {
        unsafe { h.dealloc(p as *mut u8, l) };
    }
    h.check_invariants().unwrap();
}

#[test]
fn statistics_follow_the_operations() {
    let h = heap::<1>(1 << 20, Config::new());
    let before = h.stats();
    assert_eq!(before, cpuheap::Stats::default());
    let a = unsafe { h.alloc(layout(100, 8)) }; // 104-byte class
                                                // Above the largest class (64 KiB, 32 KiB without `big-classes`): 25 pages.
    let b = unsafe { h.alloc(layout(100_000, 8)) };
    let s = h.stats();
    assert_eq!(s.allocs, 2);
    assert_eq!(s.in_use_bytes, 104 + 25 * 4096);
    assert_eq!(s.peak_in_use_bytes, s.in_use_bytes);
    assert_eq!(s.large_allocs, 1);
    assert_eq!(s.source_grows, 1);
    assert!(s.source_bytes >= 1 << 19);
    assert_eq!(
        s.span_bytes + s.page_heap_free_bytes + s.metadata_bytes,
        s.source_bytes,
        "every byte from the source is in a span, free, or metadata: {s:?}"
    );
    unsafe { h.dealloc(b, layout(100_000, 8)) };
    let s = h.stats();
    assert_eq!(s.in_use_bytes, 104);
    assert_eq!(s.peak_in_use_bytes, 104 + 25 * 4096);
    assert_eq!(s.frees, 1);
    unsafe { h.dealloc(a, layout(100, 8)) };
    let s = h.stats();
    assert_eq!(s.in_use_bytes, 0);
    assert_eq!(s.cpu_cache_bytes, 104, "the object waits in the CPU cache");
    h.drain_all_cpus();
    let s = h.stats();
    assert_eq!(
        (
            s.cpu_cache_bytes,
            s.central_cache_bytes,
            s.transfer_cache_bytes,
            s.span_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.spans_allocated, s.spans_freed);
}

#[test]
fn cached_memory_never_causes_a_false_oom() {
    // Fill the heap with 64-byte objects, free them all into the caches, then ask for a
    // large block: the heap must drain caches and central spans to serve it.
    let h = heap::<2>(256 * 1024, Config::new().with_cpu_cache_bytes(1 << 20));
    let l = layout(64, 8);
    // Use about three quarters of the heap, then free everything: the objects park in the
    // CPU slots (whose lists grew while allocating) and in central spans.
    let ptrs: Vec<*mut u8> = (0..3000).map(|_| unsafe { h.alloc(l) }).collect();
    assert!(ptrs.iter().all(|p| !p.is_null()));
    set_cpu(1);
    for &p in &ptrs[..64] {
        unsafe { h.dealloc(p, l) };
    }
    set_cpu(0);
    for &p in &ptrs[64..] {
        unsafe { h.dealloc(p, l) };
    }
    assert_eq!(h.stats().drains, 0);
    assert!(h.stats().cpu_cache_bytes > 0, "{:?}", h.stats());
    let big = layout(128 * 1024, 8);
    let p = unsafe { h.alloc(big) };
    assert!(!p.is_null(), "memory parked in caches must be reclaimed");
    assert_eq!(h.stats().drains, 1);
    unsafe { h.dealloc(p, big) };
    h.check_invariants().unwrap();
}

#[test]
#[cfg(feature = "transfer-cache")]
fn objects_freed_on_another_cpu_pass_through_the_transfer_cache() {
    // Small slot budgets so that lists flush whole batches often.
    let h = heap::<2>(256 * 1024, Config::new().with_cpu_cache_bytes(4096));
    let l = layout(64, 8);
    set_cpu(0);
    let ptrs: Vec<*mut u8> = (0..1024).map(|_| unsafe { h.alloc(l) }).collect();
    assert!(ptrs.iter().all(|p| !p.is_null()));
    // CPU 1 frees what CPU 0 allocated: its flushes park whole batches.
    set_cpu(1);
    for &p in &ptrs {
        unsafe { h.dealloc(p, l) };
    }
    let s = h.stats();
    assert!(s.transfer_cache_bytes > 0, "{s:?}");
    assert_eq!(
        s.transfer_cache_bytes % (32 * 64),
        0,
        "whole batches of 32: {s:?}"
    );
    h.check_invariants().unwrap();
    // CPU 0 allocates again: whole batches come back from the transfer cache, no new span.
    set_cpu(0);
    let spans = s.spans_allocated;
    let again: Vec<*mut u8> = (0..512).map(|_| unsafe { h.alloc(l) }).collect();
    let s2 = h.stats();
    assert!(s2.transfer_cache_bytes < s.transfer_cache_bytes, "{s2:?}");
    assert_eq!(s2.spans_allocated, spans, "served without carving: {s2:?}");
    h.check_invariants().unwrap();
    for &p in &again {
        unsafe { h.dealloc(p, l) };
    }
    // With everything parked (slots, transfer caches, span reserve), the whole heap is still
    // there for one large block.
    let big = layout(200 * 1024, 8);
    let p = unsafe { h.alloc(big) };
    assert!(
        !p.is_null(),
        "memory parked in the central tier must be reclaimed"
    );
    assert_eq!(h.stats().transfer_cache_bytes, 0);
    unsafe { h.dealloc(p, big) };
    h.check_invariants().unwrap();
}

#[test]
fn foreign_pointer_reaches_the_fatal_hook() {
    let h = heap::<1>(64 * 1024, Config::small());
    let mut outside = [0u64; 4];
    let r = catch_unwind(AssertUnwindSafe(|| unsafe {
        h.dealloc(outside.as_mut_ptr().cast(), layout(8, 8))
    }));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("not allocated by this heap"), "{msg}");
    assert!(
        msg.contains(&format!("{:#x}", outside.as_ptr() as usize)),
        "{msg}"
    );
}

#[test]
fn freeing_a_freed_page_span_twice_is_a_double_free() {
    let h = heap::<1>(1 << 20, Config::new());
    let l = layout(100_000, 8);
    let p = unsafe { h.alloc(l) };
    unsafe { h.dealloc(p, l) };
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { h.dealloc(p, l) }));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("double free"), "{msg}");
    h.check_invariants().unwrap();
}

#[test]
fn interior_pointer_of_a_page_span_is_detected() {
    let h = heap::<1>(1 << 20, Config::new());
    let l = layout(100_000, 8);
    let p = unsafe { h.alloc(l) };
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { h.dealloc(p.add(8192), l) }));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("interior pointer"), "{msg}");
    unsafe { h.dealloc(p, l) };
    h.check_invariants().unwrap();
}

#[cfg(feature = "checked")]
mod checked {
    use super::*;

    fn fault_of(f: impl FnOnce()) -> String {
        *catch_unwind(AssertUnwindSafe(f))
            .unwrap_err()
            .downcast::<String>()
            .unwrap()
    }

    #[test]
    fn double_free_of_a_small_object() {
        let h = heap::<1>(64 * 1024, Config::small());
        let l = layout(24, 8);
        let p = unsafe { h.alloc(l) };
        unsafe { h.dealloc(p, l) };
        let msg = fault_of(|| unsafe { h.dealloc(p, l) });
        assert!(
            msg.contains("double free") && msg.contains(&format!("{:#x}", p as usize)),
            "{msg}"
        );
        h.check_invariants().unwrap();
    }

    #[test]
    fn interior_pointer_of_a_small_object() {
        let h = heap::<1>(64 * 1024, Config::small());
        let l = layout(64, 8);
        let p = unsafe { h.alloc(l) };
        let msg = fault_of(|| unsafe { h.dealloc(p.add(8), l) });
        assert!(msg.contains("interior pointer"), "{msg}");
        unsafe { h.dealloc(p, l) };
    }

    #[test]
    fn size_class_mismatch() {
        let h = heap::<1>(64 * 1024, Config::small());
        let p = unsafe { h.alloc(layout(24, 8)) };
        let msg = fault_of(|| unsafe { h.dealloc(p, layout(500, 8)) });
        assert!(
            msg.contains("size class mismatch") && msg.contains("layout size 500"),
            "{msg}"
        );
        unsafe { h.dealloc(p, layout(24, 8)) };
        h.check_invariants().unwrap();
    }

    #[test]
    fn never_allocated_pointer_inside_the_region() {
        let (h, lo, _) = heap_with_region::<1>(64 * 1024, Config::small());
        // Make the heap take its region, then free an address that was never handed out.
        let l = layout(8, 8);
        let p = unsafe { h.alloc(l) };
        let never = (p as usize + 4096).max(lo);
        let msg = fault_of(|| unsafe { h.dealloc(never as *mut u8, l) });
        assert!(
            msg.contains("not allocated by this heap") || msg.contains("double free"),
            "{msg}"
        );
        unsafe { h.dealloc(p, l) };
    }
}

/// A heap in a `static`, built by `const fn`.
static STATIC_HEAP: Heap<StaticRegion<1>> =
    Heap::new(StaticRegion::new(), SingleCpu::new(), Config::small());

#[test]
fn heap_in_a_static() {
    assert!(STATIC_HEAP.add_region(region(32 * 1024)));
    let v: Vec<*mut u8> = (0..100)
        .map(|i| unsafe { STATIC_HEAP.alloc(layout(i + 1, 8)) })
        .collect();
    assert!(v.iter().all(|p| !p.is_null()));
    for (i, p) in v.into_iter().enumerate() {
        unsafe { STATIC_HEAP.dealloc(p, layout(i + 1, 8)) };
    }
    STATIC_HEAP.check_invariants().unwrap();
}

#[test]
fn allocator_api2_collections() {
    use allocator_api2::vec::Vec as AVec;
    let h = heap::<1>(1 << 20, Config::new());
    let mut v: AVec<u64, _> = AVec::new_in(h);
    for i in 0..10_000 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 10_000 * 9_999 / 2);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.len(), 10);
    drop(v);
    h.check_invariants().unwrap();
    assert_eq!(h.stats().in_use_bytes, 0);
}
