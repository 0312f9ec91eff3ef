//! cpuheap as in README's firmware quick start: one static region, one CPU, locks that
//! mask interrupts, one CPU slot, `Config::small()`.
#![no_std]
#![no_main]

extern crate alloc;

use cpuheap::{Config, CriticalSectionRawMutex, Fault, Heap, SingleCpu, StaticRegion};
use cpuheap_firmware_bench::{finish, workload, Region};

#[global_allocator]
static HEAP: Heap<StaticRegion<1>, SingleCpu, CriticalSectionRawMutex, 1> = Heap::new(
    StaticRegion::new(),
    SingleCpu::with_fatal_hook(on_fatal),
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
