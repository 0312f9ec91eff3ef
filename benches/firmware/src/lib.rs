//! Shared glue of the firmware benchmark programs (`src/bin/*.rs`): one tiny Cortex-M4F
//! program per allocator, each with a 32 KiB static region as the heap of its
//! `#[global_allocator]`, plus `baseline` with no allocator at all.
//!
//! Every program runs [`workload!`] (push to a `Vec`, drop a `Box`). Built without the
//! `measure` feature the programs are footprint-only: `cargo xtask bench --firmware`
//! reads their section sizes with `llvm-size` and subtracts `baseline`. Built with
//! `measure`, the allocator programs then call [`measure::run`], which times 32-byte
//! alloc+free pairs with SysTick under QEMU's `-icount shift=0` (one instruction = 1 ns of
//! virtual time), counts the 32-byte objects that fit in the region, prints one line of
//! `key=value` over semihosting and exits.
#![no_std]

use core::mem::MaybeUninit;

// The vector table, reset handler and `link.x`; the single-core critical-section
// implementation (used by cpuheap's `CriticalSectionRawMutex` and embedded-alloc).
use cortex_m as _;
use cortex_m_rt as _;

/// Bytes of every allocator's heap region: 32 KiB, or 8 KiB in the thumbv6m build for the
/// micro:bit (16 KiB of RAM), which only measures instructions per pair.
#[cfg(target_has_atomic = "ptr")]
pub const REGION_BYTES: usize = 32 * 1024;
#[cfg(not(target_has_atomic = "ptr"))]
pub const REGION_BYTES: usize = 8 * 1024;

/// The heap region: 256-byte aligned (cpuheap's `Config::small()` page size), so no
/// allocator loses bytes to alignment.
#[repr(C, align(256))]
pub struct Region(pub [MaybeUninit<u8>; REGION_BYTES]);

impl Region {
    pub const fn new() -> Self {
        Region([MaybeUninit::uninit(); REGION_BYTES])
    }
}

impl Default for Region {
    fn default() -> Self {
        Self::new()
    }
}

/// The common workload: push some values to a `Vec`, drop a `Box`. Expands in the
/// program (which has `extern crate alloc`).
#[macro_export]
macro_rules! workload {
    () => {{
        use core::hint::black_box;
        let mut v: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
        for i in 0..black_box(16u32) {
            v.push(i);
        }
        black_box(&mut v);
        let b = alloc::boxed::Box::new(black_box([7u32; 8]));
        black_box(&b);
        drop(b);
        drop(v);
    }};
}

/// The end of every program: measure (in measurement mode), then sleep forever.
#[macro_export]
macro_rules! finish {
    ($heap:expr) => {{
        #[cfg(feature = "measure")]
        {
            $crate::measure::run($heap)
        }
        #[cfg(not(feature = "measure"))]
        {
            let _ = $heap;
            loop {
                cortex_m::asm::wfi();
            }
        }
    }};
}

#[cfg(not(feature = "measure"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[cfg(feature = "measure")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    measure::write("panic\n\0");
    measure::exit(false)
}

#[cfg(feature = "measure")]
pub mod measure {
    //! Instruction counts under `-icount shift=0`, read from SysTick.
    use core::alloc::{GlobalAlloc, Layout};
    use core::hint::black_box;
    use core::ptr;

    /// Timed pairs per run.
    pub const PAIRS: u32 = 200_000;
    /// Iterations of the two-instruction calibration loop.
    const CAL_ITERS: u32 = 5_000_000;

    const SYST_CSR: *mut u32 = 0xE000_E010 as *mut u32;
    const SYST_RVR: *mut u32 = 0xE000_E014 as *mut u32;
    const SYST_CVR: *mut u32 = 0xE000_E018 as *mut u32;

    fn semihost(op: u32, arg: usize) -> usize {
        let r: usize;
        // SAFETY: the ARM semihosting trap; QEMU runs with semihosting enabled.
        unsafe {
            core::arch::asm!("bkpt 0xAB", inout("r0") op as usize => r, in("r1") arg, options(nostack));
        }
        r
    }

    /// SYS_WRITE0 of a NUL-terminated string.
    pub fn write(s: &str) {
        semihost(0x04, s.as_ptr() as usize);
    }

    /// SYS_EXIT: status 0 (ADP_Stopped_ApplicationExit) or 1.
    pub fn exit(ok: bool) -> ! {
        let reason = if ok { 0x20026 } else { 0x20024 };
        loop {
            semihost(0x18, reason);
        }
    }

