//! Size classes: the table that maps a request to the object size that serves it.
//!
//! The table is computed at compile time. Up to 64 bytes the classes step by 8; above that
//! every power-of-two range `[2^k, 2^(k+1))` is cut into 8 equal steps, so a request above
//! 64 bytes never wastes more than 1/8 (12.5%) of the object that serves it. The largest class
//! is [`MAX_CLASS_SIZE`] (64 KiB; 32 KiB with feature `classes-32k` but not `big-classes`;
//! 2 KiB without either, the firmware set); a heap may use a
//! lower small-object limit (see
//! [`crate::Config`]), above which requests are served as whole page spans.
//!
//! Alignment is folded into the choice: a request with alignment `a` is served by the
//! smallest class that is both large enough and a multiple of `a`. Objects start at multiples
//! of their class size from a page-aligned span start, so such an object is `a`-aligned.

/// Number of entries in the class tables. Index 0 means "no class" (a page-level span).
#[cfg(feature = "big-classes")]
pub const NUM_CLASSES: usize = 89;
/// Number of entries in the class tables. Index 0 means "no class" (a page-level span).
#[cfg(all(feature = "classes-32k", not(feature = "big-classes")))]
pub const NUM_CLASSES: usize = 81;
/// Number of entries in the class tables. Index 0 means "no class" (a page-level span).
#[cfg(not(feature = "classes-32k"))]
pub const NUM_CLASSES: usize = 49;

/// The largest object size served from a size class: 64 KiB with feature `big-classes`
/// (default), 32 KiB with `classes-32k` alone, else 2 KiB (the firmware set, which
/// `Config::small()`'s 256-byte pages cap at 2 KiB anyway: every class costs a heap about
/// 16 bytes of `.bss` on a 32-bit target, its central list and a list in every CPU slot).
pub const MAX_CLASS_SIZE: usize = if cfg!(feature = "big-classes") {
    64 * 1024
} else if cfg!(feature = "classes-32k") {
    32 * 1024
} else {
    2 * 1024
};

/// An entry of the run-time size table: `u16` where every class fits (32 KiB), for half the
/// flash; `u32` with the 64 KiB class.
#[cfg(feature = "big-classes")]
type SizeEntry = u32;
#[cfg(not(feature = "big-classes"))]
type SizeEntry = u16;

/// Requests up to this size use the fine-grained (8-byte step) lookup table.
const SMALL_LOOKUP_LIMIT: usize = 1024;

/// Object size of each class; `CLASS_SIZES[0]` is 0 (no class).
pub const CLASS_SIZES: [u32; NUM_CLASSES] = build_sizes();

/// [`CLASS_SIZES`] as the heap reads it at run time (see [`SizeEntry`]).
const SIZES: [SizeEntry; NUM_CLASSES] = {
    let mut t = [0; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        t[i] = CLASS_SIZES[i] as SizeEntry;
        assert!(CLASS_SIZES[i] as u64 <= SizeEntry::MAX as u64);
        i += 1;
    }
    t
};

const SMALL_INDEX: [u8; SMALL_LOOKUP_LIMIT / 8 + 1] = build_small_index();

const fn build_sizes() -> [u32; NUM_CLASSES] {
    let mut sizes = [0u32; NUM_CLASSES];
    let mut i = 1;
    // 8, 16, ..., 64.
    while i <= 8 {
        sizes[i] = (i * 8) as u32;
        i += 1;
    }
    // Eight steps in every doubling from 64 up to the largest class.
    let mut base = 64usize;
    while base < MAX_CLASS_SIZE {
        let step = base / 8;
        let mut j = 1;
        while j <= 8 {
            sizes[i] = (base + j * step) as u32;
            i += 1;
            j += 1;
        }
        base *= 2;
    }
    assert!(i == NUM_CLASSES);
    sizes
}

/// The smallest class whose size is at least `size` (a linear walk, compile time only).
const fn first_class_at_least(size: usize) -> u8 {
    let sizes = build_sizes();
    let mut c = 1;
    while c < NUM_CLASSES {
        if sizes[c] as usize >= size {
            return c as u8;
        }
        c += 1;
    }
    panic!("size above the largest class");
}

