//! Small-heap efficiency (issue "Memory efficiency"): how much of a small fixed region each
//! bare-metal allocator lets the program use, and, for cpuheap, where the rest of the region
//! went at the first failure.
//!
//! - **fixed N**: a fresh heap over a 32 KiB region; objects of N bytes (aligned to the
//!   pointer size) are allocated until the first failure.
//! - **mixed**: a fresh heap over the same region; a deterministic firmware-like sequence:
//!   alloc 6/10, free 2/10, realloc 2/10 (sizes 8..=512 B, log-uniform, so small ones
//!   dominate; alignment the pointer size, 1/4 of them 8), until the first failure (an alloc
//!   or a realloc returning null).
//! - **talc-like**: talc's `heap_efficiency` workload ported onto this harness's generator
//!   (alloc 5/10 of `4..uniform(16..10000)` B with talc's alignment mix, free 1/10, realloc
//!   4/10 to `1..100000` B, until the first failure, repeated on the same heap after freeing
//!   everything), over a larger region (128 MiB by default, like talc's arena). It exists to
//!   break cpuheap's losses down on talc's workload, which talc's own bench cannot show.
//!
//! The result is *usable fraction* = live requested bytes / region bytes at the first failure.
//! Each allocator's own value (cpuheap's `Heap`, talc's `Talc`, rlsf's `Tlsf`, ...) lives
//! outside the region, in a `Box`; its size is printed. Whatever metadata an allocator keeps
//! inside the region (cpuheap: bitmap, page map, span records; the others: block headers and
//! free-list nodes) counts against it.
//!
//! This file depends only on cpuheap and pure-Rust peers, so the same measurement builds
//! for a 32-bit host too (`benches/small-heap-32`, which includes this file by path).

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use std::fmt::Write;

use cpuheap::{Config, DefaultRawMutex, Heap, SingleCpu, StaticRegion, Stats};

/// The small region's size.
pub const SMALL_REGION: usize = 32 * 1024;
/// Object sizes of the fixed-size runs.
pub const FIXED_SIZES: [usize; 4] = [16, 48, 200, 1000];

/// One measured sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Objects of one size until the first failure.
    Fixed(usize),
    /// The firmware-like mix of sizes 8..=512 with frees and reallocs.
    Mixed,
    /// talc's `heap_efficiency` action mix (see the module docs).
    TalcLike,
}

impl Workload {
    /// Row label.
    pub fn label(self) -> String {
        match self {
            Workload::Fixed(n) => format!("fixed {n} B"),
            Workload::Mixed => "mixed 8-512 B".into(),
            Workload::TalcLike => "talc-like".into(),
        }
    }
}

/// The allocators compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alloc {
    /// cpuheap, `Config::small()`.
    CpuheapSmall,
    /// cpuheap, `Config::new()`.
    CpuheapNew,
    /// talc 5 (`Claim` source) behind a spin lock.
    Talc,
    /// rlsf `Tlsf<u32, u32, 28, 32>` behind a spin lock (as in the main harness).
    Rlsf,
    /// embedded-alloc's `LlffHeap` (linked_list_allocator inside a critical section).
    EaLlff,
    /// embedded-alloc's `TlsfHeap` (rlsf inside a critical section).
    EaTlsf,
    /// linked_list_allocator's `LockedHeap`.
    LinkedList,
}