    fn write_kv(key: &str, v: u32) {
        let mut buf = [0u8; 48];
        let mut n = 0;
        for &b in key.as_bytes() {
            buf[n] = b;
            n += 1;
        }
        buf[n] = b'=';
        n += 1;
        let mut digits = [0u8; 10];
        let mut d = 0;
        let mut x = v;
        loop {
            digits[d] = b'0' + (x % 10) as u8;
            d += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        while d > 0 {
            d -= 1;
            buf[n] = digits[d];
            n += 1;
        }
        buf[n] = b' ';
        buf[n + 1] = 0;
        semihost(0x04, buf.as_ptr() as usize);
    }

    /// SysTick ticks (core clock) spent in `f`.
    fn ticks(f: impl FnOnce()) -> u32 {
        // SAFETY: SysTick's registers; nothing else uses SysTick in these programs.
        unsafe {
            ptr::write_volatile(SYST_CSR, 0);
            ptr::write_volatile(SYST_RVR, 0x00FF_FFFF);
            ptr::write_volatile(SYST_CVR, 0);
            ptr::write_volatile(SYST_CSR, 0b101); // enable, core clock, no interrupt
            let start = ptr::read_volatile(SYST_CVR);
            f();
            let end = ptr::read_volatile(SYST_CVR);
            ptr::write_volatile(SYST_CSR, 0);
            start.wrapping_sub(end) & 0x00FF_FFFF
        }
    }

    #[inline(never)]
    fn calibration(n: u32) {
        // SAFETY: a register-only countdown loop of exactly two instructions per iteration.
        unsafe {
            core::arch::asm!("2:", "subs {0}, #1", "bne 2b", inout(reg) n => _, options(nomem, nostack));
        }
    }

    #[inline(never)]
    fn empty(n: u32) {
        for _ in 0..n {
            black_box(ptr::null_mut::<u8>());
        }
    }

    #[inline(never)]
    fn pairs<A: GlobalAlloc>(heap: &A, n: u32) {
        let layout = Layout::new::<[u64; 4]>();
        for _ in 0..n {
            // SAFETY: nonzero size; freed at once with the same layout.
            unsafe {
                let p = black_box(heap.alloc(layout));
                heap.dealloc(p, layout);
            }
        }
    }

    /// Allocate 32-byte objects until the heap says no, then free them all: how many fit.
    fn fit<A: GlobalAlloc>(heap: &A) -> u32 {
        let layout = Layout::new::<[u64; 4]>();
        let mut head: *mut u8 = ptr::null_mut();
        let mut count = 0;
        loop {
            // SAFETY: nonzero size.
            let p = unsafe { heap.alloc(layout) };
            if p.is_null() || count == 4096 {
                break;
            }
            // SAFETY: ours, 32 bytes, 8-aligned: link it to the previous one.
            unsafe { (p as *mut *mut u8).write(head) };
            head = p;
            count += 1;
        }
        while !head.is_null() {
            // SAFETY: allocated above with `layout`; the first word holds the next link.
            unsafe {
                let next = (head as *mut *mut u8).read();
                heap.dealloc(head, layout);
                head = next;
            }
        }
        count
    }

    /// Measure, print `cal_insns=.. cal_ticks=.. pairs=.. empty_ticks=.. pair_ticks=..
    /// fit=..` and exit QEMU.
    pub fn run<A: GlobalAlloc>(heap: &A) -> ! {
        // Warm up (caches filled, first-use paths taken) and check that allocation works.
        let layout = Layout::new::<[u64; 4]>();
        // SAFETY: nonzero size; freed with the same layout.
        let p = unsafe { heap.alloc(layout) };
        if p.is_null() {
            write("alloc failed\n\0");
            exit(false);
        }
        // SAFETY: as above.
        unsafe { heap.dealloc(p, layout) };
        pairs(heap, 100);
        let cal = ticks(|| calibration(black_box(CAL_ITERS)));
        let e = ticks(|| empty(black_box(PAIRS)));
        let t = ticks(|| pairs(heap, black_box(PAIRS)));
        let f = fit(heap);
        // Everything fits again after the objects were freed.
        let f2 = fit(heap);
        write_kv("cal_insns", 2 * CAL_ITERS);
        write_kv("cal_ticks", cal);
        write_kv("pairs", PAIRS);
        write_kv("empty_ticks", e);
        write_kv("pair_ticks", t);
        write_kv("fit", f);
        write_kv("fit_again", f2);
        write("\n\0");
        exit(true)
    }
}