const fn build_small_index() -> [u8; SMALL_LOOKUP_LIMIT / 8 + 1] {
    let mut t = [0u8; SMALL_LOOKUP_LIMIT / 8 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = first_class_at_least(i * 8);
        i += 1;
    }
    t
}

/// Object size of `class`.
#[inline(always)]
pub fn class_size(class: usize) -> usize {
    SIZES[class] as usize
}

/// Class for a request of `size` bytes with alignment at most 8. `size` must be at most
/// [`MAX_CLASS_SIZE`]. A zero size gets the smallest class.
#[inline(always)]
pub fn class_of_size(size: usize) -> usize {
    debug_assert!(size <= MAX_CLASS_SIZE);
    if size <= SMALL_LOOKUP_LIMIT {
        SMALL_INDEX[(size + 7) >> 3] as usize
    } else {
        class_above_64(size)
    }
}

/// The class of a request of `64 < size <= MAX_CLASS_SIZE` bytes, computed instead of looked
/// up (a table by `size / 128` up to 32 KiB was 257 bytes of flash): in the doubling
/// `[2^k, 2^(k+1))` that holds `size - 1`, classes are 8 steps of `2^(k-3)`, and the 8
/// classes up to 64 bytes and 8 per doubling from 64 come before them, so the class is
/// `8 (k - 5) + ceil((size - 2^k) / 2^(k-3))`.
#[inline]
fn class_above_64(size: usize) -> usize {
    debug_assert!(size > 64 && size <= MAX_CLASS_SIZE);
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    // `(size - 1) >> (k - 3)` is 8 plus the steps above `2^k` (rounded down), so this is
    // `8k - 40 + steps + 1`.
    8 * k - 47 + ((size - 1) >> (k - 3))
}

/// Class for a request of `size` bytes aligned to `align` (a power of two), or `None` if the
/// request must be served as a page span because it is larger than `max_small`.
#[inline]
pub fn class_for(size: usize, align: usize, max_small: usize) -> Option<usize> {
    if size > max_small || align > max_small {
        return None;
    }
    let mut class = class_of_size(size.max(align));
    if align > 8 {
        // Powers of two are classes, so this stops at the next power of two at the latest.
        while class_size(class) & (align - 1) != 0 {
            class += 1;
        }
    }
    if class_size(class) > max_small {
        None
    } else {
        Some(class)
    }
}

/// Pages per span for `class`. The span holds at least one object, spans at least
/// `min_span_bytes`, and wastes little at its tail: among lengths from the shortest `n0` up to
/// `2 * n0` (or the first that wastes at most 1/8, if longer), the first that wastes at most
/// 1/64, else the one that wastes least. So a 18 KiB class takes 9 pages holding two objects
/// (no waste) rather than 5 pages holding one (10% waste), while a tiny heap's 40-byte class
/// keeps its one-page span.
///
/// `min_span_bytes` weighs the span record (28 bytes on 32-bit targets, 48 on 64-bit) against
/// the memory a class holds on to in a small heap: 4 KiB keeps records near 1%; a tiny heap
/// wants one page.
pub fn span_pages(class: usize, page_size: usize, min_span_bytes: usize) -> usize {
    let size = class_size(class);
    let waste = |pages: usize| (pages * page_size) % size;
    let n0 = min_span_bytes.max(size).div_ceil(page_size);
    let mut eighth = n0;
    while waste(eighth) * 8 > eighth * page_size {
        eighth += 1;
    }
    let hi = eighth.max(2 * n0);
    let mut best = n0;
    for n in n0..=hi {
        if waste(n) * 64 <= n * page_size {
            return n;
        }
        // Compare waste fractions without division: w(n)/n < w(best)/best.
        if waste(n) * best < waste(best) * n {
            best = n;
        }
    }
    best
}

