//! A minimal SMP "hobby kernel" for QEMU riscv64 `virt -smp 4 -bios none`, the bare-metal
//! SMP suite of cpuheap.
//!
//! * `boot.rs`: every hart enters `_start` in machine mode; each gets its own stack, hart 0
//!   clears `.bss` and the others wait for it, then all call [`kmain`] with their hart id.
//! * `frames.rs`: a bitmap frame allocator over the RAM after the kernel image.
//! * `heap.rs`: cpuheap as the `#[global_allocator]`: a `Platform` whose CPU index is
//!   `mhartid`, and a `PageSource` that takes pages from the frame allocator.
//! * `tests.rs`: the scenarios; each prints `test <name> ... ok|FAILED` on the UART.
//!
//! Hart 0 ends the run through the SiFive test device, which makes QEMU exit with
//! status 0 (pass) or the failure code.
#![no_std]
#![no_main]

extern crate alloc;


mod boot;
mod frames;
mod heap;
mod sync;
mod tests;
mod uart;

use core::sync::atomic::{AtomicBool, Ordering};

/// Harts this kernel runs on (QEMU `-smp 4`). Extra harts park.
pub const HARTS: usize = 4;

/// Entered by every hart, on its own stack, after `.bss` is clear.
#[no_mangle]
extern "C" fn kmain(hart: usize) -> ! {
    if hart == 0 {
        heap::init();
        println!("cpuheap SMP kernel: {} harts, RAM {:#x}..{:#x}", HARTS, frames::ram_start(), frames::ram_end());
        HEAP_READY.store(true, Ordering::Release);
    } else {
        while !HEAP_READY.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }
    let failures = tests::run_all(hart);
    if hart == 0 {
        if failures == 0 {
            println!("all scenarios passed");
            exit(0);
        } else {
            println!("{failures} scenario(s) failed");
            exit(failures as u32);
        }
    }
    park()
}

static HEAP_READY: AtomicBool = AtomicBool::new(false);

/// The machine-mode hart id.
#[inline(always)]
pub fn hart_id() -> usize {
    let id: usize;
    // SAFETY: reading mhartid has no side effects; we run in machine mode.
    unsafe { core::arch::asm!("csrr {0}, mhartid", out(reg) id) };
    id
}

/// Leave QEMU through the SiFive test device at 0x10_0000: 0x5555 = pass, otherwise
/// `(code << 16) | 0x3333`, which QEMU turns into exit status `code`.
pub fn exit(code: u32) -> ! {
    const TEST_DEVICE: *mut u32 = 0x10_0000 as *mut u32;
    let value = if code == 0 { 0x5555 } else { (code.min(0xffff) << 16) | 0x3333 };
    // SAFETY: the test device is an MMIO register on QEMU virt.
    unsafe { TEST_DEVICE.write_volatile(value) };
    park()
}

pub fn park() -> ! {
    loop {
        // SAFETY: wfi only waits.
        unsafe { core::arch::asm!("wfi") };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    uart::force_unlock();
    println!("hart {} panicked: {}", hart_id(), info);
    exit(101)
}
