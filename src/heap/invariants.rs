//! [`Heap::check_invariants`]: every tier's books, checked against each other.

use core::fmt;

use lock_api::RawMutex;

use super::Heap;
use crate::central_cache::{batch_link, CentralClass, CentralList};
use crate::page_heap::Locked;
use crate::page_map::PageMap;
use crate::page_source::PageSource;
use crate::platform::Platform;
use crate::size_class::{class_size, NUM_CLASSES};
use crate::span::{Span, SpanFlags, CLASS_FREED, CLASS_LARGE, CLASS_META, CLASS_NONE};
use crate::sync::Ordering;

/// Why [`Heap::check_invariants`] failed: what did not hold, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// The invariant that does not hold.
    pub what: &'static str,
    /// An address or count that locates it.
    pub at: usize,
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpuheap invariant violated: {} (at {:#x})",
            self.what, self.at
        )
    }
}

/// The same message as `Display`, for firmware that logs with defmt (feature `defmt`).
#[cfg(feature = "defmt")]
impl defmt::Format for InvariantError {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "cpuheap invariant violated: {=str} (at {=usize:#x})",
            self.what,
            self.at
        )
    }
}

fn broken<T>(what: &'static str, at: usize) -> Result<T, InvariantError> {
    Err(InvariantError { what, at })
}

impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> Heap<S, P, R, CPUS> {
    /// Check the heap's invariants. Meant for tests and checked builds: it takes every lock,
    /// and fails with "CPU slot in use" if another thread is inside the heap. It keeps no
    /// per-class tables, so its stack frame stays small on microcontrollers.
    ///
    /// It verifies that
    /// - every cached object lies in a span of its class, at a carved object boundary, and
    ///   the slots' list lengths and cached-byte counters match their lists;
    /// - the bitmap, the span records and the page map agree page by page, and the free-page
    ///   and span-page counters match;
    /// - every span with a free object is in its class's central list and no other is, each
    ///   class's free-object counter matches its listed spans, and the spans whose objects
    ///   have all come back are the class's reserve, no more than the configuration allows
    ///   (free neighbours are merged by construction: free space is the bitmap itself);
    /// - every transfer cache holds its count of whole batches of objects of its class, as
    ///   its counter says;
    /// - objects are conserved: the bytes handed out of spans equal the bytes cached in CPU
    ///   slots and transfer caches plus the bytes in use, which match the statistics.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let slots = self.cpu.enter_all();
        if slots.iter().any(Option::is_none) {
            return broken("CPU slot in use", 0);
        }
        // Central locks in class order, then the page heap (the lock order).
        for c in self.cpu.central.classes.iter().skip(1) {
            // Released below with `force_unlock`; no guard table on the stack.
            core::mem::forget(c.list.lock());
        }
        let r = self.check_locked();
        for c in self.cpu.central.classes.iter().skip(1) {
            // SAFETY: locked above by this function, whose guards were forgotten.
            unsafe { c.list.force_unlock() };
        }
        drop(slots);
        let small_in_use = r?;
        if small_in_use != self.stats().in_use_bytes {
            return broken(
                "objects not conserved: in-use bytes disagree with the spans",
                small_in_use,
            );
        }
        Ok(())
    }

    /// The checks of [`check_invariants`](Self::check_invariants), inside every slot and with
    /// every central lock held. Returns the bytes in use according to the spans and the caches.
    fn check_locked(&self) -> Result<usize, InvariantError> {
        let mut cached_bytes = 0usize;
        for slot in &self.cpu.slots {
            let lists = &slot.lists;
            let (mut bytes, mut capacity) = (0, 0);
            for class in 1..NUM_CLASSES {
                let (len, limit) = (lists.len(class), lists.max_len(class));
                if len > limit {
                    return broken("CPU list longer than its limit", class);
                }
                let mut n = 0usize;
                // SAFETY: the caller is inside every slot.
                let mut o = unsafe { lists.head(class) };
                while !o.is_null() {
                    self.check_object(o as usize, class)?;
                    n += 1;
                    if n > len {
                        return broken("CPU list longer than its count", o as usize);
                    }
                    // SAFETY: cached objects hold their link.
                    o = unsafe { (*o).next };
                }
                if n != len {
                    return broken("CPU list shorter than its count", class);
                }
                bytes += n * class_size(class);
                capacity += limit * class_size(class);
                if (limit > 0) != (lists.first_active(class, class + 1) == Some(class)) {
                    return broken("CPU active-class bit disagrees with its limit", class);
                }
            }
            if capacity != lists.capacity() {
                return broken("CPU capacity counter disagrees with its limits", capacity);
            }
            cached_bytes += bytes;
        }
        // Each class's listed spans: free objects present, flag set, counter matches; its
        // reserve of empty spans; its transfer cache.
        let central = &self.cpu.central;
        let (mut listed, mut list_spans, mut list_empty) = (0usize, 0usize, 0usize);
        for (class, c) in central.classes.iter().enumerate().skip(1) {
            // SAFETY: the caller holds every central lock.
            let list = unsafe { &*c.list.data_ptr() };
            list_spans += list.spans();
            let (mut free, mut empty) = (0usize, 0usize);
            let mut s = list.head;
            // SAFETY: listed spans are live records.
            while let Some(span) = unsafe { s.as_ref() } {
                listed += 1;
                if !span.has_free()
                    || !span.flags.contains(SpanFlags::IN_CENTRAL)
                    || span.class as usize != class
                {
                    return broken("central list holds a span without free objects", span.start);
                }
                free += self.check_span(span)? + (span.capacity - span.carved) as usize;
                empty += (span.allocated == 0) as usize;
                s = span.next;
            }
            if c.free_objects.load(Ordering::Relaxed) != free {
                return broken(
                    "central free-object counter disagrees with the spans",
                    class,
                );
            }
            if empty != list.empty() as usize || empty > central.reserve_spans as usize {
                return broken("central span reserve disagrees with its empty spans", class);
            }
            list_empty += empty;
            cached_bytes += self.check_transfer(class, list, c)?;
        }
        let totals = self.pages().with_locked(|l| self.check_extents(l))?;
        let ExtentTotals {
            spans,
            with_free,
            empty,
            handed_bytes,
            free_pages,
            span_pages,
        } = totals;
        let ps = &self.pages().stats;
        if free_pages != ps.free_pages.load(Ordering::Relaxed) {
            return broken("free-page counter disagrees with the bitmaps", free_pages);
        }
        if span_pages != ps.span_pages.load(Ordering::Relaxed) {
            return broken("span-page counter disagrees with the spans", span_pages);
        }
        // With every flagged span listed and every listed span flagged, equal counts mean
        // the lists hold exactly the spans with free objects.
        if listed != with_free {
            return broken(
                "a span with free objects is missing from its central list",
                listed,
            );
        }
        if list_spans != spans {
            return broken("central span counts disagree with the page map", spans);
        }
        if list_empty != empty {
            return broken("an empty span is neither reserved nor returned", empty);
        }
        if handed_bytes < cached_bytes {
            return broken("more bytes cached than handed out of spans", cached_bytes);
        }
        Ok(handed_bytes - cached_bytes)
    }

    /// Walk `class`'s transfer cache: whole batches of carved objects of the class, as many as
    /// its batch count says. Returns the bytes it holds.
    fn check_transfer(
        &self,
        class: usize,
        list: &CentralList,
        c: &CentralClass<R>,
    ) -> Result<usize, InvariantError> {
        let batch = self.cpu.central.batch(class);
        let mut objects = 0usize;
        let mut b = list.transfer.top();
        // The top batch holds `top_len` objects (1 to a batch); every other one a batch.
        let mut expect = list.transfer.top_len();
        if b.is_null() != (expect == 0) || expect > batch {
            return broken("transfer cache's top length out of range", class);
        }
        while !b.is_null() {
            let mut n = 0usize;
            let mut o = b;
            while !o.is_null() {
                self.check_object(o as usize, class)?;
                n += 1;
                if n > expect || objects + n > c.transfer_count.get() {
                    return broken("transfer batch longer than it should be", b as usize);
                }
                // SAFETY: objects of a transfer batch are free and hold their link.
                o = unsafe { (*o).next };
            }
            if n != expect {
                return broken("transfer batch shorter than it should be", b as usize);
            }
            objects += n;
            expect = batch;
            // SAFETY: a batch's first object holds the next batch in its second word (the
            // class has two-word objects, or its transfer cache would be empty).
            b = unsafe { *batch_link(b) };
        }
        if objects != c.transfer_count.get() {
            return broken("transfer cache counters disagree with its batches", class);
        }
        Ok(objects * class_size(class))
    }

    /// An object of `class` at `addr` must lie at an object boundary of a span of `class`.
    fn check_object(&self, addr: usize, class: usize) -> Result<(), InvariantError> {
        let Some(pr) = self.map().page(addr, self.page_shift()) else {
            return broken("cached object outside the heap", addr);
        };
        if pr.class.load(Ordering::Relaxed) as usize != class {
            return broken("cached object in a span of another class", addr);
        }
        // SAFETY: the page is tagged with a class, so it points at a live span.
        let s = unsafe { &*pr.span.load(Ordering::Relaxed) };
        let off = addr - s.start;
        if off % class_size(class) != 0 || off / class_size(class) >= s.carved as usize {
            return broken("cached object not at a carved object boundary", addr);
        }
        Ok(())
    }

    /// Walk a small span's free list; returns its length.
    fn check_span(&self, s: &Span) -> Result<usize, InvariantError> {
        let size = class_size(s.class as usize);
        let mut n = 0usize;
        let mut o = s.free;
        while !o.is_null() {
            let off = (o as usize).wrapping_sub(s.start);
            if off % size != 0 || off / size >= s.carved as usize {
                return broken("span free list holds a foreign object", o as usize);
            }
            n += 1;
            if n > s.capacity as usize {
                return broken("span free list loops", s.start);
            }
            // SAFETY: free objects of the span hold their link.
            o = unsafe { (*o).next };
        }
        if n + s.allocated as usize != s.carved as usize {
            return broken(
                "span objects not conserved (free + handed out != carved)",
                s.start,
            );
        }
        if s.capacity as usize * size > s.pages * self.page_size() {
            return broken("span capacity exceeds its pages", s.start);
        }
        Ok(n)
    }

    /// The page-by-page part of [`check_locked`](Self::check_locked), under the page-heap
    /// lock: bitmaps, span records and page map agree.
    fn check_extents(&self, l: &mut Locked<'_, S>) -> Result<ExtentTotals, InvariantError> {
        let page = self.page_size();
        let (mut spans, mut with_free, mut handed_bytes) = (0usize, 0usize, 0usize);
        let (mut free_pages, mut span_pages, mut empty) = (0usize, 0usize, 0usize);
        for ext in l.extents() {
            let mut ext_free = 0;
            // A direct extent has an entry for its first page only, and is all used or all
            // free.
            for i in 0..ext.mapped_pages() {
                let addr = ext.base + i * page;
                let Some(pr) = self.map().page(addr, self.page_shift()) else {
                    return broken("extent page missing from the page map", addr);
                };
                let tag = pr.class.load(Ordering::Relaxed);
                let span = pr.span.load(Ordering::Relaxed);
                if !ext.is_used(i) {
                    ext_free += 1;
                    if (tag != CLASS_NONE && tag != CLASS_FREED) || !span.is_null() {
                        return broken("free page still mapped to a span", addr);
                    }
                    continue;
                }
                if tag == CLASS_META {
                    continue;
                }
                // SAFETY: used, non-metadata pages point at live span records.
                let Some(s) = (unsafe { span.as_ref() }) else {
                    return broken("used page without a span", addr);
                };
                if addr < s.start || addr >= s.end(page) {
                    return broken("page map points outside the span", addr);
                }
                let expect = if s.flags.contains(SpanFlags::LARGE) {
                    CLASS_LARGE
                } else {
                    s.class
                };
                if tag != expect {
                    return broken("page map class disagrees with the span", addr);
                }
                if addr != s.start {
                    continue;
                }
                span_pages += s.pages;
                if tag == CLASS_LARGE {
                    handed_bytes += s.pages * page;
                    continue;
                }
                spans += 1;
                self.check_span(s)?;
                empty += (s.allocated == 0) as usize;
                if s.has_free() != s.flags.contains(SpanFlags::IN_CENTRAL) {
                    return broken(
                        "span's central-list flag disagrees with its free objects",
                        s.start,
                    );
                }
                with_free += s.has_free() as usize;
                handed_bytes += s.allocated as usize * class_size(s.class as usize);
            }
            if ext.direct && ext_free > 0 {
                ext_free = ext.pages;
            }
            if ext_free != ext.free_count {
                return broken("extent free-page count disagrees with its bitmap", ext.base);
            }
            free_pages += ext_free;
        }
        Ok(ExtentTotals {
            spans,
            with_free,
            empty,
            handed_bytes,
            free_pages,
            span_pages,
        })
    }
}

