//! The allocators under test, and the `with_alloc!` dispatch macro that instantiates a
//! workload once per concrete allocator type.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::iface::BenchAlloc;

/// Which heap an allocator is compared within.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    /// Process-wide desktop allocators (OS-backed).
    Desktop,
    /// One heap over one fixed region, behind a lock.
    BareMetal,
}

/// Every allocator the harness knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// cpuheap's desktop allocator (`StdHeap`, feature `std`).
    CpuheapStd,
    /// glibc malloc (std::alloc::System).
    Glibc,
    /// mimalloc.
    Mimalloc,
    /// tikv-jemallocator.
    Jemalloc,
    /// snmalloc-rs.
    Snmalloc,
    /// rpmalloc.
    Rpmalloc,
    /// cpuheap over a fixed region.
    CpuheapRegion,
    /// talc behind a spin lock.
    Talc,
    /// rlsf TLSF behind a spin lock.
    Rlsf,
    /// linked_list_allocator::LockedHeap.
    LinkedList,
    /// buddy_system_allocator::LockedHeap.
    Buddy,
}

impl Kind {
    /// All kinds, in table order.
    pub const ALL: [Kind; 11] = [
        Kind::CpuheapStd,
        Kind::Glibc,
        Kind::Mimalloc,
        Kind::Jemalloc,
        Kind::Snmalloc,
        Kind::Rpmalloc,
        Kind::CpuheapRegion,
        Kind::Talc,
        Kind::Rlsf,
        Kind::LinkedList,
        Kind::Buddy,
    ];

    /// Short name used in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CpuheapStd => "cpuheap",
            Kind::Glibc => "glibc",
            Kind::Mimalloc => "mimalloc",
            Kind::Jemalloc => "jemalloc",
            Kind::Snmalloc => "snmalloc",
            Kind::Rpmalloc => "rpmalloc",
            Kind::CpuheapRegion => "cpuheap-region",
            Kind::Talc => "talc",
            Kind::Rlsf => "rlsf",
            Kind::LinkedList => "linked_list",
            Kind::Buddy => "buddy",
        }
    }

    /// Parse a name from [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == s)
    }

    /// The comparison group.
    pub fn group(self) -> Group {
        match self {
            Kind::CpuheapStd
            | Kind::Glibc
            | Kind::Mimalloc
            | Kind::Jemalloc
            | Kind::Snmalloc
            | Kind::Rpmalloc => Group::Desktop,
            _ => Group::BareMetal,
        }
    }

    /// Whether this build of the harness has this allocator.
    pub fn available(self) -> bool {
        match self {
            Kind::CpuheapStd => cfg!(feature = "cpuheap-std"),
            Kind::CpuheapRegion => cfg!(feature = "cpuheap"),
            _ => true,
        }
    }

    /// Whether this is one of cpuheap's own flavours.
    pub fn is_cpuheap(self) -> bool {
        matches!(self, Kind::CpuheapStd | Kind::CpuheapRegion)
    }
}

/// Size of the fixed region each bare-metal heap gets.
pub const REGION_BYTES: usize = 64 << 20;

/// A page-aligned, pre-faulted buffer that bare-metal heaps are built over. Reused
/// between measurements (a fresh heap is built over it each time), so page faults
/// never land inside a timed section.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// Map (via the harness's own global allocator, glibc) and pre-fault `len` bytes.
    pub fn new(len: usize) -> Region {
        let layout = Layout::from_size_align(len, 1 << 21).unwrap();
        let ptr = unsafe { std::alloc::System.alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).expect("cannot allocate benchmark region");
        // alloc_zeroed may hand back untouched mmap pages: touch every page.
        for off in (0..len).step_by(4096) {
            unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        }
        Region { ptr, len }
    }
    /// Base pointer.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The region as the `&'static mut` slice that `add_region`-style APIs want.
    ///
    /// # Safety
    /// The caller must drop the heap built over it before the next call, and before
    /// the `Region` is dropped.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_static(&self) -> &'static mut [MaybeUninit<u8>] {
        core::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, 1 << 21).unwrap();
        unsafe { std::alloc::System.dealloc(self.ptr.as_ptr(), layout) }
    }
}

// ---------------------------------------------------------------------------
// Desktop peers: unit structs, process-global state.

/// rpmalloc needs explicit process and thread initialisation (the crate is built
/// without ENABLE_PRELOAD).
pub struct Rp;