/// Objects moved between a CPU cache and the central cache in one batch: about `batch_bytes`
/// worth, at least 2 and at most 32.
pub fn batch_objects(class: usize, batch_bytes: usize) -> usize {
    (batch_bytes / class_size(class)).clamp(2, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_capacity_fits_u16() {
        // The largest spans a configuration can ask for: `min_span_bytes` at its limit, grown
        // 8x, at every page size.
        let most = crate::heap::MAX_MIN_SPAN_BYTES << 3;
        for shift in 8..=16 {
            let page = 1usize << shift;
            for c in 1..NUM_CLASSES {
                let objects = span_pages(c, page, most) * page / class_size(c);
                assert!(
                    objects <= u16::MAX as usize,
                    "class {c}, page {page}: {objects}"
                );
            }
        }
    }

    #[test]
    fn classes_are_sorted_and_8_aligned() {
        for c in 2..NUM_CLASSES {
            assert!(CLASS_SIZES[c] > CLASS_SIZES[c - 1]);
            assert_eq!(CLASS_SIZES[c] % 8, 0);
        }
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_CLASS_SIZE);
    }

    #[test]
    fn every_size_gets_the_smallest_fitting_class_and_waste_is_bounded() {
        for size in 0..=MAX_CLASS_SIZE {
            let c = class_of_size(size);
            let cs = class_size(c);
            assert!(cs >= size, "size {size} class {cs}");
            assert!(
                c == 1 || class_size(c - 1) < size,
                "size {size}: class {cs} is not the smallest"
            );
            if size > 64 {
                // Waste relative to the object that serves the request.
                assert!(
                    (cs - size) * 8 <= cs,
                    "size {size} wastes {} of {cs}",
                    cs - size
                );
            }
        }
    }

    #[test]
    fn alignment_is_folded_into_the_class() {
        for align_shift in 0..=15 {
            let align = 1usize << align_shift;
            for size in (0..=MAX_CLASS_SIZE).step_by(7) {
                match class_for(size, align, MAX_CLASS_SIZE) {
                    Some(c) => {
                        assert_eq!(class_size(c) % align, 0);
                        assert!(class_size(c) >= size);
                    }
                    None => assert!(size.max(align).next_power_of_two() > MAX_CLASS_SIZE),
                }
            }
        }
        assert_eq!(class_for(24, 16, MAX_CLASS_SIZE), Some(class_of_size(32)));
        assert_eq!(
            class_for(100, 2048, MAX_CLASS_SIZE).map(class_size),
            Some(2048)
        );
        assert_eq!(class_for(100, 4096, 2048), None);
        assert_eq!(class_for(5000, 8, 4096), None);
        if MAX_CLASS_SIZE >= 8192 {
            assert_eq!(
                class_for(100, 4096, MAX_CLASS_SIZE).map(class_size),
                Some(4096)
            );
            assert_eq!(class_for(5000, 8, 8192).map(class_size), Some(5120));
        }
    }

    #[test]
    fn span_sizes_bound_tail_waste() {
        for page_size in [256usize, 512, 1024, 4096, 8192, 65536] {
            for c in 1..NUM_CLASSES {
                let pages = span_pages(c, page_size, 4096);
                let bytes = pages * page_size;
                assert!(bytes >= class_size(c));
                assert!((bytes % class_size(c)) * 8 <= bytes);
                assert!(bytes >= 4096);
                assert!(
                    span_pages(c, page_size, 0) * page_size < bytes + page_size.max(class_size(c))
                );
                assert!(
                    bytes / class_size(c) <= u16::MAX as usize,
                    "capacity fits a u16"
                );
            }
        }
        assert_eq!(span_pages(class_of_size(64), 256, 512), 2);
        assert_eq!(span_pages(class_of_size(8), 256, 0), 1);
        assert_eq!(span_pages(class_of_size(8), 4096, 4096), 1);
        assert_eq!(span_pages(class_of_size(2048), 256, 512), 8);
        assert_eq!(span_pages(class_of_size(40), 256, 256), 1);
        assert_eq!(span_pages(class_of_size(1152), 4096, 4096), 2);
        if MAX_CLASS_SIZE >= 32 * 1024 {
            assert_eq!(span_pages(class_of_size(3072), 4096, 4096), 3);
            assert_eq!(span_pages(class_of_size(18432), 4096, 4096), 9);
        }
    }

    #[test]
    fn batches_are_bounded() {
        for c in 1..NUM_CLASSES {
            let b = batch_objects(c, 64 * 1024);
            assert!((2..=32).contains(&b));
        }
        assert_eq!(batch_objects(class_of_size(8), 64 * 1024), 32);
    }
}
