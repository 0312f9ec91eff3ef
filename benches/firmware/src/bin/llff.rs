//! embedded-alloc's `LlffHeap` (linked_list_allocator inside a critical section).
#![no_std]
#![no_main]

extern crate alloc;

use cpuheap_firmware_bench::{finish, workload, Region, REGION_BYTES};
use embedded_alloc::LlffHeap as Heap;

#[global_allocator]
static HEAP: Heap = Heap::empty();

static mut REGION: Region = Region::new();

#[cortex_m_rt::entry]
fn main() -> ! {
    // SAFETY: once, before the first allocation; nothing else refers to REGION.
    unsafe { HEAP.init(core::ptr::addr_of_mut!(REGION) as usize, REGION_BYTES) };
    workload!();
    finish!(&HEAP)
}
