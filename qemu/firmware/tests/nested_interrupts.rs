//! Nested interrupts that both allocate: SysTick at a low priority and the CMSDK APB timer 0
//! (IRQ 8 on QEMU's mps2-an385 / mps2-an386) at a high priority, while `main` churns.
//!
//! The timer fires on its own period and, on top of that, SysTick's handler pends it in
//! the middle of its own work (between an allocation and the pattern check of another
//! block), so the high-priority handler deterministically preempts the low-priority one
//! while SysTick holds live blocks, and often while `main` is inside the heap. All three
//! contexts write a pattern into every block and check it before freeing. At the end the
//! handlers give back what they hold, and the heap must be empty (`in_use_bytes == 0`,
//! `allocs == frees`) with its invariants intact.
//!
//! The microbit (nRF51, Cortex-M0) has no CMSDK timer; its TIMER0 is a different device.
//! The test is built there only as an ignored stand-in (see the bottom of the file).
#![no_std]
#![no_main]

#[cfg(not(board = "microbit"))]
extern crate alloc;

#[cfg(not(board = "microbit"))]
mod nested {
    use core::alloc::{GlobalAlloc, Layout};
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use cortex_m::interrupt::InterruptNumber;
    use cortex_m_rt::exception;
    use cpuheap_qemu_firmware::{Rng, HEAP};

    /// CMSDK APB timer 0: base address and IRQ number on mps2-an385/an386.
    const TIMER0: usize = 0x4000_0000;
    const TIMER0_IRQ: u16 = 8;
    const CTRL: usize = 0x00;
    const RELOAD: usize = 0x08;
    const INTCLEAR: usize = 0x0C;

    #[derive(Clone, Copy)]
    pub struct Irq(pub u16);
    // SAFETY: 8 is a valid external interrupt number on these boards.
    unsafe impl InterruptNumber for Irq {
        fn number(self) -> u16 {
            self.0
        }
    }
    pub const TIMER_IRQ: Irq = Irq(TIMER0_IRQ);

    fn timer_write(off: usize, v: u32) {
        // SAFETY: a CMSDK APB timer register on these boards.
        unsafe { core::ptr::write_volatile((TIMER0 + off) as *mut u32, v) }
    }

    /// Start timer 0: reload value `reload` (25 MHz pclk), interrupt enabled.
    pub fn timer_start(reload: u32) {
        timer_write(CTRL, 0);
        timer_write(RELOAD, reload);
        timer_write(0x04, reload); // VALUE
        timer_write(INTCLEAR, 1);
        timer_write(CTRL, 0b1001); // enable, interrupt enable
    }

    pub fn timer_stop() {
        timer_write(CTRL, 0);
        timer_write(INTCLEAR, 1);
    }

    /// Counters of one handler (only that handler writes them: load + store suffices).
    pub struct Counters {
        pub runs: AtomicU32,
        pub allocs: AtomicU32,
        pub nulls: AtomicU32,
        pub corrupt: AtomicU32,
        pub released: AtomicBool,
    }

    impl Counters {
        const fn new() -> Self {
            Counters {
                runs: AtomicU32::new(0),
                allocs: AtomicU32::new(0),
                nulls: AtomicU32::new(0),
                corrupt: AtomicU32::new(0),
                released: AtomicBool::new(false),
            }
        }
    }

