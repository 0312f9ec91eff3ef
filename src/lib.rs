//! # cpuheap
//!
//! A TCMalloc-style memory allocator for places with no OS underneath: per-CPU caches over a
//! central cache with one lock per size class, over a bitmap page heap, fed by memory the
//! caller hands over.
//!
//! ```text
//!   alloc ──► CPU slot (try-lock, free list per class) ──► central cache[class] (lock)
//!                                                            │
//!                                                            ▼
//!                          page map (lock-free reads) ◄── page heap (bitmap, lock) ◄── PageSource
//! ```
//!
//! - [`size_class`]: the compile-time size-class table.
//! - `cpu_cache`: tier 1, per-CPU slots and their fast paths, refills, flushes, budgets.
//! - `central_cache`: tier 2, per-class span lists, one lock each.
//! - `page_heap`: tier 3, the bitmap page heap, growth, release, span lifecycle, metadata.
//! - [`page_map`]: page → span, lock-free.
//! - [`page_source`]: [`PageSource`] and [`StaticRegion`].
//! - `stats`: every counter and the [`Stats`] snapshot.
//! - [`Heap`] dispatches over the tiers and implements `GlobalAlloc` and `allocator_api2`'s
//!   `Allocator`.
//! - `hosted` (feature `std`): `MmapSource`, the std platforms and
//!   `StdHeap`.
//!
//! ```no_run
//! use cpuheap::{Config, Heap, SingleCpu, StaticRegion};
//!
//! #[global_allocator]
//! static HEAP: Heap<StaticRegion<1>> = Heap::new(StaticRegion::new(), SingleCpu::new(), Config::small());
//!
//! fn main() {
//!     // 32 KiB of static memory, handed over once.
//!     cpuheap::init_region!(HEAP, 32 * 1024);
//! }
//! ```
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    unsafe_op_in_unsafe_fn
)]

mod central_cache;
mod cpu_cache;
mod heap;
mod page_heap;
pub mod page_map;
pub mod page_source;
mod platform;
pub mod size_class;
mod span;
mod stats;
mod sync;

#[cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]
pub mod hosted;
#[cfg(all(feature = "std", target_os = "linux", target_pointer_width = "64"))]
pub use hosted::{
    os_max_request, os_page_size, MmapSource, SchedCpu, StdHeap, StdHeapInner, StdPlatform,
    ThreadSlot, YieldMutex, STD_CPU_SLOTS,
};

pub use heap::{Config, Heap, InvariantError};
pub use page_map::{FlatMap, PageMap};
#[cfg(target_pointer_width = "64")]
pub use page_map::{RadixMap, WindowMap};
pub use page_source::{PageSource, Run, StaticRegion, Window};

/// What [`init_region!`] expands to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use crate::page_source::RegionMemory;
    pub use static_cell::ConstStaticCell;
}

/// Give a heap over [`StaticRegion`]s a region of `$bytes` bytes of static memory, safely:
/// the macro declares the memory in a private `static` and hands it to
/// [`Heap::add_region`]. No `unsafe` and no `static mut` in your code.
///
/// The `static` is a `static_cell::ConstStaticCell` (a once-flag) of `$bytes` uninitialised
/// bytes aligned to 256 (the smallest page size, so `Config::small()`'s pages lose nothing to
/// trimming): `.bss`, `$bytes` rounded up to a multiple of 256, plus 256 for the flag.
///
/// Evaluates to `true` if the heap took the region. Each place the macro is written has its
/// own buffer, which it hands over the first time that place runs; if it runs again (a loop,
/// a function called twice), it hands nothing over and evaluates to `false`, so no memory is
/// ever given to a heap twice. `false` too if the heap already holds as many regions as its
/// `StaticRegion<N>` takes (the buffer is then lost).
///
/// Run it before the first allocation (and before interrupt handlers that allocate are
/// enabled), or later to give the heap more memory.
///
/// ```
/// use cpuheap::{Config, Heap, SingleCpu, StaticRegion};
///
/// static HEAP: Heap<StaticRegion<1>> = Heap::new(StaticRegion::new(), SingleCpu::new(), Config::small());
///
/// fn init() -> bool {
///     cpuheap::init_region!(HEAP, 16 * 1024)
/// }
///
/// assert!(init(), "16 KiB handed over");
/// assert!(!init(), "the same buffer is never handed over twice");
/// let v = allocator_api2::vec::Vec::<u32, _>::with_capacity_in(100, &HEAP);
/// assert!(v.capacity() >= 100);
/// ```
#[macro_export]
macro_rules! init_region {
    ($heap:expr, $bytes:expr $(,)?) => {{
        static BUFFER: $crate::__private::ConstStaticCell<
            $crate::__private::RegionMemory<{ $bytes }>,
        > = $crate::__private::ConstStaticCell::new($crate::__private::RegionMemory::new());
        match BUFFER.try_take() {
            ::core::option::Option::Some(memory) => $heap.add_region(memory.region()),
            ::core::option::Option::None => false,
        }
    }};
}
pub use platform::{
    default_fatal, DefaultFatal, ExclusiveSlots, FatalHook, Fault, FaultKind, Platform, SingleCore,
    SingleCpu,
};
pub use stats::Stats;
#[cfg(feature = "critical-section")]
pub use sync::CriticalSectionRawMutex;
pub use sync::DefaultRawMutex;