/// What [`Heap::check_invariants`] counts page by page.
struct ExtentTotals {
    /// Small-object spans.
    spans: usize,
    /// Of them, those with a free object.
    with_free: usize,
    /// Of them, those with no object handed out.
    empty: usize,
    /// Bytes handed out of spans (objects, large spans).
    handed_bytes: usize,
    free_pages: usize,
    span_pages: usize,
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::page_source::StaticRegion;
    use crate::platform::SingleCpu;
    use crate::stats::add_owned;
    use crate::sync::Ordering;
    use crate::Config;
    use core::alloc::Layout;
    use core::mem::MaybeUninit;
    use std::boxed::Box;

    type TestHeap = Heap<StaticRegion<1>>;

    fn heap() -> &'static TestHeap {
        let h: &'static TestHeap = Box::leak(Box::new(Heap::new(
            StaticRegion::new(),
            SingleCpu::new(),
            Config::new(),
        )));
        let region: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(1 << 20));
        assert!(h.add_region(region));
        h
    }

    /// A fresh heap whose slot caches one freed 64-byte object (so its class has a limit),
    /// checked whole.
    fn heap_with_a_cached_object() -> &'static TestHeap {
        let h = heap();
        let l = Layout::from_size_align(64, 8).unwrap();
        let p = h.allocate(l);
        // SAFETY: allocated just above.
        unsafe { h.deallocate(p, l) };
        h.check_invariants().unwrap();
        h
    }

    #[test]
    fn invariant_check_catches_a_wrong_capacity_counter() {
        let h = heap_with_a_cached_object();
        let cap = &h.cpu.slots[0].lists.capacity;
        add_owned(cap, 8);
        let e = h.check_invariants().unwrap_err();
        assert_eq!(e.what, "CPU capacity counter disagrees with its limits");
        add_owned(cap, 8usize.wrapping_neg());
        h.check_invariants().unwrap();
    }

    #[test]
    fn invariant_check_catches_a_wrong_active_class_bit() {
        let h = heap_with_a_cached_object();
        let lists = &h.cpu.slots[0].lists;
        let c = lists
            .first_active(1, NUM_CLASSES)
            .expect("the freed object's class has a limit");
        // SAFETY: the test is the only context, so it is "inside" the slot.
        unsafe { lists.flip_active(c) };
        let e = h.check_invariants().unwrap_err();
        assert_eq!(e.what, "CPU active-class bit disagrees with its limit");
        // SAFETY: as above.
        unsafe { lists.flip_active(c) };
        h.check_invariants().unwrap();
    }

    #[test]
    fn invariant_check_catches_books_that_do_not_balance() {
        let h = heap();
        let l = Layout::from_size_align(64, 8).unwrap();
        let p = h.allocate(l);
        h.check_invariants().unwrap();
        // The slot claims one more refilled object than the central cache handed out.
        add_owned(&h.cpu.slots[0].stats.refill_bytes, 64);
        let e = h.check_invariants().unwrap_err();
        assert_eq!(
            e.what,
            "objects not conserved: in-use bytes disagree with the spans"
        );
        add_owned(&h.cpu.slots[0].stats.refill_bytes, 64usize.wrapping_neg());
        // A span that lost count of an object it handed out.
        let span = h
            .map()
            .page(p as usize, h.page_shift())
            .unwrap()
            .span
            .load(Ordering::Relaxed);
        // SAFETY: single-threaded test; the span is live.
        unsafe { (*span).allocated -= 1 };
        let e = h.check_invariants().unwrap_err();
        assert_eq!(
            e.what,
            "span objects not conserved (free + handed out != carved)"
        );
        // SAFETY: as above.
        unsafe { (*span).allocated += 1 };
        h.check_invariants().unwrap();
        // SAFETY: `p` is live.
        unsafe { h.deallocate(p, l) };
    }

    #[test]
    fn invariant_check_refuses_while_a_slot_is_busy() {
        let h = heap();
        let _g = h.cpu.slots[0].try_lock().unwrap();
        assert_eq!(h.check_invariants().unwrap_err().what, "CPU slot in use");
    }
}
