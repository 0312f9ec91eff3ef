//! Picks the board's memory map from `targets/` and passes the linker scripts.
//!
//! The board follows the target triple (thumbv7em-none-eabihf -> mps2-an386,
//! thumbv7m-none-eabi -> mps2-an385, thumbv6m-none-eabi -> microbit); set
//! `CPUHEAP_QEMU_BOARD` to override.
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap();
    println!("cargo:rerun-if-env-changed=CPUHEAP_QEMU_BOARD");
    let board = env::var("CPUHEAP_QEMU_BOARD").unwrap_or_else(|_| {
        match target.as_str() {
            "thumbv7em-none-eabihf" | "thumbv7em-none-eabi" => "mps2-an386",
            "thumbv7m-none-eabi" => "mps2-an385",
            "thumbv6m-none-eabi" => "microbit",
            other => panic!("no QEMU board known for target {other}"),
        }
        .to_string()
    });
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let memory_x = manifest.join("../../targets").join(&board).join("memory.x");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::copy(&memory_x, out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", memory_x.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    println!("cargo:rustc-cfg=board=\"{}\"", board.replace('-', "_"));
    println!("cargo::rustc-check-cfg=cfg(board, values(\"mps2_an386\", \"mps2_an385\", \"microbit\"))");
    println!("cargo::rustc-check-cfg=cfg(rust_analyzer)");
    // cortex-m-rt's link.x (includes memory.x) and embedded-test's section script.
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tembedded-test.x");
}
