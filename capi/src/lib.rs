//! `libcpuheap.so`: cpuheap as the C allocator of any program, through `LD_PRELOAD`.
//!
//! One static heap serves `malloc` and its family. It is the heap of
//! [`cpuheap_core::StdHeap`] (same page source, platform and [`Config`]) with one change: its
//! central-cache and page-heap locks are [`ForkLock`]s, which remember themselves in a registry
//! so that a `pthread_atfork` handler can take every one of them before `fork()` and release
//! them afterwards in the parent and in the child.
//!
//! C's `free` has no size. The page map knows every object's size ([`Heap::usable_size`]),
//! and `Heap::deallocate` only consults the layout in the core's checked mode; we always
//! derive the layout from the object itself, so both modes work (see [`object_layout`]).
//!
//! Nothing here allocates, panics or needs a Rust thread or a thread-local destructor; an
//! `extern "C"` function that did panic would abort (Rust aborts on unwinding out of one).
//! See `capi/README.md` for the C semantics (`realloc(p, 0)`, `aligned_alloc`, ...).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::alloc::Layout;
use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write as _;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use cpuheap_core::{os_page_size, Config, StdHeap, YieldMutex};
use lock_api::RawMutex as _;

// ----- the heap -------------------------------------------------------------------------

/// [`StdHeap`] with fork-aware locks.
type CHeap = StdHeap<ForkLock>;

const CONFIG: Config = CHeap::CONFIG;
/// Largest object served from a size class.
const MAX_SMALL: usize = CONFIG.max_small;
/// The heap's page size: alignments above it are served by page spans.
const HEAP_PAGE: usize = CONFIG.page_size;

static HEAP: CHeap = StdHeap::with_lock();

/// The alignment every `malloc` result has: 16 bytes (`max_align_t` on x86_64 and aarch64)
/// for sizes above 8, 8 for smaller ones (no object of 8 bytes or less can need more).
#[inline(always)]
const fn min_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        16
    }
}

/// Allocate `size` bytes aligned to at least `align` (a power of two). Null on failure;
/// errno is left to the caller.
#[inline]
fn alloc_aligned(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let align = align.max(min_align(size));
    // An object aligned beyond the heap page is a page span. Make it longer than the largest
    // size class, so that its usable size alone tells it from a size-class object (which is
    // what `object_layout` relies on, for the checked mode's layout check).
    let size = if align > HEAP_PAGE && size <= MAX_SMALL {
        MAX_SMALL + 1
    } else {
        size
    };
    let Ok(layout) = Layout::from_size_align(size, align) else {
        return ptr::null_mut();
    };
    if zeroed {
        HEAP.allocate_zeroed(layout)
    } else {
        HEAP.allocate(layout)
    }
}

/// The layout `p` was (equivalently) allocated with: its usable size, alignment 1. For a
/// size-class object that names its class exactly; for a page span (always longer than
/// `MAX_SMALL`, see `alloc_aligned`) its page count. `None` if the heap holds no live
/// object at `p`.
#[inline]
fn object_layout(p: *const u8) -> Option<(Layout, usize)> {
    let usable = HEAP.usable_size(p)?;
    // SAFETY: alignment 1 is a power of two, and an object's usable size fits in `isize`.
    Some((
        unsafe { Layout::from_size_align_unchecked(usable, 1) },
        usable,
    ))
}

/// Free `p` (not null), which C code got from this heap.
///
/// # Safety
/// `p` must be a live allocation of this heap; a foreign or freed pointer is reported by the
/// heap's fatal hook (print and abort) where the page map can tell.
#[inline]
unsafe fn free_impl(p: *mut u8) {
    // A pointer the heap does not hold live gets some layout: `deallocate` then reports it.
    let layout = object_layout(p).map_or(Layout::new::<u8>(), |(l, _)| l);
    // SAFETY: the caller passes a live object of this heap; `layout` is its own.
    unsafe { HEAP.deallocate(p, layout) }
}

