//! The central cache: for each size class, the spans that still have free objects, behind one
//! lock per class (lock striping).
//!
//! CPU caches take objects from here in batches and give them back in batches. A batch given
//! back is sorted into the spans its objects belong to (found through the page map); a span
//! whose objects have all come back goes straight to the page heap.
//!
//! [`CentralCache`] is the tier: the per-class lists and the page heap under them, which it
//! owns, with the span-length policy. A tier that cannot serve returns an empty chain; the
//! caller decides what to do next.

use core::ptr;

use lock_api::{Mutex, RawMutex};

use crate::heap::StoredMinSpan;
use crate::page_heap::{Geometry, PageHeap};
use crate::page_map::PageMap;
use crate::page_source::PageSource;
use crate::size_class::{class_size, span_pages, NUM_CLASSES};
use crate::span::{FreeObj, Span, SpanFlags};
use crate::sync::{AtomicUsize, CachePadded, Ordering};

/// A chain of free objects linked through their first word.
pub(crate) struct Chain {
    pub(crate) head: *mut FreeObj,
    pub(crate) tail: *mut FreeObj,
    pub(crate) len: usize,
}

impl Chain {
    pub(crate) const EMPTY: Chain = Chain {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        len: 0,
    };

    /// Put `obj` in front.
    ///
    /// # Safety
    /// `obj` must be a free object of at least one word, owned by the caller.
    pub(crate) unsafe fn push(&mut self, obj: *mut FreeObj) {
        // SAFETY: the caller owns the free object.
        unsafe { (*obj).next = self.head };
        if self.head.is_null() {
            self.tail = obj;
        }
        self.head = obj;
        self.len += 1;
    }
}

/// Tier 2: for each class, a locked list of spans with free objects; and tier 3 below it.
pub(crate) struct CentralCache<S: PageSource, R: RawMutex> {
    pub(crate) classes: [CachePadded<CentralClass<R>>; NUM_CLASSES],
    /// The page heap this tier carves its spans from (and large objects come from).
    pub(crate) pages: PageHeap<S, R>,
    /// The least a size-class span spans (see [`span_pages`]).
    pub(crate) min_span_bytes: StoredMinSpan,
}

impl<S: PageSource, R: RawMutex> CentralCache<S, R> {
    pub(crate) const fn new(source: S, geom: Geometry, min_span_bytes: usize) -> Self {
        Self {
            classes: [const { CachePadded(CentralClass::new()) }; NUM_CLASSES],
            pages: PageHeap::new(source, geom),
            min_span_bytes: StoredMinSpan::new(min_span_bytes),
        }
    }

    /// Take up to `n` objects of `class`, carving a new span when the class has none with
    /// free objects. Returns fewer (maybe none) only when memory is exhausted.
    #[inline]
    pub(crate) fn remove_batch(&self, class: usize, n: usize) -> Chain {
        self.classes[class].remove_batch(class, n, &self.pages, self.min_span_bytes.get())
    }

    /// Give back the objects of `class` linked from `head` (a null-terminated chain). Spans
    /// left with no object in use return to the page heap.
    ///
    /// # Safety
    /// Every object in the chain must be a free object of `class` handed out by this heap and
    /// not returned since.
    #[inline]
    pub(crate) unsafe fn insert_batch(&self, class: usize, head: *mut FreeObj) {
        // SAFETY: the caller's guarantee.
        unsafe { self.classes[class].insert_batch(head, &self.pages) }
    }

    /// Bytes of free objects held by the central lists' spans.
    pub(crate) fn free_bytes(&self) -> usize {
        self.classes
            .iter()
            .enumerate()
            .skip(1)
            .map(|(class, c)| c.free_objects.load(Ordering::Relaxed) * class_size(class))
            .sum()
    }
}

/// One class's list of spans with free objects. Guarded by the class's lock.
pub(crate) struct CentralList {
    /// Doubly linked through `Span::next`/`prev`; every span here has a free object.
    pub(crate) head: *mut Span,
    /// Spans of this class in use (in the list or full).
    pub(crate) spans: usize,
}

// SAFETY: the spans are heap metadata reachable only under the class lock.
unsafe impl Send for CentralList {}

