//! [`Heap`]: the three tiers tied together, and its `GlobalAlloc` and `Allocator` faces.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use lock_api::{Mutex, RawMutex};

use crate::central_cache::{CentralClass, Chain};
use crate::cpu_cache::{bump, CpuSlot, SlotGuard};
use crate::page_heap::{Ctx, Geometry, PageHeap, PageStats};
use crate::page_map::{PageMap, PageRef};
use crate::page_source::{PageSource, StaticRegion};
use crate::platform::{Fault, FaultKind, Platform, SingleCpu};
use crate::size_class::{
    batch_objects, class_for, class_of_size, class_size, MAX_CLASS_SIZE, NUM_CLASSES,
};
use crate::span::{FreeObj, Span, SpanFlags, CLASS_FREED, CLASS_LARGE, CLASS_META, CLASS_NONE};
use crate::stats::{SharedStats, Stats};
use crate::sync::{CachePadded, DefaultRawMutex, Ordering};

/// Requests up to this size with alignment up to 8 take the table-lookup fast path.
const FAST_SIZE: usize = 1024;

/// Whether a page-map class byte names a size class (1..NUM_CLASSES).
#[inline(always)]
fn is_small(tag: u8) -> bool {
    (tag as usize).wrapping_sub(1) < NUM_CLASSES - 1
}

/// Sizes and budgets of a heap. Build one with [`Config::new`] (desktop and kernel sizes) or
/// [`Config::small`] (firmware), then adjust with the `with_*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Page size in bytes: a power of two from 256 to 64 KiB. Spans are whole pages, and the
    /// page map has one entry per page.
    pub page_size: usize,
    /// Largest request served from a size class; larger ones are page spans. At most
    /// 32 KiB; by default 8 pages, so that a page span never wastes more than 1/8.
    pub max_small: usize,
    /// Bytes of free objects each CPU slot may keep before it sends some back.
    pub cpu_cache_bytes: usize,
    /// About how many bytes move between a CPU slot and the central cache in one batch.
    pub batch_bytes: usize,
    /// The least the heap asks its source for when it grows.
    pub grow_bytes: usize,
    /// The least a size-class span spans. Larger spans make the out-of-line span record
    /// (28 bytes on 32-bit targets, 48 on 64-bit) a smaller share; smaller ones make each class
    /// hold on to less memory, which matters in a heap of a few KiB.
    pub min_span_bytes: usize,
}

impl Config {
    /// For kernels and desktops: 4 KiB pages, 1 MiB per CPU slot, 1 MiB growth steps.
    pub const fn new() -> Self {
        Self {
            page_size: 4096,
            max_small: MAX_CLASS_SIZE,
            cpu_cache_bytes: 1024 * 1024,
            batch_bytes: 16 * 1024,
            grow_bytes: 1024 * 1024,
            min_span_bytes: 4096,
        }
    }

    /// For firmware heaps of a few KiB to a few hundred KiB: 256-byte pages (so objects up to
    /// 2 KiB come from size classes), spans of one page, 1 KiB per CPU slot.
    pub const fn small() -> Self {
        Self {
            page_size: 256,
            max_small: 8 * 256,
            cpu_cache_bytes: 1024,
            batch_bytes: 256,
            grow_bytes: 0,
            min_span_bytes: 256,
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

    /// Set the least bytes of a size-class span.
    pub const fn with_min_span_bytes(mut self, bytes: usize) -> Self {
        self.min_span_bytes = bytes;
        self
    }

    /// Set the growth step.
    pub const fn with_grow_bytes(mut self, bytes: usize) -> Self {
        self.grow_bytes = bytes;
        self
    }

    /// Check the configuration; panics (at compile time when the heap is a `static`) if it
    /// is invalid.
    const fn validate(&self) {
        assert!(
            self.page_size.is_power_of_two() && self.page_size >= 256 && self.page_size <= 65536,
            "cpuheap: page_size must be a power of two from 256 to 65536"
        );
        assert!(
            self.max_small >= FAST_SIZE * 2 && self.max_small <= MAX_CLASS_SIZE,
            "cpuheap: max_small must be from 2048 to 32768"
        );
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Heap::check_invariants`] failed: what did not hold, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// The invariant that does not hold.
    pub what: &'static str,
    /// An address or count that locates it.
    pub at: usize,
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpuheap invariant violated: {} (at {:#x})",
            self.what, self.at
        )
    }
}

fn broken<T>(what: &'static str, at: usize) -> Result<T, InvariantError> {
    Err(InvariantError { what, at })
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
/// It can be built in a `static` and used as the `#[global_allocator]`.
pub struct Heap<
    S: PageSource,
    P: Platform = SingleCpu,
    R: RawMutex = DefaultRawMutex,
    const CPUS: usize = 1,
> {
    slots: [CpuSlot; CPUS],
    central: [CachePadded<CentralClass<R>>; NUM_CLASSES],
    page_heap: Mutex<R, PageHeap<S>>,
    map: S::Map,
    page_stats: PageStats,
    stats: SharedStats,
    platform: P,
    cfg: Config,
    page_shift: u32,
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
        Self {
            slots: [const { CpuSlot::new() }; CPUS],
            central: [const { CachePadded(CentralClass::new()) }; NUM_CLASSES],
            page_heap: Mutex::const_new(R::INIT, PageHeap::new(source)),
            map: S::Map::EMPTY,
            page_stats: PageStats::new(),
            stats: SharedStats::new(),
            platform,
            cfg: config,
            page_shift: config.page_size.trailing_zeros(),
        }
    }

    /// The configuration the heap was built with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Run `f` on the page source, under the page-heap lock.
    pub fn with_source<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut self.page_heap.lock().source)
    }

    fn cx(&self) -> Ctx<'_, S::Map> {
        Ctx {
            map: &self.map,
            g: Geometry {
                page_shift: self.page_shift,
                grow_bytes: self.cfg.grow_bytes,
                min_span_bytes: self.cfg.min_span_bytes,
            },
            stats: &self.page_stats,
        }
    }

