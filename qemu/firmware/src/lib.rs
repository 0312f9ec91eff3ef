//! Shared glue for cpuheap's bare-metal Cortex-M test suites: cpuheap as the
//! `#[global_allocator]` over a static region, a fatal hook that tests can arm, and a
//! semihosting panic handler. Every test binary links this crate.
//!
//! Boards (chosen by `build.rs` from the target): `mps2-an386` (Cortex-M4F, 4 MiB of RAM;
//! a 64 KiB heap) and `microbit` (Cortex-M0, 16 KiB of RAM, no compare-and-swap; a 6 KiB
//! heap, beside the `Heap` itself (about 2.2 KiB, `.bss`) and the stack).
#![no_std]

use core::sync::atomic::{AtomicU8, Ordering};

use cpuheap::{
    Config, CriticalSectionRawMutex, FatalHook, Fault, FaultKind, Heap, SingleCore, StaticRegion,
};

// Link the runtime (vector table, reset handler, `link.x`) and the single-core
// critical-section implementation (interrupt masking) into every test binary.
use cortex_m as _;
use cortex_m_rt as _;

/// Print a line through semihosting (QEMU's console).
pub use semihosting::println;

/// The heap type of this firmware: up to two static regions, one CPU, locks that mask
/// interrupts (so interrupt handlers may allocate), one CPU slot, and a zero-sized fatal
/// hook, so that `HEAP` is all zero bytes (`.bss`).
pub type FirmwareHeap = Heap<StaticRegion<2>, SingleCore<Hook>, CriticalSectionRawMutex, 1>;

/// The global allocator.
#[global_allocator]
pub static HEAP: FirmwareHeap =
    // SAFETY: these boards have one core; only the test and the interrupt handlers that
    // interrupt it use the heap.
    Heap::new(StaticRegion::new(), unsafe { SingleCore::with_fatal_hook(Hook) }, Config::small());

/// Bytes of the main heap region.
#[cfg(board = "microbit")]
pub const HEAP_BYTES: usize = 6 * 1024;
#[cfg(not(board = "microbit"))]
pub const HEAP_BYTES: usize = 64 * 1024;

/// Bytes of the spare region that the exhaustion test adds later.
pub const SPARE_BYTES: usize = 1024;

/// Give the heap its region. Each test is a fresh boot, so each test calls this once; later
/// calls hand nothing over (`init_region!` gives its buffer away once).
pub fn init_heap() {
    static DONE: AtomicU8 = AtomicU8::new(0);
    let handed = cpuheap::init_region!(HEAP, HEAP_BYTES);
    assert!(handed || DONE.load(Ordering::Relaxed) != 0, "init_region failed");
    DONE.store(1, Ordering::Relaxed);
}

/// Hand the spare region to the heap (`true` the first time it is called in a boot).
pub fn add_spare_region() -> bool {
    cpuheap::init_region!(HEAP, SPARE_BYTES)
}

const NOTHING: u8 = 0;
static EXPECTED_FAULT: AtomicU8 = AtomicU8::new(NOTHING);

fn code(kind: FaultKind) -> u8 {
    match kind {
        FaultKind::DoubleFree => 1,
        FaultKind::ForeignPointer => 2,
        FaultKind::InteriorPointer => 3,
        FaultKind::SizeMismatch => 4,
    }
}

/// Arm the fatal hook: the next fault of `kind` ends the test as passed (semihosting
/// exit 0). Any other fault fails it.
pub fn expect_fault(kind: FaultKind) {
    EXPECTED_FAULT.store(code(kind), Ordering::SeqCst);
}

/// The platform's fatal hook. The heap calls it on a detected misuse, with no lock held.
pub struct Hook;

impl FatalHook for Hook {
    fn fatal(&self, fault: &Fault) -> ! {
        let expected = EXPECTED_FAULT.load(Ordering::SeqCst);
        if expected != NOTHING && expected == code(fault.kind) {
            println!("fatal hook reached as expected: {}", fault);
            semihosting::process::exit(0)
        }
        semihosting::eprintln!("fatal hook: unexpected {}", fault);
        semihosting::process::abort()
    }
}

/// Print the panic through semihosting, then exit QEMU with status 134 (SIGABRT), which
/// the runner reads as "the test failed" (or as "it panicked, as expected" for a
/// `#[should_panic]` test).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    semihosting::eprintln!("panicked: {}", info);
    semihosting::process::abort()
}

/// The project's shared deterministic PRNG (`testkit/`).
pub use cpuheap_testkit::Rng;
