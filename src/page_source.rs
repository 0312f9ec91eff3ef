//! Where the heap's memory comes from: the [`PageSource`] trait, [`StaticRegion`], and the
//! static memory that [`init_region!`](crate::init_region) hands over.

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::page_map::{FlatMap, PageMap};

/// A run of memory handed from a source to the heap: `len` bytes at `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First byte.
    pub base: NonNull<u8>,
    /// Length in bytes.
    pub len: usize,
}

/// A window of address space with a flat page-map table over it, from
/// [`PageSource::window`]: the source places its runs in `[base, base + len)` while there is
/// room, and the page map finds the entry of any page there by one index into `table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First byte of the window (a multiple of the heap's page size).
    pub base: usize,
    /// Bytes in the window (a multiple of the heap's page size).
    pub len: usize,
    /// The table: zero-filled memory of `table_len` bytes, aligned to 8, valid for reads and
    /// writes for the rest of the source's life and used by nothing but the page map.
    pub table: NonNull<u8>,
    /// Bytes in the table: at least what the map asked for a window of `len` bytes.
    pub table_len: usize,
}

/// A provider of memory for the heap: a static region, a kernel's frame allocator, mmap.
///
/// The heap calls it with its page-heap lock held, so a source is never called concurrently
/// and must never allocate from the heap it feeds.
///
/// # Safety
/// A run returned by [`grow`](Self::grow) must be valid for reads and writes for its whole
/// length, must not overlap any other run this source handed out and has not taken back, and
/// must stay valid until [`release`](Self::release) takes it back (or forever). A
/// [`Window`] from [`window`](Self::window) must be as its fields say, and no run this
/// source hands out may lie partly inside the window and partly outside it.
pub unsafe trait PageSource: Send {
    /// The page map that maps the addresses of this source's runs to the heap's spans.
    /// [`FlatMap<N>`] suits sources that produce at most `N` runs.
    type Map: PageMap;

    /// Hand out a run of at least `min_bytes` bytes whose base is aligned to `align` (the
    /// heap's page size, a power of two). A longer run is welcome: the heap keeps all of it.
    /// Returns `None` when no more memory can be had.
    fn grow(&mut self, min_bytes: usize, align: usize) -> Option<Run>;

    /// A [`Window`] for a page map that wants one ([`WindowMap`](crate::WindowMap)): a range
    /// of address space where this source will place its runs (as long as they fit), and a
    /// zero-filled table of `table_bytes(len)` bytes for a window of `len` bytes, so that a
    /// free finds its page's entry by one index instead of a tree walk. The heap asks once,
    /// under the page-heap lock, before it first grows (directly or not) and only if its map
    /// takes a window. `None` (the default): no window; the map covers every run another way.
    fn window(&mut self, page_shift: u32, table_bytes: &dyn Fn(usize) -> usize) -> Option<Window> {
        let _ = (page_shift, table_bytes);
        None
    }

    /// Take back a whole run that [`grow`](Self::grow) handed out. Returns `false` if this
    /// source cannot take memory back, in which case the heap keeps the run.
    ///
    /// # Safety
    /// `run` must be exactly a run this source handed out, and the heap must not touch it
    /// again.
    unsafe fn release(&mut self, run: Run) -> bool {
        let _ = run;
        false
    }

    /// Whether memory from [`grow`](Self::grow) and [`grow_direct`](Self::grow_direct) reads
    /// as zero, and a range given to [`discard`](Self::discard) reads as zero again. The heap
    /// then tracks which free pages are known zero (and so not backed by memory): it counts
    /// them apart from idle pages, and `alloc_zeroed` need not clear them.
    const ZERO_FILLED: bool = false;

    /// Whether this source ever hands out direct runs ([`grow_direct`](Self::grow_direct)).
    /// `false` (the default) compiles the heap's direct-run machinery out: a static region's
    /// firmware does not pay for it in flash.
    const DIRECT_RUNS: bool = false;

