//! talc 5: `TalcLock` (spinning_top's spin lock, as in talc's README) claiming the static
//! region on first use.
#![no_std]
#![no_main]

extern crate alloc;

use cpuheap_firmware_bench::{finish, workload, Region};
use talc::{source::Claim, TalcLock};

static mut REGION: Region = Region::new();

#[global_allocator]
// SAFETY: REGION is used by nothing else.
static HEAP: TalcLock<spinning_top::RawSpinlock, Claim> =
    TalcLock::new(unsafe { Claim::array(core::ptr::addr_of_mut!(REGION.0)) });

#[cortex_m_rt::entry]
fn main() -> ! {
    workload!();
    finish!(&HEAP)
}
