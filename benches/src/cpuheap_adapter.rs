//! cpuheap's adapters: `Heap` over a fixed region (bare-metal comparison) and, with
//! feature `cpuheap-std`, `StdHeap` (desktop comparison).

#[cfg(feature = "cpuheap")]
mod imp {
    use cpuheap::{default_fatal, Config, DefaultRawMutex, Fault, Heap, Platform, StaticRegion};

    use crate::iface::slot;
    use crate::peers::Region;

    /// CPU slots of the fixed-region heap (the machine has 2 cores; workloads use
    /// at most 2 threads).
    pub const CPUS: usize = 4;

    /// The harness's platform: the CPU slot is the worker's index in its workload, a
    /// thread-local read (`iface::slot`), as a std platform's thread-local slot would be.
    pub struct BenchPlatform;

    impl Platform for BenchPlatform {
        #[inline(always)]
        fn current_cpu(&self) -> usize {
            slot::get()
        }
        fn fatal(&self, fault: &Fault) -> ! {
            default_fatal(fault)
        }
    }

    /// cpuheap over one fixed region, default (desktop/kernel) configuration and the
    /// default spin lock for the lower tiers.
    pub type RegionHeap = Heap<StaticRegion<1>, BenchPlatform, DefaultRawMutex, CPUS>;

    /// Build a fresh cpuheap over `r` (boxed: the heap struct holds the per-CPU
    /// slots and central lists inline).
    pub fn region_heap(r: &Region) -> Box<RegionHeap> {
        let h = Box::new(RegionHeap::new(
            StaticRegion::new(),
            BenchPlatform,
            Config::new(),
        ));
        // SAFETY: the harness drops this heap before the region is reused or dropped.
        assert!(
            h.add_region(unsafe { r.as_static() }),
            "cpuheap refused the region"
        );
        h
    }

    /// [`crate::iface::BenchAlloc`] for cpuheap over a region: `thread_start` sets
    /// the CPU slot.
    pub struct RegionAdapter(pub Box<RegionHeap>);

    unsafe impl crate::iface::BenchAlloc for RegionAdapter {
        #[inline(always)]
        unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
            self.0.allocate(layout)
        }
        #[inline(always)]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
            self.0.deallocate(ptr, layout)
        }
        #[inline(always)]
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: core::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            self.0.reallocate(ptr, layout, new_size)
        }
        fn thread_start(&self, s: usize) {
            slot::set(s);
        }
    }
}

#[cfg(feature = "cpuheap")]
pub use imp::*;

/// Instantiate `$body` with `$a` bound to cpuheap (`CpuheapRegion` over `$region`, or
/// `CpuheapStd`).
#[cfg(feature = "cpuheap")]
#[doc(hidden)]
#[macro_export]
macro_rules! with_cpuheap {
    ($kind:expr, $region:expr, |$a:ident| $body:expr) => {{
        match $kind {
            $crate::peers::Kind::CpuheapRegion => {
                let h = $crate::cpuheap_adapter::RegionAdapter(
                    $crate::cpuheap_adapter::region_heap($region),
                );
                let $a = &h;
                $body
            }
            _ => $crate::with_cpuheap_std!($kind, $region, |$a| $body),
        }
    }};
}

/// cpuheap's desktop allocator, one process-wide instance like every other desktop
/// allocator in the comparison.
#[cfg(feature = "cpuheap-std")]
pub static STD_HEAP: cpuheap::StdHeap = cpuheap::StdHeap::new();

/// [`crate::iface::BenchAlloc`] for [`STD_HEAP`].
#[cfg(feature = "cpuheap-std")]
pub struct StdAdapter;

#[cfg(feature = "cpuheap-std")]
unsafe impl crate::iface::BenchAlloc for StdAdapter {
    #[inline(always)]
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        core::alloc::GlobalAlloc::alloc(&STD_HEAP, layout)
    }
    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        core::alloc::GlobalAlloc::dealloc(&STD_HEAP, ptr, layout)
    }
    #[inline(always)]
    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        layout: core::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        core::alloc::GlobalAlloc::realloc(&STD_HEAP, ptr, layout, new_size)
    }
}

#[cfg(feature = "cpuheap-std")]
#[doc(hidden)]
#[macro_export]
macro_rules! with_cpuheap_std {
    ($kind:expr, $region:expr, |$a:ident| $body:expr) => {{
        let _ = $region;
        let $a = &$crate::cpuheap_adapter::StdAdapter;
        $body
    }};
}

#[cfg(not(feature = "cpuheap-std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! with_cpuheap_std {
    ($kind:expr, $region:expr, |$a:ident| $body:expr) => {{
        let _ = $region;
        panic!(
            "{:?}: this harness was built without cpuheap's StdHeap (feature cpuheap-std)",
            $kind
        )
    }};
}

#[cfg(not(feature = "cpuheap"))]
#[doc(hidden)]
#[macro_export]
macro_rules! with_cpuheap {
    ($kind:expr, $region:expr, |$a:ident| $body:expr) => {{
        let _ = $region;
        panic!("{:?}: this harness was built without cpuheap", $kind)
    }};
}
