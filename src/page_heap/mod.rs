//! The page heap: free pages tracked in a bitmap, spans carved from it.
//!
//! Memory arrives from the [`PageSource`] in runs; each run becomes an *extent* with one bit
//! per page (1 = in use). A request for `n` pages is a bounded best-fit search for `n` clear
//! bits (the shortest free run among those near the lowest that holds them), done a word at
//! a time. Because free space is the bitmap itself, neighbouring free pages
//! are merged the moment they are freed: there is no free-span list to coalesce.
//!
//! The page heap also owns the heap's metadata: extent records, bitmaps, page-map arrays and
//! span records are bump-allocated from metadata pages, which are either carved from the
//! front of a new run or taken one page at a time from an extent (and marked as metadata in
//! the page map). Metadata never sits in front of an object.
//!
//! With a source whose memory reads as zero ([`PageSource::ZERO_FILLED`], mmap) each extent
//! also has a *clean* bitmap: 1 = a free page known to be zero and not backed by memory
//! (never touched since the source handed it out, or discarded since). Free pages that are
//! not clean are *idle*: backed memory nobody uses. Once more than the source's
//! [`idle_limit`](PageSource::idle_limit) is idle, the page heap gives idle runs back with
//! [`discard`](PageSource::discard) (madvise) until half of it is left: not eagerly, since
//! each discarded page costs a page fault when it is used again.
//!
//! Spans of at least the source's [`direct_threshold`](PageSource::direct_threshold) get a
//! run of their own ([`grow_direct`](PageSource::grow_direct), mmap): a *direct* extent,
//! which no other span shares and which is given back whole ([`release`](PageSource::release),
//! munmap) when its span is freed. Its metadata does not grow with its length: an extent
//! record from the arena (recycled through a spare list), no bitmap (its one span covers it),
//! and one page-map entry, for its first page, which is the pointer the free path is given.
//! An interior pointer of a direct span therefore finds no entry and is reported as foreign.
//! Shrinking a direct span in place discards its tail; growing one in place fails (the
//! caller copies).
//!
//! A request larger than the source could ever give ([`max_request`](PageSource::max_request),
//! asked once and cached) fails before the lock is taken and before anything is reserved.
//!
//! Everything here runs under the page-heap lock.

mod extent;
mod growth;
mod release;
mod spans;

use core::ptr::{self, NonNull};

use lock_api::{Mutex, RawMutex};

pub(crate) use self::extent::Extent;
use crate::heap::{StoredGrowBytes, StoredPageShift};
use crate::page_map::{PageMap, PageRef};
use crate::page_source::PageSource;
use crate::span::{Span, CLASS_LARGE};
use crate::stats::add_owned;
pub(crate) use crate::stats::PageStats;
use crate::sync::{AtomicUsize, Ordering, PlainUsize};

/// Add `n` to a page-heap counter. Every writer holds the page-heap lock, so a plain load and
/// store is enough (readers take the counters without it); an atomic read-modify-write cost
/// firmware about 10 bytes of flash per update (`ldrex`/`strex` loops on Cortex-M).
#[inline(always)]
pub(super) fn add(c: &PlainUsize, n: usize) {
    add_owned(c, n);
}

/// Subtract `n` from a page-heap counter (see [`add`]).
#[inline(always)]
pub(super) fn sub(c: &PlainUsize, n: usize) {
    add_owned(c, n.wrapping_neg());
}

/// Page size and growth step, fixed when the heap is built.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) page_shift: u32,
    /// The least the heap asks the source for when it grows.
    pub(crate) grow_bytes: usize,
}

impl Geometry {
    pub(crate) const fn page_size(&self) -> usize {
        1 << self.page_shift
    }
}

/// [`Geometry`] as the page heap stores it: as differences from `Config::small()`'s (zero
/// for a heap built with it; see `Stored`).
#[derive(Clone, Copy)]
struct StoredGeometry {
    page_shift: StoredPageShift,
    grow_bytes: StoredGrowBytes,
}

/// Tier 3: the page heap. Its lock guards the extents, the metadata arena and the source;
/// the page map and the counters beside it are read without the lock.
pub(crate) struct PageHeap<S: PageSource, R: RawMutex> {
    state: Mutex<R, PageState<S>>,
    /// Page -> span, written under the lock, read lock-free by every free.
    pub(crate) map: S::Map,
    pub(crate) stats: PageStats,
    /// Read through [`geom`](Self::geom).
    geom: StoredGeometry,
    /// The source's [`max_request`](PageSource::max_request), once asked (0: not yet).
    max_request: AtomicUsize,
}