/// `realloc` without errno.
///
/// # Safety
/// `p` is null or a live allocation of this heap.
unsafe fn realloc_impl(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return alloc_aligned(n, 1, false);
    }
    let Some((layout, usable)) = object_layout(p) else {
        // Not a live object: `deallocate` reports it to the fatal hook, which prints and
        // aborts, so nothing is freed.
        // SAFETY: `free_impl` frees nothing for a pointer the heap does not hold live.
        unsafe { free_impl(p) };
        return ptr::null_mut();
    };
    if usable > MAX_SMALL && n > MAX_SMALL {
        // Page span to page span: the core grows or shrinks it in place when it can.
        // SAFETY: `p` is live with `layout`; `n <= isize::MAX` is checked by `reallocate`.
        return unsafe { HEAP.reallocate(p, layout, n) };
    }
    if n <= usable && (usable <= 16 || n > usable / 2) {
        // Fits, and wastes at most half: keep it (it is 16-aligned already if it must be).
        return p;
    }
    let q = alloc_aligned(n, 1, false);
    if !q.is_null() {
        // SAFETY: `p` holds `usable` bytes, `q` at least `n`; distinct live objects.
        unsafe {
            ptr::copy_nonoverlapping(p, q, usable.min(n));
            free_impl(p);
        }
    }
    q
}

// ----- errno ----------------------------------------------------------------------------

#[inline]
fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

#[inline]
fn enomem_if_null(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

// ----- the C ABI ------------------------------------------------------------------------

/// C `malloc`: 16-byte aligned (8 for sizes up to 8); `malloc(0)` is a unique pointer.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    enomem_if_null(alloc_aligned(size, 1, false))
}

/// C `free`; null does nothing.
///
/// # Safety
/// `p` is null or a live allocation of this heap.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: the caller's contract.
        unsafe { free_impl(p.cast()) }
    }
}

/// Old name of `free` (SunOS, some glibc versions).
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { free(p) }
}

/// C `calloc`: zeroed; `n * size` overflowing gives null and `ENOMEM`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(bytes) => enomem_if_null(alloc_aligned(bytes, 1, true)),
        None => enomem_if_null(ptr::null_mut()),
    }
}

/// C `realloc`. `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns
/// null, as glibc does. On failure: null, `ENOMEM`, `p` untouched.
///
/// # Safety
/// `p` is null or a live allocation of this heap.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    if n == 0 && !p.is_null() {
        // SAFETY: the caller's contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    // SAFETY: the caller's contract.
    enomem_if_null(unsafe { realloc_impl(p.cast(), n) })
}

/// `reallocarray` (BSD, glibc 2.26): `realloc(p, n * size)` with an overflow check
/// (null and `ENOMEM`, `p` untouched).
///
/// # Safety
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(bytes) => unsafe { realloc(p, bytes) },
        None => enomem_if_null(ptr::null_mut()),
    }
}

/// POSIX `posix_memalign`: `EINVAL` unless `align` is a power of two multiple of
/// `sizeof(void *)`, `ENOMEM` on failure; errno and `*out` untouched on failure.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = alloc_aligned(size, align, false);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { *out = p.cast() };
    0
}

/// C11 `aligned_alloc`: `align` must be a power of two (else null and `EINVAL`, as glibc
/// 2.38+). Any `size` is accepted (C17 dropped the multiple-of-`align` requirement; so does
/// glibc).
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    enomem_if_null(alloc_aligned(size, align, false))
}

/// Obsolete `memalign`: as glibc, an alignment that is not a power of two is rounded up to
/// one (0 means none); one too large to round is `EINVAL`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(1).checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    enomem_if_null(alloc_aligned(size, align, false))
}

/// Obsolete `valloc`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    enomem_if_null(alloc_aligned(size, os_page_size(), false))
}

/// Obsolete `pvalloc`: page-aligned, size rounded up to whole pages (0 → one page).
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = os_page_size();
    match size.max(1).checked_add(page - 1) {
        Some(s) => enomem_if_null(alloc_aligned(s & !(page - 1), page, false)),
        None => enomem_if_null(ptr::null_mut()),
    }
}

/// glibc `malloc_usable_size`: the object's whole size (its size class or its pages), at
/// least what was asked; 0 for null (and for a pointer the heap does not hold).
///
/// # Safety
/// `p` is null or a live allocation of this heap.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    HEAP.usable_size(p.cast()).unwrap_or(0)
}

// C++: libstdc++'s `operator new`/`delete` (sized, aligned or not) call `malloc`, `free` and
// `aligned_alloc`, so they reach this heap without entry points of their own; `new` keeps
// its `std::bad_alloc`.

// ----- statistics -----------------------------------------------------------------------

/// What [`cpuheap_stats`] fills in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuheapStats {
    /// Bytes allocated and not freed (object sizes).
    pub in_use_bytes: usize,
    /// Highest `in_use_bytes` seen (approximately, see the core's `Stats`).
    pub peak_in_use_bytes: usize,
    /// Successful allocations.
    pub allocs: usize,
    /// Frees.
    pub frees: usize,
    /// Bytes held from the operating system.
    pub source_bytes: usize,
}