impl Alloc {
    /// Every allocator, in table order.
    pub const ALL: [Alloc; 7] = [
        Alloc::CpuheapSmall,
        Alloc::CpuheapNew,
        Alloc::Talc,
        Alloc::Rlsf,
        Alloc::EaLlff,
        Alloc::EaTlsf,
        Alloc::LinkedList,
    ];
    /// Column label.
    pub fn name(self) -> &'static str {
        match self {
            Alloc::CpuheapSmall => "cpuheap small()",
            Alloc::CpuheapNew => "cpuheap new()",
            Alloc::Talc => "talc",
            Alloc::Rlsf => "rlsf",
            Alloc::EaLlff => "embedded-alloc Llff",
            Alloc::EaTlsf => "embedded-alloc Tlsf",
            Alloc::LinkedList => "linked_list",
        }
    }
    /// Size of the allocator's own value (kept outside the region).
    pub fn value_size(self) -> usize {
        match self {
            Alloc::CpuheapSmall | Alloc::CpuheapNew => core::mem::size_of::<CpuHeap>(),
            Alloc::Talc => core::mem::size_of::<TalcHeap>(),
            Alloc::Rlsf => core::mem::size_of::<RlsfHeap>(),
            Alloc::EaLlff => core::mem::size_of::<embedded_alloc::LlffHeap>(),
            Alloc::EaTlsf => core::mem::size_of::<embedded_alloc::TlsfHeap>(),
            Alloc::LinkedList => core::mem::size_of::<linked_list_allocator::LockedHeap>(),
        }
    }
    /// Whether this is cpuheap.
    pub fn is_cpuheap(self) -> bool {
        matches!(self, Alloc::CpuheapSmall | Alloc::CpuheapNew)
    }
}

/// The firmware quick start's heap: one static region, one CPU, the default spin lock.
pub type CpuHeap = Heap<StaticRegion<1>, SingleCpu, DefaultRawMutex, 1>;
/// talc 5 over a claimed region.
pub type TalcHeap = talc::TalcLock<spin::mutex::SpinMutex<()>, talc::source::Claim>;

/// rlsf behind a spin lock.
pub struct RlsfHeap(spin::Mutex<rlsf::Tlsf<'static, u32, u32, 28, 32>>);

unsafe impl GlobalAlloc for RlsfHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0
            .lock()
            .deallocate(NonNull::new_unchecked(ptr), layout.align())
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let nl = Layout::from_size_align_unchecked(new_size, layout.align());
        self.0
            .lock()
            .reallocate(NonNull::new_unchecked(ptr), nl)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
}

/// A region buffer from the system allocator, aligned to 4 KiB (so no allocator loses
/// bytes to aligning the region's start; a `static` array on an MCU is usually only
/// word-aligned, which costs cpuheap up to one page).
pub struct Region {
    base: *mut u8,
    ptr: *mut u8,
    len: usize,
}

impl Region {
    /// Allocate `len` bytes, starting on a 4 KiB boundary.
    pub fn new(len: usize) -> Region {
        Region::with_offset(len, 0)
    }
    /// Allocate `len` bytes starting `offset` bytes past a 4 KiB boundary (a word-aligned
    /// `static` on an MCU).
    pub fn with_offset(len: usize, offset: usize) -> Region {
        let l = Layout::from_size_align(len + 4096, 4096).unwrap();
        let base = unsafe { std::alloc::System.alloc_zeroed(l) };
        assert!(!base.is_null(), "cannot allocate the region");
        Region {
            base,
            ptr: unsafe { base.add(offset % 4096) },
            len,
        }
    }
    /// The region as the `&'static mut` slice `add_region` wants.
    ///
    /// # Safety
    /// Drop the heap built over it before the next call.
    #[allow(clippy::mut_from_ref)]
    unsafe fn as_static(&self) -> &'static mut [MaybeUninit<u8>] {
        core::slice::from_raw_parts_mut(self.ptr.cast(), self.len)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let l = Layout::from_size_align(self.len + 4096, 4096).unwrap();
        unsafe { std::alloc::System.dealloc(self.base, l) }
    }
}

/// Where cpuheap's region bytes are at the first failure (the heap has already drained its
/// CPU slot then: it does so before it returns null).
#[derive(Clone, Copy, Debug, Default)]
pub struct Breakdown {
    /// Region bytes.
    pub region: usize,
    /// Bytes the program asked for, of live objects.
    pub live_requested: usize,
    /// Object size minus request, for objects served from size classes.
    pub class_rounding: usize,
    /// Page-span size minus request, for objects served as page spans.
    pub page_rounding: usize,
    /// Free objects in spans of the central cache (returned or never carved).
    pub central_free: usize,
    /// Free objects parked in the CPU slot.
    pub cpu_cache: usize,
    /// Span bytes no object covers: the tail of a span smaller than one more object.
    pub span_tail: usize,
    /// Free pages of the page heap (none of them a run the failing request could use).
    pub page_free: usize,
    /// The largest free page run found by probing after the failure (bytes; 0 = none of
    /// at least `max_small` + 1 page).
    pub largest_run: usize,
    /// The heap's metadata (bitmap, page map, span records).
    pub metadata: usize,
    /// The rest: region bytes the source did not hand over (alignment), metadata-arena
    /// slack. `region - span_bytes - page_free - metadata`.
    pub other: usize,
    /// Spans handed out and not yet given back.
    pub live_spans: usize,
    /// The request that failed.
    pub failed: Option<Layout>,
    /// Pages the failing request needed from the page heap: the shortest span of its class,
    /// or its page-span size.
    pub need_pages: usize,
    /// The heap's page size.
    pub page: usize,
    /// Fills summed into this breakdown.
    pub fills: usize,
}

