//! A bitmap frame allocator over the RAM between the end of the kernel image
//! (`_kernel_end`) and the end of RAM (`_ram_end`): one bit per 4 KiB frame, first fit,
//! any alignment, frees of whole runs. This is what a kernel would feed its heap from.
use crate::sync::SpinLock;

pub const FRAME: usize = 4096;
/// Up to 128 MiB of RAM.
const MAX_FRAMES: usize = 128 * 1024 * 1024 / FRAME;
const WORDS: usize = MAX_FRAMES / 64;

extern "C" {
    static _kernel_end: u8;
    static _ram_end: u8;
}

pub fn ram_start() -> usize {
    core::ptr::addr_of!(_kernel_end) as usize
}
pub fn ram_end() -> usize {
    core::ptr::addr_of!(_ram_end) as usize
}

pub struct Frames {
    base: usize,
    frames: usize,
    /// 1 = in use.
    used: [u64; WORDS],
    in_use: usize,
    peak: usize,
}

pub static FRAMES: SpinLock<Frames> = SpinLock::new(Frames { base: 0, frames: 0, used: [0; WORDS], in_use: 0, peak: 0 });

impl Frames {
    pub fn init(&mut self) {
        self.base = ram_start();
        self.frames = ((ram_end() - self.base) / FRAME).min(MAX_FRAMES);
        self.used = [0; WORDS];
        self.in_use = 0;
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// `n` contiguous frames whose address is a multiple of `align` (a power of two).
    pub fn alloc(&mut self, n: usize, align: usize) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let align = align.max(FRAME);
        let mut addr = self.base.next_multiple_of(align);
        loop {
            let i = (addr - self.base) / FRAME;
            if i + n > self.frames {
                return None;
            }
            match (i..i + n).rev().find(|&j| self.is_used(j)) {
                None => {
                    for j in i..i + n {
                        self.set(j, true);
                    }
                    self.in_use += n;
                    self.peak = self.peak.max(self.in_use);
                    return Some(addr);
                }
                Some(busy) => addr = (self.base + (busy + 1) * FRAME).next_multiple_of(align),
            }
        }
    }

    /// Give back `n` frames at `addr` (all must be in use).
    pub fn free(&mut self, addr: usize, n: usize) {
        let first = (addr - self.base) / FRAME;
        for j in first..first + n {
            assert!(self.is_used(j), "frame {:#x} freed twice", self.base + j * FRAME);
            self.set(j, false);
        }
        self.in_use -= n;
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }
    #[allow(dead_code)]
    pub fn total(&self) -> usize {
        self.frames
    }
}
