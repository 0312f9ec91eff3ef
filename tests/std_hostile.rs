//! Hostile and huge requests against `StdHeap` (its own instance, not the global allocator):
//! impossible sizes fail at once without memory, huge sparse blocks cost memory for what is
//! touched only, and give it back when freed. Resident memory is `VmRSS` of
//! `/proc/self/status`; the tests of this file run one at a time so that they do not see
//! each other's memory.
#![cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::Layout;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cpuheap::{os_max_request, StdHeap};

static HEAP: StdHeap = StdHeap::new();
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Touch a byte so that its page is resident.
fn touch(p: *mut u8, off: usize) {
    // SAFETY: callers pass an offset inside a live allocation.
    unsafe { p.add(off).write_volatile(0xA5) };
}

#[test]
fn impossible_and_huge_requests_fail_fast_without_memory() {
    let _g = serial();
    // The heap's first use (root, arena) is not what is measured.
    let warm = HEAP.allocate(Layout::from_size_align(64 * MIB, 16).unwrap());
    assert!(!warm.is_null());
    let limit = os_max_request();
    let rss0 = rss();
    let t = Instant::now();
    let sizes = [
        1usize << 40,
        1 << 44,
        1 << 46,
        isize::MAX as usize + 1,
        usize::MAX - 4096,
    ];
    let mut refused = 0;
    for size in sizes {
        for align in [1usize, 16, 4096, 1 << 20, 1 << 40] {
            let Ok(layout) = Layout::from_size_align(size, align) else {
                continue; // a `Layout` above isize::MAX cannot even be asked for
            };
            for zeroed in [false, true] {
                let p = if zeroed {
                    HEAP.allocate_zeroed(layout)
                } else {
                    HEAP.allocate(layout)
                };
                if size + align > limit {
                    assert!(p.is_null(), "{size:#x} aligned {align:#x} above {limit:#x}");
                    refused += 1;
                } else if !p.is_null() {
                    // Within what the system could give (a huge machine): cheap anyway.
                    touch(p, 0);
                    // SAFETY: just allocated with `layout`.
                    unsafe { HEAP.deallocate(p, layout) };
                }
            }
        }
    }
    // A small object aligned to 2^40: the alignment slack alone is 1 TiB.
    let p = HEAP.allocate(Layout::from_size_align(100, 1 << 40).unwrap());
    if (1 << 40) > limit {
        assert!(p.is_null());
    }
    // Growing a live block to a huge size fails and leaves it alone.
    let l = Layout::from_size_align(64 * MIB, 16).unwrap();
    touch(warm, 64 * MIB - 1);
    for huge in [1usize << 44, 1 << 46] {
        // SAFETY: `warm` is live with layout `l`; `huge` is far below isize::MAX.
        let q = unsafe { HEAP.reallocate(warm, l, huge) };
        assert!(q.is_null(), "realloc to {huge:#x}");
        assert_eq!(HEAP.usable_size(warm), Some(64 * MIB));
    }
    let elapsed = t.elapsed();
    let grown = rss().saturating_sub(rss0);
    // SAFETY: live with layout `l`.
    unsafe { HEAP.deallocate(warm, l) };
    assert!(refused >= 20, "only {refused} requests refused");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(grown < 4 * MIB, "resident memory grew by {grown} bytes");
    println!(
        "{refused} impossible requests refused in {elapsed:?}, RSS +{} KiB (limit {} GiB)",
        grown >> 10,
        limit >> 30
    );
}

#[test]
fn many_sparse_huge_blocks_cost_what_is_touched_and_give_it_back() {
    let _g = serial();
    const N: usize = 200;
    const SIZE: usize = 1 << 30;
    let l = Layout::from_size_align(SIZE, 16).unwrap();
    let warm = HEAP.allocate(l);
    assert!(!warm.is_null());
    // SAFETY: just allocated with `l`.
    unsafe { HEAP.deallocate(warm, l) };
    let rss0 = rss();
    let t = Instant::now();
    let blocks: Vec<*mut u8> = (0..N)
        .map(|i| {
            let p = HEAP.allocate(l);
            assert!(!p.is_null(), "block {i}");
            touch(p, 0);
            touch(p, SIZE - 1);
            p
        })
        .collect();
    let live = rss().saturating_sub(rss0);
    for &p in &blocks {
        // SAFETY: live with layout `l`.
        unsafe { HEAP.deallocate(p, l) };
    }
    let after = rss().saturating_sub(rss0);
    let elapsed = t.elapsed();
    println!(
        "{N} x 1 GiB live: RSS +{} KiB; after freeing: +{} KiB; {elapsed:?}",
        live >> 10,
        after >> 10
    );
    // Two touched pages per block are 1.6 MB; a page-map leaf each is 7 MB more (checked
    // builds: and 256 KiB of live bits per leaf, 51 MB).
    let bound = if cfg!(feature = "checked") { 80 } else { 24 } * MIB;
    assert!(live < bound, "{N} sparse blocks: RSS +{live} bytes");
    assert!(after < 6 * MIB, "after freeing them: RSS +{after} bytes");
    assert_eq!(HEAP.stats().direct_runs, 0);

    // One block of half of what the system could give: its metadata is as small.
    let half = (os_max_request() / 2) & !(MIB - 1);
    let l = Layout::from_size_align(half, 16).unwrap();
    let rss0 = rss();
    let t = Instant::now();
    let p = HEAP.allocate(l);
    assert!(!p.is_null(), "{half} bytes");
    touch(p, 0);
    touch(p, half - 1);
    let grown = rss().saturating_sub(rss0);
    // SAFETY: live with `l`.
    unsafe { HEAP.deallocate(p, l) };
    let elapsed = t.elapsed();
    println!(
        "one block of {} MiB: RSS +{} KiB, {elapsed:?}",
        half >> 20,
        grown >> 10
    );
    assert!(grown < 2 * MIB, "RSS +{grown} bytes");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn direct_spans_shrink_in_place_and_grow_by_moving() {
    let _g = serial();
    let l = Layout::from_size_align(64 * MIB, 4096).unwrap();
    let p = HEAP.allocate(l);
    assert!(!p.is_null());
    touch(p, 0);
    touch(p, 16 * MIB - 1);
    assert_eq!(HEAP.usable_size(p), Some(64 * MIB));
    assert_eq!(
        HEAP.usable_size(p.wrapping_add(20 * MIB)),
        None,
        "an interior pointer of a direct span is not known"
    );
    // SAFETY: live with `l`.
    let q = unsafe { HEAP.reallocate(p, l, 16 * MIB) };
    assert_eq!(q, p, "shrunk in place");
    assert_eq!(HEAP.usable_size(p), Some(16 * MIB));
    let l16 = Layout::from_size_align(16 * MIB, 4096).unwrap();
    // SAFETY: live with `l16`.
    let r = unsafe { HEAP.reallocate(q, l16, 100 * MIB) };
    assert!(!r.is_null());
    // SAFETY: the first 16 MiB were kept by the move.
    unsafe {
        assert_eq!(r.read(), 0xA5);
        assert_eq!(r.add(16 * MIB - 1).read(), 0xA5);
    }
    assert_eq!(HEAP.usable_size(r), Some(100 * MIB));
    // SAFETY: live with this layout.
    unsafe { HEAP.deallocate(r, Layout::from_size_align(100 * MIB, 4096).unwrap()) };
    HEAP.check_invariants().expect("invariants");
}
