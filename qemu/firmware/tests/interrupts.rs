//! Allocation from an interrupt handler while the main loop allocates.
//!
//! SysTick fires every few thousand cycles and allocates and frees inside the handler; the
//! main loop allocates and frees without pause. The heap's central cache and page heap
//! locks mask interrupts (`CriticalSectionRawMutex`), so the handler never lands inside
//! them; it may land while the main loop holds its CPU slot (a try-lock), in which case the
//! handler's operations go to the central cache (`slot_fallbacks`). No deadlock (a
//! deadlock would hang and be killed by the runner's deadline), no corruption (every block
//! carries a pattern that is checked before it is freed), and the heap's invariants hold.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m_rt::exception;
use cpuheap_qemu_firmware::{Rng, HEAP};

static TICKS: AtomicU32 = AtomicU32::new(0);
static IRQ_ALLOCS: AtomicU32 = AtomicU32::new(0);
static IRQ_NULLS: AtomicU32 = AtomicU32::new(0);
static IRQ_CORRUPT: AtomicU32 = AtomicU32::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static RELEASED: AtomicBool = AtomicBool::new(false);

const IRQ_SLOTS: usize = 8;

/// Single-core: only this handler writes these counters, so load + store is enough (and
/// works on thumbv6m, which has no atomic read-modify-write).
fn bump(c: &AtomicU32) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

#[exception]
fn SysTick() {
    static mut HELD: [(usize, usize); IRQ_SLOTS] = [(0, 0); IRQ_SLOTS];
    static mut RNG: Rng = Rng::new(0x9e37_79b9);
    let tick = TICKS.load(Ordering::Relaxed);
    bump(&TICKS);
    let held: &mut [(usize, usize); IRQ_SLOTS] = HELD;
    if STOP.load(Ordering::Acquire) {
        for (p, size) in held.iter_mut() {
            if *p != 0 {
                // SAFETY: allocated below with this layout.
                unsafe { HEAP.dealloc(*p as *mut u8, Layout::from_size_align(*size, 4).unwrap()) };
                *p = 0;
            }
        }
        RELEASED.store(true, Ordering::Release);
        return;
    }
    let i = tick as usize % IRQ_SLOTS;
    let (p, size) = held[i];
    if p != 0 {
        // SAFETY: the block is ours; check the pattern written when it was allocated.
        unsafe {
            let tag = *(p as *const u8);
            if !core::slice::from_raw_parts(p as *const u8, size).iter().all(|&b| b == tag) {
                bump(&IRQ_CORRUPT);
            }
            HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 4).unwrap());
        }
        held[i] = (0, 0);
    }
    let size = 1 + RNG.below(if cpuheap_qemu_firmware::HEAP_BYTES < 16 * 1024 { 48 } else { 160 }) as usize;
    // SAFETY: nonzero size.
    let q = unsafe { HEAP.alloc(Layout::from_size_align(size, 4).unwrap()) };
    if q.is_null() {
        bump(&IRQ_NULLS);
    } else {
        // SAFETY: the block is ours.
        unsafe { q.write_bytes(tick as u8, size) };
        held[i] = (q as usize, size);
        bump(&IRQ_ALLOCS);
    }
    // And a short-lived Box through the global allocator (when there is room: a Box that
    // cannot be allocated would end the test through `handle_alloc_error`).
    let layout = Layout::new::<[u32; 3]>();
    // SAFETY: nonzero size; freed right below.
    let probe = unsafe { HEAP.alloc(layout) };
    if !probe.is_null() {
        // SAFETY: freshly allocated, no other owner; Box frees it with the same layout.
        let mut b = unsafe { Box::from_raw(probe as *mut [u32; 3]) };
        *b = [tick; 3];
        if black_box(&b)[2] != tick {
            bump(&IRQ_CORRUPT);
        }
    }
}

