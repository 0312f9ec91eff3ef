#![no_std]
#![no_main]

extern crate alloc;

use cpuheap::{Config, CriticalSectionRawMutex, FatalHook, Fault, Heap, SingleCore, StaticRegion};
use panic_halt as _;

// One core, locks that mask interrupts (so interrupt handlers may allocate), one CPU slot,
// owned by the core. Every byte of it starts at zero: `HEAP` is `.bss`, nothing in flash.
#[global_allocator]
static HEAP: Heap<StaticRegion<1>, SingleCore<OnFatal>, CriticalSectionRawMutex, 1> = Heap::new(
    StaticRegion::new(),
    // SAFETY: one core; only `main` and the interrupt handlers that interrupt it use the heap.
    unsafe { SingleCore::with_fatal_hook(OnFatal) },
    Config::small(),
);

/// A double free, a foreign or interior pointer (more of them with the `checked` feature).
struct OnFatal;
impl FatalHook for OnFatal {
    fn fatal(&self, fault: &Fault) -> ! {
        // Log it (feature `defmt`: `defmt::error!("{}", fault)`), then reset or halt.
        panic!("{}", fault)
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // Once, before the first allocation and before interrupts that allocate are enabled:
    // 16 KiB of RAM, in a static buffer that the macro declares and hands over.
    cpuheap::init_region!(HEAP, 16 * 1024);
    let v = alloc::vec![1, 2, 3];
    // HEAP.stats(), HEAP.check_invariants() for diagnostics.
    core::hint::black_box(v);
    loop {
        cortex_m::asm::wfi();
    }
}