    #[inline(always)]
    fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    /// The size class serving `size` bytes aligned to `align`, or `None` for a page span.
    /// Objects are aligned to their class size only relative to a page boundary, so an
    /// alignment above the page size always takes a page span.
    #[inline]
    fn class_for(&self, size: usize, align: usize) -> Option<usize> {
        if align > self.page_size() {
            None
        } else {
            class_for(size, align, self.cfg.max_small)
        }
    }

    #[inline(always)]
    fn slot(&self) -> &CpuSlot {
        &self.slots[self.platform.current_cpu() % CPUS]
    }

    // ----- allocation -------------------------------------------------------------------

    /// Allocate memory for `layout`. Returns null when memory is exhausted or the request can
    /// never be met. A zero-size layout gets a unique pointer of the smallest class.
    #[inline]
    pub fn allocate(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let p = if size <= FAST_SIZE && align <= 8 {
            self.alloc_small(class_of_size(size))
        } else {
            match self.class_for(size, align) {
                Some(class) => self.alloc_small(class),
                None => self.alloc_large(size, align),
            }
        };
        #[cfg(feature = "checked")]
        self.mark_live(p);
        p
    }

    #[inline(always)]
    fn alloc_small(&self, class: usize) -> *mut u8 {
        let slot = self.slot();
        if let Some(g) = slot.try_lock() {
            // SAFETY: we hold the slot.
            let obj = unsafe { g.cache().lists[class].pop() };
            if !obj.is_null() {
                self.count_slot_op(&g, class_size(class), true);
                return obj.cast();
            }
            return self.refill(g, class);
        }
        self.alloc_fallback(class)
    }

    /// Count one slot operation of `size` bytes: two plain counter updates in the slot.
    #[inline(always)]
    fn count_slot_op(&self, g: &SlotGuard<'_>, size: usize, alloc: bool) {
        let st = &g.slot.stats;
        if alloc {
            bump(&st.allocs, 1);
            bump(&st.cached_bytes, size.wrapping_neg());
        } else {
            bump(&st.frees, 1);
            bump(&st.cached_bytes, size);
        }
    }

    /// Fold the slot's net in-use bytes into the heap-wide counter and the peak. Runs on the
    /// slow paths (refill, flush), so the peak is exact to within what a slot can cache.
    ///
    /// With several slots, changes up to a sixteenth of the slot budget (at most 16 KiB) wait
    /// for a later slow path: the shared counter is one cache line for every CPU, and touching
    /// it on every refill and flush costs more than the refill when two CPUs do it at once.
    fn publish(&self, g: &SlotGuard<'_>) {
        let st = &g.slot.stats;
        let net = st.net_in_use();
        let delta = net.wrapping_sub(st.published.load(Ordering::Relaxed));
        // One slot has no one to contend with: publish every change.
        let min = if CPUS == 1 {
            0
        } else {
            (self.cfg.cpu_cache_bytes / 16).min(16 * 1024)
        };
        if (delta as isize).unsigned_abs() > min {
            st.published.store(net, Ordering::Relaxed);
            self.stats.sync_in_use(delta as isize);
        }
    }

    /// The slot's list for `class` is empty: take a batch from the central cache.
    #[inline(never)]
    fn refill(&self, g: SlotGuard<'_>, class: usize) -> *mut u8 {
        // The guard is taken by value so that the fast path need not spill it to the stack.
        let g = &g;
        let batch = batch_objects(class, self.cfg.batch_bytes);
        let want = {
            let list = &g.cache().lists[class];
            (list.max_len as usize).clamp(1, batch)
        };
        let mut chain = self.central[class].remove_batch(class, want, &self.page_heap, &self.cx());
        if chain.len == 0 {
            self.drain_all(Some(g));
            chain = self.central[class].remove_batch(class, 1, &self.page_heap, &self.cx());
            if chain.len == 0 {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return ptr::null_mut();
            }
        }
        let size = class_size(class);
        let st = &g.slot.stats;
        bump(&st.refills, 1);
        bump(&st.refill_bytes, chain.len * size);
        bump(&st.cached_bytes, chain.len * size);
        let cap = self.list_cap(class, batch);
        let list = &mut g.cache().lists[class];
        list.grow_limit(batch, cap);
        let obj = chain.head;
        // SAFETY: the chain's objects are free and ours; the first one goes to the caller.
        unsafe {
            chain.head = (*obj).next;
            chain.len -= 1;
            list.push_chain(chain);
        }
        self.count_slot_op(g, size, true);
        self.publish(g);
        if st.cached_bytes.load(Ordering::Relaxed) > self.cfg.cpu_cache_bytes {
            self.enforce_budget(g, class);
        }
        obj.cast()
    }