impl Breakdown {
    fn add(&mut self, o: &Breakdown) {
        self.region += o.region;
        self.live_requested += o.live_requested;
        self.class_rounding += o.class_rounding;
        self.page_rounding += o.page_rounding;
        self.central_free += o.central_free;
        self.cpu_cache += o.cpu_cache;
        self.span_tail += o.span_tail;
        self.page_free += o.page_free;
        self.largest_run += o.largest_run;
        self.metadata += o.metadata;
        self.other += o.other;
        self.live_spans += o.live_spans;
        self.fills += o.fills;
    }
}

/// One run's result.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Live requested bytes at the first failure (summed over fills).
    pub live_requested: usize,
    /// Region bytes (summed over fills).
    pub region: usize,
    /// Live objects at the first failure (summed over fills).
    pub objects: usize,
    /// cpuheap's breakdown (summed over fills).
    pub breakdown: Option<Breakdown>,
}

impl Outcome {
    /// Live requested / region.
    pub fn fraction(&self) -> f64 {
        self.live_requested as f64 / self.region as f64
    }
}

/// The project's deterministic PRNG (`testkit/`).
use cpuheap_testkit::Rng;

/// Uniform in `lo..hi`.
fn range(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + rng.below((hi - lo) as u64) as usize
}

const WORD: usize = core::mem::size_of::<usize>();

fn mixed_size(rng: &mut Rng) -> usize {
    // log-uniform over [8, 512]: an octave 8..16, ..., 256..512, then uniform inside it.
    let lo = 8usize << rng.below(6);
    range(rng, lo, lo * 2 + 1).min(512)
}

fn mixed_align(rng: &mut Rng) -> usize {
    if rng.below(4) == 0 {
        8
    } else {
        WORD
    }
}

/// talc's `generate_size`: `cap = 16..max`, `size = 4..cap`.
fn talc_size(rng: &mut Rng) -> usize {
    let cap = range(rng, 16, 10_000);
    range(rng, 4, cap)
}

/// talc's `generate_align`: the word size shifted by half the trailing zeros of a u16.
fn talc_align(rng: &mut Rng) -> usize {
    WORD << ((rng.next() as u16).trailing_zeros() / 2)
}

#[derive(Clone, Copy)]
struct Obj {
    p: *mut u8,
    l: Layout,
}

/// What cpuheap-specific probing needs.
trait Probe {
    fn stats(&self) -> Stats;
    fn usable(&self, p: *const u8) -> Option<usize>;
    fn max_small(&self) -> usize;
    fn page(&self) -> usize;
    fn min_span(&self) -> usize;
}

impl Probe for CpuHeap {
    fn stats(&self) -> Stats {
        Heap::stats(self)
    }
    fn usable(&self, p: *const u8) -> Option<usize> {
        self.usable_size(p)
    }
    fn max_small(&self) -> usize {
        self.config().max_small
    }
    fn page(&self) -> usize {
        self.config().page_size
    }
    fn min_span(&self) -> usize {
        self.config().min_span_bytes
    }
}

