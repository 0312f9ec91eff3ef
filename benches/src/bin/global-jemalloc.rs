//! `global-jemalloc`: the global-allocator workloads (`src/global/workloads.rs`) with
//! jemalloc (`tikv_jemallocator::Jemalloc`) as this binary's `#[global_allocator]`. See benches/README.md.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "../global/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("jemalloc");
}
