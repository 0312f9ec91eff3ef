//! Links every program with cortex-m-rt's `link.x`, for QEMU's mps2-an386
//! (`targets/mps2-an386/memory.x`), or for the micro:bit (`targets/microbit/memory.x`) when
//! built for thumbv6m (the Cortex-M0 measurement).
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let board = if env::var("TARGET").unwrap().starts_with("thumbv6m") {
        "microbit"
    } else {
        "mps2-an386"
    };
    let memory_x = manifest.join("../../targets").join(board).join("memory.x");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::copy(&memory_x, out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", memory_x.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
}