/// Fill once until the first failure; returns the live objects (still allocated) and the
/// failing layout.
fn fill(a: &dyn GlobalAlloc, w: Workload, rng: &mut Rng, live: &mut Vec<Obj>) -> Layout {
    unsafe {
        loop {
            let (r, n) = match w {
                Workload::Fixed(_) => (0, 1),
                Workload::Mixed => (rng.below(10), 6),
                Workload::TalcLike => (rng.below(10), 5),
            };
            let realloc_from = if w == Workload::Mixed { 8 } else { 6 };
            if r < n || live.is_empty() {
                let l = match w {
                    Workload::Fixed(s) => Layout::from_size_align_unchecked(s, WORD),
                    Workload::Mixed => {
                        let s = mixed_size(rng);
                        Layout::from_size_align_unchecked(s, mixed_align(rng))
                    }
                    Workload::TalcLike => {
                        let s = talc_size(rng);
                        Layout::from_size_align_unchecked(s, talc_align(rng))
                    }
                };
                let p = a.alloc(l);
                if p.is_null() {
                    return l;
                }
                p.write(l.size() as u8);
                live.push(Obj { p, l });
            } else if r < realloc_from {
                let i = rng.below(live.len() as u64) as usize;
                let o = live.swap_remove(i);
                assert_eq!(o.p.read(), o.l.size() as u8, "object corrupted");
                a.dealloc(o.p, o.l);
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let o = live[i];
                let ns = if w == Workload::Mixed {
                    mixed_size(rng)
                } else {
                    range(rng, 1, 100_000)
                };
                let p = a.realloc(o.p, o.l, ns);
                let nl = Layout::from_size_align_unchecked(ns, o.l.align());
                if p.is_null() {
                    return nl;
                }
                assert_eq!(p.read(), o.l.size() as u8, "realloc lost the contents");
                p.write(ns as u8);
                live[i] = Obj { p, l: nl };
            }
        }
    }
}

/// Where the region's bytes are (cpuheap), right after the failure.
fn breakdown(h: &dyn Probe, region: usize, live: &[Obj], failed: Layout) -> Breakdown {
    let st = h.stats();
    let page = h.page();
    let class = if failed.align() > page {
        None
    } else {
        cpuheap::size_class::class_for(failed.size(), failed.align(), h.max_small())
    };
    let need_pages = match class {
        Some(c) => cpuheap::size_class::span_pages(c, page, h.min_span()),
        None => failed.size().div_ceil(page),
    };
    let mut b = Breakdown {
        region,
        failed: Some(failed),
        need_pages,
        page,
        fills: 1,
        ..Breakdown::default()
    };
    for o in live {
        let u = h.usable(o.p).expect("live object unknown to the heap");
        b.live_requested += o.l.size();
        if u > h.max_small() || o.l.align() > h.page() {
            b.page_rounding += u - o.l.size();
        } else {
            b.class_rounding += u - o.l.size();
        }
    }
    b.central_free = st.central_cache_bytes;
    b.cpu_cache = st.cpu_cache_bytes;
    b.span_tail = st
        .span_bytes
        .saturating_sub(st.in_use_bytes + st.central_cache_bytes + st.cpu_cache_bytes);
    b.page_free = st.page_heap_free_bytes;
    b.metadata = st.metadata_bytes;
    b.other = region.saturating_sub(st.span_bytes + st.page_heap_free_bytes + st.metadata_bytes);
    b.live_spans = st.spans_allocated - st.spans_freed;
    debug_assert_eq!(
        st.in_use_bytes,
        b.live_requested + b.class_rounding + b.page_rounding
    );
    b
}

