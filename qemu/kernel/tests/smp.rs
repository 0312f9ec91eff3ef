//! The SMP machinery under the heap: all harts boot and run the test's body, and the frame
//! allocator holds up under all of them at once.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};

use cpuheap_qemu_kernel::frames::{FRAME, FRAMES};
use cpuheap_qemu_kernel::smp::{fail, sync};
use cpuheap_qemu_kernel::{check, hart_id, HARTS};

static CHECKED_IN: AtomicUsize = AtomicUsize::new(0);

/// Every hart runs the body, with its own hart id, and they all meet at the barrier.
fn all_harts_boot(hart: usize) {
    check!(hart, hart_id() == hart, "hart id {} != {}", hart_id(), hart);
    CHECKED_IN.fetch_or(1 << hart, Ordering::AcqRel);
    sync();
    let seen = CHECKED_IN.load(Ordering::Acquire);
    check!(
        hart,
        seen == (1 << HARTS) - 1,
        "harts checked in: {seen:#b}"
    );
}

/// All harts allocate and free runs of 1-3 frames at alignments of 4-16 KiB at once; each
/// fills its frames with its own pattern and checks it before freeing: no two harts ever get
/// the same frame, and nothing leaks.
fn frames_concurrent(hart: usize) {
    let before = if hart == 0 { FRAMES.lock().in_use() } else { 0 };
    sync();
    let mut held = [0usize; 16];
    for round in 0..200 {
        for (k, slot) in held.iter_mut().enumerate() {
            let n = 1 + (k + round + hart) % 3;
            let align = FRAME << (k % 3);
            let f = FRAMES.lock().alloc(n, align);
            match f {
                Some(a) => {
                    check!(
                        hart,
                        a % align == 0,
                        "frame {a:#x} not aligned to {align:#x}"
                    );
                    // SAFETY: the frame allocator gave these `n` frames to this hart alone,
                    // until it frees them below.
                    unsafe { core::ptr::write_bytes(a as *mut u8, hart as u8 + 1, n * FRAME) };
                    *slot = a | n;
                }
                None => fail(hart, format_args!("frame allocator exhausted")),
            }
        }
        for slot in held.iter_mut() {
            if *slot != 0 {
                let (a, n) = (*slot & !0xfff, *slot & 0xfff);
                // SAFETY: still this hart's frames (freed just after), initialised above.
                let ok = unsafe { core::slice::from_raw_parts(a as *const u8, n * FRAME) }
                    .iter()
                    .all(|&b| b == hart as u8 + 1);
                check!(hart, ok, "frames at {a:#x} overwritten by another hart");
                FRAMES.lock().free(a, n);
                *slot = 0;
            }
        }
    }
    sync();
    if hart == 0 {
        let after = FRAMES.lock().in_use();
        check!(hart, after == before, "frames leaked: {before} -> {after}");
    }
}

#[embedded_test::tests(default_timeout = 30)]
mod tests {
    use cpuheap_qemu_kernel::frames::{ram_end, ram_start, FRAMES};
    use cpuheap_qemu_kernel::println;
    use cpuheap_qemu_kernel::smp::{on_all_harts, Failed};
    use cpuheap_qemu_kernel::HARTS;

    #[test]
    fn smp_all_harts_boot() -> Result<(), Failed> {
        println!(
            "{HARTS} harts; frames {:#x}..{:#x} ({} of 4 KiB)",
            ram_start(),
            ram_end(),
            FRAMES.lock().total()
        );
        on_all_harts(super::all_harts_boot)
    }

    #[test]
    fn frame_allocator_concurrent() -> Result<(), Failed> {
        on_all_harts(super::frames_concurrent)
    }
}
