//! Links with riscv-rt's `link.x` over `targets/riscv-virt/memory.x` (QEMU `virt`, RAM at
//! 0x8000_0000), and embedded-test's section script.
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let memory_x = manifest.join("../../targets/riscv-virt/memory.x");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::copy(&memory_x, out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", memory_x.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    println!("cargo::rustc-check-cfg=cfg(rust_analyzer)");
    // The memory map, riscv-rt's link.x (which uses it) and embedded-test's section script.
    println!("cargo:rustc-link-arg=-Tmemory.x");
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tembedded-test.x");
}
