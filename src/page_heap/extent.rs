//! An extent: one run of pages from the source and its bitmaps (1 = in use; with a
//! zero-filling source also a *clean* bitmap, 1 = free and known zero), and the word-at-a-time
//! scans over them.

use core::ptr::{self, NonNull};

use crate::page_source::Run;

pub(super) const WORD_BITS: usize = usize::BITS as usize;

/// A run of pages obtained from the source, with its bitmap.
pub(crate) struct Extent {
    /// Address of page 0.
    pub(crate) base: usize,
    /// Pages in the extent.
    pub(crate) pages: usize,
    /// One bit per page, 1 = in use; bits past `pages` in the last word are set.
    pub(super) bitmap: *mut usize,
    /// Free pages in the extent.
    pub(crate) free_count: usize,
    /// No page below this index is free.
    pub(super) hint: usize,
    pub(crate) next: *mut Extent,
    /// Whether a clean bitmap follows the bitmap: one bit per page, 1 = free and known zero
    /// (not backed). Only with a [`ZERO_FILLED`](PageSource::ZERO_FILLED) source.
    pub(super) has_clean: bool,
    /// A direct run: one huge span's own, released when the span is freed. Its record lives
    /// in the metadata arena and it has no bitmap (`bitmap` is null): its one span covers
    /// all of its `pages` (`free_count == 0`), or, once the span is freed and the source
    /// would not take the run back, none (`free_count == pages`). The page map describes it
    /// by its first page alone.
    pub(crate) direct: bool,
    /// A direct extent's run as the source handed it out: `[run_base, run_base + run_len)`,
    /// which holds `[base, base + pages)` (the rest: alignment slack, a shrunk span's tail).
    pub(super) run_base: usize,
    pub(super) run_len: usize,
    /// Bytes of a direct run counted as metadata: the run's length beyond the span's, and a
    /// shrunk span's tail that could not be discarded.
    pub(super) slack: usize,
}

/// `(word, mask)` pairs that cover the bits `[start, start + n)`.
pub(super) fn masks(start: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let end = start + n;
    let mut i = start;
    core::iter::from_fn(move || {
        if i >= end {
            return None;
        }
        let w = i / WORD_BITS;
        let lo = i % WORD_BITS;
        let hi = (end - w * WORD_BITS).min(WORD_BITS);
        let mask = if hi - lo == WORD_BITS {
            !0
        } else {
            ((1usize << (hi - lo)) - 1) << lo
        };
        i = w * WORD_BITS + hi;
        Some((w, mask))
    })
}

impl Extent {
    pub(super) fn words(&self) -> usize {
        self.pages.div_ceil(WORD_BITS)
    }

    pub(super) fn word(&self, i: usize) -> usize {
        // SAFETY: callers pass `i < self.words()`; the bitmap has that many words.
        unsafe { *self.bitmap.add(i) }
    }

    /// The clean bitmap (see `has_clean`), or null.
    pub(super) fn clean(&self) -> *mut usize {
        if self.has_clean {
            // SAFETY: the clean bitmap directly follows the bitmap's words.
            unsafe { self.bitmap.add(self.words()) }
        } else {
            ptr::null_mut()
        }
    }

    /// Free pages that are not known clean ("idle") among the bits of word `w`.
    pub(super) fn idle_word(&self, w: usize) -> usize {
        let clean = if self.has_clean {
            // SAFETY: the clean bitmap has as many words as the bitmap.
            unsafe { *self.clean().add(w) }
        } else {
            0
        };
        !self.word(w) & !clean
    }

    /// The run of a direct extent, as the source handed it out.
    pub(super) fn direct_run(&self) -> Option<Run> {
        debug_assert!(self.direct);
        Some(Run {
            base: NonNull::new(self.run_base as *mut u8)?,
            len: self.run_len,
        })
    }

    /// Pages the page map has entries for: all of them, or a direct extent's first one.
    pub(crate) fn mapped_pages(&self) -> usize {
        if self.direct {
            self.pages.min(1)
        } else {
            self.pages
        }
    }

