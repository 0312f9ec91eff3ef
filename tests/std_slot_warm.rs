//! A dead thread's slot keeps its list limits when its cache is drained, so the next thread
//! to own the slot refills whole batches from its first allocation on instead of starting
//! every class from one object. Its own process: the thread indices are process-wide, and a
//! test running beside it could take the index the dead thread gave back.
#![cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::{GlobalAlloc, Layout};

use cpuheap::StdHeap;

const N: usize = 256;

/// Allocate `N` objects of `l` and free them all.
fn churn(heap: &StdHeap, l: Layout) {
    // SAFETY: a non-zero size; each pointer is freed once below.
    let v: Vec<_> = (0..N).map(|_| unsafe { heap.alloc(l) }).collect();
    assert!(v.iter().all(|p| !p.is_null()));
    for p in v {
        // SAFETY: allocated above with `l`.
        unsafe { heap.dealloc(p, l) };
    }
}

/// Refills a new thread makes to allocate `N` objects of `l` (and free them).
fn refills_of_a_new_thread(heap: &'static StdHeap, l: Layout) -> usize {
    std::thread::spawn(move || {
        let before = heap.stats().refills;
        churn(heap, l);
        heap.stats().refills - before
    })
    .join()
    .unwrap()
}

#[test]
fn a_new_thread_inherits_the_limits_of_the_dead_thread_whose_slot_it_takes() {
    let warm: &'static StdHeap = Box::leak(Box::new(StdHeap::new()));
    let cold: &'static StdHeap = Box::leak(Box::new(StdHeap::new()));
    let obj = Layout::from_size_align(64, 8).unwrap();
    let other = Layout::from_size_align(24, 8).unwrap();
    // This thread claims its index first, so the spawned threads below take the next one,
    // one after the other.
    // SAFETY: a non-zero size; freed at once.
    unsafe { warm.dealloc(warm.alloc(other), other) };

    // A thread that churns one class and exits; a refill on this thread then drains its slot.
    std::thread::spawn(move || churn(warm, obj)).join().unwrap();
    // SAFETY: a non-zero size; freed at once.
    unsafe { warm.dealloc(warm.alloc(obj), obj) };
    let drained = warm.stats();
    assert!(
        drained.cpu_cache_bytes <= 64 + 24 + 4096,
        "the dead thread's objects went back: {} bytes still cached",
        drained.cpu_cache_bytes
    );

    let inherited = refills_of_a_new_thread(warm, obj);
    let fresh = refills_of_a_new_thread(cold, obj);
    assert!(
        2 * inherited < fresh,
        "a thread in a used slot refills in whole batches ({inherited} refills), a slot that \
         was never used starts slowly ({fresh} refills)"
    );
    warm.check_invariants().unwrap();
    cold.check_invariants().unwrap();
}
