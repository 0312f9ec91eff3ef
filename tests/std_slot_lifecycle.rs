//! Thread-owned CPU slots over a thread's life (`ThreadSlot`, the platform of `StdHeap`):
//! indices are claimed on a thread's first allocation and given back when it exits, so many
//! more threads than slots can come and go without any two live threads sharing a slot, and
//! a dead thread's cached objects go back to the central cache. Its own process: the thread
//! indices are process-wide.
#![cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::{GlobalAlloc, Layout};

use cpuheap::{StdHeap, STD_CPU_SLOTS};

#[test]
fn threads_own_slots_for_life_and_leave_their_cache_behind_for_the_heap() {
    let heap: &'static StdHeap = Box::leak(Box::new(StdHeap::new()));
    // This thread claims its index first, so that it does not inherit a dead thread's slot
    // below.
    let first = Layout::from_size_align(2048, 8).unwrap();
    // SAFETY: a non-zero size; freed at once.
    unsafe { heap.dealloc(heap.alloc(first), first) };
    let waves = 50;
    let per_wave = 4;
    assert!(
        waves * per_wave > 3 * STD_CPU_SLOTS,
        "more threads than slots over the run"
    );
    for wave in 0..waves {
        let threads: Vec<_> = (0..per_wave)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut rng = cpuheap_testkit::Rng::new((wave * per_wave + t) as u64);
                    let mut live = Vec::new();
                    for _ in 0..2000 {
                        if live.len() < 64 && rng.below(3) != 0 {
                            let l =
                                Layout::from_size_align(8 + rng.below(1017) as usize, 8).unwrap();
                            // SAFETY: a non-zero size.
                            let p = unsafe { heap.alloc(l) };
                            assert!(!p.is_null());
                            live.push((p, l));
                        } else if let Some((p, l)) = live.pop() {
                            // SAFETY: allocated above with `l`, freed once.
                            unsafe { heap.dealloc(p, l) };
                        }
                    }
                    for (p, l) in live {
                        // SAFETY: as above.
                        unsafe { heap.dealloc(p, l) };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    let before = heap.stats();
    assert_eq!(
        before.slot_fallbacks, 0,
        "with fewer live threads than slots no thread found its slot taken"
    );
    assert!(
        before.cpu_cache_bytes > 0,
        "the last thread to exit left objects in its slot"
    );
    // A refill on this thread (its first of this class) drains the slots of exited threads.
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: a non-zero size.
    let p = unsafe { heap.alloc(l) };
    let after = heap.stats();
    assert!(
        after.cpu_cache_bytes <= 4096 + 2048,
        "dead threads' caches are back in the central cache: {} -> {} bytes cached",
        before.cpu_cache_bytes,
        after.cpu_cache_bytes
    );
    assert_eq!(after.in_use_bytes, 24);
    // SAFETY: allocated just above.
    unsafe { heap.dealloc(p, l) };
    heap.check_invariants().unwrap();
}
