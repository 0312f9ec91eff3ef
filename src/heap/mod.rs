//! [`Heap`]: dispatch over the tiers. A layout becomes a size class (tier 1, which owns the
//! tiers below it) or a page span (tier 3); a pointer's page says which it was. Before an
//! allocation returns null, every CPU slot is drained and it is tried once more. Here too:
//! the `GlobalAlloc` and `allocator_api2` faces.
//!
//! - `config`: [`Config`];
//! - `large`: page spans for large requests, and resizing them in place;
//! - `checked`: the live bits of checked mode;
//! - `invariants`: [`Heap::check_invariants`].

#[cfg(feature = "checked")]
mod checked;
mod config;
mod invariants;
mod large;

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use lock_api::RawMutex;

pub use self::config::Config;
use self::config::FAST_SIZE;
#[cfg(test)]
pub(crate) use self::config::MAX_MIN_SPAN_BYTES;
pub(crate) use self::config::{
    StoredBatchBytes, StoredCacheBytes, StoredGrowBytes, StoredMaxSmall, StoredMinSpan,
    StoredPageShift,
};
pub use self::invariants::InvariantError;
use crate::central_cache::{CentralCache, CentralPolicy};
use crate::cpu_cache::CpuCache;
use crate::page_heap::{Geometry, PageHeap};
use crate::page_map::PageMap;
use crate::page_source::{PageSource, StaticRegion};
use crate::platform::{Fault, FaultKind, Platform, SingleCpu};
use crate::size_class::{class_for, class_of_size, class_size, NUM_CLASSES};
use crate::span::{CLASS_FREED, CLASS_LARGE, CLASS_META, CLASS_NONE};
use crate::stats::Stats;
use crate::sync::{DefaultRawMutex, Ordering};

/// Whether a page-map class byte names a size class (1..NUM_CLASSES). The map holds only
/// those, `CLASS_NONE` (0) and the tags from 0x80 up (checked in `span.rs`), so the test is
/// the byte's sign: one `test` and a branch on the free path.
#[inline(always)]
fn is_small(tag: u8) -> bool {
    (tag as i8) > 0
}

/// A TCMalloc-style heap: `CPUS` per-CPU caches over a lock-striped central cache over a
/// bitmap page heap, fed by the page source `S`.
///
/// - `P` says which CPU runs and what to do on a fatal misuse ([`SingleCpu`] by default).
/// - `R` is the lock of the central cache and the page heap (a spin lock by default; on
///   firmware whose interrupt handlers allocate, an interrupt-masking lock such as
///   `CriticalSectionRawMutex`).
/// - `CPUS` is the number of CPU slots; the platform's CPU index is taken modulo it.
///
/// It can be built in a `static` and used as the `#[global_allocator]`. Built with
/// [`Config::small()`], a zero-sized platform (such as [`SingleCore`](crate::SingleCore) with a
/// zero-sized [`FatalHook`](crate::FatalHook)) and a lock whose initial state is zero (both of
/// this crate's are), its bytes are all zero: the `static` goes to `.bss` and costs no flash
/// for an initial image. (Each setting is stored as its difference from `Config::small()`'s.)
// `repr(C)`: tier 1 (and so its slots) at offset 0, where Thumb-1's 5-bit load and store
// offsets reach the slot's flags and counters from the heap's own address.
#[repr(C)]
pub struct Heap<
    S: PageSource,
    P: Platform = SingleCpu,
    R: RawMutex = DefaultRawMutex,
    const CPUS: usize = 1,
> {
    /// Tier 1 (with the platform), which owns tier 2 ([`CentralCache`]), which owns tier 3 ([`PageHeap`]).
    cpu: CpuCache<S, P, R, CPUS>,
    /// [`Config::max_small`]; the other settings live in the tier that uses them.
    max_small: StoredMaxSmall,
}

impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> Heap<S, P, R, CPUS> {
    /// A heap over `source`. Takes no memory until the first allocation.
    ///
    /// # Panics
    /// If `config` is invalid (a compile-time error when the heap is a `static`), or `CPUS`
    /// is 0.
    pub const fn new(source: S, platform: P, config: Config) -> Self {
        config.validate();
        assert!(CPUS > 0, "cpuheap: at least one CPU slot");
        let page_shift = config.page_size.trailing_zeros();
        let geom = Geometry {
            page_shift,
            grow_bytes: config.grow_bytes,
        };
        let policy = CentralPolicy {
            min_span_bytes: config.min_span_bytes,
            batch_bytes: config.batch_bytes,
            transfer_batches: config.transfer_batches,
            reserve_spans: config.reserve_spans,
        };
        let central = CentralCache::new(source, geom, policy);
        Self {
            cpu: CpuCache::new(central, platform, config.cpu_cache_bytes),
            max_small: StoredMaxSmall::new(config.max_small),
        }
    }

    /// The configuration the heap was built with.
    pub fn config(&self) -> Config {
        let geom = self.pages().geom();
        let central = &self.cpu.central;
        Config {
            page_size: geom.page_size(),
            max_small: self.max_small.get(),
            cpu_cache_bytes: self.cpu.budget.get(),
            batch_bytes: central.batch_bytes.get(),
            grow_bytes: geom.grow_bytes,
            min_span_bytes: central.min_span_bytes.get(),
            transfer_batches: central.transfer_batches,
            reserve_spans: central.reserve_spans,
        }
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.cpu.platform
    }

    /// Run `f` on the page source, under the page-heap lock.
    pub fn with_source<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        self.pages().with_source(f)
    }

    /// Tier 3.
    #[inline(always)]
    fn pages(&self) -> &PageHeap<S, R> {
        &self.cpu.central.pages
    }

    /// The page map (read without locks).
    #[inline(always)]
    fn map(&self) -> &S::Map {
        &self.cpu.central.pages.map
    }

    /// log2 of the page size.
    #[inline(always)]
    fn page_shift(&self) -> u32 {
        self.pages().geom().page_shift
    }

    #[inline(always)]
    fn page_size(&self) -> usize {
        1 << self.page_shift()
    }

    /// The size class serving `size` bytes aligned to `align`, or `None` for a page span.
    /// Objects are aligned to their class size only relative to a page boundary, so an
    /// alignment above the page size always takes a page span.
    #[inline]
    fn class_for(&self, size: usize, align: usize) -> Option<usize> {
        if align > self.page_size() {
            None
        } else {
            class_for(size, align, self.max_small.get())
        }
    }

    // ----- allocation -------------------------------------------------------------------

    /// Allocate memory for `layout`. Returns null when memory is exhausted or the request can
    /// never be met. A zero-size layout gets a unique pointer of the smallest class.
    #[inline]
    pub fn allocate(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // Nested, not `align <= 8 && size <= FAST_SIZE`: LLVM turns that into two flag
        // computations and a test of both, two instructions more than two branches.
        let p = if align <= 8 {
            if size <= FAST_SIZE {
                self.alloc_small(class_of_size(size))
            } else {
                self.alloc_general(size, align)
            }
        } else {
            self.alloc_general(size, align)
        };
        #[cfg(feature = "checked")]
        self.mark_live(p);
        p
    }

    /// Any request the table lookup of `allocate` does not serve: a class found the long way,
    /// or a page span. Not inlined, so that the fast path makes no call that returns to it.
    #[inline(never)]
    fn alloc_general(&self, size: usize, align: usize) -> *mut u8 {
        match self.class_for(size, align) {
            Some(class) => self.alloc_small(class),
            None => self.alloc_large(size, align),
        }
    }

    #[inline(always)]
    fn alloc_small(&self, class: usize) -> *mut u8 {
        self.cpu.alloc(self.cpu.platform.current_cpu(), class)
    }

    /// Allocate zeroed memory for `layout`.
    pub fn allocate_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.class_for(layout.size(), layout.align()).is_none() {
            // A page span of pages known zero (fresh mmap memory) needs no clearing.
            let (p, zeroed) = self.alloc_large_zeroed(layout.size(), layout.align());
            #[cfg(feature = "checked")]
            self.mark_live(p);
            if !p.is_null() && !zeroed {
                // SAFETY: `p` is a fresh allocation of at least `layout.size()` bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        let p = self.allocate(layout);
        if !p.is_null() {
            // SAFETY: `p` is a fresh allocation of at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    // ----- free -------------------------------------------------------------------------

    /// Free `ptr`, which was allocated with `layout`.
    ///
    /// A pointer outside the heap's memory, or one whose page is free, goes to the platform's
    /// fatal hook in every build. With the `checked` feature, double frees, interior pointers
    /// and mismatched layouts are detected deterministically too. Without it, freeing an
    /// object twice or an interior pointer corrupts the heap (undefined behaviour), and the
    /// layout is not consulted: the page map says how large the object is.
    ///
    /// # Safety
    /// `ptr` must have been allocated by this heap with `layout` and not freed since.
    #[inline]
    pub unsafe fn deallocate(&self, ptr: *mut u8, layout: Layout) {
        let addr = ptr as usize;
        // The checks need the whole entry; without them the class byte is enough. One map
        // walk either way.
        #[cfg(any(feature = "checked", feature = "misuse-checks"))]
        let (tag, pr) = match self.map().page(addr, self.page_shift()) {
            Some(pr) => (pr.class.load(Ordering::Relaxed), pr),
            None => self.fault(FaultKind::ForeignPointer, addr),
        };
        // A pointer no run covers reads as never used, which the page-span path reports.
        // Beyond the map's quickest lookup, a tail call.
        #[cfg(not(any(feature = "checked", feature = "misuse-checks")))]
        let Some(tag) = self.map().class_quick(addr, self.page_shift()) else {
            if <S::Map as PageMap>::QUICK_IS_ALL {
                // Not the map's: the page-span path reports it.
                return self.free_page_span(CLASS_NONE, addr, layout);
            }
            // SAFETY: the caller's guarantee.
            return unsafe { self.deallocate_beyond(ptr, layout) };
        };
        #[cfg(any(feature = "checked", feature = "misuse-checks"))]
        if is_small(tag) {
            #[cfg(feature = "checked")]
            self.check_free(&pr, addr, layout, true);
            #[cfg(all(feature = "misuse-checks", not(feature = "checked")))]
            self.check_boundary(&pr, addr, tag as usize);
        }
        // SAFETY: `tag` is the page's class byte; the caller's guarantee.
        unsafe { self.free_tagged(tag, ptr, layout) }
    }

    /// Free `ptr`, whose page's class byte is `tag`: to tier 1 if `tag` names a size class,
    /// else to the page-span path (which reports a page that holds no object).
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate), and `tag` must be the class byte the page map
    /// holds for `ptr`'s page.
    #[inline(always)]
    unsafe fn free_tagged(&self, tag: u8, ptr: *mut u8, layout: Layout) {
        if is_small(tag) {
            // SAFETY: the page map says the object is of this class; the caller says it is
            // no longer in use. A positive class byte is below `NUM_CLASSES` (the map holds
            // no others, see `is_small`), which lets the lists index without a bounds check.
            unsafe {
                core::hint::assert_unchecked((tag as usize) < NUM_CLASSES);
                self.cpu
                    .free(self.cpu.platform.current_cpu(), ptr.cast(), tag as usize)
            };
        } else {
            self.free_page_span(tag, ptr as usize, layout);
        }
    }

    /// `deallocate` of a pointer the page map's quickest lookup did not find.
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate).
    #[cfg(not(any(feature = "checked", feature = "misuse-checks")))]
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_beyond(&self, ptr: *mut u8, layout: Layout) {
        let tag = self.map().class_of(ptr as usize, self.page_shift());
        // SAFETY: as in `deallocate`; `tag` is the page's class byte.
        unsafe { self.free_tagged(tag, ptr, layout) }
    }

    #[cold]
    fn bad_page(&self, tag: u8, addr: usize) -> ! {
        let kind = if tag == CLASS_FREED {
            FaultKind::DoubleFree
        } else {
            debug_assert!(tag == CLASS_NONE || tag == CLASS_META);
            FaultKind::ForeignPointer
        };
        self.fault(kind, addr)
    }

    #[cold]
    fn fault(&self, kind: FaultKind, addr: usize) -> ! {
        self.cpu.platform.fatal(&Fault::new(kind, addr))
    }

    /// Feature `misuse-checks`: a pointer into the middle of a small object is reported, not
    /// filed as a free object that overlaps a live one. (The `checked` feature does this and
    /// more.)
    #[cfg(all(feature = "misuse-checks", not(feature = "checked")))]
    #[inline]
    fn check_boundary(&self, pr: &crate::page_map::PageRef<'_>, addr: usize, class: usize) {
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page tagged with a size class points at its live span record.
        let start = unsafe { (*span).start };
        if (addr - start) % class_size(class) != 0 {
            let mut f = Fault::new(FaultKind::InteriorPointer, addr);
            f.object_size = class_size(class);
            self.cpu.platform.fatal(&f);
        }
    }

    // ----- realloc ----------------------------------------------------------------------

    /// Resize `ptr` (allocated with `layout`) to `new_size` bytes, in place when the size
    /// class stays the same, or when a page span can shrink or grow where it is. Returns null
    /// (leaving the old object untouched) when memory is exhausted.
    ///
    /// # Safety
    /// As for [`deallocate`](Self::deallocate); `new_size` rounded up to `layout.align()`
    /// must not overflow `isize`.
    pub unsafe fn reallocate(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted in the current slot, not a shared line: realloc is a hot operation.
        let cpu = self.cpu.platform.current_cpu();
        self.cpu.count(cpu, |s| &s.reallocs);
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let addr = ptr as usize;
        let Some(pr) = self.map().page(addr, self.page_shift()) else {
            self.fault(FaultKind::ForeignPointer, addr);
        };
        let tag = pr.class.load(Ordering::Relaxed);
        let new_class = self.class_for(new_size, layout.align());
        if is_small(tag) {
            #[cfg(feature = "checked")]
            self.check_free(&pr, addr, layout, false);
            // Before anything is copied from it, and since the move below frees it without
            // `deallocate`'s check.
            #[cfg(all(feature = "misuse-checks", not(feature = "checked")))]
            self.check_boundary(&pr, addr, tag as usize);
            if new_class.is_some_and(|c| keeps_in_place(tag as usize, c, new_size)) {
                self.cpu.count(cpu, |s| &s.reallocs_in_place);
                return ptr;
            }
        } else if tag == CLASS_LARGE {
            #[cfg(feature = "checked")]
            self.check_free(&pr, addr, layout, false);
            if new_class.is_none() {
                if let Some(p) = self.resize_large(&pr, addr, new_size, layout.align()) {
                    // In place, or remapped without a copy.
                    self.cpu.count(cpu, |s| &s.reallocs_in_place);
                    // A remapped run's live bit moves with it.
                    #[cfg(feature = "checked")]
                    if p != ptr {
                        self.move_live(&pr, addr, p);
                    }
                    return p;
                }
            }
        } else {
            self.bad_page(tag, addr);
        }
        // A small block to another class: pop, copy and push inside one entry of the slot
        // (`CpuCache::move_object`); the general path below if the slot is taken or memory
        // is short, and always in `checked` builds, which mark live bits there.
        #[cfg(not(feature = "checked"))]
        if let Some(c) = new_class.filter(|_| is_small(tag)) {
            // SAFETY: the block is a live object of class `tag` (its page's class byte) of at
            // least `layout.size()` bytes, which the caller gives up; the copy fits both.
            if let Some(p) = unsafe {
                self.cpu
                    .move_object(cpu, ptr, tag as usize, c, layout.size().min(new_size))
            } {
                return p;
            }
        }
        let new = self.allocate(new_layout);
        if !new.is_null() {
            // SAFETY: both are live allocations of at least the copied length, and distinct.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // The old block's class byte is known: freed without a second page-map lookup.
            // `checked` builds free through `deallocate`, which also clears the live bit, and
            // so do one-core platforms, whose map lookup is short and whose flash is scarce
            // (the free path inlined here was 132 bytes of a firmware image).
            if cfg!(feature = "checked") || CpuCache::<S, P, R, CPUS>::ONE_CORE {
                // SAFETY: the block is no longer used (its contents are copied), and the
                // caller gave it up with this layout.
                unsafe { self.deallocate(ptr, layout) };
            } else {
                // SAFETY: `tag` is its page's class byte, read above; as above.
                unsafe { self.free_tagged(tag, ptr, layout) };
            }
        }
        new
    }

    /// Bytes usable at `ptr` (its object size), or `None` for a pointer this heap does not
    /// hold live.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        let pr = self.map().page(ptr as usize, self.page_shift())?;
        let tag = pr.class.load(Ordering::Relaxed);
        if is_small(tag) {
            Some(class_size(tag as usize))
        } else if tag == CLASS_LARGE {
            let span = pr.span.load(Ordering::Relaxed);
            // SAFETY: a page tagged large points at its live span record.
            let s = unsafe { &*span };
            Some(s.end(self.page_size()) - ptr as usize)
        } else {
            None
        }
    }

    // ----- caches -----------------------------------------------------------------------

    /// Send every object cached in CPU slot `cpu` (modulo the slot count) back to the central
    /// cache. Returns `false` if the slot was in use and left alone.
    pub fn drain_cpu(&self, cpu: usize) -> bool {
        self.cpu.drain_cpu(cpu)
    }

    /// Drain every CPU slot that is not in use, then the central cache's transfer caches and
    /// its reserve of empty spans, so that everything cached is back in the page heap.
    pub fn drain_all_cpus(&self) {
        self.cpu.drain_all();
    }

    /// Give every idle free page back to the source now (`madvise` with the mmap source),
    /// instead of waiting for the source's idle limit. Returns the bytes given back. Drain
    /// the CPU slots first to include memory parked there.
    pub fn release_idle_pages(&self) -> usize {
        self.pages().discard_idle(0)
    }

    /// A snapshot of the statistics. Takes no lock; under concurrent use the fields are each
    /// current but not a single atomic snapshot.
    pub fn stats(&self) -> Stats {
        Stats::collect(
            self.cpu.slots.iter().map(|s| (&s.stats, &s.lists)),
            &self.cpu.shared,
            (
                self.cpu.central.free_bytes(),
                self.cpu.central.transfer_bytes(),
            ),
            &self.pages().stats,
            self.page_shift(),
        )
    }
}

