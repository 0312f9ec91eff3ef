//! [`Config`]: page size, small-object limit, cache budgets and growth step of a heap.

use crate::size_class::MAX_CLASS_SIZE;

/// Requests up to this size with alignment up to 8 take the table-lookup fast path.
pub(crate) const FAST_SIZE: usize = 1024;

/// Largest `min_span_bytes` a configuration may ask for (span object counts are `u16`).
pub(crate) const MAX_MIN_SPAN_BYTES: usize = 32 * 1024;

/// Sizes and budgets of a heap. Build one with [`Config::new`] (desktop and kernel sizes) or
/// [`Config::small`] (firmware), then adjust with the `with_*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Page size in bytes: a power of two from 256 to 64 KiB. Spans are whole pages, and the
    /// page map has one entry per page.
    pub page_size: usize,
    /// Largest request served from a size class; larger ones are page spans. At most
    /// [`MAX_CLASS_SIZE`] (64 KiB; 32 KiB with feature `classes-32k` alone, 2 KiB without
    /// it), which is `Config::new()`'s; at least 8 pages where the pages
    /// allow it, so that a page span never wastes more than 1/8.
    pub max_small: usize,
    /// Each CPU slot's budget: the bytes its free lists' limits may allow together (the sum
    /// over classes of limit × class size), so at most this many bytes of free objects wait
    /// in a slot. A slot whose limits would allow more halves other classes' limits.
    pub cpu_cache_bytes: usize,
    /// About how many bytes move between a CPU slot and the central cache in one batch.
    pub batch_bytes: usize,
    /// The least the heap asks its source for when it grows.
    pub grow_bytes: usize,
    /// The least a size-class span spans. Larger spans make the out-of-line span record
    /// (28 bytes on 32-bit targets, 48 on 64-bit) a smaller share; smaller ones make each class
    /// hold on to less memory, which matters in a heap of a few KiB.
    pub min_span_bytes: usize,
    /// Whole batches each size class's transfer cache may hold: flushed batches parked for
    /// the next refill of any CPU, so objects that cross CPUs skip their spans. 0 turns it off;
    /// a heap with one CPU slot has none.
    pub transfer_batches: u16,
    /// Spans with no object in use each size class keeps instead of returning them to the
    /// page heap at once (so a class that empties and refills a span in turn does not carve
    /// it again). The out-of-memory drain returns them. At most 255.
    pub reserve_spans: u16,
}

impl Config {
    /// For kernels and desktops: 4 KiB pages, 4 MiB of list capacity per CPU slot, 1 MiB
    /// growth steps, a transfer cache of 8 batches and one reserved empty span per class.
    pub const fn new() -> Self {
        Self {
            page_size: 4096,
            max_small: MAX_CLASS_SIZE,
            cpu_cache_bytes: 4 * 1024 * 1024,
            batch_bytes: 16 * 1024,
            grow_bytes: 1024 * 1024,
            min_span_bytes: 4096,
            transfer_batches: 8,
            reserve_spans: 1,
        }
    }

    /// For firmware heaps of a few KiB to a few hundred KiB: 256-byte pages (so objects up to
    /// 2 KiB come from size classes), spans of one page, 1 KiB per CPU slot, and no transfer
    /// cache or span reserve (every free byte goes back to the page heap as soon as it can).
    pub const fn small() -> Self {
        Self {
            page_size: 256,
            max_small: 8 * 256,
            cpu_cache_bytes: 1024,
            batch_bytes: 256,
            grow_bytes: 0,
            min_span_bytes: 256,
            transfer_batches: 0,
            reserve_spans: 0,
        }
    }