    fn bump(c: &AtomicU32) {
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub static LOW: Counters = Counters::new();
    pub static HIGH: Counters = Counters::new();
    pub static STOP: AtomicBool = AtomicBool::new(false);
    /// SysTick is between its allocation and its check: the timer handler counts how often
    /// it ran inside that window.
    pub static IN_LOW: AtomicBool = AtomicBool::new(false);
    pub static NESTED: AtomicU32 = AtomicU32::new(0);

    const SLOTS: usize = 8;

    /// The blocks one handler holds: (address, size, tag).
    pub struct Held {
        blocks: [(usize, usize, u8); SLOTS],
        rng: Rng,
    }

    impl Held {
        pub const fn new(seed: u32) -> Self {
            Held {
                blocks: [(0, 0, 0); SLOTS],
                rng: Rng::new(seed as u64),
            }
        }

        fn layout(size: usize) -> Layout {
            Layout::from_size_align(size, 4).unwrap()
        }

        /// Check and free slot `i`.
        fn free(&mut self, i: usize, c: &Counters) {
            let (p, size, tag) = self.blocks[i];
            if p == 0 {
                return;
            }
            // SAFETY: allocated by `alloc` below with this size; nobody else has it.
            unsafe {
                if !core::slice::from_raw_parts(p as *const u8, size)
                    .iter()
                    .all(|&b| b == tag)
                {
                    bump(&c.corrupt);
                }
                HEAP.dealloc(p as *mut u8, Self::layout(size));
            }
            self.blocks[i] = (0, 0, 0);
        }

        /// Allocate into slot `i` (which must be empty) and fill it with `tag`.
        fn alloc(&mut self, i: usize, max: u32, tag: u8, c: &Counters) {
            let size = 1 + self.rng.below(max as u64) as usize;
            // SAFETY: nonzero size.
            let p = unsafe { HEAP.alloc(Self::layout(size)) };
            if p.is_null() {
                bump(&c.nulls);
                return;
            }
            // SAFETY: ours.
            unsafe { p.write_bytes(tag, size) };
            self.blocks[i] = (p as usize, size, tag);
            bump(&c.allocs);
        }

        pub fn release(&mut self, c: &Counters) {
            for i in 0..SLOTS {
                self.free(i, c);
            }
            c.released.store(true, Ordering::Release);
        }
    }

    #[exception]
    fn SysTick() {
        static mut HELD: Held = Held::new(0x9e37_79b9);
        let held: &mut Held = HELD;
        let run = LOW.runs.load(Ordering::Relaxed);
        bump(&LOW.runs);
        if STOP.load(Ordering::Acquire) {
            held.release(&LOW);
            return;
        }
        let i = run as usize % SLOTS;
        held.free(i, &LOW);
        held.alloc(i, 200, 0x40 | (run as u8 & 0x3f), &LOW);
        // Preempted right here: the high-priority handler runs before the next line.
        IN_LOW.store(true, Ordering::Release);
        cortex_m::peripheral::NVIC::pend(TIMER_IRQ);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        // A few more operations with the timer free to fire again.
        let j = (i + SLOTS / 2) % SLOTS;
        held.free(j, &LOW);
        held.alloc(j, 120, 0x80 | (run as u8 & 0x3f), &LOW);
        IN_LOW.store(false, Ordering::Release);
    }

    #[exception]
    unsafe fn DefaultHandler(irqn: i16) {
        static mut HELD: Held = Held::new(0x1357_9bdf);
        if irqn != TIMER0_IRQ as i16 {
            panic!("unexpected exception or interrupt {irqn}");
        }
        timer_write(INTCLEAR, 1);
        // SAFETY: only this handler (which does not nest with itself) touches HELD.
        let held: &mut Held = unsafe { &mut *core::ptr::addr_of_mut!(HELD) };
        let run = HIGH.runs.load(Ordering::Relaxed);
        bump(&HIGH.runs);
        if IN_LOW.load(Ordering::Acquire) {
            bump(&NESTED);
        }
        if STOP.load(Ordering::Acquire) {
            held.release(&HIGH);
            return;
        }
        let i = run as usize % SLOTS;
        held.free(i, &HIGH);
        held.alloc(i, 96, run as u8 & 0x3f, &HIGH);
        // And a short-lived one.
        let k = (i + 1) % SLOTS;
        held.free(k, &HIGH);
        held.alloc(k, 32, 0xc0 | (run as u8 & 0x3f), &HIGH);
    }
}

#[cfg(not(board = "microbit"))]
#[embedded_test::tests(default_timeout = 60)]
mod tests {
    use super::nested::*;
    use alloc::vec::Vec;
    use core::alloc::{GlobalAlloc, Layout};
    use core::hint::black_box;
    use core::sync::atomic::Ordering;
    use cortex_m::peripheral::scb::SystemHandler;
    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::NVIC;
    use cpuheap_qemu_firmware::{init_heap, println, Rng, HEAP};

    #[init]
    fn init() {
        init_heap();
    }

