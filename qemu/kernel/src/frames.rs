//! A bitmap frame allocator over the RAM after the kernel image and the hart stacks
//! (`_frames_start` .. `_frames_end`, from `targets/riscv-virt/memory.x`): one bit per 4 KiB
//! frame, first fit, any alignment, frees of whole runs. This is what a kernel would feed its
//! heap from.

pub const FRAME: usize = 4096;
/// Up to 128 MiB of RAM.
const MAX_FRAMES: usize = 128 * 1024 * 1024 / FRAME;
const WORDS: usize = MAX_FRAMES / 64;

extern "C" {
    static _frames_start: u8;
    static _frames_end: u8;
}

/// First byte of the RAM the frame allocator manages.
pub fn ram_start() -> usize {
    core::ptr::addr_of!(_frames_start) as usize
}
/// One past its last byte.
pub fn ram_end() -> usize {
    core::ptr::addr_of!(_frames_end) as usize
}

pub struct Frames {
    base: usize,
    frames: usize,
    /// 1 = in use.
    used: [u64; WORDS],
    in_use: usize,
    peak: usize,
}

pub static FRAMES: spin::Mutex<Frames> = spin::Mutex::new(Frames {
    base: 0,
    frames: 0,
    used: [0; WORDS],
    in_use: 0,
    peak: 0,
});

/// Called by hart 0 at boot, before anything allocates.
pub fn init() {
    FRAMES.lock().init();
}

impl Frames {
    fn init(&mut self) {
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
            assert!(
                self.is_used(j),
                "frame {:#x} freed twice",
                self.base + j * FRAME
            );
            self.set(j, false);
        }
        self.in_use -= n;
    }

    /// Frames in use now.
    pub fn in_use(&self) -> usize {
        self.in_use
    }
    /// Frames managed.
    pub fn total(&self) -> usize {
        self.frames
    }
}
