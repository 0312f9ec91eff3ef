//! An extent: one run of pages from the source and its bitmaps (1 = in use; with a
//! zero-filling source also a *clean* bitmap, 1 = free and known zero), and the word-at-a-time
//! scans over them.

use core::ptr::{self, NonNull};

use crate::page_source::Run;

pub(super) const WORD_BITS: usize = usize::BITS as usize;

/// Window sizes with a search hint: 1, 2, 4, ... 64 pages.
pub(super) const HINT_SIZES: usize = 7;

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
    /// Search hints by window size: no `1 << k` free pages in a row start below `hints[k]`
    /// (so `hints[0]`: no page below it is free). A search for `n` pages starts at the hint
    /// of the largest window size up to `n` and raises the hints it learns about; a free
    /// lowers the hints of the window sizes its merged run holds. A request for 16 pages then
    /// starts past the small holes that only fit small spans.
    pub(super) hints: [usize; HINT_SIZES],
    /// No run of free pages is longer than this: lowered when a first-fit search fails,
    /// raised to the merged run's length when pages are freed. Extents too fragmented for a
    /// request are skipped without a scan.
    pub(super) longest: usize,
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

/// Given `free` whose bit `i` is set iff bits `i..i + k` of a word are all free (`k = 1`: the
/// word's free bits), the same for `n >= k` (`n <= WORD_BITS`): bit `i` is set iff `n`
/// consecutive free pages start at `i`, inside the word. Each step doubles the run length a
/// bit vouches for, so it takes about `log2(n / k)` shifts.
fn runs_of(mut free: usize, mut k: usize, n: usize) -> usize {
    while k < n {
        let s = (n - k).min(k);
        free &= free >> s;
        k += s;
    }
    free
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
            if start == self.hints[0] {
                self.hints[0] = end;
            }
        } else {
            self.free_count += n;
            let run_start = self.prev_used_end(start);
            let run = self.next_with(end, true) - run_start;
            self.longest = self.longest.max(run);
            for (k, hint) in self.hints.iter_mut().enumerate() {
                if run >= 1 << k {
                    *hint = (*hint).min(run_start);
                }
            }
        }
    }

    /// One past the last page below `from` that is in use, or 0 if none is.
    fn prev_used_end(&self, from: usize) -> usize {
        let mut w = from / WORD_BITS;
        let bit = from % WORD_BITS;
        // Pages below `from` in its word.
        let mut x = if bit == 0 {
            0
        } else {
            self.word(w) & ((1usize << bit) - 1)
        };
        loop {
            if x != 0 {
                return w * WORD_BITS + WORD_BITS - x.leading_zeros() as usize;
            }
            if w == 0 {
                return 0;
            }
            w -= 1;
            x = self.word(w);
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
    pub(super) fn find(&mut self, n: usize, align: usize, page_shift: u32) -> Option<usize> {
        if self.free_count < n || self.longest < n {
            return None;
        }
        let align_pages = (align >> page_shift).max(1);
        if align_pages == 1 {
            let found = self.find_unaligned(n);
            if found.is_none() {
                // The search covered every free page (none is below the hint).
                self.longest = n - 1;
            }
            return found;
        }
        let first_abs = self.base >> page_shift;
        let mut pos = self.hints[0];
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

    /// First fit for `n >= 1` pages with no alignment beyond a page, a word of the bitmap at a
    /// time: the cost is per word scanned, not per hole, so a bitmap full of holes too small
    /// for `n` costs what a full one does. A run that fits inside one word is found with
    /// [`runs_of`]; one that crosses words is found by carrying the free pages at the top of
    /// each word into the next. It returns the lowest start of `n` free pages, as a walk from
    /// hole to hole would.
    ///
    /// The scan starts at the hint of `s`, the largest hinted window size up to `n`, and also
    /// notes where the first window of `s` pages starts; a word with no such window has no
    /// window of `n` either and costs a few instructions.
    fn find_unaligned(&mut self, n: usize) -> Option<usize> {
        let k = (usize::BITS - 1 - n.leading_zeros()).min(HINT_SIZES as u32 - 1) as usize;
        let s = 1usize << k;
        let from = self.hints[k].max(self.hints[0]);
        let (first_s, at) = self.scan(from, n, s);
        // No window of `s` below `first_s`; none of `n` (or more) below `at`.
        self.hints[k] = self.hints[k].max(first_s);
        let learned = at.unwrap_or(self.pages);
        for (j, hint) in self.hints.iter_mut().enumerate().skip(k) {
            if 1 << j >= n {
                *hint = (*hint).max(learned);
            }
        }
        at
    }

    /// The word-at-a-time scan of [`find_unaligned`](Self::find_unaligned) from page `from`:
    /// where the first window of `s <= n` pages starts (`pages` if none does) and where the
    /// first of `n` does.
    fn scan(&self, from: usize, n: usize, s: usize) -> (usize, Option<usize>) {
        let words = self.words();
        let mut w = from / WORD_BITS;
        if w >= words {
            return (self.pages, None);
        }
        // Windows start at `from` or later; the mask keeps the pages below it out.
        let mut free = !self.word(w) & (!0usize << (from % WORD_BITS));
        // Free pages ending at the top of the previous word.
        let mut carry = 0usize;
        let mut first_s = None;
        loop {
            if carry > 0 {
                let run = carry + free.trailing_ones() as usize;
                if run >= s {
                    first_s.get_or_insert(w * WORD_BITS - carry);
                }
                if run >= n {
                    let at = w * WORD_BITS - carry;
                    return (first_s.unwrap_or(at), Some(at));
                }
            }
            if s <= WORD_BITS {
                let m = runs_of(free, 1, s);
                if m != 0 {
                    first_s.get_or_insert(w * WORD_BITS + m.trailing_zeros() as usize);
                    if n <= WORD_BITS {
                        let m = runs_of(m, s, n);
                        if m != 0 {
                            let at = w * WORD_BITS + m.trailing_zeros() as usize;
                            return (first_s.unwrap_or(at), Some(at));
                        }
                    }
                }
            }
            carry = if free == !0 {
                carry + WORD_BITS
            } else {
                free.leading_ones() as usize
            };
            w += 1;
            if w >= words {
                // Bits past `pages` in the last word are set (in use): no run ends past it.
                return (first_s.unwrap_or(self.pages), None);
            }
            free = !self.word(w);
        }
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// An extent over `bits` (true = in use), with the bits past the end set.
    fn extent(bits: &[bool], hint: usize, words: &mut Vec<usize>) -> Extent {
        words.clear();
        words.resize(bits.len().div_ceil(WORD_BITS), !0);
        for (i, &used) in bits.iter().enumerate() {
            if !used {
                words[i / WORD_BITS] &= !(1 << (i % WORD_BITS));
            }
        }
        Extent {
            base: 0,
            pages: bits.len(),
            bitmap: words.as_mut_ptr(),
            free_count: bits.iter().filter(|u| !**u).count(),
            hints: [hint; HINT_SIZES],
            longest: bits.len(),
            next: ptr::null_mut(),
            has_clean: false,
            direct: false,
            run_base: 0,
            run_len: 0,
            slack: 0,
        }
    }

    /// The lowest `i >= hint` with `bits[i..i + n]` all free.
    fn reference(bits: &[bool], hint: usize, n: usize) -> Option<usize> {
        (hint..bits.len().saturating_sub(n - 1)).find(|&i| bits[i..i + n].iter().all(|u| !u))
    }

    #[test]
    fn runs_of_finds_runs_inside_a_word() {
        assert_eq!(runs_of(0b0111_0110, 1, 1), 0b0111_0110);
        assert_eq!(runs_of(0b0111_0110, 1, 2), 0b0011_0010);
        assert_eq!(runs_of(0b0111_0110, 1, 3), 0b0001_0000);
        assert_eq!(runs_of(0b0011_0010, 2, 3), 0b0001_0000);
        assert_eq!(runs_of(0b0111_0110, 1, 4), 0);
        assert_eq!(runs_of(!0, 1, WORD_BITS), 1);
        assert_eq!(runs_of(!0 >> 1, 1, WORD_BITS), 0);
    }

    #[test]
    fn a_run_across_words_and_at_the_end() {
        let mut w = Vec::new();
        let mut bits = std::vec![true; 200];
        // Free: 60..70 (across words 0 and 1), 120..200 (to the end, across 1, 2, 3).
        bits[60..70].iter_mut().for_each(|b| *b = false);
        bits[120..].iter_mut().for_each(|b| *b = false);
        let mut e = extent(&bits, 60, &mut w);
        assert_eq!(e.find_unaligned(10), Some(60));
        assert_eq!(e.find_unaligned(11), Some(120));
        assert_eq!(e.hints[3], 60, "the 10-page run holds 8");
        assert_eq!(e.hints[4], 120, "no 16 pages below 120");
        assert_eq!(e.find_unaligned(80), Some(120));
        assert_eq!(e.find_unaligned(81), None);
        assert_eq!(e.hints[6], 120, "the 80-page run still holds 64");
        // Freeing pages that join the two runs lowers the hints the merged run can serve.
        e.set_range(70, 50, false);
        assert_eq!(e.hints[6], 60);
        assert_eq!(e.find_unaligned(81), Some(60));
    }

    /// Random frees, takes and searches against a model bitmap: what `find` returns is the
    /// lowest fit, and the `longest` bound never hides a run that exists.
    fn ops_match_the_model(
        ops: &[(bool, usize, usize)],
        pages: usize,
    ) -> Result<(), TestCaseError> {
        let mut bits = std::vec![false; pages];
        let mut w = Vec::new();
        let mut e = extent(&bits, 0, &mut w);
        for &(take, at, n) in ops {
            let n = n.clamp(1, pages);
            if take {
                let got = e.find(n, 1, 12);
                let first = bits.iter().position(|u| !u).unwrap_or(pages);
                prop_assert_eq!(got, reference(&bits, first, n));
                if let Some(i) = got {
                    e.set_range(i, n, true);
                    bits[i..i + n].iter_mut().for_each(|b| *b = true);
                }
            } else {
                // Free the used run that holds `at`, up to `n` pages of it.
                let at = at % pages;
                if bits[at] {
                    let len = bits[at..].iter().take(n).take_while(|u| **u).count();
                    e.set_range(at, len, false);
                    bits[at..at + len].iter_mut().for_each(|b| *b = false);
                }
            }
            let longest = bits.split(|u| *u).map(|run| run.len()).max().unwrap_or(0);
            prop_assert!(
                e.longest >= longest,
                "bound {} below a run of {}",
                e.longest,
                longest
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn searches_and_frees_keep_first_fit_and_the_bound(
            ops in proptest::collection::vec((proptest::bool::ANY, 0usize..1000, 1usize..40), 1..200),
            pages in 1usize..300,
        ) {
            ops_match_the_model(&ops, pages)?;
        }

        #[test]
        fn word_first_fit_matches_a_hole_walk(
            bits in proptest::collection::vec(proptest::bool::weighted(0.6), 1..400),
            n in 1usize..150,
        ) {
            let hint = bits.iter().position(|u| !u).unwrap_or(bits.len());
            let mut w = Vec::new();
            let mut e = extent(&bits, hint, &mut w);
            prop_assert_eq!(e.find_unaligned(n), reference(&bits, hint, n));
            if e.free_count >= n {
                prop_assert_eq!(e.find(n, 1, 12), reference(&bits, hint, n));
            }
        }
    }
}
