//! Links with `targets/riscv-virt/link.x` (QEMU `virt`, RAM at 0x8000_0000).
use std::{env, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let script = manifest.join("../../targets/riscv-virt/link.x").canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    // Machine-mode kernel at a fixed address: no PIE, no relaxation surprises.
    println!("cargo:rustc-link-arg-bins=--no-relax");
}