/// A class's list and the counter that stats read without taking its lock.
pub(crate) struct CentralClass<R: RawMutex> {
    pub(crate) list: Mutex<R, CentralList>,
    /// Free objects held by this class's spans (including never-carved ones).
    pub(crate) free_objects: AtomicUsize,
}

impl<R: RawMutex> CentralClass<R> {
    pub(crate) const fn new() -> Self {
        Self {
            list: Mutex::const_new(
                R::INIT,
                CentralList {
                    head: ptr::null_mut(),
                    spans: 0,
                },
            ),
            free_objects: AtomicUsize::new(0),
        }
    }

    /// Take up to `n` objects of `class`; gets a new span from the page heap when the class
    /// has none with free objects. Returns fewer (maybe none) only when memory is exhausted.
    fn remove_batch<S: PageSource>(
        &self,
        class: usize,
        n: usize,
        pages_below: &PageHeap<S, R>,
        min_span_bytes: usize,
    ) -> Chain {
        let page_size = pages_below.geom().page_size();
        let size = class_size(class);
        let mut chain = Chain::EMPTY;
        let mut list = self.list.lock();
        let mut free = self.free_objects.load(Ordering::Relaxed);
        while chain.len < n {
            let mut span = list.head;
            if span.is_null() {
                // A class's first span is small, so a class used a little holds little;
                // a class that needs more spans gets longer ones (up to 8x), so its span
                // records stay a small share of its memory. When memory is short, a
                // shortest span is tried before giving up.
                let shortest = span_pages(class, page_size, min_span_bytes);
                let mut pages = span_pages(class, page_size, min_span_bytes << list.spans.min(3));
                let mut got = pages_below.alloc_span(pages, page_size, class as u8);
                if got.is_none() && pages > shortest {
                    pages = shortest;
                    got = pages_below.alloc_span(pages, page_size, class as u8);
                }
                let Some((new, _)) = got else { break };
                // SAFETY: a fresh span record owned by this class from now on.
                unsafe {
                    (*new).capacity = ((pages * page_size) / size) as u16;
                    free += (*new).capacity as usize;
                    list.push_front(new);
                }
                list.spans += 1;
                span = new;
            }
            // SAFETY: spans in the list are live spans of this class; we hold its lock.
            let s = unsafe { &mut *span };
            while chain.len < n && s.has_free() {
                // SAFETY: `s` has a free object, taken under the class lock; the chain owns it.
                unsafe { chain.push(s.take(size)) };
                free -= 1;
            }
            if !s.has_free() {
                // SAFETY: `s` is in the list.
                unsafe { list.unlink(s) };
            }
        }
        self.free_objects.store(free, Ordering::Relaxed);
        chain
    }

    /// Give back `len` objects of `class` linked from `head`. Spans left with no object in use
    /// return to the page heap.
    ///
    /// # Safety
    /// Every object in the chain must be a free object of `class` handed out by this heap and
    /// not returned since.
    unsafe fn insert_batch<S: PageSource>(&self, mut head: *mut FreeObj, pages: &PageHeap<S, R>) {
        let page_shift = pages.geom().page_shift;
        let mut list = self.list.lock();
        let mut free = self.free_objects.load(Ordering::Relaxed);
        while !head.is_null() {
            let obj = head;
            // SAFETY: chain objects are free and hold their link.
            head = unsafe { (*obj).next };
            let Some(pr) = pages.map.page(obj as usize, page_shift) else {
                continue;
            };
            let span = pr.span.load(Ordering::Relaxed);
            // SAFETY: the object is of a live span of this class (caller's guarantee), whose
            // record the page map points to; we hold the class lock.
            let s = unsafe { &mut *span };
            // SAFETY: as above.
            unsafe { s.put(obj) };
            free += 1;
            if !s.flags.contains(SpanFlags::IN_CENTRAL) {
                // SAFETY: a live span of this class, not in the list.
                unsafe { list.push_front(span) };
            }
            if s.allocated == 0 {
                // SAFETY: `s` is in the list (pushed above if it was not).
                unsafe { list.unlink(s) };
                list.spans -= 1;
                free -= s.capacity as usize;
                // SAFETY: no object of the span is in use or cached anywhere.
                unsafe { pages.free_span(span) };
            }
        }
        self.free_objects.store(free, Ordering::Relaxed);
    }