/// Fill `*out` with the heap's statistics; returns 0 (or -1 for a null `out`). Programs can
/// look it up with `dlsym(RTLD_DEFAULT, "cpuheap_stats")` to see whether cpuheap serves them.
///
/// # Safety
/// `out` is null or valid for a write of a `CpuheapStats`.
#[no_mangle]
pub unsafe extern "C" fn cpuheap_stats(out: *mut CpuheapStats) -> c_int {
    if out.is_null() {
        return -1;
    }
    let s = HEAP.stats();
    let c = CpuheapStats {
        in_use_bytes: s.in_use_bytes,
        peak_in_use_bytes: s.peak_in_use_bytes,
        allocs: s.allocs,
        frees: s.frees,
        source_bytes: s.source_bytes,
    };
    // SAFETY: the caller's contract.
    unsafe { out.write(c) };
    0
}

/// A fixed buffer to format into without allocating.
struct Buf {
    b: [u8; 1024],
    n: usize,
}

impl core::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let s = s.as_bytes();
        let take = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + take].copy_from_slice(&s[..take]);
        self.n += take;
        if take == s.len() {
            Ok(())
        } else {
            Err(core::fmt::Error)
        }
    }
}

/// `$CPUHEAP_STATS`, copied at load time: a file that gets one line of statistics per
/// process at exit.
struct StatsPath {
    set: AtomicBool,
    path: core::cell::UnsafeCell<[u8; 256]>,
}
// SAFETY: `path` is written once, by the library constructor (before `set` is published with
// Release), and only read after `set` is seen with Acquire.
unsafe impl Sync for StatsPath {}

static STATS_PATH: StatsPath = StatsPath {
    set: AtomicBool::new(false),
    path: core::cell::UnsafeCell::new([0; 256]),
};

extern "C" fn on_exit_stats() {
    if !STATS_PATH.set.load(Ordering::Acquire) {
        return;
    }
    let s = HEAP.stats();
    let mut buf = Buf { b: [0; 1024], n: 0 };
    // SAFETY: `getpid` has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = writeln!(
        buf,
        "cpuheap pid={} allocs={} frees={} in_use_bytes={} peak_in_use_bytes={} source_bytes={} slot_fallbacks={} \
         cpu_cache_bytes={} central_cache_bytes={} transfer_cache_bytes={} span_bytes={} \
         page_heap_free_bytes={} page_heap_idle_bytes={} discarded_bytes={} metadata_bytes={}",
        pid,
        s.allocs,
        s.frees,
        s.in_use_bytes,
        s.peak_in_use_bytes,
        s.source_bytes,
        s.slot_fallbacks,
        s.cpu_cache_bytes,
        s.central_cache_bytes,
        s.transfer_cache_bytes,
        s.span_bytes,
        s.page_heap_free_bytes,
        s.page_heap_idle_bytes,
        s.discarded_bytes,
        s.metadata_bytes
    );
    // SAFETY: the path is a NUL-terminated copy made by the constructor (see `StatsPath`);
    // `open`, `write` and `close` get valid arguments.
    unsafe {
        let path = (*STATS_PATH.path.get()).as_ptr().cast::<c_char>();
        let fd = libc::open(
            path,
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        if fd >= 0 {
            let _ = libc::write(fd, buf.b.as_ptr().cast(), buf.n);
            libc::close(fd);
        }
    }
}

// ----- fork -----------------------------------------------------------------------------

/// The central-cache and page-heap lock of the C heap: [`YieldMutex`]'s spin-then-yield lock
/// that also enters itself in a registry the first time it is locked, so that `fork()` can
/// take every lock of the heap. Only instances inside the `static` heap exist.
///
/// [`YieldMutex`]: cpuheap_core::YieldMutex
pub struct ForkLock {
    inner: YieldMutex,
    registered: AtomicBool,
}

/// More than the heap's locks (one per size class and the page heap).
const MAX_LOCKS: usize = 256;
static REGISTRY: [AtomicPtr<ForkLock>; MAX_LOCKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_LOCKS];
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
/// Guards the registry; held by a fork from `prepare` to `parent`/`child`.
static REGISTRY_LOCK: YieldMutex = YieldMutex::INIT;