/// The largest free page run, by binary search over page-span allocations (each freed at
/// once). Only runs above `max_small` can be probed this way (smaller requests go to size
/// classes); 0 means none that long.
fn largest_run(a: &dyn GlobalAlloc, h: &dyn Probe) -> usize {
    let page = h.page();
    let free = h.stats().page_heap_free_bytes / page;
    let try_pages = |n: usize| unsafe {
        let l = Layout::from_size_align_unchecked(n * page, WORD);
        let p = a.alloc(l);
        if p.is_null() {
            false
        } else {
            a.dealloc(p, l);
            true
        }
    };
    let mut lo = h.max_small() / page + 1;
    if lo > free || !try_pages(lo) {
        return 0;
    }
    let mut hi = free + 1; // lo fits, hi does not
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if try_pages(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo * page
}

fn run_fills(
    a: &dyn GlobalAlloc,
    probe: Option<&dyn Probe>,
    w: Workload,
    region: usize,
    fills: usize,
    seed: u64,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut live = Vec::with_capacity(4096);
    let mut out = Outcome::default();
    for _ in 0..fills {
        let failed = fill(a, w, &mut rng, &mut live);
        out.region += region;
        out.objects += live.len();
        out.live_requested += live.iter().map(|o| o.l.size()).sum::<usize>();
        if let Some(h) = probe {
            let mut b = breakdown(h, region, &live, failed);
            b.largest_run = largest_run(a, h);
            let acc = out.breakdown.get_or_insert_with(Breakdown::default);
            acc.add(&b);
            acc.failed = b.failed;
            acc.need_pages = b.need_pages;
            acc.page = b.page;
        }
        for o in live.drain(..) {
            unsafe { a.dealloc(o.p, o.l) };
        }
    }
    out
}

/// Build `k` fresh over `r`, run `fills` fills of `w` on it.
pub fn measure(k: Alloc, r: &Region, w: Workload, fills: usize, seed: u64) -> Outcome {
    let len = r.len;
    match k {
        Alloc::CpuheapSmall | Alloc::CpuheapNew => {
            let cfg = if k == Alloc::CpuheapSmall {
                Config::small()
            } else {
                Config::new()
            };
            let h = Box::new(CpuHeap::new(StaticRegion::new(), SingleCpu::new(), cfg));
            assert!(h.add_region(unsafe { r.as_static() }), "region refused");
            run_fills(&*h, Some(&*h), w, len, fills, seed)
        }
        Alloc::Talc => {
            let h = Box::new(TalcHeap::new(unsafe {
                talc::source::Claim::new(r.ptr, len)
            }));
            run_fills(&*h, None, w, len, fills, seed)
        }
        Alloc::Rlsf => {
            let mut t = rlsf::Tlsf::new();
            let mut added = 0;
            while added < len {
                let rest = NonNull::slice_from_raw_parts(
                    NonNull::new(unsafe { r.ptr.add(added) }).unwrap(),
                    len - added,
                );
                match unsafe { t.insert_free_block_ptr(rest) } {
                    Some(n) => added += n.get(),
                    None => break,
                }
            }
            let h = Box::new(RlsfHeap(spin::Mutex::new(t)));
            run_fills(&*h, None, w, len, fills, seed)
        }
        Alloc::EaLlff => {
            let h = Box::new(embedded_alloc::LlffHeap::empty());
            unsafe { h.init(r.ptr as usize, len) };
            run_fills(&*h, None, w, len, fills, seed)
        }
        Alloc::EaTlsf => {
            let h = Box::new(embedded_alloc::TlsfHeap::empty());
            unsafe { h.init(r.ptr as usize, len) };
            run_fills(&*h, None, w, len, fills, seed)
        }
        Alloc::LinkedList => {
            let h = Box::new(linked_list_allocator::LockedHeap::empty());
            unsafe { h.lock().init(r.ptr, len) };
            run_fills(&*h, None, w, len, fills, seed)
        }
    }
}

fn pct(num: usize, den: usize) -> String {
    format!("{:.1} %", num as f64 * 100.0 / den as f64)
}

/// The breakdown table: one row per (cpuheap config, workload).
fn breakdown_table(rows: &[(Alloc, Workload, Outcome)]) -> String {
    let mut s = String::new();
    s.push_str(
        "| heap | workload | live requested | class rounding | page rounding | free in partly used spans | span tails | CPU slot | free pages | largest free run | metadata | other | spans | failing request (last fill) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (k, w, o) in rows {
        let Some(b) = o.breakdown else { continue };
        let f = b.failed.unwrap();
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({} pages of {} B) | {} | {} | {} | {} | {} B align {}, needs {} pages |",
            k.name(),
            w.label(),
            pct(b.live_requested, b.region),
            pct(b.class_rounding, b.region),
            pct(b.page_rounding, b.region),
            pct(b.central_free, b.region),
            pct(b.span_tail, b.region),
            pct(b.cpu_cache, b.region),
            pct(b.page_free, b.region),
            b.page_free / b.page.max(1) / b.fills.max(1),
            b.page,
            if b.largest_run == 0 {
                "< small limit".to_string()
            } else {
                format!("{} pages", b.largest_run / b.page.max(1) / b.fills.max(1))
            },
            pct(b.metadata, b.region),
            pct(b.other, b.region),
            b.live_spans / b.fills.max(1),
            f.size(),
            f.align(),
            b.need_pages,
        )
        .unwrap();
    }
    s
}

