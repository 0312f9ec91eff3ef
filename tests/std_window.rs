//! `StdHeap`'s page-map window (its own instance, not the global allocator): small and
//! medium objects live in the window that `MmapSource` reserves, where a free finds its class
//! by one index; direct mappings live outside it and are still found (through the radix
//! tree); looking up addresses the heap never handed out, inside the window or anywhere
//! else, never faults; freeing one is reported. The tests of this file run one at a time so
//! that the resident-memory check sees no other test's memory.
#![cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::Mutex;

use cpuheap::StdHeap;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// A fresh heap of its own, and its window once it has one.
fn heap() -> &'static StdHeap {
    Box::leak(Box::new(StdHeap::new()))
}

fn window(h: &StdHeap) -> (usize, usize) {
    h.with_source(|s| s.window())
        .expect("the kernel granted a window")
}

fn inside(w: (usize, usize), p: *const u8) -> bool {
    (p as usize).wrapping_sub(w.0) < w.1
}

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

#[test]
fn small_and_medium_objects_live_in_the_window_and_direct_mappings_outside() {
    let _s = serial();
    let h = heap();
    let sizes = [8usize, 32, 1000, 32 << 10, 100 << 10, 4 << 20];
    // SAFETY: every block is allocated here, used within its size and freed once.
    unsafe {
        let blocks: Vec<_> = sizes.iter().map(|&n| (h.alloc(layout(n)), n)).collect();
        let w = window(h);
        assert!(w.1 >= 1 << 30, "window of {} bytes", w.1);
        for &(p, n) in &blocks {
            assert!(!p.is_null());
            assert!(inside(w, p), "{n} B at {p:p} outside the window {w:x?}");
            p.write_bytes(0x5A, n);
            assert!(h.usable_size(p).is_some_and(|u| u >= n));
        }
        // A direct mapping (8 MiB and up) is its own mapping, outside the window.
        let big = 16 << 20;
        let d = h.alloc(layout(big));
        assert!(!d.is_null() && !inside(w, d));
        d.add(big - 1).write(1);
        assert_eq!(h.usable_size(d), Some(big));
        assert_eq!(
            h.usable_size(d.add(4096)),
            None,
            "interior of a direct span"
        );
        // Everything frees through the same map, and the heap is consistent after.
        h.dealloc(d, layout(big));
        assert_eq!(h.usable_size(d), None, "unmapped direct span");
        for (p, n) in blocks {
            h.dealloc(p, layout(n));
        }
        assert_eq!(h.check_invariants(), Ok(()));
        assert_eq!(h.stats().in_use_bytes, 0);
        // Freed memory is reused from the window.
        let again = h.alloc(layout(32));
        assert!(inside(w, again));
        h.dealloc(again, layout(32));
    }
}

#[test]
fn lookups_of_foreign_addresses_never_fault() {
    let _s = serial();
    let h = heap();
    // SAFETY: allocated here and freed once.
    unsafe { h.dealloc(h.alloc(layout(64)), layout(64)) };
    let (base, len) = window(h);
    let local = 7u64;
    static STATIC: u8 = 0;
    let foreign = [
        base - 1,
        base - 4096,
        base + len / 2,
        base + len - 1,
        base + len,
        &local as *const u64 as usize,
        &STATIC as *const u8 as usize,
        0,
        4096,
        0x7fff_ffff_f000,
        1 << 47,
        usize::MAX,
    ];
    for a in foreign {
        assert_eq!(h.usable_size(a as *const u8), None, "{a:#x}");
    }
}

#[test]
fn the_window_costs_memory_only_where_it_is_used() {
    let _s = serial();
    let h = heap();
    let before = rss();
    // SAFETY: allocated here, freed once.
    unsafe {
        let p = h.alloc(layout(32));
        assert!(!p.is_null());
        h.dealloc(p, layout(32));
    }
    let (_, len) = window(h);
    let table = h.with_source(|s| s.window_table_bytes());
    let grown = rss().saturating_sub(before);
    eprintln!("first allocation: RSS +{grown} bytes, table {table} bytes");
    // The table is 9 bytes per 4 KiB page of the window (144 MiB for 64 GiB), all mapped;
    // one allocation writes a few of its entries.
    assert!(table >= len / 4096 * 9);
    assert!(
        grown < 4 << 20,
        "first allocation: RSS +{grown} bytes with a table of {table} bytes"
    );
}

/// The child half of the death test below: free a pointer into the window's unused part.
#[test]
fn window_death_child() {
    if std::env::var_os("CPUHEAP_WINDOW_DEATH").is_none() {
        return;
    }
    let h = heap();
    // SAFETY: misuse on purpose: the heap's fatal hook aborts before it can do harm.
    unsafe {
        h.dealloc(h.alloc(layout(64)), layout(64));
        let (base, len) = window(h);
        h.dealloc((base + len - 4096) as *mut u8, layout(64));
    }
    unreachable!("freeing a foreign pointer returned");
}

#[test]
fn freeing_an_address_of_the_window_the_heap_never_used_is_reported() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "window_death_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CPUHEAP_WINDOW_DEATH", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigabrt()), "{err}");
    assert!(err.contains("not allocated by this heap"), "{err}");
}

/// `SIGABRT` on Linux.
fn libc_sigabrt() -> i32 {
    6
}
