//! cpuheap as the global allocator of a bare-metal Cortex-M program: collections,
//! exhaustion and recovery, alignments, realloc, statistics, the safe region set-up.
#![no_std]
#![no_main]

extern crate alloc;

#[embedded_test::tests(default_timeout = 30)]
mod tests {
    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use core::alloc::{GlobalAlloc, Layout};
    use core::hint::black_box;

    use cpuheap_qemu_firmware::{add_spare_region, init_heap, println, Rng, HEAP, HEAP_BYTES};

    #[init]
    fn init() {
        init_heap();
    }

    fn invariants() {
        if let Err(e) = HEAP.check_invariants() {
            panic!("{}", e);
        }
    }

    #[test]
    fn box_vec_string_btreemap() {
        let b = black_box(Box::new(0x1234_5678u32));
        assert_eq!(*b, 0x1234_5678);

        let n = if HEAP_BYTES < 16 * 1024 { 300 } else { 3000 };
        let mut v: Vec<u32> = Vec::new();
        for i in 0..n {
            v.push(black_box(i * 3));
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 * 3));

        let mut s = String::new();
        for i in 0..20 {
            s.push_str(&i.to_string());
            s.push(',');
        }
        assert!(s.starts_with("0,1,2,3,"));
        assert_eq!(black_box(&s).len(), 10 * 2 + 10 * 3);

        let mut m = BTreeMap::new();
        let keys = if HEAP_BYTES < 16 * 1024 { 60 } else { 600 };
        for k in 0..keys {
            m.insert(black_box(k * 7 % keys), Box::new([k as u8; 3]));
        }
        assert_eq!(m.len(), keys as usize);
        for k in (0..keys).step_by(2) {
            assert!(m.remove(&k).is_some());
        }
        assert_eq!(m.len(), keys as usize / 2);
        assert!(m.keys().all(|k| k % 2 == 1));