/// cpuheap over a region that starts one word past a 4 KiB boundary, as a `static` array on
/// an MCU usually does (only word-aligned): the heap can only use whole pages.
fn misaligned(workloads: &[Workload]) -> String {
    let off = Region::with_offset(SMALL_REGION, WORD);
    let mut s = format!(
        "cpuheap over a region {WORD} B past a 4 KiB boundary (a word-aligned `static`), against the \
         4 KiB-aligned region above:\n\n| workload | small() aligned | small() +{WORD} B | new() aligned | new() +{WORD} B |\n\
         |---|---:|---:|---:|---:|\n"
    );
    let aligned = Region::new(SMALL_REGION);
    for &w in workloads {
        write!(s, "| {} |", w.label()).unwrap();
        for k in [Alloc::CpuheapSmall, Alloc::CpuheapNew] {
            for r in [&aligned, &off] {
                let o = measure(k, r, w, 1, 0x5eed);
                write!(s, " {:.1} % |", o.fraction() * 100.0).unwrap();
            }
        }
        s.push('\n');
    }
    s.push('\n');
    s
}

/// What one span per size class costs: the sum of the shortest spans of every class up to
/// 512 B (the mixed workload's range), for both configurations, against the small region.
fn class_floor() -> String {
    use cpuheap::size_class::{class_size, span_pages, NUM_CLASSES};
    let mut s = String::from(
        "Floor of the mixed workload for cpuheap: a class in use holds at least one span, so holding \
         one object of every class up to 512 B already takes the sum of their shortest spans \
         (`size_class::span_pages`):\n\n\
         | config | classes <= 512 B | sum of shortest spans | of the region |\n|---|---:|---:|---:|\n",
    );
    for (name, cfg) in [("small()", Config::small()), ("new()", Config::new())] {
        let (mut n, mut bytes) = (0, 0);
        for c in (1..NUM_CLASSES).take_while(|&c| class_size(c) <= 512) {
            n += 1;
            bytes += span_pages(c, cfg.page_size, cfg.min_span_bytes) * cfg.page_size;
        }
        writeln!(
            s,
            "| {name} | {n} | {bytes} B | {} |",
            pct(bytes, SMALL_REGION)
        )
        .unwrap();
    }
    s.push('\n');
    s
}

/// Options of the `small_heap` binary.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Run the 32 KiB table.
    pub small: bool,
    /// Run the talc-like breakdown.
    pub talc_like: bool,
    /// Region of the talc-like run, MiB.
    pub talc_mib: usize,
    /// Fills of the talc-like run.
    pub talc_fills: usize,
    /// Allocators.
    pub allocs: Vec<Alloc>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            small: true,
            talc_like: true,
            talc_mib: 128,
            talc_fills: 20,
            allocs: Alloc::ALL.to_vec(),
        }
    }
}

const USAGE: &str = "small_heap [--only-small | --only-talc-like] [--only-cpuheap] [--talc-mib MIB] [--talc-fills N]
  Prints markdown: the 32 KiB small-heap efficiency table (every allocator), cpuheap's
  breakdown of the region at the first failure, and the same breakdown for talc's
  heap_efficiency workload (ported) over a MIB region (default 128, 20 fills).
  --only-cpuheap leaves the peers out (a quicker run while working on cpuheap).";

