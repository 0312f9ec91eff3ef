//! The QEMU firmware suite's exhaustion sequence, on the host: a 6 KiB heap filled with 48-byte
//! blocks, emptied, filled with 200-byte blocks, filled again, then given a 1 KiB region at
//! run time. (It found a span record reused while a page still pointed at it.)

mod common;

use std::alloc::{GlobalAlloc, Layout};

use common::*;
use cpuheap::{Config, Heap, StaticRegion};

fn fill(h: &TestHeap<1>, size: usize, ptrs: &mut Vec<*mut u8>) -> usize {
    let l = Layout::from_size_align(size, 8).unwrap();
    loop {
        let p = unsafe { h.alloc(l) };
        if p.is_null() {
            return ptrs.len();
        }
        unsafe { p.write_bytes(ptrs.len() as u8, size) };
        ptrs.push(p);
    }
}

fn empty(h: &TestHeap<1>, size: usize, ptrs: &mut Vec<*mut u8>) {
    let l = Layout::from_size_align(size, 8).unwrap();
    for (i, p) in ptrs.drain(..).enumerate() {
        assert!(unsafe { std::slice::from_raw_parts(p, size) }
            .iter()
            .all(|&b| b == i as u8));
        unsafe { h.dealloc(p, l) };
    }
}

#[test]
fn exhaust_refill_and_grow_by_a_small_region() {
    for heap_bytes in [6 * 1024, 64 * 1024] {
        let h: &TestHeap<1> = Box::leak(Box::new(Heap::new(
            StaticRegion::new(),
            TestCpu,
            Config::small(),
        )));
        // Page-aligned regions, as the firmware's are.
        let r = region(heap_bytes + 256);
        let off = (256 - r.as_ptr() as usize % 256) % 256;
        assert!(h.add_region(&mut r[off..off + heap_bytes]));
        let mut ptrs = Vec::new();
        let small = fill(h, 48, &mut ptrs);
        empty(h, 48, &mut ptrs);
        h.check_invariants().unwrap();
        let big = Layout::from_size_align(heap_bytes / 4, 8).unwrap();
        let p = unsafe { h.alloc(big) };
        assert!(!p.is_null());
        unsafe { h.dealloc(p, big) };
        fill(h, 200, &mut ptrs);
        empty(h, 200, &mut ptrs);
        h.check_invariants().unwrap();
        let again = fill(h, 48, &mut ptrs);
        assert!(
            again + again / 8 >= small,
            "lost capacity: {small} then {again}"
        );
        let spare = region(1024 + 256);
        let off = (256 - spare.as_ptr() as usize % 256) % 256;
        assert!(h.add_region(&mut spare[off..off + 1024]));
        let l = Layout::from_size_align(48, 8).unwrap();
        let extra = unsafe { h.alloc(l) };
        assert!(!extra.is_null(), "a region added at run time is used");
        h.check_invariants().unwrap();
        unsafe { h.dealloc(extra, l) };
        empty(h, 48, &mut ptrs);
        h.check_invariants().unwrap();
        assert_eq!(h.stats().in_use_bytes, 0);
    }
}
