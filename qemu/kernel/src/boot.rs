//! Entry for every hart: stacks, `.bss`, FPU, trap vector, then `kmain(hartid)`.
use core::sync::atomic::AtomicU32;

/// Per-hart stack size; must match `STACK_SIZE` in `targets/riscv-virt/link.x`.
pub const STACK_SIZE: usize = 64 * 1024;
/// Must match `MAX_HARTS` in the linker script.
pub const MAX_HARTS: usize = 8;
const _: () = assert!(STACK_SIZE.is_power_of_two());

/// Set by hart 0 once `.bss` is zero. In `.data`, so clearing `.bss` cannot touch it.
#[no_mangle]
#[link_section = ".data.boot"]
static BSS_READY: AtomicU32 = AtomicU32::new(0);

core::arch::global_asm!(
    r#"
    .section .text.entry, "ax"
    .globl _start
_start:
    csrr    a0, mhartid
    li      t0, {max_harts}
    bgeu    a0, t0, 9f
    /* sp = _stacks_start + (hartid + 1) * STACK_SIZE */
    la      sp, _stacks_start
    addi    t2, a0, 1
    slli    t1, t2, {stack_shift}
    add     sp, sp, t1
    /* FPU on (mstatus.FS = initial): Rust code may use FP registers. */
    li      t0, (1 << 13)
    csrs    mstatus, t0
    la      t0, trap_entry
    csrw    mtvec, t0
    bnez    a0, 3f
    /* hart 0 clears .bss */
    la      t0, _bss_start
    la      t1, _bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  fence   rw, rw
    la      t0, BSS_READY
    li      t1, 1
    sw      t1, 0(t0)
    j       4f
3:  /* other harts wait for hart 0 */
    la      t0, BSS_READY
5:  lw      t1, 0(t0)
    beqz    t1, 5b
    fence   rw, rw
4:  call    kmain
9:  wfi
    j       9b

    .align 4
trap_entry:
    j       trap_handler
"#,
    max_harts = const MAX_HARTS,
    stack_shift = const STACK_SIZE.trailing_zeros(),
);

#[no_mangle]
extern "C" fn trap_handler() -> ! {
    let (cause, epc, tval): (usize, usize, usize);
    // SAFETY: reading trap CSRs in machine mode.
    unsafe {
        core::arch::asm!("csrr {0}, mcause", "csrr {1}, mepc", "csrr {2}, mtval",
            out(reg) cause, out(reg) epc, out(reg) tval);
    }
    crate::uart::force_unlock();
    crate::println!("hart {}: unexpected trap mcause={:#x} mepc={:#x} mtval={:#x}", crate::hart_id(), cause, epc, tval);
    crate::exit(102)
}
