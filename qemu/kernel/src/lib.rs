//! A minimal SMP "hobby kernel" for QEMU riscv64 `virt -smp 4 -bios none`, the bare-metal
//! SMP suite of cpuheap, on embedded-test. Every test binary (`tests/*.rs`) links this crate.
//!
//! * `boot.rs`: startup is riscv-rt's (per-hart stacks, RAM initialised by hart 0, FPU, trap
//!   vector); the other harts wait in `_mp_hook` for hart 0's wake-up IPI. Then hart 0 sets up
//!   the frame allocator, wakes harts 1..[`HARTS`] and calls embedded-test's `main`, which
//!   reads the test to run from the semihosting command line; the other harts wait for work
//!   in [`smp`]'s worker loop. Traps and panics print and end the boot with semihosting
//!   `abort()` (a failed test), on whichever hart they happen.
//! * `frames.rs`: a bitmap frame allocator over the RAM after the kernel image and stacks.
//! * `heap.rs`: cpuheap as the `#[global_allocator]`: a `Platform` whose CPU index is
//!   `mhartid`, and a `PageSource` that takes pages from the frame allocator.
//! * `smp.rs`: [`smp::on_all_harts`] runs a test body on every hart at once; its checks
//!   ([`check!`]) may fail on any hart, and make the test fail.
//!
//! Each test is one boot of QEMU (embedded-test's protocol; see `qemu/README.md`).
#![no_std]

extern crate alloc;

mod boot;
pub mod console;
pub mod frames;
pub mod heap;
pub mod smp;

pub use boot::hart_id;
pub use cpuheap_testkit::Rng;

/// Harts this kernel runs on (QEMU `-smp 4`). Harts with a larger id never leave the boot
/// code.
pub const HARTS: usize = 4;
