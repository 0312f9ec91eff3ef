//! Spans: runs of pages owned by one size class or one large allocation, and the intrusive
//! free-list node that free objects hold.
//!
//! A span's record lives out of line, in metadata pages; the page map points every page of a
//! span at it. The only thing ever written into user memory is the free-list link in the
//! first word of an object that is free.

use core::ptr;

bitflags::bitflags! {
    /// State of a span.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct SpanFlags: u8 {
        /// The span serves one large allocation (no size class).
        const LARGE = 1 << 0;
        /// The span sits in its central list of spans that have free objects.
        const IN_CENTRAL = 1 << 1;
    }
}

/// Page-map class byte of a page that never belonged to a span.
pub(crate) const CLASS_NONE: u8 = 0;
/// Page-map class byte of every page of a large span.
pub(crate) const CLASS_LARGE: u8 = 0xFF;
/// Page-map class byte of a page holding the heap's own metadata.
pub(crate) const CLASS_META: u8 = 0xFE;
/// Page-map class byte of a free page that belonged to a span before.
pub(crate) const CLASS_FREED: u8 = 0xFD;

// Layout claims the rest of the heap relies on, checked when the crate compiles.
const _: () = {
    use crate::size_class::NUM_CLASSES;
    // Class bytes 1..NUM_CLASSES name size classes; the special tags lie above them all.
    assert!(NUM_CLASSES - 1 < CLASS_FREED as usize);
    assert!(CLASS_FREED < CLASS_META && CLASS_META < CLASS_LARGE && CLASS_NONE == 0);
    // The heap's `is_small` reads a class byte's sign: size classes below 0x80, tags above.
    assert!(NUM_CLASSES <= 0x80 && CLASS_FREED >= 0x80);
    // The record sizes the documentation and the metadata budgets quote (ARCHITECTURE.md,
    // `Config::min_span_bytes`): 28 bytes on 32-bit targets, 48 on 64-bit.
    #[cfg(target_pointer_width = "32")]
    assert!(core::mem::size_of::<Span>() == 28);
    #[cfg(target_pointer_width = "64")]
    assert!(core::mem::size_of::<Span>() == 48);
    // A free object holds its link in its first word, so the smallest class must hold one.
    assert!(core::mem::size_of::<FreeObj>() <= 8);
};

/// A free object: its first word links to the next free object.
#[repr(C)]
pub(crate) struct FreeObj {
    pub(crate) next: *mut FreeObj,
}

/// The out-of-line record of a span. Small-object fields are guarded by the central-cache lock
/// of the span's class, the rest by the page-heap lock.
#[doc(hidden)]
pub struct Span {
    /// Address of the first page.
    pub(crate) start: usize,
    /// Length in pages.
    pub(crate) pages: usize,
    /// Size class (0 for a large span).
    pub(crate) class: u8,
    pub(crate) flags: SpanFlags,
    /// Objects handed out of the span (to CPU caches or users).
    pub(crate) allocated: u16,
    /// Objects carved so far; objects past this index were never handed out.
    pub(crate) carved: u16,
    /// Objects the span holds.
    pub(crate) capacity: u16,
    /// Objects returned to the span and not handed out again.
    pub(crate) free: *mut FreeObj,
    /// Links of the central list (or of the page heap's list of spare records).
    pub(crate) next: *mut Span,
    pub(crate) prev: *mut Span,
}

impl Span {
    pub(crate) const fn empty() -> Self {
        Self {
            start: 0,
            pages: 0,
            class: 0,
            flags: SpanFlags::empty(),
            allocated: 0,
            carved: 0,
            capacity: 0,
            free: ptr::null_mut(),
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        }
    }

    /// Whether the span can hand out another object.
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_null() || self.carved < self.capacity
    }

    /// Take one object out of the span: a returned one first, else the next uncarved one.
    ///
    /// # Safety
    /// The span must be a live small span with [`has_free`](Self::has_free), and the caller
    /// must hold its class's central lock.
    pub(crate) unsafe fn take(&mut self, size: usize) -> *mut FreeObj {
        let obj = if !self.free.is_null() {
            let obj = self.free;
            // SAFETY: objects on the span's free list are free memory of this span whose first
            // word holds the link.
            self.free = unsafe { (*obj).next };
            obj
        } else {
            let obj = (self.start + self.carved as usize * size) as *mut FreeObj;
            self.carved += 1;
            obj
        };
        self.allocated += 1;
        obj
    }

    /// Give one object back to the span.
    ///
    /// # Safety
    /// `obj` must be an object of this span that was handed out by [`take`](Self::take), and
    /// the caller must hold the class's central lock.
    pub(crate) unsafe fn put(&mut self, obj: *mut FreeObj) {
        // SAFETY: the object is free and at least one word long (classes are >= 8 bytes).
        unsafe { (*obj).next = self.free };
        self.free = obj;
        self.allocated -= 1;
    }

    /// One past the last byte.
    pub(crate) fn end(&self, page_size: usize) -> usize {
        self.start + self.pages * page_size
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn take_carves_then_reuses() {
        let mut mem = vec![0u64; 64];
        let mut s = Span::empty();
        s.start = mem.as_mut_ptr() as usize;
        s.pages = 1;
        s.capacity = 4;
        // SAFETY: the span covers `mem`, 512 bytes owned by the test, 4 objects of 128.
        unsafe {
            let a = s.take(128);
            let b = s.take(128);
            assert_eq!(b as usize - a as usize, 128);
            assert_eq!((s.allocated, s.carved), (2, 2));
            s.put(a);
            assert_eq!(s.take(128), a, "a returned object is reused before carving");
            let _c = s.take(128);
            let _d = s.take(128);
            assert!(!s.has_free());
            s.put(b);
            assert!(s.has_free());
            assert_eq!(s.allocated, 3);
        }
    }
}
