//! Misuse reaches the platform's fatal hook in a checked build. The hook ends the test
//! through semihosting: exit 0 if the fault was the expected one, abort otherwise.
#![no_std]
#![no_main]

extern crate alloc;

#[embedded_test::tests(default_timeout = 10)]
mod tests {
    use alloc::boxed::Box;
    use core::alloc::{GlobalAlloc, Layout};
    use core::hint::black_box;

    use cpuheap::FaultKind;
    use cpuheap_qemu_firmware::{expect_fault, init_heap, HEAP};

    #[init]
    fn init() {
        init_heap();
    }

    #[test]
    fn double_free_reaches_fatal_hook() {
        let b = black_box(Box::new([7u32; 4]));
        let layout = Layout::new::<[u32; 4]>();
        let p = Box::into_raw(b) as *mut u8;
        expect_fault(FaultKind::DoubleFree);
        // SAFETY: the first free is legitimate; the second is the deliberate misuse.
        unsafe {
            HEAP.dealloc(p, layout);
            HEAP.dealloc(black_box(p), layout);
        }
        panic!("double free was not detected");
    }

    #[test]
    fn double_free_of_a_large_block_reaches_fatal_hook() {
        let layout = Layout::from_size_align(3000, 8).unwrap();
        // SAFETY: nonzero size.
        let p = unsafe { HEAP.alloc(layout) };
        assert!(!p.is_null());
        expect_fault(FaultKind::DoubleFree);
        // SAFETY: the first free is legitimate; the second is the deliberate misuse.
        unsafe {
            HEAP.dealloc(p, layout);
            HEAP.dealloc(black_box(p), layout);
        }
        panic!("double free of a page span was not detected");
    }

    #[test]
    fn foreign_pointer_reaches_fatal_hook() {
        static mut NOT_HEAP: [u64; 4] = [0; 4];
        let _warm = black_box(Box::new(1u8));
        expect_fault(FaultKind::ForeignPointer);
        // SAFETY: deliberate misuse: this memory never came from the heap.
        unsafe { HEAP.dealloc(black_box(core::ptr::addr_of_mut!(NOT_HEAP) as *mut u8), Layout::new::<[u64; 4]>()) };
        panic!("foreign pointer was not detected");
    }
}
