//! Placeholder until cpuheap is wired in: sets up the frame allocator.
pub fn init() {
    crate::frames::FRAMES.lock().init();
}
