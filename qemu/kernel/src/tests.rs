//! The SMP scenarios. Every hart runs `run_all`; each scenario ends with a barrier and
//! hart 0 prints its verdict line.
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::Barrier;
use crate::{println, HARTS};

static BARRIER: Barrier = Barrier::new();
static FAILED: AtomicUsize = AtomicUsize::new(0);
static SCENARIO_FAILS: AtomicUsize = AtomicUsize::new(0);

fn sync() {
    BARRIER.wait(HARTS);
}

/// Record a failed check from any hart.
pub fn fail(hart: usize, what: core::fmt::Arguments<'_>) {
    println!("  hart {hart}: check failed: {what}");
    SCENARIO_FAILS.fetch_add(1, Ordering::Relaxed);
}

macro_rules! check {
    ($hart:expr, $cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::tests::fail($hart, format_args!($($arg)*));
        }
    };
}
#[allow(unused_imports)]
pub(crate) use check;

fn scenario(hart: usize, name: &str, body: fn(usize)) {
    sync();
    body(hart);
    sync();
    if hart == 0 {
        let fails = SCENARIO_FAILS.swap(0, Ordering::Relaxed);
        if fails == 0 {
            println!("test {name} ... ok");
        } else {
            println!("test {name} ... FAILED ({fails} failed checks)");
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
    sync();
}

/// Returns the number of failed scenarios (meaningful on hart 0).
pub fn run_all(hart: usize) -> usize {
    scenario(hart, "smp_all_harts_boot", all_harts_boot);
    scenario(hart, "frame_allocator_concurrent", frames_concurrent);
    FAILED.load(Ordering::Relaxed)
}

static CHECKED_IN: AtomicUsize = AtomicUsize::new(0);

fn all_harts_boot(hart: usize) {
    check!(hart, crate::hart_id() == hart, "hart id {} != {}", crate::hart_id(), hart);
    CHECKED_IN.fetch_or(1 << hart, Ordering::AcqRel);
    sync();
    let seen = CHECKED_IN.load(Ordering::Acquire);
    check!(hart, seen == (1 << HARTS) - 1, "harts checked in: {seen:#b}");
}

fn frames_concurrent(hart: usize) {
    let before = if hart == 0 { crate::frames::FRAMES.lock().in_use() } else { 0 };
    sync();
    let mut held = [0usize; 16];
    for round in 0..200 {
        for (k, slot) in held.iter_mut().enumerate() {
            let n = 1 + (k + round + hart) % 3;
            let align = crate::frames::FRAME << (k % 3);
            let f = crate::frames::FRAMES.lock().alloc(n, align);
            match f {
                Some(a) => {
                    check!(hart, a % align == 0, "frame {a:#x} not aligned to {align:#x}");
                    // Write a hart-specific pattern, read it back later.
                    // SAFETY: the frames are ours until freed.
                    unsafe { core::ptr::write_bytes(a as *mut u8, hart as u8 + 1, n * crate::frames::FRAME) };
                    *slot = a | n;
                }
                None => fail(hart, format_args!("frame allocator exhausted")),
            }
        }
        for slot in held.iter_mut() {
            if *slot != 0 {
                let (a, n) = (*slot & !0xfff, *slot & 0xfff);
                // SAFETY: still ours.
                let ok = unsafe { core::slice::from_raw_parts(a as *const u8, n * crate::frames::FRAME) }
                    .iter()
                    .all(|&b| b == hart as u8 + 1);
                check!(hart, ok, "frames at {a:#x} overwritten by another hart");
                crate::frames::FRAMES.lock().free(a, n);
                *slot = 0;
            }
        }
    }
    sync();
    if hart == 0 {
        let after = crate::frames::FRAMES.lock().in_use();
        check!(hart, after == before, "frames leaked: {before} -> {after}");
    }
}
