//! [`StdHeap`]: cpuheap as the global allocator of a desktop program.

use core::alloc::{GlobalAlloc, Layout};
use core::ops::Deref;

use crate::heap::{Config, Heap};
use lock_api::RawMutex;

use super::mmap::MmapSource;
use super::platform::{StdPlatform, YieldMutex, OWNED_IDS, SHARED_SLOTS};

/// Slots of [`StdHeap`]: one owned by each of up to [`OWNED_IDS`] live threads (entered
/// without atomics), and [`SHARED_SLOTS`] try-locked ones that any further threads share.
pub const STD_CPU_SLOTS: usize = OWNED_IDS + SHARED_SLOTS;

/// The heap inside [`StdHeap`] with lock `R`.
pub type StdHeapInner<R = YieldMutex> = Heap<MmapSource, StdPlatform, R, STD_CPU_SLOTS>;

/// A ready desktop allocator: [`STD_CPU_SLOTS`] caches, one per thread (round robin, through
/// a thread-local index; see [`StdPlatform`]), a spin-then-yield lock for the central cache
/// and the page heap, and pages from [`MmapSource`] (runs of 32 MiB from 1 GiB reservations,
/// direct mappings from 8 MiB, idle pages beyond 64 MiB given back with `madvise`).
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: cpuheap::StdHeap = cpuheap::StdHeap::new();
///
/// fn main() {
///     let v: Vec<u32> = (0..1000).collect();
///     assert_eq!(v.len(), 1000);
///     eprintln!("{:?}", GLOBAL.stats());
/// }
/// ```
///
/// It never panics or unwinds out of its `GlobalAlloc` methods: out of memory is a null
/// pointer, and a misuse it detects (a foreign or freed pointer; with the `checked` feature
/// also double and interior frees and mismatched layouts) prints the fault and aborts.
/// It derefs to the [`Heap`] inside for statistics and maintenance.
///
/// The lock of the central cache and page heap is a parameter, [`YieldMutex`] by default, so
/// that a user with needs of its own keeps everything else: the C library (`capi/`) uses a
/// lock that registers itself for its `fork()` handler.
pub struct StdHeap<R: RawMutex = YieldMutex>(StdHeapInner<R>);

impl StdHeap {
    /// The allocator with the default lock. Takes no memory until the first allocation.
    pub const fn new() -> Self {
        Self::with_lock()
    }
}

impl<R: RawMutex> StdHeap<R> {
    /// The configuration: [`Config::new`] (4 KiB pages, objects up to 64 KiB from size
    /// classes) with 32 MiB of list capacity per CPU slot instead of 4 MiB. A list's limit
    /// grows only when its class is used, and shrinks again in a phase of frees, so the cap
    /// matters only to a thread whose working set passes it: at 4 MiB a thread churning 7 MiB
    /// of 8 B–64 KiB blocks (the bench's mixed workloads) refilled on 15 % of its allocations
    /// and ran at 0.8–0.9× mimalloc; at 16 MiB on 0.4 %, at mimalloc's speed. Against 16 MiB
    /// (5 runs of 500 ms, same runs): 4 MiB 0.77× on one thread and 0.59× on two, 8 MiB
    /// 0.88× and 0.81×, 32 MiB 1.03× and 1.07×, 64 MiB 1.02× and 1.06×; two threads' peak
    /// RSS 48 MB at 16 MiB, 52 MB at 32 MiB (mimalloc 74 MB). Kernels keep `Config::new()`'s
    /// 4 MiB.
    pub const CONFIG: Config = Config::new().with_cpu_cache_bytes(32 * 1024 * 1024);

    /// The allocator with lock `R`. Takes no memory until the first allocation.
    pub const fn with_lock() -> Self {
        Self(Heap::new(
            MmapSource::new(),
            StdPlatform::new(),
            Self::CONFIG,
        ))
    }

    /// The allocator over a source of your own settings (thresholds, limits).
    pub const fn with_source(source: MmapSource) -> Self {
        Self(Heap::new(source, StdPlatform::new(), Self::CONFIG))
    }

    /// The heap inside.
    pub fn heap(&self) -> &StdHeapInner<R> {
        &self.0
    }
}

impl Default for StdHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: RawMutex> Deref for StdHeap<R> {
    type Target = StdHeapInner<R>;
    fn deref(&self) -> &StdHeapInner<R> {
        &self.0
    }
}

// SAFETY: every method delegates to the heap's `GlobalAlloc` implementation, whose contract
// is the same.
unsafe impl<R: RawMutex> GlobalAlloc for StdHeap<R> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
