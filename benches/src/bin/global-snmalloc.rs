//! `global-snmalloc`: the global-allocator workloads (`src/global/workloads.rs`) with
//! snmalloc (`snmalloc_rs::SnMalloc`) as this binary's `#[global_allocator]`. See benches/README.md.

#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

#[path = "../global/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("snmalloc");
}
