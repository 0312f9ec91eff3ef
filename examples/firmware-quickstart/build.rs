//! Links for QEMU's mps2-an386 (`targets/mps2-an386/memory.x`) with cortex-m-rt's `link.x`;
//! a board's own crate would ship its `memory.x` instead.
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let memory_x = manifest.join("../../targets/mps2-an386/memory.x");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::copy(&memory_x, out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", memory_x.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
}
