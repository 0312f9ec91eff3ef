//! `global-glibc`: the global-allocator workloads (`src/global/workloads.rs`) with
//! glibc malloc (`std::alloc::System`) as this binary's `#[global_allocator]`. See benches/README.md.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

#[path = "../global/workloads.rs"]
mod workloads;

fn main() {
    workloads::main("glibc");
}
