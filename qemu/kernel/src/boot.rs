//! Entry of every hart after riscv-rt's startup (`hal_main`), the wake-up of harts 1..HARTS,
//! and the trap and panic handlers.
//!
//! riscv-rt's `_start` gives each hart its stack (`_max_hart_id`, `_hart_stack_size` in
//! `targets/riscv-virt/memory.x`) and calls `_mp_hook`: it returns true on hart 0, which then
//! initialises `.data` and `.bss`; every other hart waits in it for a machine software
//! interrupt (an IPI through the CLINT) that hart 0 sends once RAM is ready. All harts then
//! enter [`hal_main`].
use crate::HARTS;

/// QEMU virt's CLINT: the machine software interrupt pending word of hart `n` is at
/// `CLINT + 4 * n`.
const CLINT: usize = 0x0200_0000;

// `_mp_hook(hartid) -> bool`, called by riscv-rt's `_start` on every hart before RAM is
// initialised, so in assembly (riscv-rt's rules: a0 = hart id and the return value; s0-s2
// untouched). Hart 0 returns true (it initialises RAM); every other hart enables its machine
// software interrupt (globally masked: mstatus.MIE stays 0, so `wfi` only waits), sleeps until
// MSIP is pending, clears it in the CLINT and returns false.
core::arch::global_asm!(
    r#"
    .section .init.mp_hook, "ax"
    .global _mp_hook
_mp_hook:
    beqz    a0, 2f
    li      t0, 8
    csrs    mie, t0
1:  wfi
    csrr    t0, mip
    andi    t0, t0, 8
    beqz    t0, 1b
    li      t0, {clint}
    slli    t1, a0, 2
    add     t0, t0, t1
    sw      zero, 0(t0)
    li      t0, 8
    csrc    mie, t0
    li      a0, 0
    ret
2:  li      a0, 1
    ret
"#,
    clint = const CLINT,
);

/// Entered by every hart from riscv-rt's `_start_rust`, on its own stack, with RAM
/// initialised (riscv-rt calls `hal_main`, which defaults to `main`; here it is this
/// function, and `main` is embedded-test's).
#[export_name = "hal_main"]
fn hal_main(hart: usize, _a1: usize, _a2: usize) -> ! {
    if hart == 0 {
        crate::frames::init();
        for other in 1..HARTS {
            let msip = (CLINT + 4 * other) as *mut u32;
            // SAFETY: the CLINT's MSIP word of hart `other` is an MMIO register of QEMU virt;
            // writing 1 raises that hart's machine software interrupt, which `_mp_hook` waits
            // for.
            unsafe { msip.write_volatile(1) };
        }
        extern "C" {
            /// embedded-test's entry: reads the semihosting command line (`run_addr <entry>`)
            /// and runs that test, which ends the boot through semihosting `exit`/`abort`.
            fn main() -> !;
        }
        // SAFETY: embedded-test's `main` takes no arguments and never returns; hart 0 calls it
        // once, after RAM, the frame allocator (and so the heap) are ready.
        unsafe { main() }
    } else if hart < HARTS {
        crate::smp::worker(hart)
    } else {
        // Not reached: hart 0 wakes only harts 1..HARTS.
        loop {
            riscv::asm::wfi();
        }
    }
}

/// The machine-mode hart id.
#[inline(always)]
pub fn hart_id() -> usize {
    riscv::register::mhartid::read()
}

/// Any exception (riscv-rt dispatches every one here): print it and fail the test.
#[export_name = "ExceptionHandler"]
fn exception_handler(frame: &riscv_rt::TrapFrame) -> ! {
    semihosting::eprintln!(
        "hart {}: unexpected exception mcause={:#x} mepc={:#x} mtval={:#x} ra={:#x}",
        hart_id(),
        riscv::register::mcause::read().bits(),
        riscv::register::mepc::read(),
        riscv::register::mtval::read(),
        frame.ra
    );
    semihosting::process::abort()
}

/// Any interrupt (none is enabled): print it and fail the test.
#[export_name = "DefaultHandler"]
fn default_handler() -> ! {
    semihosting::eprintln!(
        "hart {}: unexpected interrupt mcause={:#x}",
        hart_id(),
        riscv::register::mcause::read().bits()
    );
    semihosting::process::abort()
}

/// Print the panic (from any hart) through semihosting, then exit QEMU with status 134
/// (SIGABRT), which the runner reads as "the test failed" (or as "it panicked, as expected"
/// for a `#[should_panic]` test). No lock: the panicking hart may hold the console's.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    semihosting::eprintln!("hart {} panicked: {}", hart_id(), info);
    semihosting::process::abort()
}
