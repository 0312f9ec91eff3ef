//! An extent: one run of pages from the source and its bitmaps (1 = in use; with a
//! zero-filling source also a *clean* bitmap, 1 = free and known zero), and the word-at-a-time
//! scans over them.

use core::ptr::{self, NonNull};

use crate::page_source::Run;

pub(super) const WORD_BITS: usize = usize::BITS as usize;

/// Window sizes with a search hint: 1, 2, 4, ... 64 pages.
pub(super) const HINT_SIZES: usize = 7;

/// Free runs a best-fit search compares at most (see [`Extent::find_best`]).
pub(super) const BEST_FIT_RUNS: usize = 32;

/// Words of the bitmap past the first fit that a best-fit search looks at: 1024 words,
/// 65 536 pages (256 MiB of 4 KiB pages, 16 MiB of 256-byte pages), about a microsecond
/// of scanning at most.
pub(super) const BEST_FIT_WORDS: usize = 1024;

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
    /// No run of free pages is longer than this: lowered when a search fails,
    /// raised to the merged run's length when pages are freed. Extents too fragmented for a
    /// request are skipped without a scan.
    pub(super) longest: usize,
    /// Every page from `top` to the end is free, and page `top - 1` (if any) is in use: the
    /// free tail, which a best-fit search measures without walking it.
    pub(super) top: usize,
    pub(crate) next: *mut Extent,
    /// Whether a clean bitmap follows the bitmap: one bit per page, 1 = free and known zero
    /// (not backed). Only with a [`ZERO_FILLED`](crate::PageSource::ZERO_FILLED) source.
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
            self.top = self.top.max(end);
        } else {
            self.free_count += n;
            let run_start = self.prev_used_end(start);
            let run = self.next_with(end, true) - run_start;
            self.longest = self.longest.max(run);
            if run_start + run == self.pages {
                self.top = self.top.min(run_start);
            }
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
        self.next_with_below(from, used, self.pages)
    }

    /// First index in `[from, end)` whose bit equals `used`, or `end` (at most `self.pages`)
    /// if none.
    pub(super) fn next_with_below(&self, from: usize, used: bool, end: usize) -> usize {
        let flip = if used { 0 } else { !0 };
        self.next_bit(from, end, |w| self.word(w) ^ flip)
    }

    /// First index in `[from, end)` whose bit is set in `word(w)`, or `end` (at most
    /// `self.pages`) if none.
    pub(super) fn next_bit(&self, from: usize, end: usize, word: impl Fn(usize) -> usize) -> usize {
        if from >= end {
            return end;
        }
        let mut w = from / WORD_BITS;
        let mut x = word(w) & (!0usize << (from % WORD_BITS));
        loop {
            if x != 0 {
                return (w * WORD_BITS + x.trailing_zeros() as usize).min(end);
            }
            w += 1;
            if w * WORD_BITS >= end {
                return end;
            }
            x = word(w);
        }
    }

    /// A run for `n` free pages whose first page's address is a multiple of `align` bytes:
    /// its start and the free pages from there (for `align` up to a page, counted as
    /// [`find_best`](Self::find_best) counts them). Beyond a page, the lowest aligned run,
    /// found hole by hole.
    pub(super) fn find(
        &mut self,
        n: usize,
        align: usize,
        page_shift: u32,
    ) -> Option<(usize, usize)> {
        if self.free_count < n || self.longest < n {
            return None;
        }
        let align_pages = (align >> page_shift).max(1);
        if align_pages == 1 {
            return self.find_best(n);
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
                return Some((aligned, end - aligned));
            }
            pos = end;
        }
        None
    }

    /// Free pages from page `i` on, counting at most `most`.
    pub(super) fn free_run(&self, i: usize, most: usize) -> usize {
        self.next_with_below(i, true, i.saturating_add(most).min(self.pages)) - i
    }

    /// Best fit for `n >= 1` pages with no alignment beyond a page, bounded: among the free
    /// runs that hold `n` pages, the lowest (first fit) and those that start within
    /// [`BEST_FIT_WORDS`] words of the bitmap after it, at most [`BEST_FIT_RUNS`] in all, the
    /// start of the shortest (the lowest of equals) and its length. A run that fits within
    /// an eighth (`n + n / 8` pages or fewer) ends the search. Runs are measured only as far as the best so far and the window's end (so a
    /// run is counted as at most what it holds there), except the free tail (from `top`),
    /// which is measured without a walk and ends the search. What the search adds to first
    /// fit is so bounded whatever the extent's size, and in a heap that is not fragmented
    /// (the first fit is the tail) it adds nothing.
    ///
    /// The bitmap is read a word at a time ([`scan`](Self::scan)): the cost is per word,
    /// not per hole, so a bitmap full of holes too small for `n` costs what a full one does.
    /// The scan starts at the hint of `s`, the largest hinted window size up to `n`, and also
    /// notes where the first window of `s` pages starts; a word with no such window has no
    /// window of `n` either and costs a few instructions. The hints learn what first fit
    /// would (no window of `s` below the first one, none of `n` below the first fit), and a
    /// search that finds nothing lowers the `longest` bound.
    ///
    /// [`find`](Self::find) checks the `longest` bound and the free count first.
    fn find_best(&mut self, n: usize) -> Option<(usize, usize)> {
        let k = (usize::BITS - 1 - n.leading_zeros()).min(HINT_SIZES as u32 - 1) as usize;
        let s = 1usize << k;
        let mut from = self.hints[k].max(self.hints[0]);
        let mut words = self.words();
        let mut limit = self.pages;
        let mut best: Option<(usize, usize)> = None;
        for _ in 0..BEST_FIT_RUNS {
            // `from` is the hint, or in use, or the limit: a window of `n` found from it
            // starts a run (a free page before it would start `n` free pages lower, and a
            // run through the hint is shorter than `s`).
            let (first_s, found) = self.scan(from, n, s, words);
            let Some((_, b)) = best else {
                // The first scan, from the hint: what first fit learns. No window of `s`
                // below `first_s`, none of `n` below the first fit.
                self.hints[k] = self.hints[k].max(first_s);
                let learned = found.unwrap_or(self.pages);
                for (j, hint) in self.hints.iter_mut().enumerate().skip(k) {
                    if 1 << j >= n {
                        *hint = (*hint).max(learned);
                    }
                }
                let Some(i) = found else {
                    // It covered every free page from the hint; none below it holds `n`.
                    self.longest = n - 1;
                    return None;
                };
                words = words.min(i / WORD_BITS + 1 + BEST_FIT_WORDS);
                limit = self.pages.min(words * WORD_BITS);
                best = Some((i, usize::MAX));
                from = i;
                continue;
            };
            let Some(i) = found else { break };
            let tail = i >= self.top;
            let len = if tail {
                self.pages - i
            } else {
                // Measured as far as the best so far (the first as far as the limit).
                self.free_run(i, b.min(limit - i))
            };
            if len < b {
                best = Some((i, len));
            }
            if len <= n + (n >> 3) || tail {
                break;
            }
            // Past the run (the rest of it, if it was cut short, is no better), to a page in
            // use or the limit.
            from = i + len;
            from += self.free_run(from, limit - from);
        }
        best
    }

    /// The word-at-a-time scan of [`find_best`](Self::find_best) from page `from` over the
    /// words below `words` (at most `self.words()`): where the first window of `s <= n`
    /// pages starts (`pages` if none does) and where the first of `n` does. A run that
    /// reaches word `words` is not seen, and what it says of windows of `s` pages holds
    /// below that word only.
    fn scan(&self, from: usize, n: usize, s: usize, words: usize) -> (usize, Option<usize>) {
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
            top: bits.iter().rposition(|u| *u).map_or(0, |i| i + 1),
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

    /// The free runs of `bits` that hold `n` pages, as (start, length), lowest first.
    fn runs(bits: &[bool], n: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bits.len() {
            let len = bits[i..].iter().take_while(|u| !**u).count();
            if len >= n {
                out.push((i, len));
            }
            i += len.max(1);
        }
        out
    }

    /// What `find_best` promises on a bitmap shorter than its window: among the first
    /// `BEST_FIT_RUNS` runs that hold `n` pages (up to the first that fits within an eighth,
    /// or the free tail), the shortest, the lowest of equals.
    fn best_reference(bits: &[bool], n: usize) -> Option<(usize, usize)> {
        let pages = bits.len();
        let mut best: Option<(usize, usize)> = None;
        for (i, len) in runs(bits, n).into_iter().take(BEST_FIT_RUNS) {
            if best.is_none_or(|(_, b)| len < b) {
                best = Some((i, len));
            }
            if len <= n + n / 8 || i + len == pages {
                break;
            }
        }
        best
    }

    #[test]
    fn best_fit_takes_the_shortest_run_that_holds_the_request() {
        let mut w = Vec::new();
        let mut bits = std::vec![true; 300];
        // Free runs: 10..30 (20 pages), 40..45 (5), 100..106 (6), 200..300 (the tail, 100).
        for r in [10..30, 40..45, 100..106, 200..300] {
            bits[r].iter_mut().for_each(|b| *b = false);
        }
        let mut e = extent(&bits, 10, &mut w);
        assert_eq!(e.top, 200);
        assert_eq!(e.find(5, 4096, 12), Some((40, 5)), "an exact fit");
        assert_eq!(
            e.find(6, 4096, 12),
            Some((100, 6)),
            "exact, past a longer run"
        );
        assert_eq!(
            e.find(4, 4096, 12),
            Some((40, 5)),
            "the shortest that holds 4"
        );
        assert_eq!(
            e.find(21, 4096, 12),
            Some((200, 100)),
            "only the tail holds 21"
        );
        assert_eq!(e.find(101, 4096, 12), None);
        assert_eq!(e.longest, 100, "a failed search lowers the bound");
        assert_eq!(
            e.find(4, 8 * 4096, 12),
            Some((16, 14)),
            "aligned: the lowest aligned run"
        );
    }

    #[test]
    fn the_free_tail_follows_takes_and_frees() {
        let mut w = Vec::new();
        let mut e = extent(&[false; 200], 0, &mut w);
        assert_eq!(e.top, 0);
        e.set_range(0, 10, true);
        e.set_range(50, 10, true);
        assert_eq!(e.top, 60);
        e.set_range(50, 10, false);
        assert_eq!(e.top, 10, "freeing the last used run joins the tail");
        e.set_range(0, 10, false);
        assert_eq!(e.top, 0);
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
        assert_eq!(e.find(10, 4096, 12), Some((60, 10)));
        assert_eq!(
            e.find(11, 4096, 12),
            Some((120, 80)),
            "the tail, across three words"
        );
        assert_eq!(e.hints[3], 60, "the 10-page run holds 8");
        assert_eq!(e.hints[4], 120, "no 16 pages below 120");
        assert_eq!(e.find(80, 4096, 12), Some((120, 80)));
        assert_eq!(e.find(81, 4096, 12), None);
        assert_eq!(e.hints[6], 120, "the 80-page run still holds 64");
        // Freeing pages that join the two runs lowers the hints the merged run can serve.
        e.set_range(70, 50, false);
        assert_eq!(e.hints[6], 60);
        assert_eq!(e.find(81, 4096, 12), Some((60, 140)));
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
                prop_assert_eq!(got, best_reference(&bits, n));
                if let Some((i, _)) = got {
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
            let top = bits.iter().rposition(|u| *u).map_or(0, |i| i + 1);
            prop_assert_eq!(e.top, top, "the free tail");
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
        fn searches_and_frees_keep_best_fit_and_the_bound(
            ops in proptest::collection::vec((proptest::bool::ANY, 0usize..1000, 1usize..40), 1..200),
            pages in 1usize..300,
        ) {
            ops_match_the_model(&ops, pages)?;
        }

        #[test]
        fn best_fit_matches_the_reference(
            bits in proptest::collection::vec(proptest::bool::weighted(0.6), 1..400),
            n in 1usize..150,
        ) {
            let hint = bits.iter().position(|u| !u).unwrap_or(bits.len());
            let mut w = Vec::new();
            let mut e = extent(&bits, hint, &mut w);
            let want = best_reference(&bits, n);
            prop_assert_eq!(e.find(n, 1, 12), want);
            // The hints it learned are true: the same search again finds the same run.
            prop_assert_eq!(e.find(n, 1, 12), want);
            // What first fit would take is among what best fit compared.
            let first = reference(&bits, hint, n);
            prop_assert_eq!(first.is_some(), want.is_some());
        }
    }
}