    /// Longest list a slot keeps for `class`.
    fn list_cap(&self, class: usize, batch: usize) -> usize {
        (self.cfg.cpu_cache_bytes / class_size(class))
            .max(batch)
            .min(u16::MAX as usize / 2)
    }

    /// The slot is taken: take one object straight from the central cache.
    #[cold]
    fn alloc_fallback(&self, class: usize) -> *mut u8 {
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        let mut chain = self.central[class].remove_batch(class, 1, &self.page_heap, &self.cx());
        if chain.len == 0 {
            self.drain_all(None);
            chain = self.central[class].remove_batch(class, 1, &self.page_heap, &self.cx());
            if chain.len == 0 {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return ptr::null_mut();
            }
        }
        self.stats.record_other(true, class_size(class));
        chain.head.cast()
    }

    /// A page span for a request above the small-object limit or aligned beyond it.
    #[cold]
    fn alloc_large(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc_large_zeroed(size, align).0
    }

    /// [`alloc_large`](Self::alloc_large), and whether the span's pages are known zero (fresh
    /// from a zero-filling source such as mmap, or discarded since).
    #[cold]
    fn alloc_large_zeroed(&self, size: usize, align: usize) -> (*mut u8, bool) {
        let page = self.page_size();
        let Some(pages) = size
            .checked_add(page - 1)
            .map(|b| (b >> self.page_shift).max(1))
        else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return (ptr::null_mut(), false);
        };
        let align = align.max(page);
        let cx = self.cx();
        let alloc_span = || {
            let mut ph = self.page_heap.lock();
            let span = ph.alloc_span(&cx, pages, align, 0);
            (span, ph.last_zeroed)
        };
        let (mut span, mut zeroed) = alloc_span();
        if span.is_none() {
            self.drain_all(None);
            (span, zeroed) = alloc_span();
        }
        let Some(span) = span else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return (ptr::null_mut(), false);
        };
        self.stats.large_allocs.fetch_add(1, Ordering::Relaxed);
        self.stats.record_other(true, pages << self.page_shift);
        // SAFETY: a live span record just allocated.
        (unsafe { (*span).start as *mut u8 }, zeroed)
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
        let Some(tag) = self.map.class_of(addr, self.page_shift) else {
            self.fault(FaultKind::ForeignPointer, addr);
        };
        if is_small(tag) {
            #[cfg(feature = "checked")]
            if let Some(pr) = self.map.page(addr, self.page_shift) {
                self.check_free(&pr, addr, layout, true);
            }
            #[cfg(not(feature = "checked"))]
            let _ = layout;
            self.free_small(ptr.cast(), tag as usize);
        } else {
            self.free_page_span(tag, addr, layout);
        }
    }

    /// Free a pointer whose page is not a small-object page: a large span, or a fault.
    #[cold]
    fn free_page_span(&self, tag: u8, addr: usize, layout: Layout) {
        match self.map.page(addr, self.page_shift) {
            Some(pr) if tag == CLASS_LARGE => self.free_large(&pr, addr, layout),
            _ => self.bad_page(tag, addr),
        }
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
        self.platform.fatal(&Fault::new(kind, addr))
    }

    #[inline(always)]
    fn free_small(&self, obj: *mut FreeObj, class: usize) {
        let slot = self.slot();
        if let Some(g) = slot.try_lock() {
            let list = &mut g.cache().lists[class];
            // SAFETY: we hold the slot; the object is free and of this class.
            unsafe { list.push(obj) };
            self.count_slot_op(&g, class_size(class), false);
            if list.len > list.max_len {
                self.flush(g, class);
            }
            return;
        }
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a single free object of `class`, handed out by this heap.
        unsafe {
            (*obj).next = ptr::null_mut();
            self.central[class].insert_batch(obj, &self.page_heap, &self.cx());
        }
        self.stats.record_other(false, class_size(class));
    }

    /// A list grew past its limit: send a batch back to the central cache, then keep the slot
    /// within its byte budget. (The budget is enforced here and on refills, the only places
    /// where a slot's cache can grow past it, which keeps the check off the fast path.)
    #[inline(never)]
    fn flush(&self, g: SlotGuard<'_>, class: usize) {
        let g = &g;
        let list = &mut g.cache().lists[class];
        let batch = batch_objects(class, self.cfg.batch_bytes);
        // SAFETY: we hold the slot.
        let chain = unsafe { list.pop_chain(batch) };
        self.release_chain(g, class, chain);
        if g.slot.stats.cached_bytes.load(Ordering::Relaxed) > self.cfg.cpu_cache_bytes {
            self.enforce_budget(g, class);
        }
    }

    /// The slot holds more than its budget: give back half of every list, starting with
    /// `class`, until it holds at most half its budget.
    fn enforce_budget(&self, g: &SlotGuard<'_>, class: usize) {
        let budget = self.cfg.cpu_cache_bytes;
        for i in 0..NUM_CLASSES - 1 {
            let c = 1 + (class - 1 + i) % (NUM_CLASSES - 1);
            let list = &mut g.cache().lists[c];
            if list.len > 0 {
                // SAFETY: we hold the slot.
                let chain = unsafe { list.pop_chain((list.len as usize).div_ceil(2)) };
                list.max_len = (list.max_len / 2).max(1);
                self.release_chain(g, c, chain);
            }
            if g.slot.stats.cached_bytes.load(Ordering::Relaxed) <= budget / 2 {
                break;
            }
        }
    }

    fn release_chain(&self, g: &SlotGuard<'_>, class: usize, chain: Chain) {
        if chain.len == 0 {
            return;
        }
        let st = &g.slot.stats;
        let bytes = chain.len * class_size(class);
        bump(&st.flushes, 1);
        bump(&st.flush_bytes, bytes);
        bump(&st.cached_bytes, bytes.wrapping_neg());
        self.publish(g);
        // SAFETY: the chain holds free objects of `class` that were cached in the slot.
        unsafe { self.central[class].insert_batch(chain.head, &self.page_heap, &self.cx()) };
    }

    #[cold]
    fn free_large(&self, pr: &PageRef<'_>, addr: usize, layout: Layout) {
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page tagged large points at its live span record.
        let (start, pages) = unsafe { ((*span).start, (*span).pages) };
        if start != addr {
            self.fault(FaultKind::InteriorPointer, addr);
        }
        #[cfg(feature = "checked")]
        self.check_free(pr, addr, layout, true);
        #[cfg(not(feature = "checked"))]
        let _ = layout;
        let cx = self.cx();
        {
            let mut ph = self.page_heap.lock();
            // Re-check under the lock: a racing double free must not free the span twice.
            if pr.class.load(Ordering::Relaxed) != CLASS_LARGE
                || pr.span.load(Ordering::Relaxed) != span
            {
                drop(ph);
                self.fault(FaultKind::DoubleFree, addr);
            }
            // SAFETY: the span is live and its one object is being freed.
            unsafe { ph.free_span(&cx, span) };
        }
        self.stats.record_other(false, pages << self.page_shift);
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
        let st = &self.slot().stats;
        st.reallocs.fetch_add(1, Ordering::Relaxed);
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let addr = ptr as usize;
        let Some(pr) = self.map.page(addr, self.page_shift) else {
            self.fault(FaultKind::ForeignPointer, addr);
        };
        let tag = pr.class.load(Ordering::Relaxed);
        let new_class = self.class_for(new_size, layout.align());
        if is_small(tag) {
            #[cfg(feature = "checked")]
            self.check_free(&pr, addr, layout, false);
            if new_class == Some(tag as usize) {
                st.reallocs_in_place.fetch_add(1, Ordering::Relaxed);
                return ptr;
            }
        } else if tag == CLASS_LARGE {
            #[cfg(feature = "checked")]
            self.check_free(&pr, addr, layout, false);
            if new_class.is_none() && self.resize_large(&pr, addr, new_size) {
                st.reallocs_in_place.fetch_add(1, Ordering::Relaxed);
                return ptr;
            }
        } else {
            self.bad_page(tag, addr);
        }
        let new = self.allocate(new_layout);
        if !new.is_null() {
            // SAFETY: both are live allocations of at least the copied length, and distinct.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.deallocate(ptr, layout);
            }
        }
        new
    }

    /// Shrink or grow a large span in place.
    fn resize_large(&self, pr: &PageRef<'_>, addr: usize, new_size: usize) -> bool {
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page tagged large points at its live span record.
        let (start, pages) = unsafe { ((*span).start, (*span).pages) };
        if start != addr {
            self.fault(FaultKind::InteriorPointer, addr);
        }
        let Some(new_pages) = new_size
            .checked_add(self.page_size() - 1)
            .map(|b| (b >> self.page_shift).max(1))
        else {
            return false;
        };
        let cx = self.cx();
        let delta = if new_pages == pages {
            return true;
        } else if new_pages < pages {
            // SAFETY: a live large span, shrunk to at least one page.
            unsafe { self.page_heap.lock().shrink_span(&cx, span, new_pages) };
            -(((pages - new_pages) << self.page_shift) as isize)
        } else {
            // SAFETY: a live large span, grown.
            if !unsafe { self.page_heap.lock().extend_span(&cx, span, new_pages) } {
                return false;
            }
            ((new_pages - pages) << self.page_shift) as isize
        };
        if delta > 0 {
            self.stats
                .other_alloc_bytes
                .fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.stats
                .other_free_bytes
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        }
        self.stats.sync_in_use(delta);
        true
    }

    /// Bytes usable at `ptr` (its object size), or `None` for a pointer this heap does not
    /// hold live.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        let pr = self.map.page(ptr as usize, self.page_shift)?;
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

    // ----- checked mode -----------------------------------------------------------------

    /// The live bit of the object at `addr`.
    #[cfg(feature = "checked")]
    fn live_bit<'a>(&self, pr: &PageRef<'a>, addr: usize) -> (&'a crate::sync::AtomicUsize, usize) {
        use crate::page_map::LIVE_BITS;
        let bit = (addr - pr.live_base) / 8;
        // SAFETY: the run's live bits cover every 8 bytes of the run, which holds `addr`.
        let word = unsafe { &*pr.live.add(bit / LIVE_BITS) };
        (word, 1usize << (bit % LIVE_BITS))
    }

    #[cfg(feature = "checked")]
    fn mark_live(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        if let Some(pr) = self.map.page(p as usize, self.page_shift) {
            let (word, bit) = self.live_bit(&pr, p as usize);
            let old = word.fetch_or(bit, Ordering::Relaxed);
            debug_assert_eq!(old & bit, 0, "object handed out twice");
        }
    }

    /// Check a free (or realloc) of a live-looking page: interior pointer, size class, and
    /// the live bit (cleared when `clear`).
    #[cfg(feature = "checked")]
    fn check_free(&self, pr: &PageRef<'_>, addr: usize, layout: Layout, clear: bool) {
        let tag = pr.class.load(Ordering::Relaxed);
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page in use points at its live span record.
        let s = unsafe { &*span };
        let object_size = if tag == CLASS_LARGE {
            s.pages << self.page_shift
        } else {
            class_size(tag as usize)
        };
        if (addr - s.start) % object_size != 0 {
            let mut f = Fault::new(FaultKind::InteriorPointer, addr);
            f.object_size = object_size;
            self.platform.fatal(&f);
        }
        let expected = self.class_for(layout.size(), layout.align());
        let matches = if tag == CLASS_LARGE {
            expected.is_none() && layout.size().div_ceil(self.page_size()).max(1) == s.pages
        } else {
            expected == Some(tag as usize)
        };
        let (word, bit) = self.live_bit(pr, addr);
        if word.load(Ordering::Relaxed) & bit == 0 {
            self.fault(FaultKind::DoubleFree, addr);
        }
        if !matches {
            let mut f = Fault::new(FaultKind::SizeMismatch, addr);
            f.layout_size = layout.size();
            f.object_size = object_size;
            self.platform.fatal(&f);
        }
        // The atomic clear decides between two racing frees of the same object.
        if clear && word.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
            self.fault(FaultKind::DoubleFree, addr);
        }
    }

    // ----- caches -----------------------------------------------------------------------

    /// Send every object cached in CPU slot `cpu` (modulo the slot count) back to the central
    /// cache. Returns `false` if the slot was in use and left alone.
    pub fn drain_cpu(&self, cpu: usize) -> bool {
        match self.slots[cpu % CPUS].try_lock() {
            Some(g) => {
                self.drain_slot(&g);
                true
            }
            None => false,
        }
    }

    fn drain_slot(&self, g: &SlotGuard<'_>) {
        for class in 1..NUM_CLASSES {
            let list = &mut g.cache().lists[class];
            // SAFETY: we hold the slot.
            let chain = unsafe { list.pop_chain(list.len as usize) };
            list.max_len = 1;
            self.release_chain(g, class, chain);
        }
    }

    /// Drain every slot that is not in use (and `held`, which the caller holds), so memory
    /// parked in caches goes back to the page heap before an allocation gives up.
    #[cold]
    fn drain_all(&self, held: Option<&SlotGuard<'_>>) {
        self.stats.drains.fetch_add(1, Ordering::Relaxed);
        for slot in &self.slots {
            match held {
                Some(g) if ptr::eq(g.slot, slot) => self.drain_slot(g),
                _ => {
                    if let Some(g) = slot.try_lock() {
                        self.drain_slot(&g);
                    }
                }
            }
        }
    }

    /// Drain every CPU slot that is not in use.
    pub fn drain_all_cpus(&self) {
        self.drain_all(None);
    }

    /// Give every idle free page back to the source now (`madvise` with the mmap source),
    /// instead of waiting for the source's idle limit. Returns the bytes given back. Drain
    /// the CPU slots first to include memory parked there.
    pub fn release_idle_pages(&self) -> usize {
        self.page_heap.lock().discard_idle(&self.cx(), 0)
    }

    // ----- statistics and invariants ----------------------------------------------------

    /// A snapshot of the statistics. Takes no lock; under concurrent use the fields are each
    /// current but not a single atomic snapshot.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let sh = &self.stats;
        let mut in_use = sh.in_use.load(Ordering::Relaxed);
        for slot in &self.slots {
            let st = &slot.stats;
            s.allocs += st.allocs.load(Ordering::Relaxed);
            s.frees += st.frees.load(Ordering::Relaxed);
            s.refills += st.refills.load(Ordering::Relaxed);
            s.flushes += st.flushes.load(Ordering::Relaxed);
            s.cpu_cache_bytes += st.cached_bytes.load(Ordering::Relaxed);
            s.reallocs += st.reallocs.load(Ordering::Relaxed);
            s.reallocs_in_place += st.reallocs_in_place.load(Ordering::Relaxed);
            in_use = in_use
                .wrapping_add(st.net_in_use())
                .wrapping_sub(st.published.load(Ordering::Relaxed));
        }
        s.in_use_bytes = in_use;
        s.peak_in_use_bytes = sh.peak.load(Ordering::Relaxed).max(in_use);
        s.allocs += sh.other_allocs.load(Ordering::Relaxed);
        s.frees += sh.other_frees.load(Ordering::Relaxed);
        s.large_allocs = sh.large_allocs.load(Ordering::Relaxed);
        s.slot_fallbacks = sh.fallbacks.load(Ordering::Relaxed);
        s.drains = sh.drains.load(Ordering::Relaxed);
        s.failed_allocs = sh.failed.load(Ordering::Relaxed);
        for (class, c) in self.central.iter().enumerate().skip(1) {
            s.central_cache_bytes += c.free_objects.load(Ordering::Relaxed) * class_size(class);
        }
        let ps = &self.page_stats;
        s.span_bytes = ps.span_pages.load(Ordering::Relaxed) << self.page_shift;
        s.page_heap_free_bytes = ps.free_pages.load(Ordering::Relaxed) << self.page_shift;
        s.metadata_bytes = ps.meta_bytes.load(Ordering::Relaxed);
        s.source_bytes = ps.source_bytes.load(Ordering::Relaxed);
        s.source_grows = ps.grows.load(Ordering::Relaxed);
        s.spans_allocated = ps.spans_allocated.load(Ordering::Relaxed);
        s.spans_freed = ps.spans_freed.load(Ordering::Relaxed);
        s.page_heap_idle_bytes = ps.idle_pages.load(Ordering::Relaxed) << self.page_shift;
        s.discarded_bytes = ps.discarded_bytes.load(Ordering::Relaxed);
        s.discards = ps.discards.load(Ordering::Relaxed);
        s.released_bytes = ps.released_bytes.load(Ordering::Relaxed);
        s.direct_runs = ps.direct_runs.load(Ordering::Relaxed);
        s
    }

    /// Check the heap's invariants. Meant for tests and checked builds: it takes every lock,
    /// and fails with "CPU slot in use" if another thread is inside the heap. It keeps no
    /// per-class tables, so its stack frame stays small on microcontrollers.
    ///
    /// It verifies that
    /// - every cached object lies in a span of its class, at a carved object boundary, and
    ///   the slots' list lengths and cached-byte counters match their lists;
    /// - the bitmap, the span records and the page map agree page by page, and the free-page
    ///   and span-page counters match;
    /// - every span with a free object is in its class's central list and no other is, each
    ///   class's free-object counter matches its listed spans, and no span whose objects have
    ///   all come back is left outside the page heap (free neighbours are merged by
    ///   construction: free space is the bitmap itself);
    /// - objects are conserved: the bytes handed out of spans equal the bytes cached in CPU
    ///   slots plus the bytes in use, which match the statistics.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let mut taken = 0;
        for slot in &self.slots {
            if !slot.lock.try_lock() {
                self.unlock_slots(taken);
                return broken("CPU slot in use", 0);
            }
            taken += 1;
        }
        // Central locks in class order, then the page heap (the lock order).
        for c in self.central.iter().skip(1) {
            // Released below with `force_unlock`; no guard table on the stack.
            core::mem::forget(c.list.lock());
        }
        let r = self.check_locked();
        for c in self.central.iter().skip(1) {
            // SAFETY: locked above by this function, whose guards were forgotten.
            unsafe { c.list.force_unlock() };
        }
        self.unlock_slots(taken);
        let small_in_use = r?;
        if small_in_use != self.stats().in_use_bytes {
            return broken(
                "objects not conserved: in-use bytes disagree with the spans",
                small_in_use,
            );
        }
        Ok(())
    }

    fn unlock_slots(&self, n: usize) {
        for slot in &self.slots[..n] {
            slot.lock.unlock();
        }
    }

    /// The checks of [`check_invariants`](Self::check_invariants), with every slot and
    /// central lock held. Returns the bytes in use according to the spans and the caches.
    fn check_locked(&self) -> Result<usize, InvariantError> {
        let page = self.page_size();
        let mut cached_bytes = 0usize;
        for slot in &self.slots {
            // SAFETY: the caller holds every slot's lock.
            let cache = unsafe { &*slot.cache.get() };
            let mut bytes = 0;
            for (class, list) in cache.lists.iter().enumerate().skip(1) {
                let mut n = 0usize;
                let mut o = list.head;
                while !o.is_null() {
                    self.check_object(o as usize, class)?;
                    n += 1;
                    if n > list.len as usize {
                        return broken("CPU list longer than its count", o as usize);
                    }
                    // SAFETY: cached objects hold their link.
                    o = unsafe { (*o).next };
                }
                if n != list.len as usize {
                    return broken("CPU list shorter than its count", class);
                }
                bytes += n * class_size(class);
            }
            if bytes != slot.stats.cached_bytes.load(Ordering::Relaxed) {
                return broken("CPU cached-byte counter disagrees with its lists", bytes);
            }
            cached_bytes += bytes;
        }
        // Each class's listed spans: free objects present, flag set, counter matches.
        let (mut listed, mut list_spans) = (0usize, 0usize);
        for (class, c) in self.central.iter().enumerate().skip(1) {
            // SAFETY: the caller holds every central lock.
            let list = unsafe { &*c.list.data_ptr() };
            list_spans += list.spans;
            let mut free = 0usize;
            let mut s = list.head;
            // SAFETY: listed spans are live records.
            while let Some(span) = unsafe { s.as_ref() } {
                listed += 1;
                if !span.has_free()
                    || !span.flags.contains(SpanFlags::IN_CENTRAL)
                    || span.class as usize != class
                {
                    return broken("central list holds a span without free objects", span.start);
                }
                free += self.check_span(span)? + (span.capacity - span.carved) as usize;
                s = span.next;
            }
            if c.free_objects.load(Ordering::Relaxed) != free {
                return broken(
                    "central free-object counter disagrees with the spans",
                    class,
                );
            }
        }
        let ph = self.page_heap.lock();
        let (mut spans, mut with_free, mut handed_bytes) = (0usize, 0usize, 0usize);
        let (mut free_pages, mut span_pages) = (0usize, 0usize);
        for ext in ph.extents() {
            let mut ext_free = 0;
            for i in 0..ext.pages {
                let addr = ext.base + i * page;
                let Some(pr) = self.map.page(addr, self.page_shift) else {
                    return broken("extent page missing from the page map", addr);
                };
                let tag = pr.class.load(Ordering::Relaxed);
                let span = pr.span.load(Ordering::Relaxed);
                if !ext.is_used(i) {
                    ext_free += 1;
                    if (tag != CLASS_NONE && tag != CLASS_FREED) || !span.is_null() {
                        return broken("free page still mapped to a span", addr);
                    }
                    continue;
                }
                if tag == CLASS_META {
                    continue;
                }
                // SAFETY: used, non-metadata pages point at live span records.
                let Some(s) = (unsafe { span.as_ref() }) else {
                    return broken("used page without a span", addr);
                };
                if addr < s.start || addr >= s.end(page) {
                    return broken("page map points outside the span", addr);
                }
                let expect = if s.flags.contains(SpanFlags::LARGE) {
                    CLASS_LARGE
                } else {
                    s.class
                };
                if tag != expect {
                    return broken("page map class disagrees with the span", addr);
                }
                if addr != s.start {
                    continue;
                }
                span_pages += s.pages;
                if tag == CLASS_LARGE {
                    handed_bytes += s.pages * page;
                    continue;
                }
                spans += 1;
                self.check_span(s)?;
                if s.allocated == 0 {
                    return broken("empty span not returned to the page heap", s.start);
                }
                if s.has_free() != s.flags.contains(SpanFlags::IN_CENTRAL) {
                    return broken(
                        "span's central-list flag disagrees with its free objects",
                        s.start,
                    );
                }
                with_free += s.has_free() as usize;
                handed_bytes += s.allocated as usize * class_size(s.class as usize);
            }
            if ext_free != ext.free_pages {
                return broken("extent free-page count disagrees with its bitmap", ext.base);
            }
            free_pages += ext_free;
        }
        drop(ph);
        let ps = &self.page_stats;
        if free_pages != ps.free_pages.load(Ordering::Relaxed) {
            return broken("free-page counter disagrees with the bitmaps", free_pages);
        }
        if span_pages != ps.span_pages.load(Ordering::Relaxed) {
            return broken("span-page counter disagrees with the spans", span_pages);
        }
        // With every flagged span listed and every listed span flagged, equal counts mean
        // the lists hold exactly the spans with free objects.
        if listed != with_free {
            return broken(
                "a span with free objects is missing from its central list",
                listed,
            );
        }
        if list_spans != spans {
            return broken("central span counts disagree with the page map", spans);
        }
        if handed_bytes < cached_bytes {
            return broken("more bytes cached than handed out of spans", cached_bytes);
        }
        Ok(handed_bytes - cached_bytes)
    }

    /// An object of `class` at `addr` must lie at an object boundary of a span of `class`.
    fn check_object(&self, addr: usize, class: usize) -> Result<(), InvariantError> {
        let Some(pr) = self.map.page(addr, self.page_shift) else {
            return broken("cached object outside the heap", addr);
        };
        if pr.class.load(Ordering::Relaxed) as usize != class {
            return broken("cached object in a span of another class", addr);
        }
        // SAFETY: the page is tagged with a class, so it points at a live span.
        let s = unsafe { &*pr.span.load(Ordering::Relaxed) };
        let off = addr - s.start;
        if off % class_size(class) != 0 || off / class_size(class) >= s.carved as usize {
            return broken("cached object not at a carved object boundary", addr);
        }
        Ok(())
    }

    /// Walk a small span's free list; returns its length.
    fn check_span(&self, s: &Span) -> Result<usize, InvariantError> {
        let size = class_size(s.class as usize);
        let mut n = 0usize;
        let mut o = s.free;
        while !o.is_null() {
            let off = (o as usize).wrapping_sub(s.start);
            if off % size != 0 || off / size >= s.carved as usize {
                return broken("span free list holds a foreign object", o as usize);
            }
            n += 1;
            if n > s.capacity as usize {
                return broken("span free list loops", s.start);
            }
            // SAFETY: free objects of the span hold their link.
            o = unsafe { (*o).next };
        }
        if n + s.allocated as usize != s.carved as usize {
            return broken(
                "span objects not conserved (free + handed out != carved)",
                s.start,
            );
        }
        if s.capacity as usize * size > s.pages * self.page_size() {
            return broken("span capacity exceeds its pages", s.start);
        }
        Ok(n)
    }
}

