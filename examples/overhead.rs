//! Measures the memory overhead of each tier for a 32 KiB, a 1 MiB and a 1 GiB region.
//!
//! Run: `cargo run --release --example overhead` (add `--features checked` to see the cost of
//! the checked build's live bits).
//!
//! Static overhead is the size of the `Heap` value itself (CPU slots, central lists, page-heap
//! state, page-map table); it lives wherever the heap lives (usually `.bss`). Dynamic overhead
//! is metadata the heap carves from the region: extent record, bitmap, page-map arrays and span
//! records. It is reported after the first allocation, and again with the heap full of 64-byte
//! objects (the most span records a heap of that size needs for small objects).

use std::alloc::{GlobalAlloc, Layout};
use std::mem::{size_of, MaybeUninit};

use cpuheap::{Config, Heap, SingleCpu, StaticRegion};

fn measure<const CPUS: usize>(name: &str, bytes: usize, config: Config) {
    type H<const C: usize> = Heap<StaticRegion<1>, SingleCpu, cpuheap::DefaultRawMutex, C>;
    let heap: &'static H<CPUS> = Box::leak(Box::new(Heap::new(
        StaticRegion::new(),
        SingleCpu::new(),
        config,
    )));
    let region: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(bytes));
    heap.add_region(region);
    let l = Layout::from_size_align(64, 8).unwrap();
    let first = unsafe { heap.alloc(l) };
    let after_first = heap.stats().metadata_bytes;
    let mut n = 1usize;
    while !unsafe { heap.alloc(l) }.is_null() {
        n += 1;
    }
    let s = heap.stats();
    let pct = |b: usize| 100.0 * b as f64 / bytes as f64;
    println!(
        "| {name} | {} B, {CPUS} slot(s) | {} B | {} B ({:.2}%) | {} B ({:.2}%) | {:.1}% |",
        config.page_size,
        size_of::<H<CPUS>>(),
        after_first,
        pct(after_first),
        s.metadata_bytes,
        pct(s.metadata_bytes),
        pct(n * 64),
    );
    let _ = first;
}

fn main() {
    println!(
        "heap tiers on this target ({}-bit): one CPU slot {} B; the Heap value = slots + 80 central lists + page heap + page map",
        usize::BITS,
        size_of::<Heap<StaticRegion<1>, SingleCpu, cpuheap::DefaultRawMutex, 2>>()
            - size_of::<Heap<StaticRegion<1>, SingleCpu, cpuheap::DefaultRawMutex, 1>>()
    );
    println!("\n| region | page size, slots | static (Heap value) | metadata after first alloc | metadata, full of 64 B objects | region filled with 64 B objects |");
    println!("|---|---|---|---|---|---|");
    measure::<1>("32 KiB", 32 << 10, Config::small());
    measure::<1>("1 MiB", 1 << 20, Config::small());
    measure::<4>("1 MiB", 1 << 20, Config::new());
    measure::<8>("1 GiB", 1 << 30, Config::new());
}
