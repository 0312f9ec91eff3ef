//! cpuheap as in README's firmware quick start: one static region, one CPU, locks that
//! mask interrupts, one CPU slot, `Config::small()`.
#![no_std]
#![no_main]

extern crate alloc;

use cpuheap::{Config, CriticalSectionRawMutex, Fault, Heap, SingleCore, StaticRegion};
use cpuheap_firmware_bench::{finish, workload, Region};

#[global_allocator]
static HEAP: Heap<StaticRegion<1>, SingleCore, CriticalSectionRawMutex, 1> = Heap::new(
    StaticRegion::new(),
    // SAFETY: one core; only `main` and the interrupt handlers that interrupt it use the heap.
    unsafe { SingleCore::with_fatal_hook(on_fatal) },
    Config::small(),
);

static mut REGION: Region = Region::new();

fn on_fatal(fault: &Fault) -> ! {
    panic!("{}", fault)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // SAFETY: once, before the first allocation; nothing else refers to REGION.
    HEAP.add_region(unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 });
    workload!();
    finish!(&HEAP)
}
