//! `global-mimalloc`: the global-allocator workloads (`src/global/workloads.rs`) with
//! mimalloc (`mimalloc::MiMalloc`) as this binary's `#[global_allocator]`. See benches/README.md.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../global/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("mimalloc");
}
