//! Growth: asking the source for runs, turning them into extents, direct runs of their own
//! for huge spans, and the metadata arena (extent records, bitmaps, page-map arrays, span
//! records) that every extent and span needs.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use super::add;
use super::extent::{Extent, HINT_SIZES, WORD_BITS};
use super::{bump_alloc, Locked};
use crate::page_map::PageMap;
use crate::page_source::{PageSource, Run};
use crate::span::{Span, CLASS_META};
use crate::sync::Ordering;

impl<S: PageSource> Locked<'_, S> {
    /// Metadata of an extent of `pages` pages: its record and bitmaps.
    pub(super) fn extent_meta(pages: usize) -> usize {
        let bitmap = pages.div_ceil(WORD_BITS) * size_of::<usize>() + align_of::<usize>();
        let bitmaps = if S::ZERO_FILLED { 2 * bitmap } else { bitmap };
        size_of::<Extent>() + align_of::<Extent>() + bitmaps
    }

    /// Metadata needed to add a run of `pages` pages: extent record, bitmaps, page-map arrays.
    pub(super) fn meta_need(pages: usize, page_shift: u32) -> usize {
        Self::extent_meta(pages) + S::Map::meta_bound(pages, page_shift)
    }

    /// Ask the source for memory enough for a span of `pages` pages aligned to `align`, and
    /// add it as a new extent. Returns `false` if the source has nothing suitable.
    pub(super) fn grow(&mut self, pages: usize, align: usize) -> bool {
        self.offer_window();
        let page = self.geom.page_size();
        let Some(span_bytes) = pages
            .checked_mul(page)
            .and_then(|b| b.checked_add(align.saturating_sub(page)))
        else {
            return false;
        };
        // Ask for the span plus its metadata, or the growth step if that is more.
        let meta_pages = Self::meta_need(span_bytes >> self.geom.page_shift, self.geom.page_shift)
            .div_ceil(page);
        let Some(min_bytes) = span_bytes.checked_add(meta_pages * page) else {
            return false;
        };
        // Prefer a whole growth step; settle for what the span needs. A full map takes no
        // run, so the source is not asked (a one-run map's source is a static region, which
        // answers at once).
        if S::Map::RUNS > 1 && self.map.runs_left() == 0 {
            return false;
        }
        let step = self.growth_step();
        let run = match self.st.source.grow(min_bytes.max(step), page) {
            Some(run) => run,
            None if step > min_bytes => match self.st.source.grow(min_bytes, page) {
                Some(run) => run,
                None => return false,
            },
            None => return false,
        };
        add(&self.stats.grows, 1);
        self.add_run(run)
    }

    /// The bytes a growth asks for: the configured step, or more once the page map runs short
    /// of runs. A map that can cover `k` more runs asks for 1/`k` of what the heap holds, so
    /// the heap grows geometrically as the map fills, and a bounded map (a [`FlatMap`]) is
    /// never filled by small steps while its runs' free space is too scattered to serve a
    /// large request. A map without a bound keeps the configured step, and so does a map of
    /// one run (its only growth finds the heap empty); both cases compile to the step alone.
    ///
    /// [`FlatMap`]: crate::FlatMap
    fn growth_step(&self) -> usize {
        if S::Map::RUNS == usize::MAX || S::Map::RUNS == 1 {
            return self.geom.grow_bytes;
        }
        let held = self.stats.source_bytes.load(Ordering::Relaxed);
        let left = self.map.runs_left().max(1);
        self.geom.grow_bytes.max(held / left)
    }

    /// Before the heap's first growth: if the page map takes a window, ask the source for
    /// one, once (compiled out for maps that take none).
    #[inline]
    fn offer_window(&mut self) {
        if self.map.wants_window() {
            self.offer_window_now();
        }
    }

    #[cold]
    fn offer_window_now(&mut self) {
        let (map, shift) = (self.map, self.geom.page_shift);
        let window = self
            .st
            .source
            .window(shift, &|len| S::Map::window_table(len, shift));
        // SAFETY: under the page-heap lock; the map wants a window only until this first
        // offer, which comes before the source hands out any run (so before any is
        // registered); the source's contract makes the window what its fields say.
        unsafe { map.set_window(window, shift) };
    }

    /// Turn a run from the source into an extent, carving its metadata from its front when
    /// the arena is short.
    /// A run that cannot be used (the page map is full, or the run is too small to hold even
    /// its own metadata) goes back to the source.
    pub(crate) fn add_run(&mut self, run: Run) -> bool {
        let page = self.geom.page_size();
        let mut base = run.base.as_ptr() as usize;
        let mut pages = run.len >> self.geom.page_shift;
        debug_assert_eq!(base % page, 0);
        let need = Self::extent_meta(pages).saturating_add(self.map.meta_need(
            base,
            pages,
            self.geom.page_shift,
        ));
        let carve = if self.st.arena_end - self.st.arena < need {
            need.div_ceil(page)
        } else {
            0
        };
        if carve >= pages || self.map.runs_left() == 0 {
            // SAFETY: `run` came from this source and the heap has not touched it.
            unsafe { self.st.source.release(run) };
            return false;
        }
        add(&self.stats.source_bytes, run.len);
        if carve > 0 {
            self.st.arena = base;
            self.st.arena_end = base + carve * page;
            base += carve * page;
            pages -= carve;
            add(&self.stats.meta_bytes, carve * page);
        }
        self.install(base, pages).is_some()
    }

    /// Make `[base, base + pages)` (inside a run) a shared extent: its record, bitmaps and
    /// page-map entries come from the arena. Links it last and counts its pages.
    pub(super) fn install(&mut self, base: usize, pages: usize) -> Option<*mut Extent> {
        let words = pages.div_ceil(WORD_BITS);
        let (mut cur, end) = (self.st.arena, self.st.arena_end);
        let ext = bump_alloc(&mut cur, end, size_of::<Extent>(), align_of::<Extent>())?;
        let bitmaps = if S::ZERO_FILLED { 2 * words } else { words };
        let bitmap = bump_alloc(
            &mut cur,
            end,
            bitmaps * size_of::<usize>(),
            align_of::<usize>(),
        )?;
        self.st.arena = cur;
        let map = self.map;
        // SAFETY: under the page-heap lock; the run is new and overlaps no covered run.
        let registered = unsafe {
            map.register(base, pages, self.geom.page_shift, &mut |size, align| {
                self.arena_alloc(size, align)
            })
        };
        if !registered {
            return None;
        }
        let bitmap = bitmap.as_ptr().cast::<usize>();
        if pages % WORD_BITS != 0 {
            // SAFETY: the last word of the bitmap just allocated.
            unsafe { *bitmap.add(words - 1) = !0usize << (pages % WORD_BITS) };
        }
        let ext = ext.as_ptr().cast::<Extent>();
        // SAFETY: `ext` is fresh, aligned metadata memory for one `Extent`.
        unsafe {
            ext.write(Extent {
                base,
                pages,
                bitmap,
                free_count: pages,
                hints: [0; HINT_SIZES],
                longest: pages,
                top: 0,
                next: ptr::null_mut(),
                has_clean: S::ZERO_FILLED,
                direct: false,
                run_base: 0,
                run_len: 0,
                slack: 0,
            });
            // Fresh memory from a zero-filling source is clean.
            if S::ZERO_FILLED {
                (*ext).set_clean(0, pages, true);
            }
            match self.st.last.as_mut() {
                Some(last) => last.next = ext,
                None => self.st.extents = ext,
            }
        }
        self.st.last = ext;
        add(&self.stats.pages, pages);
        add(&self.stats.free_pages, pages);
        if !S::ZERO_FILLED {
            add(&self.stats.idle_pages, pages);
        }
        Some(ext)
    }

    /// A direct run for a span of `pages` pages aligned to `align`: the span is the whole
    /// extent, whose record comes from the metadata arena (or the spare extent records) and
    /// which has no bitmap; the page map gets an entry for its first page only. The metadata
    /// is therefore the same few words whatever the span's length. Returns the span's start.
    pub(super) fn alloc_direct(&mut self, pages: usize, align: usize) -> Option<usize> {
        self.offer_window();
        let (page, shift) = (self.geom.page_size(), self.geom.page_shift);
        let bytes = pages.checked_mul(page)?;
        let align = align.max(page);
        let run = self.st.source.grow_direct(bytes, align)?;
        let base = run.base.as_ptr() as usize;
        let need = self.map.meta_need(base, 1, shift);
        let record = if self.st.spare_ext.is_null() {
            size_of::<Extent>() + align_of::<Extent>()
        } else {
            0
        };
        let fits = run.len >= bytes && base % align == 0 && need != usize::MAX;
        let room = fits && {
            let total = need + record;
            total <= self.st.arena_end - self.st.arena || self.refill_arena(total)
        };
        let ext = if room {
            self.install_direct(run, pages)
        } else {
            None
        };
        if ext.is_none() {
            // SAFETY: the run came from `grow_direct` and holds nothing of the heap's.
            unsafe { self.st.source.release(run) };
            return None;
        }
        add(&self.stats.grows, 1);
        add(&self.stats.source_bytes, run.len);
        add(&self.stats.meta_bytes, run.len - bytes);
        add(&self.stats.direct_runs, 1);
        self.st.last_zeroed = S::ZERO_FILLED;
        Some(base)
    }

    /// Make `run` a direct extent of `pages` used pages (its first `pages` pages), with a
    /// record from the spare list or the arena and a page-map entry for its first page.
    fn install_direct(&mut self, run: Run, pages: usize) -> Option<*mut Extent> {
        let base = run.base.as_ptr() as usize;
        let ext = match NonNull::new(self.st.spare_ext) {
            Some(e) => e.as_ptr(),
            None => self
                .arena_alloc(size_of::<Extent>(), align_of::<Extent>())?
                .as_ptr()
                .cast::<Extent>(),
        };
        let map = self.map;
        // SAFETY: under the page-heap lock; the run is new and overlaps no covered run.
        let registered = unsafe {
            map.register(base, 1, self.geom.page_shift, &mut |size, align| {
                self.arena_alloc(size, align)
            })
        };
        if !registered {
            return None;
        }
        if ext == self.st.spare_ext {
            // SAFETY: spare extent records are valid records linked through `next`.
            self.st.spare_ext = unsafe { (*ext).next };
        }
        // SAFETY: `ext` is an aligned extent record nobody else uses (fresh from the arena,
        // or just taken off the spare list).
        unsafe {
            ext.write(Extent {
                base,
                pages,
                bitmap: ptr::null_mut(),
                free_count: 0,
                hints: [0; HINT_SIZES],
                longest: 0,
                top: 0,
                next: ptr::null_mut(),
                has_clean: false,
                direct: true,
                run_base: base,
                run_len: run.len,
                slack: run.len - (pages << self.geom.page_shift),
            });
            match self.st.last.as_mut() {
                Some(last) => last.next = ext,
                None => self.st.extents = ext,
            }
        }
        self.st.last = ext;
        add(&self.stats.pages, pages);
        Some(ext)
    }

    /// Point the arena at `bytes` (or more) of fresh metadata pages taken from an extent,
    /// growing the heap if none has room.
    pub(super) fn refill_arena(&mut self, bytes: usize) -> bool {
        let page = self.geom.page_size();
        let k = bytes.div_ceil(page).max(1);
        let start = match self.take_pages(k, 1) {
            Some(p) => p,
            None => {
                if !self.grow(k, 1) {
                    return false;
                }
                match self.take_pages(k, 1) {
                    Some(p) => p,
                    None => return false,
                }
            }
        };
        self.set_map(start, k, CLASS_META, ptr::null_mut());
        add(&self.stats.meta_bytes, k * page);
        self.st.arena = start;
        self.st.arena_end = start + k * page;
        true
    }

    /// Take the highest free page of the last extent that has one. Metadata pages come from
    /// the top so that they do not split the runs that spans are carved from at the bottom.
    pub(super) fn take_top_page(&mut self) -> Option<usize> {
        let mut found = None;
        let mut e = self.st.extents;
        // SAFETY: extent records are valid while linked (a direct extent's is unlinked before its
        // run goes back), and `&mut self` is the locked view, so the list cannot change.
        while let Some(ext) = unsafe { e.as_mut() } {
            if ext.free_count > 0 && !ext.direct {
                found = Some(e);
            }
            e = ext.next;
        }
        // SAFETY: as above.
        let ext = unsafe { &mut *found? };
        let i = ext.last_free()?;
        self.use_pages(ext, i, 1);
        Some(ext.base + (i << self.geom.page_shift))
    }

    /// A span record: a spare one, or a new one from the arena, refilling the arena with a
    /// metadata page when it is empty.
    pub(super) fn new_record(&mut self) -> Option<*mut Span> {
        if let Some(s) = NonNull::new(self.st.spare) {
            // SAFETY: spare records are valid records linked through `next`.
            self.st.spare = unsafe { s.as_ref().next };
            return Some(s.as_ptr());
        }
        let rec = match self.arena_alloc(size_of::<Span>(), align_of::<Span>()) {
            Some(r) => r,
            None => {
                let page = match self.take_top_page() {
                    Some(p) => p,
                    None => {
                        if !self.grow(1, 1) {
                            return None;
                        }
                        self.take_top_page()?
                    }
                };
                if let Some(pr) = self.map.page(page, self.geom.page_shift) {
                    pr.class.store(CLASS_META, Ordering::Relaxed);
                }
                add(&self.stats.meta_bytes, self.geom.page_size());
                self.st.arena = page;
                self.st.arena_end = page + self.geom.page_size();
                self.arena_alloc(size_of::<Span>(), align_of::<Span>())?
            }
        };
        Some(rec.as_ptr().cast())
    }
}