    /// Walk the class's spans in the list.
    #[cfg(test)]
    pub(crate) fn for_each_listed(&self, mut f: impl FnMut(&Span)) {
        let list = self.list.lock();
        let mut s = list.head;
        // SAFETY: listed spans are live records; we hold the lock.
        while let Some(span) = unsafe { s.as_ref() } {
            f(span);
            s = span.next;
        }
    }
}

impl CentralList {
    /// # Safety
    /// `span` must be a live span of this class, not in the list.
    unsafe fn push_front(&mut self, span: *mut Span) {
        // SAFETY: the caller guarantees a live record; links are ours under the lock.
        unsafe {
            (*span).prev = ptr::null_mut();
            (*span).next = self.head;
            if let Some(h) = self.head.as_mut() {
                h.prev = span;
            }
            (*span).flags.insert(SpanFlags::IN_CENTRAL);
        }
        self.head = span;
    }

    /// # Safety
    /// `span` must be in the list.
    unsafe fn unlink(&mut self, span: &mut Span) {
        // SAFETY: neighbours in the list are live records.
        unsafe {
            match span.prev.as_mut() {
                Some(p) => p.next = span.next,
                None => self.head = span.next,
            }
            if let Some(n) = span.next.as_mut() {
                n.prev = span.prev;
            }
        }
        span.next = ptr::null_mut();
        span.prev = ptr::null_mut();
        span.flags.remove(SpanFlags::IN_CENTRAL);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::page_source::StaticRegion;
    use crate::size_class::class_of_size;
    use crate::sync::DefaultRawMutex;
    use core::mem::MaybeUninit;
    use std::boxed::Box;
    use std::vec::Vec;

    #[test]
    fn batches_come_from_spans_and_empty_spans_go_back() {
        let region: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(1 << 20));
        let mut source = StaticRegion::<1>::new();
        assert!(source.add(region));
        let geom = Geometry {
            page_shift: 12,
            grow_bytes: 0,
        };
        let cache: CentralCache<StaticRegion<1>, DefaultRawMutex> =
            CentralCache::new(source, geom, 4096);
        let central = &cache.classes[class_of_size(64)];
        let stats = &cache.pages.stats;
        let class = class_of_size(64);

        let mut objs = Vec::new();
        for _ in 0..4 {
            let chain = cache.remove_batch(class, 32);
            assert_eq!(chain.len, 32);
            let mut o = chain.head;
            while !o.is_null() {
                objs.push(o);
                // SAFETY: chain objects hold their link.
                o = unsafe { (*o).next };
            }
        }
        objs.sort();
        objs.dedup();
        assert_eq!(objs.len(), 128, "distinct objects");
        // The class's first span is one page (64 objects); its second is twice as long.
        assert_eq!(central.list.lock().spans, 2);
        assert_eq!(
            stats.span_pages.load(Ordering::Relaxed),
            3,
            "spans of 1 then 2 pages"
        );
        assert_eq!(
            central.free_objects.load(Ordering::Relaxed),
            64,
            "192 carved, 128 out"
        );

        // Give back all but the highest object (in the second span): the first span empties
        // and returns to the page heap.
        let keep = objs.pop().unwrap();
        let mut head = ptr::null_mut();
        for &o in &objs {
            // SAFETY: the objects are ours and free.
            unsafe { (*o).next = head };
            head = o;
        }
        // SAFETY: every object came from `remove_batch` and is returned once.
        unsafe { cache.insert_batch(class, head) };
        assert_eq!(central.list.lock().spans, 1, "the emptied span went back");
        assert_eq!(stats.spans_freed.load(Ordering::Relaxed), 1);
        let mut listed = 0;
        central.for_each_listed(|s| {
            listed += 1;
            assert_eq!(s.allocated, 1);
        });
        assert_eq!(listed, 1, "the span with the kept object has free objects");

        // The last object returns its span too.
        // SAFETY: as above.
        unsafe {
            (*keep).next = ptr::null_mut();
            cache.insert_batch(class, keep);
        }
        assert_eq!(central.list.lock().spans, 0);
        assert_eq!(central.free_objects.load(Ordering::Relaxed), 0);
        assert_eq!(stats.span_pages.load(Ordering::Relaxed), 0);
    }
}
