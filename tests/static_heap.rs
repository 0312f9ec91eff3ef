//! A firmware heap is all zero bytes: a `static` `Heap` over a static region with
//! `Config::small()`, a zero-sized platform and one of this crate's locks holds nothing but
//! zeros, so the linker places it in `.bss` (RAM only, no initial image in flash).
//!
//! Checked by where the linker put it: between `__bss_start` and `_end`, which GNU ld and
//! lld define for Linux executables. The same check for a heap built with `Config::new()`
//! (non-zero settings) must find it outside `.bss`, which shows that the check can fail.
//! `cargo xtask flash-budget` checks the firmware program itself (thumbv7em: `.data` 0,
//! `HEAP` in `.bss`).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

use cpuheap::{
    Config, DefaultFatal, DefaultRawMutex, FatalHook, Fault, Heap, SingleCore, SingleCpu,
    StaticRegion,
};

extern "C" {
    static __bss_start: u8;
    static _end: u8;
}

fn in_bss<T>(value: &'static T) -> bool {
    let start = core::ptr::addr_of!(__bss_start) as usize;
    let end = core::ptr::addr_of!(_end) as usize;
    let at = black_box(value) as *const T as usize;
    (start..end).contains(&at) && at + std::mem::size_of::<T>() <= end
}

struct Hook;
impl FatalHook for Hook {
    fn fatal(&self, fault: &Fault) -> ! {
        panic!("{}", fault)
    }
}

/// README's firmware heap, with the spin lock (the host has no `critical-section` impl).
static FIRMWARE: Heap<StaticRegion<1>, SingleCore<Hook>, DefaultRawMutex, 1> = Heap::new(
    StaticRegion::new(),
    // SAFETY: only this test's thread uses the heap.
    unsafe { SingleCore::with_fatal_hook(Hook) },
    Config::small(),
);

static DEFAULT_HOOK: Heap<StaticRegion<2>, SingleCpu<DefaultFatal>> =
    Heap::new(StaticRegion::new(), SingleCpu::new(), Config::small());

static NEW_CONFIG: Heap<StaticRegion<1>> =
    Heap::new(StaticRegion::new(), SingleCpu::new(), Config::new());

static FN_HOOK: Heap<StaticRegion<1>, SingleCpu<fn(&Fault) -> !>> = Heap::new(
    StaticRegion::new(),
    SingleCpu::with_fatal_hook(hook_fn),
    Config::small(),
);

fn hook_fn(fault: &Fault) -> ! {
    panic!("{}", fault)
}

/// What `init_region!` declares.
static BUFFER: cpuheap::__private::ConstStaticCell<cpuheap::__private::RegionMemory<4096>> =
    cpuheap::__private::ConstStaticCell::new(cpuheap::__private::RegionMemory::new());

#[test]
fn small_config_heaps_are_bss() {
    assert!(in_bss(&FIRMWARE), "the README's firmware heap is .bss");
    assert!(
        in_bss(&DEFAULT_HOOK),
        "SingleCpu with the default hook is .bss"
    );
    assert!(in_bss(&BUFFER), "init_region!'s buffer is .bss");
}

#[cfg(feature = "critical-section")]
#[test]
fn the_interrupt_masking_lock_starts_at_zero() {
    static CS: Heap<StaticRegion<1>, SingleCore<Hook>, cpuheap::CriticalSectionRawMutex, 1> =
        Heap::new(
            StaticRegion::new(),
            // SAFETY: only this test's thread uses the heap.
            unsafe { SingleCore::with_fatal_hook(Hook) },
            Config::small(),
        );
    assert!(in_bss(&CS));
}

#[test]
fn non_zero_settings_or_a_stored_hook_are_data() {
    assert!(
        !in_bss(&NEW_CONFIG),
        "Config::new() differs from small(): .data"
    );
    assert!(
        !in_bss(&FN_HOOK),
        "a function-pointer hook is stored: .data"
    );
}

#[test]
fn a_zero_heap_works_and_reports_its_config() {
    assert_eq!(FIRMWARE.config(), Config::small());
    assert_eq!(NEW_CONFIG.config(), Config::new());
    let custom = Config::small()
        .with_page_size(1024)
        .with_cpu_cache_bytes(4096)
        .with_batch_bytes(512)
        .with_min_span_bytes(2048)
        .with_grow_bytes(8192);
    let h: Heap<StaticRegion<1>> = Heap::new(StaticRegion::new(), SingleCpu::new(), custom);
    assert_eq!(h.config(), custom, "every setting reads back");
    assert!(cpuheap::init_region!(FIRMWARE, 16 * 1024));
    let l = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: nonzero size; freed with the same layout.
    unsafe {
        let p = FIRMWARE.alloc(l);
        assert!(!p.is_null());
        FIRMWARE.dealloc(p, l);
    }
    FIRMWARE.check_invariants().unwrap();
}