        let st = HEAP.stats();
        println!("in use with collections: {} bytes, allocs {}", st.in_use_bytes, st.allocs);
        drop((b, v, s, m));
        invariants();
        assert_eq!(HEAP.stats().in_use_bytes, 0, "everything freed");
    }

    /// Enough for every 48-byte block of the heap (and small enough for the microbit's stack).
    const MAX_BLOCKS: usize = HEAP_BYTES / 32;

    /// Allocate `size`-byte blocks until the heap says no; returns how many.
    fn fill(ptrs: &mut [*mut u8; MAX_BLOCKS], size: usize) -> usize {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let mut n = 0;
        while n < MAX_BLOCKS {
            // SAFETY: nonzero size.
            let p = unsafe { HEAP.alloc(layout) };
            if p.is_null() {
                return n;
            }
            // SAFETY: the block is ours.
            unsafe { p.write_bytes(n as u8, size) };
            ptrs[n] = black_box(p);
            n += 1;
        }
        panic!("heap never ran out after {MAX_BLOCKS} blocks of {size}");
    }

    fn empty(ptrs: &mut [*mut u8; MAX_BLOCKS], n: usize, size: usize) {
        let layout = Layout::from_size_align(size, 8).unwrap();
        for (i, p) in ptrs[..n].iter().enumerate() {
            // SAFETY: allocated by `fill` with this layout; check its bytes survived.
            unsafe {
                assert!(core::slice::from_raw_parts(*p, size).iter().all(|&b| b == i as u8), "block {i} corrupted");
                HEAP.dealloc(*p, layout);
            }
        }
    }

    #[test]
    fn exhaustion_then_recovery() {
        let mut ptrs = [core::ptr::null_mut(); MAX_BLOCKS];
        let small = fill(&mut ptrs, 48);
        let failed = HEAP.stats().failed_allocs;
        assert!(failed >= 1, "the failed allocation is counted");
        assert!(small * 48 >= HEAP_BYTES / 2, "only {small} blocks of 48 bytes fit in {HEAP_BYTES}");
        empty(&mut ptrs, small, 48);
        invariants();

        // Everything came back: a block of a quarter of the heap fits now (the pages of the
        // small-object spans went back to the page heap and coalesced).
        let big = Layout::from_size_align(HEAP_BYTES / 4, 8).unwrap();
        // SAFETY: nonzero size.
        let p = unsafe { HEAP.alloc(big) };
        if p.is_null() {
            println!("after freeing everything: {:?}", HEAP.stats());
            let mut kib = HEAP_BYTES / 1024;
            while kib > 0 {
                let l = Layout::from_size_align(kib * 1024, 8).unwrap();
                // SAFETY: nonzero size.
                let q = unsafe { HEAP.alloc(l) };
                if !q.is_null() {
                    // SAFETY: allocated just above.
                    unsafe { HEAP.dealloc(q, l) };
                    break;
                }
                kib -= 1;
            }
            println!("largest block that still fits: {kib} KiB");
        }
        assert!(!p.is_null(), "no {} contiguous bytes after everything was freed", HEAP_BYTES / 4);
        // SAFETY: allocated just above.
        unsafe { HEAP.dealloc(black_box(p), big) };

        // Same again with another size: the same memory serves another class.
        let medium = fill(&mut ptrs, 200);
        assert!(medium * 200 >= HEAP_BYTES / 2, "only {medium} blocks of 200 bytes after recovery");
        empty(&mut ptrs, medium, 200);

        // Exhausted again, then more memory arrives: allocation succeeds without a free.
        let again = fill(&mut ptrs, 48);
        assert!(again + again / 8 >= small, "lost capacity: {small} then {again} blocks");
        assert!(add_spare_region(), "add_region");
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: nonzero size.
        let extra = unsafe { HEAP.alloc(layout) };
        assert!(!extra.is_null(), "a region added at run time is used");
        // SAFETY: allocated just above.
        unsafe { HEAP.dealloc(extra, layout) };
        empty(&mut ptrs, again, 48);
        invariants();
        let st = HEAP.stats();
        println!("blocks: {small} x48, {medium} x200, {again} x48; failed allocs {}; {:?}", st.failed_allocs, st);
        assert_eq!(st.in_use_bytes, 0);
    }

    #[test]
    fn alignments_up_to_4k() {
        let mut align = 1;
        while align <= 4096 {
            for size in [1, align / 2 + 1, align, align + 8, 3 * align / 2] {
                // A small heap has few `align`-aligned page runs: keep big aligned blocks to
                // a quarter of it.
                if size == 0 || size > HEAP_BYTES / 2 || (align >= HEAP_BYTES / 2 && size > HEAP_BYTES / 4) {
                    continue;
                }
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: nonzero size.
                let p = unsafe { HEAP.alloc(layout) };
                assert!(!p.is_null(), "alloc size {size} align {align} failed");
                assert_eq!(p as usize % align, 0, "size {size} align {align} misaligned: {p:?}");
                // A second one at the same time, to see two aligned blocks coexist.
                // SAFETY: nonzero size.
                let q = unsafe { HEAP.alloc(layout) };
                // SAFETY: blocks are ours for `size` bytes.
                unsafe {
                    p.write_bytes(0xa5, size);
                    if !q.is_null() {
                        assert_eq!(q as usize % align, 0);
                        q.write_bytes(0x5a, size);
                    }
                    assert!(core::slice::from_raw_parts(p, size).iter().all(|&b| b == 0xa5));
                    HEAP.dealloc(black_box(p), layout);
                    if !q.is_null() {
                        HEAP.dealloc(black_box(q), layout);
                    } else {
                        assert!(HEAP_BYTES < 16 * 1024 && align >= 2048, "second {size}/{align} block failed");
                    }
                }
            }
            align *= 2;
        }
        invariants();
        assert_eq!(HEAP.stats().in_use_bytes, 0);
    }

    #[test]
    fn realloc_keeps_contents() {
        let before = HEAP.stats();
        let mut layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: nonzero size.
        let mut p = unsafe { HEAP.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: the block is ours.
        unsafe { p.write_bytes(0x11, 16) };
        let mut filled = 16;
        let sizes: &[usize] = if HEAP_BYTES < 16 * 1024 { &[24, 100, 700, 1500, 64, 8] } else { &[24, 100, 700, 3000, 9000, 64, 8] };
        for &new in sizes {
            // SAFETY: `p` was allocated with `layout`; `new` is nonzero.
            let q = unsafe { HEAP.realloc(p, layout, new) };
            assert!(!q.is_null(), "realloc {} -> {new} failed", layout.size());
            let keep = filled.min(new);
            // SAFETY: `q` holds `new` bytes, the first `keep` preserved.
            unsafe {
                assert!(core::slice::from_raw_parts(q, keep).iter().all(|&b| b == 0x11), "realloc to {new} lost contents");
                q.write_bytes(0x11, new);
            }
            filled = new;
            p = q;
            layout = Layout::from_size_align(new, 8).unwrap();
        }
        // SAFETY: allocated with `layout`.
        unsafe { HEAP.dealloc(p, layout) };

        // Vec growth goes through realloc too.
        let mut v: Vec<u8> = Vec::with_capacity(1);
        for i in 0..1000u32 {
            v.push(black_box(i as u8));
        }
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
        drop(v);

        let after = HEAP.stats();
        assert!(after.reallocs >= before.reallocs + sizes.len(), "reallocs counted: {} -> {}", before.reallocs, after.reallocs);
        println!("reallocs {} (in place {})", after.reallocs, after.reallocs_in_place);
        invariants();
        assert_eq!(after.in_use_bytes, 0);
    }

    #[test]
    fn statistics_read_back() {
        let s0 = HEAP.stats();
        assert_eq!(s0.in_use_bytes, 0);
        let mut rng = Rng::new(0x2545_f491);
        // The 6 KiB micro:bit heap holds one span per class in use; keep to few classes there
        // (this test is about the statistics, not capacity).
        let (count, max) = if HEAP_BYTES < 16 * 1024 { (16, 96) } else { (64, 300) };
        let mut live: [(usize, usize); 64] = [(0, 0); 64];
        let live = &mut live[..count];
        let mut requested = 0;
        for slot in live.iter_mut() {
            let size = 1 + rng.below(max) as usize;
            let layout = Layout::from_size_align(size, 4).unwrap();
            // SAFETY: nonzero size.
            let p = unsafe { HEAP.alloc(layout) };
            if p.is_null() {
                panic!("allocation of {size} failed with {requested} bytes in use: {:?}", HEAP.stats());
            }
            *slot = (black_box(p) as usize, size);
            requested += size;
        }
        let s1 = HEAP.stats();
        assert_eq!(s1.allocs, s0.allocs + count, "allocs counted");
        assert_eq!(s1.frees, s0.frees, "no frees yet");
        assert!(s1.in_use_bytes >= requested, "in use {} < requested {requested}", s1.in_use_bytes);
        assert!(s1.in_use_bytes <= requested + requested / 4 + count * 16, "in use {} too far above requested {requested}", s1.in_use_bytes);
        assert!(s1.peak_in_use_bytes >= s1.in_use_bytes);
        assert!(s1.source_bytes > 0 && s1.source_bytes <= HEAP_BYTES, "source bytes {}", s1.source_bytes);
        assert!(s1.span_bytes >= s1.in_use_bytes);
        assert!(s1.source_grows >= 1);
        for &mut (p, size) in live {
            // SAFETY: allocated above with this layout.
            unsafe { HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 4).unwrap()) };
        }
        let s2 = HEAP.stats();
        assert_eq!(s2.frees, s0.frees + count);
        assert_eq!(s2.in_use_bytes, 0);
        assert!(s2.peak_in_use_bytes >= s1.in_use_bytes);
        // Freed objects sit in the caches, or went back to the page heap.
        let parked = s2.cpu_cache_bytes + s2.central_cache_bytes + s2.page_heap_free_bytes;
        assert!(parked > 0);
        HEAP.drain_all_cpus();
        let s3 = HEAP.stats();
        assert_eq!(s3.cpu_cache_bytes, 0, "drained");
        println!("{:?}", s3);
        invariants();
    }

    /// `init_region!` (which `init_heap` used for the main region) hands each buffer over
    /// once: run again, the same expansion gives the heap nothing, so no memory is aliased.
    #[test]
    fn init_region_hands_its_buffer_over_once() {
        fn give() -> bool {
            cpuheap::init_region!(HEAP, 512)
        }
        let pending = || HEAP.with_source(|s| s.pending_bytes());
        let before = pending();
        assert!(give(), "the first run hands the buffer over");
        assert_eq!(pending(), before + 512, "512 bytes more pending");
        for _ in 0..3 {
            assert!(!give(), "a second run hands nothing over");
        }
        assert_eq!(pending(), before + 512, "no memory handed over twice");
        init_heap();
        assert_eq!(pending(), before + 512, "init_heap again hands over nothing");
    }
}
