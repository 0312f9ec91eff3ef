//! cpuheap as in README's firmware quick start: one static region, one CPU, locks that
//! mask interrupts, one CPU slot, `Config::small()`, a zero-sized fatal hook (so `HEAP` is
//! `.bss`), and the region handed over by `init_region!`.
#![no_std]
#![no_main]

extern crate alloc;

use cpuheap::{Config, CriticalSectionRawMutex, FatalHook, Fault, Heap, SingleCore, StaticRegion};
use cpuheap_firmware_bench::{finish, workload, REGION_BYTES};

#[global_allocator]
static HEAP: Heap<StaticRegion<1>, SingleCore<OnFatal>, CriticalSectionRawMutex, 1> = Heap::new(
    StaticRegion::new(),
    // SAFETY: one core; only `main` and the interrupt handlers that interrupt it use the heap.
    unsafe { SingleCore::with_fatal_hook(OnFatal) },
    Config::small(),
);

struct OnFatal;
impl FatalHook for OnFatal {
    fn fatal(&self, fault: &Fault) -> ! {
        panic!("{}", fault)
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    cpuheap::init_region!(HEAP, REGION_BYTES);
    workload!();
    finish!(&HEAP)
}
