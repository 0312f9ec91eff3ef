//! Growing one buffer 4 KiB at a time (`StdHeap`): past the direct-mapping threshold the
//! buffer's run is resized with `mremap`, never copied byte by byte, so the number of moves
//! that copy stays small (it used to be one per step: 32 MiB took 1.8 s, 64 MiB did not
//! finish). Deterministic, so a test; the time is in `cargo xtask bench --global`
//! (realloc-grow).
#![cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::{GlobalAlloc, Layout};

use cpuheap::StdHeap;

/// Grow from 4 KiB to `top` by 4 KiB reallocs; write the first and last byte of each step
/// (or every byte when `fill`) and check they survived. (`mremap` may move the run without
/// copying, so the copies are counted by the heap, not by comparing pointers.)
fn grow(heap: &StdHeap, top: usize, fill: bool) {
    const STEP: usize = 4096;
    let mut layout = Layout::from_size_align(STEP, 16).unwrap();
    // SAFETY: a non-zero size.
    let mut p = unsafe { heap.alloc(layout) };
    assert!(!p.is_null());
    let mut size = STEP;
    // SAFETY: `p` holds `size` bytes throughout; each realloc keeps the first `size`.
    unsafe {
        p.write(1);
        p.add(STEP - 1).write(1);
        while size < top {
            let q = heap.realloc(p, layout, size + STEP);
            assert!(!q.is_null(), "realloc to {} failed", size + STEP);
            assert_eq!(q.read(), 1, "first byte kept at {size}");
            assert_eq!(
                q.add(size - 1).read(),
                (size / STEP) as u8,
                "last byte kept at {size}"
            );
            p = q;
            layout = Layout::from_size_align(size + STEP, 16).unwrap();
            if fill {
                p.add(size).write_bytes(7, STEP - 1);
            }
            size += STEP;
            p.add(size - 1).write((size / STEP) as u8);
        }
        heap.dealloc(p, layout);
    }
}

/// Reallocs that had to copy: all but those done in place or by remapping the run.
fn copies(heap: &StdHeap) -> usize {
    let s = heap.stats();
    s.reallocs - s.reallocs_in_place
}

#[test]
fn growing_to_64_mib_copies_a_few_times() {
    let heap: &'static StdHeap = Box::leak(Box::new(StdHeap::new()));
    grow(heap, 64 << 20, true);
    let copies = copies(heap);
    eprintln!("copying moves: {copies}");
    assert!(copies <= 40, "{copies} copying moves for 16383 reallocs");
    heap.check_invariants().unwrap();
}

#[test]
fn growing_to_1_gib_copies_a_few_times() {
    let heap: &'static StdHeap = Box::leak(Box::new(StdHeap::new()));
    grow(heap, 1 << 30, false);
    let copies = copies(heap);
    eprintln!("copying moves: {copies}");
    assert!(copies <= 40, "{copies} copying moves for 262143 reallocs");
    assert_eq!(heap.stats().direct_runs, 0, "the direct run went back");
}