    /// Mark pages `[start, start + n)` clean (or not). No-op without a clean bitmap.
    pub(super) fn set_clean(&mut self, start: usize, n: usize, clean: bool) {
        if !self.has_clean {
            return;
        }
        for (w, mask) in masks(start, n) {
            // SAFETY: `w < self.words()`; the clean bitmap has that many words.
            unsafe {
                let p = self.clean().add(w);
                *p = if clean { *p | mask } else { *p & !mask };
            }
        }
    }

    /// Clean pages among `[start, start + n)`.
    pub(super) fn count_clean(&self, start: usize, n: usize) -> usize {
        if !self.has_clean {
            return 0;
        }
        let clean = self.clean();
        masks(start, n)
            // SAFETY: as in `set_clean`.
            .map(|(w, mask)| unsafe { (*clean.add(w) & mask).count_ones() as usize })
            .sum()
    }

    /// Whether page `i` is in use.
    pub(crate) fn is_used(&self, i: usize) -> bool {
        if self.direct {
            return self.free_count == 0;
        }
        self.word(i / WORD_BITS) >> (i % WORD_BITS) & 1 == 1
    }

    /// Set (in use) or clear pages `[start, start + n)`.
    pub(super) fn set_range(&mut self, start: usize, n: usize, used: bool) {
        let end = start + n;
        for (w, mask) in masks(start, n) {
            // SAFETY: `w < self.words()` because the range ends at most at `self.pages`.
            unsafe {
                let p = self.bitmap.add(w);
                if used {
                    debug_assert_eq!(*p & mask, 0, "page already in use");
                    *p |= mask;
                } else {
                    debug_assert_eq!(*p & mask, mask, "page already free");
                    *p &= !mask;
                }
            }
        }
        if used {
            self.free_count -= n;
            if start == self.hint {
                self.hint = end;
            }
        } else {
            self.free_count += n;
            self.hint = self.hint.min(start);
        }
    }

    /// First index `>= from` whose bit equals `used`, or `self.pages` if none.
    pub(super) fn next_with(&self, from: usize, used: bool) -> usize {
        let flip = if used { 0 } else { !0 };
        self.next_bit(from, |w| self.word(w) ^ flip)
    }

    /// First index `>= from` whose bit is set in `word(w)`, or `self.pages` if none.
    pub(super) fn next_bit(&self, from: usize, word: impl Fn(usize) -> usize) -> usize {
        if from >= self.pages {
            return self.pages;
        }
        let mut w = from / WORD_BITS;
        let mut x = word(w) & (!0usize << (from % WORD_BITS));
        loop {
            if x != 0 {
                return (w * WORD_BITS + x.trailing_zeros() as usize).min(self.pages);
            }
            w += 1;
            if w >= self.words() {
                return self.pages;
            }
            x = word(w);
        }
    }

    /// First-fit search for `n` free pages whose first page's address is a multiple of
    /// `align` bytes.
    pub(super) fn find(&self, n: usize, align: usize, page_shift: u32) -> Option<usize> {
        if self.free_count < n {
            return None;
        }
        let align_pages = (align >> page_shift).max(1);
        let first_abs = self.base >> page_shift;
        let mut pos = self.hint;
        while pos < self.pages {
            let start = self.next_with(pos, false);
            if start >= self.pages {
                return None;
            }
            let end = self.next_with(start, true);
            let abs = first_abs + start;
            let aligned = start + (abs.next_multiple_of(align_pages) - abs);
            if aligned + n <= end {
                return Some(aligned);
            }
            pos = end;
        }
        None
    }

    /// The highest free page, if any.
    pub(super) fn last_free(&self) -> Option<usize> {
        if self.free_count == 0 {
            return None;
        }
        (0..self.words()).rev().find_map(|w| {
            let free = !self.word(w);
            (free != 0).then(|| w * WORD_BITS + (WORD_BITS - 1 - free.leading_zeros() as usize))
        })
    }

    pub(crate) fn contains(&self, addr: usize, page_shift: u32) -> bool {
        addr.wrapping_sub(self.base) < self.pages << page_shift
    }
}