/// Parse `std::env::args()`.
pub fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only-small" => o.talc_like = false,
            "--only-talc-like" => o.small = false,
            "--only-cpuheap" => o.allocs.retain(|k| k.is_cpuheap()),
            "--talc-mib" => {
                o.talc_mib = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--talc-mib N")?
            }
            "--talc-fills" => {
                o.talc_fills = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--talc-fills N")?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Run what `o` asks for and return the markdown report.
pub fn report(o: &Opts) -> String {
    let mut s = String::new();
    let bits = WORD * 8;
    writeln!(
        s,
        "## Small-heap efficiency ({bits}-bit host, {} {})\n",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
    .unwrap();
    let mut rows: Vec<(Alloc, Workload, Outcome)> = Vec::new();
    if o.small {
        let region = Region::new(SMALL_REGION);
        let mut workloads: Vec<Workload> =
            FIXED_SIZES.iter().map(|&n| Workload::Fixed(n)).collect();
        workloads.push(Workload::Mixed);
        writeln!(
            s,
            "Usable fraction = live requested bytes / region bytes at the first failure, fresh heap over a \
             {} KiB region (4 KiB-aligned), one run each (deterministic). Fixed-size objects are aligned to \
             the pointer size ({WORD} B). `mixed`: alloc 6/10, free 2/10, realloc 2/10, sizes 8-512 B \
             log-uniform, alignment the pointer size ({WORD} B) or, for 1/4 of them, 8 B. Every allocator's own value lives outside the \
             region (sizes below); what it keeps inside the region counts against it.\n",
            SMALL_REGION / 1024
        )
        .unwrap();
        s.push_str("| workload |");
        for k in &o.allocs {
            write!(s, " {} |", k.name()).unwrap();
        }
        s.push_str("\n|---|");
        for _ in &o.allocs {
            s.push_str("---:|");
        }
        s.push('\n');
        for &w in &workloads {
            write!(s, "| {} |", w.label()).unwrap();
            for &k in &o.allocs {
                let out = measure(k, &region, w, 1, 0x5eed);
                write!(s, " {:.1} % ({}) |", out.fraction() * 100.0, out.objects).unwrap();
                if k.is_cpuheap() {
                    rows.push((k, w, out));
                }
            }
            s.push('\n');
        }
        s.push_str("\nCells: usable fraction (live objects at the first failure).\n\n");
        s.push_str("| allocator | size of its own value (outside the region) |\n|---|---:|\n");
        for k in &o.allocs {
            writeln!(s, "| {} | {} B |", k.name(), k.value_size()).unwrap();
        }
        s.push('\n');
        s.push_str(&misaligned(&workloads));
        s.push_str(&class_floor());
    }
    if o.talc_like {
        let len = o.talc_mib << 20;
        let region = Region::new(len);
        writeln!(
            s,
            "### talc-like workload, {} MiB region, {} fills on one heap (pooled)\n",
            o.talc_mib, o.talc_fills
        )
        .unwrap();
        s.push_str("| allocator | usable fraction |\n|---|---:|\n");
        for &k in &o.allocs {
            // linked lists are O(live objects) per call: far too slow at this size.
            if matches!(k, Alloc::LinkedList | Alloc::EaLlff) {
                continue;
            }
            let out = measure(k, &region, Workload::TalcLike, o.talc_fills, 0x7a1c);
            writeln!(s, "| {} | {:.1} % |", k.name(), out.fraction() * 100.0).unwrap();
            if k.is_cpuheap() {
                rows.push((k, Workload::TalcLike, out));
            }
        }
        s.push('\n');
    }
    if !rows.is_empty() {
        s.push_str(
            "### cpuheap: where the region's bytes are at the first failure\n\n\
             Shares of the region, from `Heap::stats()` and `usable_size` of every live object right after \
             the failing call (cpuheap drains its CPU slot before it returns null, so the slot column is \
             what is left parked after that). class/page rounding: object size minus requested size. \
             free in partly used spans: `central_cache_bytes` (freed or never-carved objects of spans that \
             still hold live ones). span tails: span bytes no object slot covers. free pages: \
             `page_heap_free_bytes`, none usable for the failing request; largest free run: probed \
             afterwards with page-span allocations (`< small limit`: none longer than the small-object limit, \
             the shortest run such a probe can ask for). The failing request's page need is the shortest span of \
             its class (`size_class::span_pages`) or its page-span size. \
             metadata: `metadata_bytes`, whole pages given to metadata, used or not. other: region bytes in none of these (alignment of the run, \
             metadata-arena slack). spans: live spans. Talc-like rows pool the fills: shares of the pooled region, page \
             counts, largest run and spans are means per fill.\n\n",
        );
        s.push_str(&breakdown_table(&rows));
    }
    s
}

/// The `small_heap` binary's `main`.
pub fn main_with_args() {
    match parse_args() {
        Ok(o) => print!("{}", report(&o)),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
