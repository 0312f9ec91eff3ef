//! No allocator: the same program shell (runtime, vector table, panic handler) without a
//! heap. Every allocator's flash is reported over this one.
#![no_std]
#![no_main]

use cpuheap_firmware_bench as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    // The same shape of work on the stack.
    let mut a = [0u32; 16];
    for (i, x) in a.iter_mut().enumerate().take(core::hint::black_box(16)) {
        *x = i as u32;
    }
    core::hint::black_box(&mut a);
    #[allow(clippy::empty_loop)]
    loop {
        cortex_m::asm::wfi();
    }
}