impl ForkLock {
    #[cold]
    fn register(&self) {
        REGISTRY_LOCK.lock();
        if !self.registered.load(Ordering::Relaxed) {
            let n = REGISTERED.load(Ordering::Relaxed);
            if n == MAX_LOCKS {
                // SAFETY: `abort` has no preconditions.
                unsafe { libc::abort() };
            }
            REGISTRY[n].store(self as *const Self as *mut Self, Ordering::Relaxed);
            REGISTERED.store(n + 1, Ordering::Release);
            self.registered.store(true, Ordering::Release);
        }
        // SAFETY: locked above by this thread.
        unsafe { REGISTRY_LOCK.unlock() };
    }

    #[inline(always)]
    fn ensure_registered(&self) {
        if !self.registered.load(Ordering::Acquire) {
            self.register();
        }
    }
}

// SAFETY: mutual exclusion is `YieldMutex`'s; registering first changes nothing about it.
unsafe impl lock_api::RawMutex for ForkLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        inner: YieldMutex::INIT,
        registered: AtomicBool::new(false),
    };
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        self.ensure_registered();
        self.inner.lock();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.ensure_registered();
        self.inner.try_lock()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock.
        unsafe { self.inner.unlock() };
    }
}

/// The registered lock `i` (`i < REGISTERED`).
fn registered(i: usize) -> &'static ForkLock {
    // SAFETY: entries below `REGISTERED` point at locks inside the `static` heap.
    unsafe { &*REGISTRY[i].load(Ordering::Relaxed) }
}

/// Before `fork()`: take the registry lock (no lock can register meanwhile), then every
/// registered lock. Lock order is central → page heap, and we do not know which entry is
/// which, so a lock that stays busy makes us let go of all and start again rather than wait
/// while holding some (its holder may be waiting for one of ours).
extern "C" fn fork_prepare() {
    REGISTRY_LOCK.lock();
    let n = REGISTERED.load(Ordering::Acquire);
    'again: loop {
        for i in 0..n {
            let l = registered(i);
            let mut tries = 0u32;
            while !l.inner.try_lock() {
                tries += 1;
                if tries > 1000 {
                    for j in 0..i {
                        // SAFETY: taken above in this loop, by this thread.
                        unsafe { registered(j).inner.unlock() };
                    }
                    // SAFETY: `sched_yield` has no preconditions.
                    unsafe { libc::sched_yield() };
                    continue 'again;
                }
                if tries > 100 {
                    // SAFETY: `sched_yield` has no preconditions.
                    unsafe { libc::sched_yield() };
                } else {
                    core::hint::spin_loop();
                }
            }
        }
        return;
    }
}

/// After `fork()`, in the parent and in the child: release what `fork_prepare` took. In the
/// child, the heap is then consistent: no lock was held mid-update by a thread that the child
/// does not have. (A CPU slot such a thread held stays busy in the child: its operations fall
/// back to the central cache, which is correct.)
extern "C" fn fork_release() {
    let n = REGISTERED.load(Ordering::Acquire);
    for i in 0..n {
        // SAFETY: `fork_prepare` took every registered lock and the registry lock; this runs
        // once after it, in the parent or in the child (a copy of the thread that took them).
        unsafe { registered(i).inner.unlock() };
    }
    // SAFETY: as above.
    unsafe { REGISTRY_LOCK.unlock() };
}

/// After `fork()`, in the child: the forking thread is the only one left, so the thread slot
/// indices of the others are free again; then release the locks as in the parent.
extern "C" fn fork_child() {
    cpuheap_core::ThreadSlot::after_fork_in_child();
    fork_release();
}

// ----- load-time setup ------------------------------------------------------------------

extern "C" fn on_load() {
    // SAFETY: `pthread_atfork` gets three valid handlers.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_release), Some(fork_child)) };
    // SAFETY: `getenv` gets a NUL-terminated name; the constructor runs before `main`, with no
    // other thread of the program reading `STATS_PATH` yet (`set` is still false).
    unsafe {
        let v = libc::getenv(c"CPUHEAP_STATS".as_ptr());
        if !v.is_null() {
            let len = libc::strlen(v);
            let dst = &mut *STATS_PATH.path.get();
            if len > 0 && len < dst.len() {
                ptr::copy_nonoverlapping(v.cast::<u8>(), dst.as_mut_ptr(), len);
                dst[len] = 0;
                STATS_PATH.set.store(true, Ordering::Release);
            }
        }
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

#[used]
#[link_section = ".fini_array"]
static ON_EXIT: extern "C" fn() = on_exit_stats;