    /// Spans of at least this many bytes get a run of their own from
    /// [`grow_direct`](Self::grow_direct), given back with [`release`](Self::release) when the
    /// span is freed. `usize::MAX` (the default) turns direct runs off.
    fn direct_threshold(&self) -> usize {
        usize::MAX
    }

    /// Hand out a run of at least `min_bytes` bytes aligned to `align` for one huge span. The
    /// heap keeps it apart from other spans and gives it back with [`release`](Self::release)
    /// as soon as the span is freed. `None` (the default) makes the heap fall back to
    /// [`grow`](Self::grow).
    fn grow_direct(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        let _ = (min_bytes, align);
        None
    }

    /// Resize a run that [`grow_direct`](Self::grow_direct) handed out to `new_len` bytes,
    /// keeping its contents; it may move (`may_move`), to an address aligned at least to the
    /// source's own page. Returns the run as it is now, or `None` (the run is unchanged).
    /// With mmap this is `mremap`: a growing buffer is never copied byte by byte. `None` is
    /// the default.
    ///
    /// # Safety
    /// `run` must be a run from `grow_direct` not released since, exactly as handed out or
    /// as this method last returned it.
    unsafe fn resize_direct(&mut self, run: Run, new_len: usize, may_move: bool) -> Option<Run> {
        let _ = (run, new_len, may_move);
        None
    }

    /// The most bytes one request may ever take from this source (the span and, for an
    /// alignment above the page size, the slack to align it). A larger request fails at
    /// once, before the heap reserves or writes anything for it. The heap asks once and
    /// keeps the answer. `usize::MAX` (the default) leaves it to [`grow`](Self::grow) and
    /// [`grow_direct`](Self::grow_direct) to refuse.
    fn max_request(&self) -> usize {
        usize::MAX
    }

    /// Bytes of free pages the heap may keep backed by memory ("idle") before it gives the
    /// excess back with [`discard`](Self::discard), down to half this amount. `usize::MAX`
    /// (the default) never discards.
    fn idle_limit(&self) -> usize {
        usize::MAX
    }

    /// Let the memory of `range`, whole pages inside a run this source handed out, go: its
    /// contents are lost (with [`ZERO_FILLED`](Self::ZERO_FILLED), it reads as zero again) but
    /// it stays valid to use. Returns `false` if nothing was done.
    ///
    /// # Safety
    /// `range` must lie inside a run this source handed out and not taken back, and hold no
    /// data the heap still needs.
    unsafe fn discard(&mut self, range: Run) -> bool {
        let _ = range;
        false
    }
}

/// A source over up to `N` caller-supplied regions of memory, for example `static` arrays.
///
/// Regions may be discontiguous and may be added at any time through
/// [`Heap::add_region`](crate::Heap::add_region). Each is handed to the heap whole, the first
/// time the heap needs memory it fits. Memory is never taken back.
pub struct StaticRegion<const N: usize = 4> {
    pending: heapless::Vec<Run, N>,
}

// SAFETY: the runs are exclusively owned memory (`&'static mut` when added), so moving the
// source to another thread moves that ownership with it.
unsafe impl<const N: usize> Send for StaticRegion<N> {}

impl<const N: usize> StaticRegion<N> {
    /// A source with no regions yet.
    pub const fn new() -> Self {
        Self {
            pending: heapless::Vec::new(),
        }
    }

    /// Add a region. Returns `false` if `N` regions are already pending, or the region is
    /// empty.
    pub fn add(&mut self, region: &'static mut [MaybeUninit<u8>]) -> bool {
        let len = region.len();
        let Some(base) = NonNull::new(region.as_mut_ptr().cast::<u8>()) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        self.pending.push(Run { base, len }).is_ok()
    }

    /// Bytes in regions not yet handed to the heap.
    pub fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|r| r.len).sum()
    }
}

impl<const N: usize> Default for StaticRegion<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every run comes from a `&'static mut` region, is trimmed inside it, and is handed
// out exactly once (it is removed from `pending`).
unsafe impl<const N: usize> PageSource for StaticRegion<N> {
    type Map = FlatMap<N>;

