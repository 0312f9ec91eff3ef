//! Shared glue for the cpuheap bare-metal test suites.
#![no_std]

// Link the runtime (vector table, reset handler, `link.x`) and the
// single-core critical-section implementation into every test binary.
use cortex_m as _;
use cortex_m_rt as _;

/// Print a line through semihosting (QEMU's console).
pub use semihosting::println;

/// Print the panic through semihosting, then exit QEMU with status 134
/// (SIGABRT), which the runner reads as "the test failed" (or as "it panicked,
/// as expected" for a `#[should_panic]` test).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    semihosting::eprintln!("panicked: {}", info);
    semihosting::process::abort()
}