unsafe impl BenchAlloc for Rp {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        rpmalloc::RpMalloc.alloc(layout)
    }
    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        rpmalloc::RpMalloc.dealloc(ptr, layout)
    }
    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        rpmalloc::RpMalloc.realloc(ptr, layout, new_size)
    }
    fn thread_start(&self, _slot: usize) {
        rp_init_process();
        unsafe { rpmalloc_sys::rpmalloc_thread_initialize() };
    }
    fn thread_end(&self) {
        unsafe { rpmalloc_sys::rpmalloc_thread_finalize() };
    }
}

/// Initialise rpmalloc once per process.
pub fn rp_init_process() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        rpmalloc_sys::rpmalloc_initialize();
    });
}

// ---------------------------------------------------------------------------
// Bare-metal peers: one heap over one fixed region, each behind its usual lock.

/// talc 5 behind a `spin` spin lock (`lock_api::RawMutex`).
pub type TalcHeap = talc::TalcLock<spin::mutex::SpinMutex<()>, talc::source::Claim>;

/// Build talc over `r`.
pub fn talc_over(r: &Region) -> TalcHeap {
    TalcHeap::new(unsafe { talc::source::Claim::new(r.ptr(), r.len()) })
}

/// rlsf's TLSF behind a spin lock (rlsf's `GlobalTlsf` is tied to its own OS source,
/// so the fixed-region form is `Tlsf` + a lock, as on bare metal).
pub struct RlsfHeap(spin::Mutex<rlsf::Tlsf<'static, u32, u32, 28, 32>>);

/// Build rlsf over `r`.
pub fn rlsf_over(r: &Region) -> RlsfHeap {
    let mut t = rlsf::Tlsf::new();
    let mut added = 0;
    // One insert may be capped by the largest block size TLSF can describe.
    while added < r.len() {
        let rest = NonNull::slice_from_raw_parts(
            NonNull::new(unsafe { r.ptr().add(added) }).unwrap(),
            r.len() - added,
        );
        match unsafe { t.insert_free_block_ptr(rest) } {
            Some(n) => added += n.get(),
            None => break,
        }
    }
    RlsfHeap(spin::Mutex::new(t))
}

unsafe impl GlobalAlloc for RlsfHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0
            .lock()
            .deallocate(NonNull::new_unchecked(ptr), layout.align())
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let nl = Layout::from_size_align_unchecked(new_size, layout.align());
        self.0
            .lock()
            .reallocate(NonNull::new_unchecked(ptr), nl)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
}

/// Build linked_list_allocator over `r` (its `LockedHeap` uses `spinning_top`).
pub fn lla_over(r: &Region) -> linked_list_allocator::LockedHeap {
    let h = linked_list_allocator::LockedHeap::empty();
    unsafe { h.lock().init(r.ptr(), r.len()) };
    h
}

/// buddy_system_allocator with 32 orders (blocks up to 2 GiB).
pub type BuddyHeap = buddy_system_allocator::LockedHeap<32>;

/// Build the buddy allocator over `r`.
pub fn buddy_over(r: &Region) -> BuddyHeap {
    let h = BuddyHeap::new();
    unsafe { h.lock().init(r.ptr() as usize, r.len()) };
    h
}

/// Instantiate `$body` with `$a: &impl BenchAlloc` bound to the allocator `$kind`.
/// Bare-metal allocators are built fresh over `$region` (a `&Region`).
#[macro_export]
macro_rules! with_alloc {
    ($kind:expr, $region:expr, |$a:ident| $body:expr) => {{
        use $crate::iface::Global;
        use $crate::peers::*;
        match $kind {
            Kind::Glibc => {
                let $a = &Global(std::alloc::System);
                $body
            }
            Kind::Mimalloc => {
                let $a = &Global(mimalloc::MiMalloc);
                $body
            }
            Kind::Jemalloc => {
                let $a = &Global(tikv_jemallocator::Jemalloc);
                $body
            }
            Kind::Snmalloc => {
                let $a = &Global(snmalloc_rs::SnMalloc);
                $body
            }
            Kind::Rpmalloc => {
                let $a = &Rp;
                $body
            }
            Kind::Talc => {
                let h = Global(talc_over($region));
                let $a = &h;
                $body
            }
            Kind::Rlsf => {
                let h = Global(rlsf_over($region));
                let $a = &h;
                $body
            }
            Kind::LinkedList => {
                let h = Global(lla_over($region));
                let $a = &h;
                $body
            }
            Kind::Buddy => {
                let h = Global(buddy_over($region));
                let $a = &h;
                $body
            }
            Kind::CpuheapStd | Kind::CpuheapRegion => {
                $crate::with_cpuheap!($kind, $region, |$a| $body)
            }
        }
    }};
}
