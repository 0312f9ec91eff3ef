//! The hosted wing (feature `std`, 64-bit Linux): everything a desktop program needs on top
//! of the `no_std` core, behind the one `cfg` in `lib.rs`.
//!
//! - [`mmap`], [`MmapSource`], pages from the kernel (reservations, direct maps, `madvise`);
//! - [`platform`], [`ThreadSlot`] and [`SchedCpu`] (which CPU slot a thread uses) and
//!   [`YieldMutex`] (the lock of the central cache and page heap);
//! - `std_heap`: [`StdHeap`], the ready `#[global_allocator]`.

pub mod mmap;
pub mod platform;
mod std_heap;

pub use self::mmap::{os_max_request, os_page_size, MmapSource};
pub use self::platform::{SchedCpu, StdPlatform, ThreadSlot, YieldMutex, OWNED_IDS, SHARED_SLOTS};
pub use self::std_heap::{StdHeap, StdHeapInner, STD_CPU_SLOTS};