impl<const N: usize, P: Platform, R: RawMutex, const CPUS: usize>
    Heap<StaticRegion<N>, P, R, CPUS>
{
    /// Give the heap another region of memory. Returns `false` if the source already holds
    /// `N` regions, or the region is empty.
    pub fn add_region(&self, region: &'static mut [MaybeUninit<u8>]) -> bool {
        self.pages().with_source(|s| s.add(region))
    }
}

// SAFETY: `allocate` returns null or a block of at least `layout.size()` bytes aligned to
// `layout.align()`, exclusively owned until it is given back; nothing here panics or unwinds
// (misuse goes to the platform's fatal hook, which must not unwind).
unsafe impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> GlobalAlloc
    for Heap<S, P, R, CPUS>
{
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract, which is ours.
        unsafe { self.deallocate(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.allocate_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which is ours.
        unsafe { self.reallocate(ptr, layout, new_size) }
    }
}

/// An `Allocator` result: the block at `p` of `size` bytes, or the error for null.
/// Whether a small object of class `tag` serves a realloc to `new_size` bytes (class
/// `new_class`) where it is: the class is the same, or the request shrinks and still fills at
/// least half of the object. A shrink by less than half is not worth a copy (mimalloc and
/// TCMalloc draw the line at half too); the object keeps its class, so up to half of it is
/// then slack until it is freed. `checked` builds keep only the same class, so that a free
/// whose layout names another class is still reported as a size mismatch.
#[inline]
fn keeps_in_place(tag: usize, new_class: usize, new_size: usize) -> bool {
    if new_class == tag {
        return true;
    }
    #[cfg(feature = "checked")]
    let _ = new_size;
    #[cfg(not(feature = "checked"))]
    if new_class < tag && new_size >= class_size(tag) / 2 {
        return true;
    }
    false
}

fn block(p: *mut u8, size: usize) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, size))
        .ok_or(allocator_api2::alloc::AllocError)
}

