//! Statistics: what the heap holds in each tier, and how often each operation ran.
//!
//! The fast path only touches counters of its own CPU slot, with plain loads and stores. The
//! slower paths (refills, spans, large objects, operations that found their slot taken) use
//! shared atomics. Reading the statistics sums the slots; it takes no lock.

use crate::sync::{AtomicUsize, Ordering};

/// A snapshot of the heap's statistics. Byte counts of objects are in object (size-class or
/// page-rounded) sizes, not requested sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes allocated to the user and not freed.
    pub in_use_bytes: usize,
    /// Highest `in_use_bytes` seen. Sampled whenever a CPU slot refills from or flushes to the
    /// central cache (and on every page-span allocation), so it is exact to within what the
    /// slots cache: with one slot at most `Config::cpu_cache_bytes`; with more, each slot
    /// also holds back changes up to `min(cpu_cache_bytes / 16, 16 KiB)`.
    pub peak_in_use_bytes: usize,
    /// Bytes of free objects parked in CPU caches.
    pub cpu_cache_bytes: usize,
    /// Bytes of free objects in the central cache's spans (including never-carved ones).
    pub central_cache_bytes: usize,
    /// Bytes of pages handed out as spans (small-object spans and large objects).
    pub span_bytes: usize,
    /// Bytes of free pages in the page heap.
    pub page_heap_free_bytes: usize,
    /// Of `page_heap_free_bytes`, those that may be backed by memory: all of them, unless the
    /// source zero-fills (mmap), when pages never used or discarded since are left out.
    pub page_heap_idle_bytes: usize,
    /// Bytes of the heap's own metadata (bitmaps, page map, span records).
    pub metadata_bytes: usize,
    /// Bytes held from the page source: obtained, less runs given back.
    pub source_bytes: usize,
    /// Successful allocations (`alloc`, `alloc_zeroed`, and the allocation half of a moving
    /// `realloc`).
    pub allocs: usize,
    /// Frees.
    pub frees: usize,
    /// `realloc` calls, and how many of them stayed in place.
    pub reallocs: usize,
    /// `realloc` calls that kept the object where it was.
    pub reallocs_in_place: usize,
    /// Allocations served as page spans (above the small-object limit or page-aligned).
    pub large_allocs: usize,
    /// Batches a CPU cache took from the central cache.
    pub refills: usize,
    /// Batches a CPU cache sent back to the central cache.
    pub flushes: usize,
    /// Operations that found their CPU slot taken and went to the central cache.
    pub slot_fallbacks: usize,
    /// Spans handed out by the page heap, and given back.
    pub spans_allocated: usize,
    /// Spans given back to the page heap.
    pub spans_freed: usize,
    /// Times the page heap grew through the source.
    pub source_grows: usize,
    /// Bytes of idle pages given back to the source with `discard` (mmap: `madvise`), in
    /// total, and how many calls that took.
    pub discarded_bytes: usize,
    /// Calls that gave idle pages back (see `discarded_bytes`).
    pub discards: usize,
    /// Bytes of whole runs given back to the source with `release` (mmap: `munmap`), in
    /// total.
    pub released_bytes: usize,
    /// Direct runs (a huge span's own mapping) held now.
    pub direct_runs: usize,
    /// Times every cache was drained to avoid a false out-of-memory.
    pub drains: usize,
    /// Allocations that returned null.
    pub failed_allocs: usize,
}

/// Heap-wide counters for the paths that do not own a slot.
pub(crate) struct SharedStats {
    pub(crate) in_use: AtomicUsize,
    pub(crate) peak: AtomicUsize,
    pub(crate) other_allocs: AtomicUsize,
    pub(crate) other_frees: AtomicUsize,
    pub(crate) other_alloc_bytes: AtomicUsize,
    pub(crate) other_free_bytes: AtomicUsize,
    pub(crate) large_allocs: AtomicUsize,
    pub(crate) fallbacks: AtomicUsize,
    pub(crate) drains: AtomicUsize,
    pub(crate) failed: AtomicUsize,
}

impl SharedStats {
    pub(crate) const fn new() -> Self {
        Self {
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            other_allocs: AtomicUsize::new(0),
            other_frees: AtomicUsize::new(0),
            other_alloc_bytes: AtomicUsize::new(0),
            other_free_bytes: AtomicUsize::new(0),
            large_allocs: AtomicUsize::new(0),
            fallbacks: AtomicUsize::new(0),
            drains: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        }
    }

    /// Fold a net change of in-use bytes into the shared counter and the peak.
    pub(crate) fn sync_in_use(&self, delta: isize) {
        let now = self
            .in_use
            .fetch_add(delta as usize, Ordering::Relaxed)
            .wrapping_add(delta as usize);
        // Read before writing: in a steady state the peak does not move, and a plain load
        // keeps the shared line from bouncing between CPUs.
        if (now as isize) > 0 && now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Count an allocation or free made outside a slot.
    pub(crate) fn record_other(&self, alloc: bool, bytes: usize) {
        if alloc {
            self.other_allocs.fetch_add(1, Ordering::Relaxed);
            self.other_alloc_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.sync_in_use(bytes as isize);
        } else {
            self.other_frees.fetch_add(1, Ordering::Relaxed);
            self.other_free_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.sync_in_use(-(bytes as isize));
        }
    }
}