#[embedded_test::tests(default_timeout = 60)]
mod tests {
    use super::*;
    use cortex_m::peripheral::syst::SystClkSource;
    use cpuheap_qemu_firmware::{init_heap, println, HEAP_BYTES};

    #[init]
    fn init() {
        init_heap();
    }

    #[test]
    fn allocate_in_systick_while_main_allocates() {
        let small = HEAP_BYTES < 16 * 1024;
        let (slots, max_size, want_ticks) = if small { (10, 96, 300) } else { (48, 700, 1000) };
        let mut core = cortex_m::Peripherals::take().unwrap();
        core.SYST.set_clock_source(SystClkSource::Core);
        core.SYST.set_reload(3_000);
        core.SYST.clear_current();
        core.SYST.enable_interrupt();
        core.SYST.enable_counter();

        let mut rng = Rng::new(0x1234_5677);
        let mut held: Vec<(usize, usize)> = Vec::with_capacity(slots);
        held.resize(slots, (0, 0));
        let mut iterations = 0u32;
        let mut nulls = 0u32;
        while (TICKS.load(Ordering::Relaxed) < want_ticks || iterations < 5_000) && iterations < 2_000_000 {
            iterations += 1;
            let i = rng.below(slots as u64) as usize;
            let (p, size) = held[i];
            if p != 0 {
                // SAFETY: ours; check the pattern before freeing.
                unsafe {
                    let ok = core::slice::from_raw_parts(p as *const u8, size).iter().all(|&b| b == i as u8);
                    assert!(ok, "main-loop block {i} ({size} bytes at {p:#x}) corrupted");
                    HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap());
                }
                held[i] = (0, 0);
            }
            let size = 1 + rng.below(max_size) as usize;
            // SAFETY: nonzero size.
            let q = unsafe { HEAP.alloc(Layout::from_size_align(size, 8).unwrap()) };
            if q.is_null() {
                nulls += 1;
                continue;
            }
            // SAFETY: ours.
            unsafe { q.write_bytes(i as u8, size) };
            held[i] = (black_box(q) as usize, size);
        }
        core.SYST.disable_interrupt();
        core.SYST.disable_counter();

        // Let the handler give back what it holds, then free ours.
        STOP.store(true, Ordering::Release);
        cortex_m::peripheral::SCB::set_pendst();
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        assert!(RELEASED.load(Ordering::Acquire), "pended SysTick did not run");
        for (i, &(p, size)) in held.iter().enumerate() {
            if p != 0 {
                // SAFETY: ours.
                unsafe {
                    assert!(core::slice::from_raw_parts(p as *const u8, size).iter().all(|&b| b == i as u8));
                    HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap());
                }
            }
        }
        drop(held);

        let st = HEAP.stats();
        let ticks = TICKS.load(Ordering::Relaxed);
        println!(
            "main iterations {iterations} (null {nulls}), SysTick {ticks} (allocs {}, null {}), slot fallbacks {}",
            IRQ_ALLOCS.load(Ordering::Relaxed),
            IRQ_NULLS.load(Ordering::Relaxed),
            st.slot_fallbacks
        );
        assert_eq!(IRQ_CORRUPT.load(Ordering::Relaxed), 0, "handler saw corrupted blocks");
        // The handler did land while the main loop was inside the heap holding its CPU slot
        // (and went to the central cache instead): the case this test is about.
        assert!(st.slot_fallbacks > 0, "no SysTick ever interrupted an allocation");
        assert!(ticks >= want_ticks, "only {ticks} SysTicks in {iterations} iterations");
        assert!(IRQ_ALLOCS.load(Ordering::Relaxed) >= want_ticks / 2, "handler allocations failed");
        if let Err(e) = HEAP.check_invariants() {
            panic!("{}", e);
        }
        assert_eq!(st.in_use_bytes, 0, "leak after the run");
        assert_eq!(st.allocs, st.frees, "allocs and frees balance");
    }
}