impl<const N: usize, P: Platform, R: RawMutex, const CPUS: usize>
    Heap<StaticRegion<N>, P, R, CPUS>
{
    /// Give the heap another region of memory. Returns `false` if the source already holds
    /// `N` regions, or the region is empty.
    pub fn add_region(&self, region: &'static mut [MaybeUninit<u8>]) -> bool {
        self.page_heap.lock().source.add(region)
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

// SAFETY: as for `GlobalAlloc`; blocks stay valid until deallocated through any copy of the
// reference, since they all reach the same heap.
unsafe impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize>
    allocator_api2::alloc::Allocator for &Heap<S, P, R, CPUS>
{
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = Heap::allocate(self, layout);
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(allocator_api2::alloc::AllocError)
    }

    fn allocate_zeroed(
        &self,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let p = Heap::allocate_zeroed(self, layout);
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(allocator_api2::alloc::AllocError)
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
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, new.size()))
            .ok_or(allocator_api2::alloc::AllocError)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::MaybeUninit;
    use std::boxed::Box;

    type TestHeap = Heap<StaticRegion<1>>;

    fn heap() -> &'static TestHeap {
        let h: &'static TestHeap = Box::leak(Box::new(Heap::new(
            StaticRegion::new(),
            SingleCpu::new(),
            Config::new(),
        )));
        let region: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(1 << 20));
        assert!(h.add_region(region));
        h
    }

    #[test]
    fn invariant_check_catches_a_wrong_cached_counter() {
        let h = heap();
        let l = Layout::from_size_align(64, 8).unwrap();
        let p = h.allocate(l);
        // SAFETY: allocated just above.
        unsafe { h.deallocate(p, l) };
        h.check_invariants().unwrap();
        bump(&h.slots[0].stats.cached_bytes, 8);
        let e = h.check_invariants().unwrap_err();
        assert_eq!(e.what, "CPU cached-byte counter disagrees with its lists");
        bump(&h.slots[0].stats.cached_bytes, 8usize.wrapping_neg());
        h.check_invariants().unwrap();
    }

    #[test]
    fn invariant_check_catches_books_that_do_not_balance() {
        let h = heap();
        let l = Layout::from_size_align(64, 8).unwrap();
        let p = h.allocate(l);
        h.check_invariants().unwrap();
        // The slot claims one more refilled object than the central cache handed out.
        bump(&h.slots[0].stats.refill_bytes, 64);
        let e = h.check_invariants().unwrap_err();
        assert_eq!(
            e.what,
            "objects not conserved: in-use bytes disagree with the spans"
        );
        bump(&h.slots[0].stats.refill_bytes, 64usize.wrapping_neg());
        // A span that lost count of an object it handed out.
        let span = h
            .map
            .page(p as usize, h.page_shift)
            .unwrap()
            .span
            .load(Ordering::Relaxed);
        // SAFETY: single-threaded test; the span is live.
        unsafe { (*span).allocated -= 1 };
        let e = h.check_invariants().unwrap_err();
        assert_eq!(
            e.what,
            "span objects not conserved (free + handed out != carved)"
        );
        // SAFETY: as above.
        unsafe { (*span).allocated += 1 };
        h.check_invariants().unwrap();
        // SAFETY: `p` is live.
        unsafe { h.deallocate(p, l) };
    }

    #[test]
    fn invariant_check_refuses_while_a_slot_is_busy() {
        let h = heap();
        let _g = h.slots[0].try_lock().unwrap();
        assert_eq!(h.check_invariants().unwrap_err().what, "CPU slot in use");
    }
}
