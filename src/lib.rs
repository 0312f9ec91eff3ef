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
//! use core::mem::MaybeUninit;
//! use cpuheap::{Config, Heap, SingleCpu, StaticRegion};
//!
//! #[global_allocator]
//! static HEAP: Heap<StaticRegion<1>> = Heap::new(StaticRegion::new(), SingleCpu::new(), Config::small());
//! static mut REGION: [MaybeUninit<u8>; 32 * 1024] = [MaybeUninit::uninit(); 32 * 1024];
//!
//! fn main() {
//!     // SAFETY: called once, before anything else uses REGION.
//!     HEAP.add_region(unsafe { &mut *core::ptr::addr_of_mut!(REGION) });
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
pub use platform::{
    default_fatal, ExclusiveSlots, Fault, FaultKind, Platform, SingleCore, SingleCpu,
};
pub use stats::Stats;
#[cfg(feature = "critical-section")]
pub use sync::CriticalSectionRawMutex;
pub use sync::DefaultRawMutex;
