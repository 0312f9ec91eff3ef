//! Statistics: what the heap holds in each tier, and how often each operation ran.
//!
//! The fast path only touches counters of its own CPU slot, with plain loads and stores. The
//! slower paths (refills, spans, large objects, operations that found their slot taken) use
//! shared atomics. Reading the statistics sums the slots; it takes no lock.

use crate::cpu_cache::FreeLists;
use crate::sync::{AtomicUsize, Ordering, PlainUsize};

/// A snapshot of the heap's statistics. Byte counts of objects are in object (size-class or
/// page-rounded) sizes, not requested sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// Bytes of free objects in the central cache's spans (including never-carved ones, and
    /// the spans of the reserve, whose objects are all free).
    pub central_cache_bytes: usize,
    /// Bytes of free objects in the central cache's transfer caches (whole batches between
    /// one CPU's flush and another's refill).
    pub transfer_cache_bytes: usize,
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

/// Counters of one slot, written only by the slot's holder (plain load and store, no
/// read-modify-write) and read by anyone.
///
/// The fast path touches one of them, `allocs`. The rest follow from the slow-path counters
/// and the lists: objects enter a slot by refills and frees and leave it by allocations and
/// flushes, so `frees = allocs + flushed + listed - refilled` (in objects), and the bytes the
/// slot handed out net of those it took back are `refill_bytes - flush_bytes - listed bytes`.
pub(crate) struct SlotStats {
    pub(crate) allocs: PlainUsize,
    pub(crate) refills: PlainUsize,
    pub(crate) flushes: PlainUsize,
    /// Objects taken from the central cache, and given back to it.
    pub(crate) refill_objs: PlainUsize,
    pub(crate) flush_objs: PlainUsize,
    /// Bytes taken from the central cache.
    pub(crate) refill_bytes: PlainUsize,
    /// Bytes given back to the central cache.
    pub(crate) flush_bytes: PlainUsize,
    /// The slot's net in-use bytes as last folded into the heap-wide counter.
    pub(crate) published: PlainUsize,
    /// `realloc` calls made on this CPU, and how many stayed in place, on this CPU's own
    /// cache line. Realloc does not hold the slot: these are added by `CpuCache::count`, with
    /// a plain load and store by a context that owns the slot on a multi-core platform, else
    /// atomically.
    pub(crate) reallocs: AtomicUsize,
    pub(crate) reallocs_in_place: AtomicUsize,
}

impl SlotStats {
    pub(crate) const fn new() -> Self {
        Self {
            allocs: PlainUsize::new(0),
            refills: PlainUsize::new(0),
            flushes: PlainUsize::new(0),
            refill_objs: PlainUsize::new(0),
            flush_objs: PlainUsize::new(0),
            refill_bytes: PlainUsize::new(0),
            flush_bytes: PlainUsize::new(0),
            published: PlainUsize::new(0),
            reallocs: AtomicUsize::new(0),
            reallocs_in_place: AtomicUsize::new(0),
        }
    }

    /// Bytes allocated through this slot net of bytes freed through it, given the bytes on
    /// its lists (two's complement: a slot that frees what others allocated goes negative).
    pub(crate) fn net_in_use(&self, listed_bytes: usize) -> usize {
        self.refill_bytes
            .load(Ordering::Relaxed)
            .wrapping_sub(self.flush_bytes.load(Ordering::Relaxed))
            .wrapping_sub(listed_bytes)
    }

    /// Frees made through this slot, given the objects on its lists.
    pub(crate) fn frees(&self, listed: usize) -> usize {
        let ld = |c: &PlainUsize| c.load(Ordering::Relaxed);
        (ld(&self.allocs) + ld(&self.flush_objs) + listed).wrapping_sub(ld(&self.refill_objs))
    }
}