/// What the page-heap lock guards.
pub(crate) struct PageState<S> {
    pub(crate) source: S,
    extents: *mut Extent,
    last: *mut Extent,
    /// Metadata bump arena `[arena, arena_end)`.
    arena: usize,
    arena_end: usize,
    /// Span records not in use.
    spare: *mut Span,
    /// Extent records of released direct runs, linked through `next`, for the next ones.
    spare_ext: *mut Extent,
    /// Whether the pages of the last span handed out were all known zero (clean).
    last_zeroed: bool,
}

// SAFETY: the raw pointers point into memory the heap owns (metadata and extents), reachable
// only through the page-heap lock; the source is `Send`.
unsafe impl<S: Send> Send for PageState<S> {}

/// The locked page heap: its state together with the map, counters and geometry beside it.
/// Every operation of this tier below its public face is a method of this view.
pub(crate) struct Locked<'a, S: PageSource> {
    st: &'a mut PageState<S>,
    map: &'a S::Map,
    stats: &'a PageStats,
    geom: Geometry,
}

/// Bump-allocate `size` zeroed bytes aligned to `align` from `[*cur, end)`.
///
/// Rounded to whole words, word-aligned (what the metadata bounds already allow for: each
/// allocation's alignment slack), so that the zeroing is a word-aligned `memset`: on Arm
/// `__aeabi_memclr4`, which most programs link for their own zeroed arrays, rather than the
/// byte-wise `__aeabi_memclr` as well (208 bytes of flash). Out of line: five call sites.
#[inline(never)]
fn bump_alloc(cur: &mut usize, end: usize, size: usize, align: usize) -> Option<NonNull<u8>> {
    const WORD: usize = core::mem::size_of::<usize>();
    let start = cur.checked_next_multiple_of(align.max(WORD))?;
    let words = size.div_ceil(WORD);
    let stop = start.checked_add(words * WORD)?;
    if *cur == 0 || stop > end {
        return None;
    }
    *cur = stop;
    let p = start as *mut usize;
    // SAFETY: `[start, stop)` lies in the bump region, metadata memory owned by the heap and
    // not yet handed out; `start` is word-aligned.
    unsafe { ptr::write_bytes(p, 0, words) };
    NonNull::new(p.cast())
}

impl<S: PageSource, R: RawMutex> PageHeap<S, R> {
    /// # Panics
    /// If the page shift is not below `usize::BITS` (at compile time in a `static`).
    pub(crate) const fn new(source: S, geom: Geometry) -> Self {
        assert!(
            geom.page_shift < usize::BITS,
            "cpuheap: page shift too large"
        );
        Self {
            state: Mutex::const_new(
                R::INIT,
                PageState {
                    source,
                    extents: ptr::null_mut(),
                    last: ptr::null_mut(),
                    arena: 0,
                    arena_end: 0,
                    spare: ptr::null_mut(),
                    spare_ext: ptr::null_mut(),
                    last_zeroed: false,
                },
            ),
            map: S::Map::EMPTY,
            stats: PageStats::new(),
            geom: StoredGeometry {
                page_shift: StoredPageShift::new(geom.page_shift as usize),
                grow_bytes: StoredGrowBytes::new(geom.grow_bytes),
            },
            max_request: AtomicUsize::new(0),
        }
    }

    /// Page size and growth step.
    #[inline(always)]
    pub(crate) fn geom(&self) -> Geometry {
        let page_shift = self.geom.page_shift.get() as u32;
        // SAFETY: `new` stored a shift below `usize::BITS` and nothing writes it after; said
        // here so that the free path's `addr >> page_shift` needs no mask of the shift.
        unsafe { core::hint::assert_unchecked(page_shift < usize::BITS) };
        Geometry {
            page_shift,
            grow_bytes: self.geom.grow_bytes.get(),
        }
    }

