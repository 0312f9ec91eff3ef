//! A phase of frees (a program freeing a large structure) leaves a slot's list near a batch,
//! not at the limit an earlier phase of allocations grew: each object a list keeps pins its
//! span in the central cache, so a list that kept its limit pinned memory long after the
//! structure was gone (redis after FLUSHALL through `libcpuheap.so`: 12 MB cached, 141 MB of
//! spans held). Its own process, like the other thread-slot tests.
#![cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::{GlobalAlloc, Layout};

use cpuheap::StdHeap;

#[test]
fn a_phase_of_frees_shrinks_the_list_back_towards_a_batch() {
    let heap: &'static StdHeap = Box::leak(Box::new(StdHeap::new()));
    let obj = Layout::from_size_align(64, 8).unwrap();
    let alloc_n = move |n: usize| -> Vec<usize> {
        (0..n)
            .map(|_| {
                // SAFETY: a non-zero size; every pointer is freed below.
                let p = unsafe { heap.alloc(obj) };
                assert!(!p.is_null());
                p as usize
            })
            .collect()
    };
    let free_all = |v: Vec<usize>| {
        for p in v {
            // SAFETY: allocated above with `obj`, freed once.
            unsafe { heap.dealloc(p as *mut u8, obj) };
        }
    };
    // Allocations grow this thread's list limit for the class to about 2000 objects, and
    // freeing them fills the list to it.
    free_all(alloc_n(2000));
    let grown = heap.stats().cpu_cache_bytes;
    assert!(grown >= 1000 * 64, "the limit grew: {grown} bytes cached");

    // Another thread allocates 20 000 objects; this one frees them all: far more frees than
    // its list's limit.
    let theirs = std::thread::spawn(move || alloc_n(20_000)).join().unwrap();
    free_all(theirs);
    let after = heap.stats().cpu_cache_bytes;
    // Config::new()'s batch of 64-byte objects is 32 (16 KiB of batch bytes, at most 32).
    assert!(
        after <= 4 * 33 * 64,
        "after the phase of frees the slot still caches {after} bytes (it held {grown})"
    );
    assert!(heap.check_invariants().is_ok());
}