/// Add `n` to a counter that only its owner (the slot holder) writes: a plain load and store,
/// no read-modify-write.
#[inline(always)]
pub(crate) fn add_owned(c: &PlainUsize, n: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
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
    #[inline(never)]
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

    /// Count an allocation or free made outside a slot. (Out of line: four atomic
    /// read-modify-writes, inlined at five slow-path sites.)
    #[inline(never)]
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
/// Counters of the page heap, readable without its lock.
pub(crate) struct PageStats {
    /// Pages in all extents.
    pub(crate) pages: PlainUsize,
    /// Free pages in all extents.
    pub(crate) free_pages: PlainUsize,
    /// Bytes of metadata (carved pages and metadata pages taken from extents).
    pub(crate) meta_bytes: PlainUsize,
    /// Bytes obtained from the source.
    pub(crate) source_bytes: PlainUsize,
    /// Calls to the source that returned memory.
    pub(crate) grows: PlainUsize,
    /// Pages handed out as spans.
    pub(crate) span_pages: PlainUsize,
    /// Spans handed out / given back.
    pub(crate) spans_allocated: PlainUsize,
    pub(crate) spans_freed: PlainUsize,
    /// Free pages backed by memory: not known clean (see the module docs).
    pub(crate) idle_pages: PlainUsize,
    /// Bytes given back with `discard` (cumulative), and how many calls that took.
    pub(crate) discarded_bytes: PlainUsize,
    pub(crate) discards: PlainUsize,
    /// Bytes of runs given back with `release` (cumulative).
    pub(crate) released_bytes: PlainUsize,
    /// Direct runs held now.
    pub(crate) direct_runs: PlainUsize,
}

impl PageStats {
    pub(crate) const fn new() -> Self {
        Self {
            pages: PlainUsize::new(0),
            free_pages: PlainUsize::new(0),
            meta_bytes: PlainUsize::new(0),
            source_bytes: PlainUsize::new(0),
            grows: PlainUsize::new(0),
            span_pages: PlainUsize::new(0),
            spans_allocated: PlainUsize::new(0),
            spans_freed: PlainUsize::new(0),
            idle_pages: PlainUsize::new(0),
            discarded_bytes: PlainUsize::new(0),
            discards: PlainUsize::new(0),
            released_bytes: PlainUsize::new(0),
            direct_runs: PlainUsize::new(0),
        }
    }
}

impl Stats {
    /// Sum every tier's counters into a snapshot: the slots' own counters, the shared ones,
    /// the central tier's free bytes (spans, transfer caches) and the page heap's counters.
    pub(crate) fn collect<'a>(
        slots: impl Iterator<Item = (&'a SlotStats, &'a FreeLists)>,
        shared: &SharedStats,
        (central_cache_bytes, transfer_cache_bytes): (usize, usize),
        pages: &PageStats,
        page_shift: u32,
    ) -> Stats {
        let mut s = Stats::default();
        let mut in_use = shared.in_use.load(Ordering::Relaxed);
        for (st, lists) in slots {
            let (listed, listed_bytes) = lists.contents();
            s.allocs += st.allocs.load(Ordering::Relaxed);
            s.frees += st.frees(listed);
            s.refills += st.refills.load(Ordering::Relaxed);
            s.flushes += st.flushes.load(Ordering::Relaxed);
            s.cpu_cache_bytes += listed_bytes;
            s.reallocs += st.reallocs.load(Ordering::Relaxed);
            s.reallocs_in_place += st.reallocs_in_place.load(Ordering::Relaxed);
            in_use = in_use
                .wrapping_add(st.net_in_use(listed_bytes))
                .wrapping_sub(st.published.load(Ordering::Relaxed));
        }
        s.in_use_bytes = in_use;
        // The slots publish on their slow paths only, so a peak reached between two of them
        // is first seen here: record it, so that a later snapshot's peak is never lower.
        if (in_use as isize) > 0 && in_use > shared.peak.load(Ordering::Relaxed) {
            shared.peak.fetch_max(in_use, Ordering::Relaxed);
        }
        s.peak_in_use_bytes = shared.peak.load(Ordering::Relaxed).max(in_use);
        s.allocs += shared.other_allocs.load(Ordering::Relaxed);
        s.frees += shared.other_frees.load(Ordering::Relaxed);
        s.large_allocs = shared.large_allocs.load(Ordering::Relaxed);
        s.slot_fallbacks = shared.fallbacks.load(Ordering::Relaxed);
        s.drains = shared.drains.load(Ordering::Relaxed);
        s.failed_allocs = shared.failed.load(Ordering::Relaxed);
        s.central_cache_bytes = central_cache_bytes;
        s.transfer_cache_bytes = transfer_cache_bytes;
        let pages_bytes = |c: &PlainUsize| c.load(Ordering::Relaxed) << page_shift;
        s.span_bytes = pages_bytes(&pages.span_pages);
        s.page_heap_free_bytes = pages_bytes(&pages.free_pages);
        s.page_heap_idle_bytes = pages_bytes(&pages.idle_pages);
        s.metadata_bytes = pages.meta_bytes.load(Ordering::Relaxed);
        s.source_bytes = pages.source_bytes.load(Ordering::Relaxed);
        s.source_grows = pages.grows.load(Ordering::Relaxed);
        s.spans_allocated = pages.spans_allocated.load(Ordering::Relaxed);
        s.spans_freed = pages.spans_freed.load(Ordering::Relaxed);
        s.discarded_bytes = pages.discarded_bytes.load(Ordering::Relaxed);
        s.discards = pages.discards.load(Ordering::Relaxed);
        s.released_bytes = pages.released_bytes.load(Ordering::Relaxed);
        s.direct_runs = pages.direct_runs.load(Ordering::Relaxed);
        s
    }
}