    /// Take the lock and run `f` on the locked view.
    pub(crate) fn with_locked<T>(&self, f: impl FnOnce(&mut Locked<'_, S>) -> T) -> T {
        let mut st = self.state.lock();
        f(&mut Locked {
            st: &mut st,
            map: &self.map,
            stats: &self.stats,
            geom: self.geom(),
        })
    }

    /// The most bytes one request may take from the source (span, alignment slack), from
    /// [`PageSource::max_request`]: asked under the lock the first time, then read without
    /// it.
    #[inline]
    pub(crate) fn max_request(&self) -> usize {
        match self.max_request.load(Ordering::Relaxed) {
            0 => {
                let m = self.with_source(|s| s.max_request()).max(1);
                self.max_request.store(m, Ordering::Relaxed);
                m
            }
            m => m,
        }
    }

    /// Run `f` on the page source, under the lock.
    pub(crate) fn with_source<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut self.state.lock().source)
    }

    /// A span of `pages` pages aligned to `align` bytes for size class `class` (0: a large
    /// allocation), and whether its pages are known zero. Grows through the source when no
    /// run of free pages is long enough; `None` when the source has nothing more.
    pub(crate) fn alloc_span(
        &self,
        pages: usize,
        align: usize,
        class: u8,
    ) -> Option<(*mut Span, bool)> {
        self.alloc_span_between(pages, pages, align, class)
    }

    /// [`alloc_span`](Self::alloc_span) for a size class, whose span may be shorter than
    /// `pages`: a multiple of `fewest` pages (see [`Locked::alloc_span`]). The span's
    /// length is its record's `pages`.
    pub(crate) fn alloc_span_between(
        &self,
        pages: usize,
        fewest: usize,
        align: usize,
        class: u8,
    ) -> Option<(*mut Span, bool)> {
        self.with_locked(|l| {
            let span = l.alloc_span(pages, fewest, align, class)?;
            Some((span, l.st.last_zeroed))
        })
    }

    /// Give a span's pages back and recycle its record.
    ///
    /// # Safety
    /// `span` must be a live span of this heap with no object in use.
    pub(crate) unsafe fn free_span(&self, span: *mut Span) {
        // SAFETY: the caller's guarantee.
        self.with_locked(|l| unsafe { l.free_span(span) })
    }

    /// Free the large span `span` that the page `pr` pointed to, unless a racing free got
    /// there first (then `false`: the page no longer names that span).
    ///
    /// # Safety
    /// `span` must be a record this heap handed out for a large allocation.
    pub(crate) unsafe fn free_large(&self, pr: &PageRef<'_>, span: *mut Span) -> bool {
        self.with_locked(|l| {
            // Re-checked under the lock: a racing double free must not free the span twice.
            if pr.class.load(Ordering::Relaxed) != CLASS_LARGE
                || pr.span.load(Ordering::Relaxed) != span
            {
                return false;
            }
            // SAFETY: the page still names the span, so it is live; its one object is being
            // freed.
            unsafe { l.free_span(span) };
            true
        })
    }

    /// Shrink a large span in place to `new_pages` pages.
    ///
    /// # Safety
    /// `span` must be a live large span and `new_pages` at least 1 and at most its length.
    pub(crate) unsafe fn shrink_span(&self, span: *mut Span, new_pages: usize) {
        // SAFETY: the caller's guarantee.
        self.with_locked(|l| unsafe { l.shrink_span(span, new_pages) })
    }

    /// Grow a large span in place to `new_pages` pages if the pages after it are free.
    ///
    /// # Safety
    /// `span` must be a live large span and `new_pages` larger than its length.
    pub(crate) unsafe fn extend_span(&self, span: *mut Span, new_pages: usize) -> bool {
        // SAFETY: the caller's guarantee.
        self.with_locked(|l| unsafe { l.extend_span(span, new_pages) })
    }

    /// Resize a large span with a direct run of its own by resizing the run (`mremap`), maybe
    /// moving it; its start now, or `None` if it cannot.
    ///
    /// # Safety
    /// As for [`Locked::remap_direct`].
    pub(crate) unsafe fn remap_direct(
        &self,
        span: *mut Span,
        new_pages: usize,
        may_move: bool,
    ) -> Option<usize> {
        // SAFETY: the caller's guarantee.
        self.with_locked(|l| unsafe { l.remap_direct(span, new_pages, may_move) })
    }

    /// Give idle runs back to the source until at most `keep` bytes are idle.
    pub(crate) fn discard_idle(&self, keep: usize) -> usize {
        self.with_locked(|l| l.discard_idle(keep))
    }
}