// SAFETY: as for `GlobalAlloc`; blocks stay valid until deallocated through any copy of the
// reference, since they all reach the same heap.
unsafe impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize>
    allocator_api2::alloc::Allocator for &Heap<S, P, R, CPUS>
{
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = Heap::allocate(self, layout);
        block(p, layout.size())
    }

    fn allocate_zeroed(
        &self,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = Heap::allocate_zeroed(self, layout);
        block(p, layout.size())
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller upholds `Allocator::deallocate`'s contract, which is ours.
        unsafe { Heap::deallocate(self, ptr.as_ptr(), layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        self.resize(ptr, old, new)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        self.resize(ptr, old, new)
    }
}

impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> Heap<S, P, R, CPUS> {
    /// `Allocator::grow`/`shrink`: realloc when the alignment stays, else move.
    fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = if new.align() == old.align() {
            // SAFETY: the caller of grow/shrink guarantees `ptr` is live with `old`.
            unsafe { self.reallocate(ptr.as_ptr(), old, new.size()) }
        } else {
            let p = self.allocate(new);
            if !p.is_null() {
                // SAFETY: both live, distinct; copy the smaller size, then free the old one.
                unsafe {
                    ptr::copy_nonoverlapping(ptr.as_ptr(), p, old.size().min(new.size()));
                    self.deallocate(ptr.as_ptr(), old);
                }
            }
            p
        };
        block(p, new.size())
    }
}
