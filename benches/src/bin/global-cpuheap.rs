//! `global-cpuheap`: the global-allocator workloads (`src/global/workloads.rs`) with
//! cpuheap's `StdHeap` (feature `std`) as this binary's `#[global_allocator]`. See benches/README.md.

#[global_allocator]
static GLOBAL: cpuheap::StdHeap = cpuheap::StdHeap::new();

#[path = "../global/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("cpuheap");
    // What the heap itself counted over the run (setup included): `cargo xtask bench --global`
    // reports the share of reallocs that stayed in place.
    let s = GLOBAL.stats();
    println!(
        "CPUHEAPSTATS reallocs={} reallocs_in_place={} transfer_cache_bytes={} allocs={} refills={} flushes={} spans_allocated={} large_allocs={}",
        s.reallocs, s.reallocs_in_place, s.transfer_cache_bytes, s.allocs, s.refills, s.flushes, s.spans_allocated, s.large_allocs
    );
}