impl<S: PageSource> Locked<'_, S> {
    /// Iterate over the extents.
    pub(crate) fn extents(&self) -> impl Iterator<Item = &Extent> {
        let mut e = self.st.extents;
        core::iter::from_fn(move || {
            // SAFETY: extent records stay valid while linked (a direct extent's is released
            // only after it is unlinked), and the list is only changed under the lock this
            // `&self` proves.
            let ext = unsafe { e.as_ref()? };
            e = ext.next;
            Some(ext)
        })
    }

    /// Bump-allocate `size` zeroed bytes of metadata from the arena.
    fn arena_alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        bump_alloc(&mut self.st.arena, self.st.arena_end, size, align)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::page_source::{Run, StaticRegion};
    use crate::span::CLASS_META;
    use crate::sync::DefaultRawMutex;
    use core::mem::MaybeUninit;
    use core::ptr::NonNull;
    use std::boxed::Box;
    use std::vec::Vec;

    const SHIFT: u32 = 12;
    const PAGE: usize = 1 << SHIFT;

    struct Fixture {
        heap: PageHeap<StaticRegion<2>, DefaultRawMutex>,
    }

    impl Fixture {
        /// A page heap over one region of `pages` pages (plus slack for alignment).
        fn new(pages: usize) -> Self {
            let region: &'static mut [MaybeUninit<u8>] =
                Box::leak(Box::new_uninit_slice((pages + 1) * PAGE));
            let mut source = StaticRegion::new();
            assert!(source.add(region));
            let geom = Geometry {
                page_shift: SHIFT,
                grow_bytes: 0,
            };
            Self {
                heap: PageHeap::new(source, geom),
            }
        }

        fn alloc(&mut self, pages: usize, align: usize) -> Option<*mut Span> {
            self.heap.alloc_span(pages, align, 0).map(|(s, _)| s)
        }

        fn free(&mut self, span: *mut Span) {
            // SAFETY: a live span from `alloc` with nothing in use.
            unsafe { self.heap.free_span(span) };
        }

        fn free_pages(&self) -> usize {
            self.heap.stats.free_pages.load(Ordering::Relaxed)
        }
    }

    fn start(span: *mut Span) -> usize {
        // SAFETY: a live span record.
        unsafe { (*span).start }
    }

    #[test]
    fn spans_pack_from_the_bottom_and_freed_neighbours_merge() {
        let mut f = Fixture::new(64);
        let spans: Vec<_> = (0..6).map(|_| f.alloc(4, PAGE).expect("room")).collect();
        for w in spans.windows(2) {
            assert_eq!(
                start(w[1]) - start(w[0]),
                4 * PAGE,
                "spans pack upward from the bottom"
            );
        }
        let total_free = f.free_pages();
        // Free two neighbours: their 8 pages form one run that an 8-page span reuses.
        let (a, b) = (start(spans[1]), start(spans[2]));
        f.free(spans[1]);
        f.free(spans[2]);
        assert_eq!(f.free_pages(), total_free + 8);
        let merged = f.alloc(8, PAGE).expect("merged run");
        assert_eq!(start(merged), a);
        assert!(start(merged) < b);
    }

    #[test]
    fn a_large_span_takes_the_shortest_run_that_holds_it() {
        let mut f = Fixture::new(64);
        let spans: Vec<_> = (0..7).map(|_| f.alloc(4, PAGE).expect("room")).collect();
        // Holes of 8 pages (spans 1 and 2) and 4 pages (span 5), between live spans.
        f.free(spans[1]);
        f.free(spans[2]);
        f.free(spans[5]);
        let s = f.alloc(3, PAGE).expect("room");
        assert_eq!(
            start(s),
            start(spans[5]),
            "the 4-page hole, not the lower 8"
        );
        let s = f.alloc(8, PAGE).expect("room");
        assert_eq!(start(s), start(spans[1]), "an exact fit");
    }

    #[test]
    fn a_class_span_fills_a_short_hole_with_what_it_holds() {
        let mut f = Fixture::new(64);
        let spans: Vec<_> = (0..4).map(|_| f.alloc(4, PAGE).expect("room")).collect();
        f.free(spans[1]);
        // A class span that wants 8 pages and settles for multiples of 1: the 4-page hole.
        let (s, _) = f.heap.alloc_span_between(8, 1, PAGE, 1).expect("room");
        assert_eq!(start(s), start(spans[1]));
        // SAFETY: a live span record.
        assert_eq!(unsafe { (*s).pages }, 4, "as much of 8 as the hole holds");
        // With no hole left below, the free tail gives all 8.
        let (t, _) = f.heap.alloc_span_between(8, 3, PAGE, 1).expect("room");
        // SAFETY: as above.
        assert_eq!(unsafe { (*t).pages }, 8);
        assert!(start(t) > start(spans[3]));
        // Multiples of `fewest` only: a 5-page hole gives a span of 3 of 8 when 3 is the least.
        let u = f.alloc(5, PAGE).expect("room");
        let _guard = f.alloc(1, PAGE).expect("room");
        f.free(u);
        let (v, _) = f.heap.alloc_span_between(8, 3, PAGE, 1).expect("room");
        assert_eq!(start(v), start(u));
        // SAFETY: as above.
        assert_eq!(unsafe { (*v).pages }, 3);
    }

    #[test]
    fn aligned_runs_start_on_the_alignment() {
        let mut f = Fixture::new(128);
        let _pad = f.alloc(1, PAGE).unwrap();
        for align in [2 * PAGE, 8 * PAGE, 32 * PAGE] {
            let s = f.alloc(3, align).expect("room for an aligned run");
            assert_eq!(start(s) % align, 0, "align {align}");
        }
    }

    #[test]
    fn growth_exhaustion_and_recovery() {
        let mut f = Fixture::new(32);
        let mut spans = Vec::new();
        while let Some(s) = f.alloc(1, PAGE) {
            spans.push(s);
        }
        assert!(
            spans.len() >= 24,
            "most of 32 pages serve spans: {}",
            spans.len()
        );
        assert_eq!(f.free_pages(), 0);
        assert!(
            f.alloc(1, PAGE).is_none(),
            "exhausted, and the source has nothing more"
        );
        let n = spans.len();
        for s in spans {
            f.free(s);
        }
        // Everything merged back: one span of all the pages fits again.
        assert!(f.alloc(n, PAGE).is_some());
    }

    /// Hands out runs of exactly what is asked (page-aligned pieces of a leaked buffer) and
    /// records each run's length; its page map covers at most four runs.
    struct Stepwise {
        next: usize,
        end: usize,
        runs: Vec<usize>,
    }

    // SAFETY: runs are disjoint, page-aligned pieces of a leaked buffer, never taken back.
    unsafe impl PageSource for Stepwise {
        type Map = crate::FlatMap<4>;

        fn grow(&mut self, min_bytes: usize, _align: usize) -> Option<Run> {
            let len = min_bytes.div_ceil(PAGE) * PAGE;
            if self.end - self.next < len {
                return None;
            }
            let base = NonNull::new(self.next as *mut u8)?;
            self.next += len;
            self.runs.push(len);
            Some(Run { base, len })
        }
    }

    #[test]
    fn growth_steps_rise_as_a_bounded_map_fills() {
        let bytes = 1024 * PAGE;
        let buf: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(bytes + PAGE));
        let start = (buf.as_mut_ptr() as usize).next_multiple_of(PAGE);
        let source = Stepwise {
            next: start,
            end: start + bytes,
            runs: Vec::new(),
        };
        let step = 8 * PAGE;
        let heap: PageHeap<Stepwise, DefaultRawMutex> = PageHeap::new(
            source,
            Geometry {
                page_shift: SHIFT,
                grow_bytes: step,
            },
        );
        let mut spans = 0;
        while heap.alloc_span(1, PAGE, 0).is_some() {
            spans += 1;
        }
        let runs = heap.with_source(|s| s.runs.clone());
        assert_eq!(runs.len(), 4, "the map's four runs are all used");
        // A map with room for k more runs asks for 1/k of what the heap holds: 8 pages while
        // that is less than the step (0/4, 8/3, 16/2 pages), then all 24 held for the last.
        assert_eq!(runs, [step, step, step, 3 * step]);
        assert!(
            spans * PAGE > 4 * step,
            "{spans} one-page spans: more than four steps' worth"
        );
    }

    #[test]
    fn metadata_pages_come_from_the_top() {
        let mut f = Fixture::new(64);
        // Enough spans to need more span records than the carved arena holds.
        let spans: Vec<_> = (0..40).map(|_| f.alloc(1, PAGE).unwrap()).collect();
        let highest_span = spans.iter().map(|&s| start(s)).max().unwrap();
        let (base, pages) = f.heap.with_locked(|l| {
            let ext = l.extents().next().unwrap();
            (ext.base, ext.pages)
        });
        let meta_pages: Vec<usize> = (0..pages)
            .filter(|&i| {
                let addr = base + i * PAGE;
                f.heap
                    .map
                    .page(addr, SHIFT)
                    .unwrap()
                    .class
                    .load(Ordering::Relaxed)
                    == CLASS_META
            })
            .collect();
        assert!(!meta_pages.is_empty(), "40 records need a metadata page");
        for i in meta_pages {
            assert!(base + i * PAGE > highest_span, "metadata page below a span");
        }
    }
}
