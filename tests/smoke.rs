mod common;
use common::*;
use cpuheap::Config;
use std::alloc::{GlobalAlloc, Layout};

#[test]
fn smoke() {
    let h = heap::<1>(1 << 20, Config::new());
    let mut ps = vec![];
    for i in 0..1000usize {
        let l = Layout::from_size_align(8 + i % 700, 8).unwrap();
        let p = unsafe { h.alloc(l) };
        assert!(!p.is_null());
        ps.push((p, l));
    }
    h.check_invariants().unwrap();
    for (p, l) in ps {
        unsafe { h.dealloc(p, l) };
    }
    h.check_invariants().unwrap();
    println!("{:#?}", h.stats());
}
