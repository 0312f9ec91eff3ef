//! Shared test scaffolding: heap instances over leaked buffers, a platform whose CPU index is
//! set per thread, and a deterministic random generator.
#![allow(dead_code)]

use std::cell::Cell;
use std::mem::MaybeUninit;

use cpuheap::{Config, DefaultRawMutex, Fault, Heap, Platform, StaticRegion};

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Set the CPU index the calling thread reports.
pub fn set_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

/// A platform whose CPU index is per thread and whose fatal hook panics with the message, so
/// tests can catch faults with `catch_unwind`.
pub struct TestCpu;

impl Platform for TestCpu {
    fn current_cpu(&self) -> usize {
        CPU.with(|c| c.get())
    }
    fn fatal(&self, fault: &Fault) -> ! {
        panic!("{fault}")
    }
}

pub type TestHeap<const CPUS: usize> = Heap<StaticRegion<4>, TestCpu, DefaultRawMutex, CPUS>;

/// A leaked buffer of `n` bytes.
pub fn region(n: usize) -> &'static mut [MaybeUninit<u8>] {
    Box::leak(vec![MaybeUninit::uninit(); n].into_boxed_slice())
}

/// A leaked heap with `CPUS` slots over one region of `bytes` bytes.
pub fn heap<const CPUS: usize>(bytes: usize, config: Config) -> &'static TestHeap<CPUS> {
    let h: &'static TestHeap<CPUS> =
        Box::leak(Box::new(Heap::new(StaticRegion::new(), TestCpu, config)));
    assert!(h.add_region(region(bytes)));
    h
}

/// The address range of every region a heap was given is not tracked by the heap's public
/// API; tests that need it keep the region themselves.
pub fn heap_with_region<const CPUS: usize>(
    bytes: usize,
    config: Config,
) -> (&'static TestHeap<CPUS>, usize, usize) {
    let h: &'static TestHeap<CPUS> =
        Box::leak(Box::new(Heap::new(StaticRegion::new(), TestCpu, config)));
    let r = region(bytes);
    let start = r.as_ptr() as usize;
    assert!(h.add_region(r));
    (h, start, start + bytes)
}

/// The project's shared deterministic PRNG.
pub type Rng = cpuheap_testkit::Rng;

/// Fill `len` bytes at `p` with a pattern derived from `seed`.
pub unsafe fn fill(p: *mut u8, len: usize, seed: u64) {
    for i in 0..len {
        unsafe { *p.add(i) = (seed as usize).wrapping_mul(31).wrapping_add(i) as u8 };
    }
}

/// Check the pattern written by [`fill`].
pub unsafe fn verify(p: *const u8, len: usize, seed: u64) -> bool {
    (0..len).all(|i| unsafe { *p.add(i) } == (seed as usize).wrapping_mul(31).wrapping_add(i) as u8)
}

/// A live test object: where it is, its layout, and the seed of its byte pattern.
#[derive(Clone, Copy)]
pub struct Obj {
    pub addr: usize,
    pub size: usize,
    pub align: usize,
    pub seed: u64,
}

impl Obj {
    pub fn layout(&self) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(self.size, self.align).unwrap()
    }
}
