//! linked_list_allocator's `LockedHeap` (spinning_top spin lock).
#![no_std]
#![no_main]

extern crate alloc;

use cpuheap_firmware_bench::{finish, workload, Region, REGION_BYTES};
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static mut REGION: Region = Region::new();

#[cortex_m_rt::entry]
fn main() -> ! {
    // SAFETY: once, before the first allocation; nothing else refers to REGION.
    unsafe {
        HEAP.lock()
            .init(core::ptr::addr_of_mut!(REGION) as *mut u8, REGION_BYTES)
    };
    workload!();
    finish!(&HEAP)
}
