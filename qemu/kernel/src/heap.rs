//! cpuheap as the kernel's `#[global_allocator]`: what a kernel has to write.
//!
//! * [`HartPlatform`]: the CPU index is the hart id (`mhartid`), so each hart has its own CPU
//!   slot; a fatal misuse prints and ends the boot with semihosting `abort()` (a failed test).
//! * [`FrameSource`]: a `PageSource` that takes runs of 4 KiB frames from the kernel's frame
//!   allocator and gives them back when the heap releases a whole run.
use cpuheap::{Config, DefaultRawMutex, Fault, FlatMap, Heap, PageSource, Platform, Run};

use crate::frames::{FRAME, FRAMES};
use crate::HARTS;

pub struct HartPlatform;

impl Platform for HartPlatform {
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        crate::hart_id()
    }

    fn fatal(&self, fault: &Fault) -> ! {
        crate::println!("hart {}: cpuheap fatal: {}", crate::hart_id(), fault);
        semihosting::process::abort()
    }
}

/// Hands the heap runs of frames. The heap calls it under its page-heap lock, never
/// concurrently, and it never allocates from the heap.
pub struct FrameSource {
    /// Runs handed out and not taken back (for the final cross-check).
    pub runs_out: usize,
    pub bytes_out: usize,
    pub released: usize,
}

/// Page map capacity: how many runs the source may hand out at once.
pub const MAX_RUNS: usize = 64;

// SAFETY: every run is a range of frames the frame allocator marked used for us alone, valid
// RAM until `release` frees exactly those frames.
unsafe impl PageSource for FrameSource {
    type Map = FlatMap<MAX_RUNS>;

    fn grow(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        if self.runs_out >= MAX_RUNS {
            return None;
        }
        let frames = min_bytes.div_ceil(FRAME).max(1);
        let addr = FRAMES.lock().alloc(frames, align)?;
        self.runs_out += 1;
        self.bytes_out += frames * FRAME;
        Some(Run {
            base: core::ptr::NonNull::new(addr as *mut u8)?,
            len: frames * FRAME,
        })
    }

    unsafe fn release(&mut self, run: Run) -> bool {
        FRAMES
            .lock()
            .free(run.base.as_ptr() as usize, run.len / FRAME);
        self.runs_out -= 1;
        self.bytes_out -= run.len;
        self.released += 1;
        true
    }
}

pub type KernelHeap = Heap<FrameSource, HartPlatform, DefaultRawMutex, HARTS>;

/// Kernel sizes (4 KiB pages), growing in 256 KiB steps so the harts make it grow often.
#[global_allocator]
pub static HEAP: KernelHeap = Heap::new(
    FrameSource {
        runs_out: 0,
        bytes_out: 0,
        released: 0,
    },
    HartPlatform,
    Config::new()
        .with_grow_bytes(256 * 1024)
        .with_cpu_cache_bytes(64 * 1024),
);
