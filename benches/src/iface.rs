//! The one interface every allocator in the harness enters through.
//!
//! Workloads are generic over `A: BenchAlloc`, so each allocator's fast path is
//! monomorphised and inlined into the workload loop: no trait-object dispatch.

use core::alloc::{GlobalAlloc, Layout};

/// Common allocator interface used by every workload.
///
/// # Safety
/// Same contract as [`GlobalAlloc`].
pub unsafe trait BenchAlloc: Sync {
    /// Allocate; null on failure.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;
    /// Free a block from [`BenchAlloc::alloc`] with the same layout.
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`].
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout);
    /// Resize; null on failure (the old block stays valid then).
    ///
    /// # Safety
    /// As [`GlobalAlloc::realloc`].
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8;
    /// Called on every worker thread before it touches the allocator.
    /// `slot` is the worker's index within its workload (0, 1, ...).
    fn thread_start(&self, _slot: usize) {}
    /// Called on every worker thread after its last call into the allocator.
    fn thread_end(&self) {}
}

/// Adapter: any `GlobalAlloc + Sync` is a [`BenchAlloc`].
pub struct Global<A>(pub A);

unsafe impl<A: GlobalAlloc + Sync> BenchAlloc for Global<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.alloc(layout)
    }
    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }
    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.0.realloc(ptr, layout, new_size)
    }
}

/// The harness's per-thread slot index, read by adapters whose platform hook needs a
/// CPU number (cpuheap over a fixed region). Set by `thread_start`.
pub mod slot {
    use core::cell::Cell;
    std::thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(0) };
    }
    /// Set this thread's slot.
    pub fn set(slot: usize) {
        SLOT.with(|s| s.set(slot));
    }
    /// This thread's slot.
    #[inline(always)]
    pub fn get() -> usize {
        SLOT.with(|s| s.get())
    }
}