    #[test]
    fn high_priority_timer_preempts_allocating_systick() {
        let want_low = 400;
        let mut core = cortex_m::Peripherals::take().unwrap();
        // SAFETY: no priority-based critical sections in this program (the heap masks all
        // interrupts with PRIMASK).
        unsafe {
            core.SCB.set_priority(SystemHandler::SysTick, 0xc0);
            core.NVIC.set_priority(TIMER_IRQ, 0x40);
            NVIC::unmask(TIMER_IRQ);
        }
        timer_start(2_111);
        core.SYST.set_clock_source(SystClkSource::Core);
        core.SYST.set_reload(5_000);
        core.SYST.clear_current();
        core.SYST.enable_interrupt();
        core.SYST.enable_counter();

        let slots = 48;
        let mut rng = Rng::new(0x2468_ace1);
        let mut held: Vec<(usize, usize)> = Vec::with_capacity(slots);
        held.resize(slots, (0, 0));
        let mut iterations = 0u32;
        while (LOW.runs.load(Ordering::Relaxed) < want_low || iterations < 5_000)
            && iterations < 3_000_000
        {
            iterations += 1;
            let i = rng.below(slots as u64) as usize;
            let (p, size) = held[i];
            if p != 0 {
                // SAFETY: ours; check the pattern before freeing.
                unsafe {
                    let ok = core::slice::from_raw_parts(p as *const u8, size)
                        .iter()
                        .all(|&b| b == i as u8);
                    assert!(ok, "main-loop block {i} ({size} bytes at {p:#x}) corrupted");
                    HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap());
                }
                held[i] = (0, 0);
            }
            let size = 1 + rng.below(600) as usize;
            // SAFETY: nonzero size.
            let q = unsafe { HEAP.alloc(Layout::from_size_align(size, 8).unwrap()) };
            if q.is_null() {
                continue;
            }
            // SAFETY: ours.
            unsafe { q.write_bytes(i as u8, size) };
            held[i] = (black_box(q) as usize, size);
        }
        core.SYST.disable_interrupt();
        core.SYST.disable_counter();
        timer_stop();

        // Both handlers give back what they hold (pended by hand, both still unmasked).
        STOP.store(true, Ordering::Release);
        cortex_m::peripheral::SCB::set_pendst();
        NVIC::pend(TIMER_IRQ);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        assert!(
            LOW.released.load(Ordering::Acquire),
            "pended SysTick did not run"
        );
        assert!(
            HIGH.released.load(Ordering::Acquire),
            "pended timer IRQ did not run"
        );
        NVIC::mask(TIMER_IRQ);
        for (i, &(p, size)) in held.iter().enumerate() {
            if p != 0 {
                // SAFETY: ours.
                unsafe {
                    assert!(core::slice::from_raw_parts(p as *const u8, size)
                        .iter()
                        .all(|&b| b == i as u8));
                    HEAP.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap());
                }
            }
        }
        drop(held);

        let st = HEAP.stats();
        let (low, high, nested) = (
            LOW.runs.load(Ordering::Relaxed),
            HIGH.runs.load(Ordering::Relaxed),
            NESTED.load(Ordering::Relaxed),
        );
        println!(
            "main iterations {iterations}; SysTick {low} runs ({} allocs, {} null); timer {high} runs \
             ({} allocs, {} null), {nested} inside SysTick; slot fallbacks {}",
            LOW.allocs.load(Ordering::Relaxed),
            LOW.nulls.load(Ordering::Relaxed),
            HIGH.allocs.load(Ordering::Relaxed),
            HIGH.nulls.load(Ordering::Relaxed),
            st.slot_fallbacks
        );
        assert_eq!(
            LOW.corrupt.load(Ordering::Relaxed),
            0,
            "SysTick saw corrupted blocks"
        );
        assert_eq!(
            HIGH.corrupt.load(Ordering::Relaxed),
            0,
            "timer handler saw corrupted blocks"
        );
        assert!(
            low >= want_low,
            "only {low} SysTicks in {iterations} iterations"
        );
        // Every SysTick (but the last, releasing one) pended the timer from its body.
        assert!(
            nested >= low - 1,
            "the timer preempted SysTick only {nested} times"
        );
        assert!(high > nested, "the timer never fired on its own");
        assert!(
            LOW.allocs.load(Ordering::Relaxed) >= low,
            "SysTick allocations failed"
        );
        assert!(
            HIGH.allocs.load(Ordering::Relaxed) >= high,
            "timer allocations failed"
        );
        assert!(
            st.slot_fallbacks > 0,
            "no handler ever found the CPU slot busy"
        );
        if let Err(e) = HEAP.check_invariants() {
            panic!("{}", e);
        }
        assert_eq!(st.in_use_bytes, 0, "leak after the run");
        assert_eq!(st.allocs, st.frees, "allocs and frees balance");
    }
}

/// The microbit's nRF51 has no CMSDK APB timer (QEMU models its own TIMER0..2), so the
/// nested-interrupt test is not built for it; this stand-in shows up as `ignored`.
#[cfg(board = "microbit")]
#[embedded_test::tests]
mod tests {
    use cpuheap_qemu_firmware as _;

    #[test]
    #[ignore]
    fn high_priority_timer_preempts_allocating_systick() {}
}
