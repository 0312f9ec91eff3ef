//! `global-cpuheap`: the global-allocator workloads (`src/global/workloads.rs`) with
//! cpuheap's `StdHeap` (feature `std`) as this binary's `#[global_allocator]`. See benches/README.md.

#[global_allocator]
static GLOBAL: cpuheap::StdHeap = cpuheap::StdHeap::new();

#[path = "../global/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("cpuheap");
}