    fn grow(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        // Trimmed once; the first region that fits is handed out (and forgotten).
        let (idx, run) = self
            .pending
            .iter()
            .enumerate()
            .find_map(|(i, r)| Some((i, trim(*r, align).filter(|t| t.len >= min_bytes)?)))?;
        self.pending.swap_remove(idx);
        Some(run)
    }
}

/// Shrink `run` to whole `align`-aligned pages.
fn trim(run: Run, align: usize) -> Option<Run> {
    let start = run.base.as_ptr() as usize;
    let end = start.checked_add(run.len)?;
    let aligned_start = start.checked_add(align - 1)? & !(align - 1);
    let aligned_end = end & !(align - 1);
    if aligned_end <= aligned_start {
        return None;
    }
    // `aligned_start` lies inside the region, so it is derived from its provenance.
    let base = run.base.as_ptr().wrapping_add(aligned_start - start);
    Some(Run {
        base: NonNull::new(base)?,
        len: aligned_end - aligned_start,
    })
}

/// `N` bytes of memory for a heap region: what [`init_region!`](crate::init_region) keeps in
/// a `static` `ConstStaticCell` (from `static_cell`), which hands it out at most once.
///
/// Aligned to 256 bytes (the smallest page size, [`Config::small`](crate::Config::small)'s),
/// so a heap with such pages loses nothing to trimming. No byte of it is initialised: the
/// `static` is `.bss`.
#[doc(hidden)]
#[repr(C, align(256))]
pub struct RegionMemory<const N: usize>([MaybeUninit<u8>; N]);

impl<const N: usize> RegionMemory<N> {
    /// `N` uninitialised bytes.
    pub const fn new() -> Self {
        Self([MaybeUninit::uninit(); N])
    }

    /// The memory as a region for [`Heap::add_region`](crate::Heap::add_region).
    pub fn region(&'static mut self) -> &'static mut [MaybeUninit<u8>] {
        &mut self.0
    }
}

impl<const N: usize> Default for RegionMemory<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec;

    #[test]
    fn region_memory_is_taken_once_and_page_aligned() {
        type Buffer<const N: usize> = static_cell::ConstStaticCell<RegionMemory<N>>;
        static B: Buffer<1000> = Buffer::new(RegionMemory::new());
        let r = B.try_take().expect("first take").region();
        assert_eq!(r.len(), 1000);
        assert_eq!(r.as_ptr() as usize % 256, 0);
        assert!(B.try_take().is_none());
        assert!(B.try_take().is_none());
        // The memory rounded up to the alignment, then the once-flag, rounded up again.
        assert_eq!(core::mem::size_of::<Buffer<1000>>(), 1024 + 256);
        assert_eq!(core::mem::size_of::<Buffer<1024>>(), 1024 + 256);
    }

    fn leak(n: usize) -> &'static mut [MaybeUninit<u8>] {
        Box::leak(vec![MaybeUninit::uninit(); n].into_boxed_slice())
    }

    #[test]
    fn hands_out_aligned_runs_once() {
        let mut s: StaticRegion<2> = StaticRegion::new();
        assert!(s.add(leak(10_000)));
        assert!(s.add(leak(100_000)));
        assert!(!s.add(leak(10)), "capacity is 2");
        let big = s.grow(50_000, 4096).expect("the large region fits");
        assert_eq!(big.base.as_ptr() as usize % 4096, 0);
        assert!(big.len >= 90_000 && big.len % 4096 == 0);
        assert!(
            s.grow(50_000, 4096).is_none(),
            "only the small region is left"
        );
        let small = s.grow(1, 4096).expect("small region");
        assert!(small.len >= 4096);
        assert!(s.grow(1, 4096).is_none());
        assert_eq!(s.pending_bytes(), 0);
    }

    #[test]
    fn a_region_smaller_than_a_page_is_useless() {
        let mut s: StaticRegion<1> = StaticRegion::new();
        s.add(leak(100));
        assert!(s.grow(1, 4096).is_none());
    }
}