    /// Set the page size; the small-object limit follows (8 pages, at most 32 KiB).
    pub const fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self.max_small = if 8 * page_size < MAX_CLASS_SIZE {
            8 * page_size
        } else {
            MAX_CLASS_SIZE
        };
        self
    }

    /// Set the per-slot cache budget.
    pub const fn with_cpu_cache_bytes(mut self, bytes: usize) -> Self {
        self.cpu_cache_bytes = bytes;
        self
    }

    /// Set the batch size in bytes.
    pub const fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// Set the least bytes of a size-class span (at most 32 KiB).
    pub const fn with_min_span_bytes(mut self, bytes: usize) -> Self {
        self.min_span_bytes = bytes;
        self
    }

    /// Set the whole batches each class's transfer cache may hold (0: none).
    pub const fn with_transfer_batches(mut self, batches: u16) -> Self {
        self.transfer_batches = batches;
        self
    }

    /// Set the empty spans each class may keep (0: each goes back to the page heap at once;
    /// at most 255).
    pub const fn with_reserve_spans(mut self, spans: u16) -> Self {
        self.reserve_spans = spans;
        self
    }

    /// Set the growth step.
    pub const fn with_grow_bytes(mut self, bytes: usize) -> Self {
        self.grow_bytes = bytes;
        self
    }

    /// Check the configuration; panics (at compile time when the heap is a `static`) if it
    /// is invalid.
    pub(crate) const fn validate(&self) {
        assert!(
            self.page_size.is_power_of_two() && self.page_size >= 256 && self.page_size <= 65536,
            "cpuheap: page_size must be a power of two from 256 to 65536"
        );
        assert!(
            self.max_small >= FAST_SIZE * 2 && self.max_small <= MAX_CLASS_SIZE,
            "cpuheap: max_small must be from 2048 to MAX_CLASS_SIZE (65536; 32768 with feature classes-32k alone; 2048 without it)"
        );
        // A span's object counts are `u16`s: with spans up to 8 x `min_span_bytes` (2 x for
        // the tail-waste search), 32 KiB keeps even 8-byte objects below 65 536 per span
        // (`span_capacity_fits_u16` in size_class.rs checks every class and page size).
        assert!(
            self.min_span_bytes <= MAX_MIN_SPAN_BYTES,
            "cpuheap: min_span_bytes must be at most 32768"
        );
        // The reserve's count shares a word with the class's span count (8 bits of it).
        assert!(
            self.reserve_spans <= 255,
            "cpuheap: reserve_spans must be at most 255"
        );
    }
}

/// A configuration value as a heap stores it: XOR'd with `Config::small()`'s (`SMALL`), so
/// that a heap built with `Config::small()` holds only zeros and a `static` of it is placed in
/// `.bss` (RAM only, no initial image in flash). Decoding costs one XOR, on slow paths.
#[derive(Clone, Copy)]
pub(crate) struct Stored<const SMALL: usize>(usize);

impl<const SMALL: usize> Stored<SMALL> {
    pub(crate) const fn new(value: usize) -> Self {
        Self(value ^ SMALL)
    }

    #[inline(always)]
    pub(crate) const fn get(self) -> usize {
        self.0 ^ SMALL
    }
}

/// `Config::small()`, whose values are stored as zeros.
const SMALL: Config = Config::small();
/// [`Config::max_small`] as stored.
pub(crate) type StoredMaxSmall = Stored<{ SMALL.max_small }>;
/// [`Config::cpu_cache_bytes`] as stored.
pub(crate) type StoredCacheBytes = Stored<{ SMALL.cpu_cache_bytes }>;
/// [`Config::batch_bytes`] as stored.
pub(crate) type StoredBatchBytes = Stored<{ SMALL.batch_bytes }>;
/// [`Config::grow_bytes`] as stored.
pub(crate) type StoredGrowBytes = Stored<{ SMALL.grow_bytes }>;
/// [`Config::min_span_bytes`] as stored.
pub(crate) type StoredMinSpan = Stored<{ SMALL.min_span_bytes }>;
/// The page shift (log2 of [`Config::page_size`]) as stored.
pub(crate) type StoredPageShift = Stored<{ SMALL.page_size.trailing_zeros() as usize }>;

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_spans_fit_their_eight_bits() {
        Config::new().with_reserve_spans(255).validate();
        let too_many =
            std::panic::catch_unwind(|| Config::new().with_reserve_spans(256).validate());
        assert!(
            too_many.is_err(),
            "256 reserved spans would carry into the span count"
        );
    }
}
