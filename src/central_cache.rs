//! The central cache: for each size class, the spans that still have free objects, behind one
//! lock per class (lock striping).
//!
//! CPU caches take objects from here in batches and give them back in batches. Two layers
//! sit in front of the spans, both under the class lock:
//!
//! - the **transfer cache**: a stack of whole batches (exactly [`batch_objects`] objects, as a
//!   CPU cache flushes them). A flush that finds room pushes its batch in O(1) and a refill
//!   that wants a whole batch pops one in O(1), so objects that cross CPUs (one frees what
//!   another allocates) never touch their spans or the page map. The stack is intrusive: a
//!   batch is a null-terminated chain, and the second word of its first object links the next
//!   batch, so it costs two words of metadata per class whatever it holds (its top and a
//!   batch count, from which statistics derive its bytes). Classes of one
//!   word (8-byte objects on 64-bit targets) have no second word and skip it.
//! - the **span reserve**: a span whose objects have all come back stays listed (up to a few
//!   per class) instead of going to the page heap at once, so a class that empties and refills
//!   a span in turn does not carve it again each time.
//!
//! Only when the transfer cache is full (or the batch is not whole) is a batch sorted into the
//! spans its objects belong to (found through the page map); a span past the reserve whose
//! objects have all come back goes to the page heap. The out-of-memory drain
//! ([`release_held`](CentralCache::release_held)) empties both layers, so what they hold never
//! causes a false out-of-memory.
//!
//! [`CentralCache`] is the tier: the per-class lists and the page heap under them, which it
//! owns, with the span-length policy. A tier that cannot serve returns an empty chain; the
//! caller decides what to do next.

use core::ptr;

use lock_api::{Mutex, RawMutex};

use crate::heap::{StoredBatchBytes, StoredMinSpan};
use crate::page_heap::{Geometry, PageHeap};
use crate::page_map::PageMap;
use crate::page_source::PageSource;
use crate::size_class::{batch_objects, class_size, span_pages, NUM_CLASSES};
use crate::span::{FreeObj, Span, SpanFlags};
#[cfg(feature = "transfer-cache")]
use crate::stats::add_owned;
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
    /// About how many bytes move between a CPU cache and this tier in one batch.
    pub(crate) batch_bytes: StoredBatchBytes,
    /// Whole batches each class's transfer cache may hold.
    pub(crate) transfer_batches: u16,
    /// Empty spans each class may keep listed.
    pub(crate) reserve_spans: u16,
}

/// What the central cache holds on to: its [`Config`](crate::Config) fields.
#[derive(Clone, Copy)]
pub(crate) struct CentralPolicy {
    pub(crate) min_span_bytes: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) transfer_batches: u16,
    pub(crate) reserve_spans: u16,
}

impl<S: PageSource, R: RawMutex> CentralCache<S, R> {
    pub(crate) const fn new(source: S, geom: Geometry, policy: CentralPolicy) -> Self {
        Self {
            classes: [const { CachePadded(CentralClass::new()) }; NUM_CLASSES],
            pages: PageHeap::new(source, geom),
            min_span_bytes: StoredMinSpan::new(policy.min_span_bytes),
            batch_bytes: StoredBatchBytes::new(policy.batch_bytes),
            transfer_batches: policy.transfer_batches,
            reserve_spans: policy.reserve_spans,
        }
    }

    /// Objects in one whole batch of `class`.
    #[inline]
    pub(crate) fn batch(&self, class: usize) -> usize {
        batch_objects(class, self.batch_bytes.get())
    }

    /// Whether `class`'s transfer cache can hold anything: it is built (feature
    /// `transfer-cache`) and enabled, and the class's objects have the second word that links
    /// batches.
    #[inline]
    fn transfers(&self, class: usize) -> bool {
        TransferStack::BUILT
            && self.transfer_batches > 0
            && class_size(class) >= 2 * core::mem::size_of::<usize>()
    }

    /// Take up to `n` objects (at most a batch) of `class`: from the transfer cache's top
    /// batch if it has one (a whole batch as it is, or the first `n` of it; fewer when its top
    /// batch holds fewer), else from the spans, carving a new span when the class has none
    /// with free objects. Returns none only when memory is exhausted.
    #[inline]
    pub(crate) fn remove_batch(&self, class: usize, n: usize) -> Chain {
        let c = &self.classes[class];
        let mut list = c.list.lock();
        if n > 0 && !list.transfer.top().is_null() {
            // SAFETY: we hold the class lock and the transfer cache has a batch.
            return unsafe { c.pop_transfer(&mut list, n, self.batch(class)) };
        }
        c.remove_from_spans(&mut list, class, n, &self.pages, self.min_span_bytes.get())
    }

    /// Give back the objects of `chain` (null-terminated, of `class`): into the transfer
    /// cache if it is a whole batch and there is room, else into their spans. Spans past the
    /// reserve left with no object in use return to the page heap.
    ///
    /// # Safety
    /// Every object in the chain must be a free object of `class` handed out by this heap and
    /// not returned since, and `chain.len` must be its length.
    ///
    /// `transfer` is whether the caller's heap uses transfer caches at all: one with a single
    /// CPU slot does not, since a flushed batch can only come back to the slot that flushed
    /// it, whose list already caches the class; there a transfer cache would only keep
    /// objects out of their spans, so fewer spans empty (talc's heap_efficiency: 0.4 points).
    #[inline]
    pub(crate) unsafe fn insert_batch(&self, class: usize, chain: Chain, transfer: bool) {
        let c = &self.classes[class];
        let mut list = c.list.lock();
        let batch = self.batch(class);
        if transfer
            && chain.len == batch
            && c.transfer_count.get() + batch <= self.transfer_batches as usize * batch
            && self.transfers(class)
        {
            // SAFETY: a whole batch of free objects of at least two words (`transfers`),
            // ours from now on; we hold the class lock.
            unsafe { c.push_transfer(&mut list, chain) };
            return;
        }
        // SAFETY: the caller's guarantee; we hold the class lock.
        unsafe { c.insert_into_spans(&mut list, chain.head, &self.pages, self.reserve_spans) }
    }

    /// Empty every transfer cache into its spans and give every reserved empty span back to
    /// the page heap: the out-of-memory drain, after the CPU caches are drained.
    pub(crate) fn release_held(&self) {
        for (class, c) in self.classes.iter().enumerate().skip(1) {
            let mut list = c.list.lock();
            while !list.transfer.top().is_null() {
                // SAFETY: we hold the class lock; the transfer cache's top batch is ours to
                // sort into its spans.
                unsafe {
                    let batch = self.batch(class);
                    let chain = c.pop_transfer(&mut list, batch, batch);
                    c.insert_into_spans(&mut list, chain.head, &self.pages, 0);
                }
            }
            // SAFETY: we hold the class lock.
            unsafe { c.free_empty_spans(&mut list, &self.pages) };
        }
    }

    /// Bytes of free objects held by the central lists' spans.
    pub(crate) fn free_bytes(&self) -> usize {
        self.sum_bytes(|_, c| c.free_objects.load(Ordering::Relaxed))
    }

    /// Bytes of free objects in the transfer caches.
    pub(crate) fn transfer_bytes(&self) -> usize {
        self.sum_bytes(|_, c| c.transfer_count.get())
    }

    fn sum_bytes(&self, objects: impl Fn(usize, &CentralClass<R>) -> usize) -> usize {
        self.classes
            .iter()
            .enumerate()
            .skip(1)
            .map(|(class, c)| objects(class, c) * class_size(class))
            .sum()
    }
}

/// One class's list of spans with free objects, and its transfer cache. Guarded by the
/// class's lock.
pub(crate) struct CentralList {
    /// Doubly linked through `Span::next`/`prev`; every span here has a free object.
    pub(crate) head: *mut Span,
    /// Spans of this class in use (in the list or full), shifted left by 8, and in the low
    /// 8 bits the listed spans with no object handed out (the span reserve, at most 255:
    /// `Config::reserve_spans` is checked). One word, so that with the lock byte in front a
    /// class's record is 16 bytes on a 32-bit target, not 20.
    counts: usize,
    /// The transfer cache (nothing without feature `transfer-cache`).
    pub(crate) transfer: TransferStack,
}

/// One span in [`CentralList::counts`].
const ONE_SPAN: usize = 1 << 8;

impl CentralList {
    /// Spans of this class in use (in the list or full).
    #[inline]
    pub(crate) fn spans(&self) -> usize {
        self.counts >> 8
    }

    /// Listed spans with no object handed out (the span reserve).
    #[inline]
    pub(crate) fn empty(&self) -> u16 {
        (self.counts & (ONE_SPAN - 1)) as u16
    }

    /// A span joins the class: new, so it is also empty.
    #[inline]
    fn add_empty_span(&mut self) {
        self.counts += ONE_SPAN + 1;
    }

    /// A span with no object in use joins the reserve (the caller checked it has room).
    #[inline]
    fn add_empty(&mut self) {
        debug_assert!(self.empty() < 255);
        self.counts += 1;
    }

    /// A span leaves the reserve.
    #[inline]
    fn take_empty(&mut self) {
        debug_assert!(self.empty() > 0);
        self.counts -= 1;
    }
}

// SAFETY: the spans are heap metadata reachable only under the class lock.
unsafe impl Send for CentralList {}

/// A class's list and the counters that stats read without taking its lock.
pub(crate) struct CentralClass<R: RawMutex> {
    pub(crate) list: Mutex<R, CentralList>,
    /// Free objects held by this class's spans (including never-carved ones).
    pub(crate) free_objects: AtomicUsize,
    /// Objects in this class's transfer cache.
    pub(crate) transfer_count: TransferCount,
}

/// A class's transfer cache: a stack of batches, each a null-terminated chain whose first
/// object points at the next batch's first object with its second word. Every batch is a
/// whole batch except perhaps the top one, which a refill of fewer objects than a batch
/// shortens (so a short refill still takes its objects in O(1) lock holds, not from the
/// spans); a whole batch pushed onto a short top goes under it. (The object count is
/// [`CentralClass::transfer_count`], which statistics read without the lock.)
#[cfg(feature = "transfer-cache")]
pub(crate) struct TransferStack {
    top: *mut FreeObj,
    /// Objects in the top batch (0 when empty).
    top_len: usize,
}

/// Without feature `transfer-cache`: no bytes, always empty (firmware with one CPU slot has
/// no use for one and saves 8 bytes per class on 32-bit targets).
#[cfg(not(feature = "transfer-cache"))]
pub(crate) struct TransferStack;

#[cfg(feature = "transfer-cache")]
impl TransferStack {
    pub(crate) const BUILT: bool = true;
    const EMPTY: Self = Self {
        top: ptr::null_mut(),
        top_len: 0,
    };
    /// The first object of the top batch, or null.
    #[inline(always)]
    pub(crate) fn top(&self) -> *mut FreeObj {
        self.top
    }
    /// Objects in the top batch.
    #[inline(always)]
    pub(crate) fn top_len(&self) -> usize {
        self.top_len
    }
    fn set(&mut self, top: *mut FreeObj, top_len: usize) {
        self.top = top;
        self.top_len = top_len;
    }
}

#[cfg(not(feature = "transfer-cache"))]
impl TransferStack {
    pub(crate) const BUILT: bool = false;
    const EMPTY: Self = Self;
    #[inline(always)]
    pub(crate) fn top(&self) -> *mut FreeObj {
        ptr::null_mut()
    }
    #[inline(always)]
    pub(crate) fn top_len(&self) -> usize {
        0
    }
    fn set(&mut self, _top: *mut FreeObj, _top_len: usize) {
        unreachable!("no transfer cache is built")
    }
}

/// The transfer cache's batch count: written under the class lock, read by statistics
/// without it.
#[cfg(feature = "transfer-cache")]
pub(crate) struct TransferCount(crate::sync::PlainUsize);

/// Without feature `transfer-cache`: no bytes, always 0.
#[cfg(not(feature = "transfer-cache"))]
pub(crate) struct TransferCount;

impl TransferCount {
    const fn new() -> Self {
        #[cfg(feature = "transfer-cache")]
        return Self(crate::sync::PlainUsize::new(0));
        #[cfg(not(feature = "transfer-cache"))]
        Self
    }

    /// Batches held.
    #[inline(always)]
    pub(crate) fn get(&self) -> usize {
        #[cfg(feature = "transfer-cache")]
        return self.0.load(Ordering::Relaxed);
        #[cfg(not(feature = "transfer-cache"))]
        0
    }

    /// Add `delta` (wrapping), under the class lock.
    fn add(&self, delta: usize) {
        #[cfg(feature = "transfer-cache")]
        add_owned(&self.0, delta);
        #[cfg(not(feature = "transfer-cache"))]
        let _ = delta;
    }
}

/// The word after an object's link: where a transfer batch's first object links the next
/// batch.
///
/// # Safety
/// `obj` must be a free object of at least two words.
pub(crate) unsafe fn batch_link(obj: *mut FreeObj) -> *mut *mut FreeObj {
    // SAFETY: the object has a second word (caller's guarantee).
    unsafe { obj.cast::<*mut FreeObj>().add(1) }
}

impl<R: RawMutex> CentralClass<R> {
    pub(crate) const fn new() -> Self {
        Self {
            list: Mutex::const_new(
                R::INIT,
                CentralList {
                    head: ptr::null_mut(),
                    counts: 0,
                    transfer: TransferStack::EMPTY,
                },
            ),
            free_objects: AtomicUsize::new(0),
            transfer_count: TransferCount::new(),
        }
    }

    /// Push a whole batch onto the transfer cache: on top, or under a shortened top batch
    /// (so that only the top is ever short).
    ///
    /// # Safety
    /// `list` must be this class's list (its lock held); `chain` a null-terminated chain of
    /// free objects of this class, each at least two words, owned by the caller, and a whole
    /// batch.
    unsafe fn push_transfer(&self, list: &mut CentralList, chain: Chain) {
        let top = list.transfer.top();
        // SAFETY: the chain's first object and every batch's first object are free objects
        // of two words or more (the caller's guarantee for the chain, `transfers` for those
        // already there); the lock makes them ours to relink.
        unsafe {
            if !top.is_null() && list.transfer.top_len() < chain.len {
                *batch_link(chain.head) = *batch_link(top);
                *batch_link(top) = chain.head;
            } else {
                *batch_link(chain.head) = top;
                list.transfer.set(chain.head, chain.len);
            }
        }
        self.transfer_count.add(chain.len);
    }

    /// Take up to `n` objects (`1 <= n`) off the top batch of the transfer cache, which must
    /// not be empty: the whole top batch if it holds at most `n`, else its first `n` (a walk
    /// of `n` links), leaving the rest as a shorter top. `batch` is a whole batch's length.
    ///
    /// # Safety
    /// `list` must be this class's list (its lock held), with a batch in its transfer cache.
    unsafe fn pop_transfer(&self, list: &mut CentralList, n: usize, batch: usize) -> Chain {
        let head = list.transfer.top();
        let len = list.transfer.top_len();
        // SAFETY: the top batch's first object links the next batch in its second word.
        let next = unsafe { *batch_link(head) };
        if n >= len {
            list.transfer
                .set(next, if next.is_null() { 0 } else { batch });
            self.transfer_count.add(len.wrapping_neg());
            return Chain {
                head,
                // Not tracked; a refill pushes the chain onto an empty list and needs no tail.
                tail: ptr::null_mut(),
                len,
            };
        }
        let mut tail = head;
        // SAFETY: the top batch holds `len > n` free objects linked through their first word;
        // the one after the `n`th becomes the top, linking the next batch as the old top did
        // (it is a free object of this class, so of two words or more).
        unsafe {
            for _ in 1..n {
                tail = (*tail).next;
            }
            let rest = (*tail).next;
            (*tail).next = ptr::null_mut();
            *batch_link(rest) = next;
            list.transfer.set(rest, len - n);
        }
        self.transfer_count.add(n.wrapping_neg());
        Chain { head, tail, len: n }
    }

    /// Take up to `n` objects of `class` from its spans; gets a new span from the page heap
    /// when the class has none with free objects. Returns fewer (maybe none) only when memory
    /// is exhausted.
    fn remove_from_spans<S: PageSource>(
        &self,
        list: &mut CentralList,
        class: usize,
        n: usize,
        pages_below: &PageHeap<S, R>,
        min_span_bytes: usize,
    ) -> Chain {
        let page_size = pages_below.geom().page_size();
        let size = class_size(class);
        let mut chain = Chain::EMPTY;
        let mut free = self.free_objects.load(Ordering::Relaxed);
        while chain.len < n {
            let mut span = list.head;
            if span.is_null() {
                // A class's first span is small, so a class used a little holds little;
                // a class that needs more spans gets longer ones (up to 8x), so its span
                // records stay a small share of its memory. The page heap may give a
                // shorter one, a multiple of the shortest: it fills a short hole rather
                // than cutting into a long run, and when memory is short a shortest span
                // is enough.
                let shortest = span_pages(class, page_size, min_span_bytes);
                let pages = span_pages(class, page_size, min_span_bytes << list.spans().min(3));
                let got = pages_below.alloc_span_between(pages, shortest, page_size, class as u8);
                let Some((new, _)) = got else { break };
                // SAFETY: a fresh span record owned by this class from now on.
                unsafe {
                    (*new).capacity = (((*new).pages * page_size) / size) as u16;
                    free += (*new).capacity as usize;
                    list.push_front(new);
                }
                list.add_empty_span();
                span = new;
            }
            // SAFETY: spans in the list are live spans of this class; we hold its lock.
            let s = unsafe { &mut *span };
            if s.allocated == 0 {
                // The span leaves the reserve.
                list.take_empty();
            }
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

    /// Sort the objects linked from `head` back into their spans. A span left with no object
    /// in use stays listed while the class holds fewer than `reserve` such spans, and
    /// otherwise returns to the page heap.
    ///
    /// # Safety
    /// `list` must be this class's list (its lock held). Every object in the chain must be a
    /// free object of this class handed out by this heap and not returned since.
    unsafe fn insert_into_spans<S: PageSource>(
        &self,
        list: &mut CentralList,
        mut head: *mut FreeObj,
        pages: &PageHeap<S, R>,
        reserve: u16,
    ) {
        let page_shift = pages.geom().page_shift;
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
                if list.empty() < reserve {
                    list.add_empty();
                    continue;
                }
                // SAFETY: `s` is in the list (pushed above if it was not), and no object of
                // it is in use or cached anywhere.
                free -= unsafe { list.release(span, pages) };
            }
        }
        self.free_objects.store(free, Ordering::Relaxed);
    }

    /// Give every listed span with no object in use back to the page heap.
    ///
    /// # Safety
    /// `list` must be this class's list (its lock held).
    unsafe fn free_empty_spans<S: PageSource>(
        &self,
        list: &mut CentralList,
        pages: &PageHeap<S, R>,
    ) {
        let mut free = self.free_objects.load(Ordering::Relaxed);
        let mut s = list.head;
        while list.empty() > 0 && !s.is_null() {
            // SAFETY: listed spans are live records of this class; we hold its lock.
            let span = unsafe { &mut *s };
            s = span.next;
            if span.allocated == 0 {
                list.take_empty();
                // SAFETY: a listed span with no object in use or cached anywhere.
                free -= unsafe { list.release(span, pages) };
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
    /// Unlink `span`, which has no object in use, and give it to the page heap. Returns its
    /// capacity (the free objects the class no longer holds).
    ///
    /// # Safety
    /// `span` must be in the list, with no object in use or cached anywhere.
    unsafe fn release<S: PageSource, R: RawMutex>(
        &mut self,
        span: *mut Span,
        pages: &PageHeap<S, R>,
    ) -> usize {
        // SAFETY: the caller's guarantee: a listed, live span record.
        let capacity = unsafe {
            self.unlink(&mut *span);
            (*span).capacity as usize
        };
        self.counts -= ONE_SPAN;
        // SAFETY: no object of the span is in use or cached anywhere.
        unsafe { pages.free_span(span) };
        capacity
    }

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

    type Cache = CentralCache<StaticRegion<1>, DefaultRawMutex>;

    /// A central cache over 1 MiB of 4 KiB pages, batches of 2 KiB (32 objects of 64 B).
    fn cache(transfer_batches: u16, reserve_spans: u16) -> &'static Cache {
        let region: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new_uninit_slice(1 << 20));
        let mut source = StaticRegion::<1>::new();
        assert!(source.add(region));
        let geom = Geometry {
            page_shift: 12,
            grow_bytes: 0,
        };
        let policy = CentralPolicy {
            min_span_bytes: 4096,
            batch_bytes: 2048,
            transfer_batches,
            reserve_spans,
        };
        Box::leak(Box::new(CentralCache::new(source, geom, policy)))
    }

    fn objects(chain: &Chain) -> Vec<*mut FreeObj> {
        let mut v = Vec::new();
        let mut o = chain.head;
        while !o.is_null() {
            v.push(o);
            // SAFETY: chain objects hold their link.
            o = unsafe { (*o).next };
        }
        assert_eq!(v.len(), chain.len, "chain length");
        v
    }

    fn chain_of(objs: &[*mut FreeObj]) -> Chain {
        let mut c = Chain::EMPTY;
        for &o in objs.iter().rev() {
            // SAFETY: the test's objects are free and ours.
            unsafe { c.push(o) };
        }
        c
    }

    /// Whole batches in the transfer cache, reserved empty spans, spans, objects in the
    /// transfer cache.
    fn held(cache: &Cache, class: usize) -> (u16, u16, usize, usize) {
        let list = cache.classes[class].list.lock();
        let c = &cache.classes[class];
        (
            (c.transfer_count.get() / cache.batch(class)) as u16,
            list.empty(),
            list.spans(),
            c.transfer_count.get(),
        )
    }

    #[test]
    fn batches_come_from_spans_and_empty_spans_go_back() {
        let cache = cache(0, 0);
        let class = class_of_size(64);
        let central = &cache.classes[class];
        let stats = &cache.pages.stats;

        let mut objs = Vec::new();
        for _ in 0..4 {
            let chain = cache.remove_batch(class, 32);
            assert_eq!(chain.len, 32);
            objs.extend(objects(&chain));
        }
        objs.sort();
        objs.dedup();
        assert_eq!(objs.len(), 128, "distinct objects");
        // The class's first span is one page (64 objects); its second is twice as long.
        assert_eq!(central.list.lock().spans(), 2);
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
        // SAFETY: every object came from `remove_batch` and is returned once.
        unsafe { cache.insert_batch(class, chain_of(&objs), true) };
        assert_eq!(central.list.lock().spans(), 1, "the emptied span went back");
        assert_eq!(stats.spans_freed.load(Ordering::Relaxed), 1);
        let mut listed = 0;
        central.for_each_listed(|s| {
            listed += 1;
            assert_eq!(s.allocated, 1);
        });
        assert_eq!(listed, 1, "the span with the kept object has free objects");

        // The last object returns its span too.
        // SAFETY: as above.
        unsafe { cache.insert_batch(class, chain_of(&[keep]), true) };
        assert_eq!(central.list.lock().spans(), 0);
        assert_eq!(central.free_objects.load(Ordering::Relaxed), 0);
        assert_eq!(stats.span_pages.load(Ordering::Relaxed), 0);
    }

    #[test]
    #[cfg(feature = "transfer-cache")]
    fn whole_batches_pass_through_the_transfer_cache_in_order() {
        let cache = cache(2, 0);
        let class = class_of_size(64);
        let batch = cache.batch(class);
        assert_eq!(batch, 32);
        let a = objects(&cache.remove_batch(class, batch));
        let b = objects(&cache.remove_batch(class, batch));
        let c = objects(&cache.remove_batch(class, batch));
        let spans_before = held(cache, class).2;
        // Two whole batches fit; the third goes to its spans.
        // SAFETY: each batch came from `remove_batch` and is returned once.
        unsafe {
            cache.insert_batch(class, chain_of(&a), true);
            cache.insert_batch(class, chain_of(&b), true);
        }
        assert_eq!(held(cache, class), (2, 0, spans_before, 2 * batch));
        // SAFETY: as above.
        unsafe { cache.insert_batch(class, chain_of(&c), true) };
        assert_eq!(
            held(cache, class).0,
            2,
            "the full transfer cache took no third batch"
        );
        assert_eq!(cache.transfer_bytes(), 2 * batch * 64);
        // Refills of a whole batch come back last in, first out, unchanged.
        assert_eq!(objects(&cache.remove_batch(class, batch)), b);
        assert_eq!(objects(&cache.remove_batch(class, batch)), a);
        assert_eq!(held(cache, class), (0, 0, held(cache, class).2, 0));
    }

    #[test]
    #[cfg(feature = "transfer-cache")]
    fn short_batches_skip_the_transfer_cache_and_short_refills_shorten_its_top() {
        let cache = cache(4, 0);
        let class = class_of_size(64);
        let batch = cache.batch(class);
        let a = objects(&cache.remove_batch(class, batch));
        // A short batch (a drain, or a flush during slow start) is sorted into its spans.
        // SAFETY: objects from `remove_batch`, returned once.
        unsafe { cache.insert_batch(class, chain_of(&a[..batch - 1]), true) };
        assert_eq!(held(cache, class).3, 0);
        // SAFETY: as above.
        unsafe { cache.insert_batch(class, chain_of(&a[batch - 1..]), true) };
        let b = objects(&cache.remove_batch(class, batch));
        let d = objects(&cache.remove_batch(class, batch));
        // SAFETY: as above.
        unsafe { cache.insert_batch(class, chain_of(&b), true) };
        assert_eq!(held(cache, class).0, 1);
        // A refill that wants less than a batch takes the first objects of the top batch.
        let c = cache.remove_batch(class, 3);
        assert_eq!(objects(&c), b[..3]);
        assert_eq!(
            held(cache, class).3,
            batch - 3,
            "the rest stays as a short top"
        );
        // A whole batch goes under the short top, so only the top is ever short.
        // SAFETY: as above.
        unsafe { cache.insert_batch(class, chain_of(&d), true) };
        assert_eq!(held(cache, class).3, 2 * batch - 3);
        let top = cache.remove_batch(class, batch);
        assert_eq!(objects(&top), b[3..], "the short top, as it is");
        assert_eq!(objects(&cache.remove_batch(class, batch)), d);
        assert_eq!(held(cache, class).3, 0);
        // SAFETY: as above.
        unsafe {
            cache.insert_batch(class, c, true);
            cache.insert_batch(class, top, true);
        }
        // 8-byte objects on a 64-bit target have no word to link batches with.
        let tiny = class_of_size(8);
        let t = cache.remove_batch(tiny, cache.batch(tiny));
        // SAFETY: as above.
        unsafe { cache.insert_batch(tiny, t, true) };
        let expect = if core::mem::size_of::<usize>() == 8 {
            0
        } else {
            1
        };
        assert_eq!(held(cache, tiny).0, expect);
    }

    #[test]
    fn the_reserve_keeps_empty_spans_up_to_its_bound_and_release_returns_all() {
        let cache = cache(1, 1);
        let class = class_of_size(64);
        let batch = cache.batch(class);
        // Three spans' worth (1 + 2 + 4 pages: 64 + 128 + 256 objects).
        let mut all = Vec::new();
        while all.len() < 448 {
            all.extend(objects(&cache.remove_batch(class, batch)));
        }
        assert_eq!(held(cache, class).2, 3);
        let freed_before = cache.pages.stats.spans_freed.load(Ordering::Relaxed);
        // One whole batch stays in the transfer cache (if it is built); the rest empty all
        // three spans but the batch's: one empty span is kept, the others go back.
        for chunk in all.chunks(batch) {
            // SAFETY: objects from `remove_batch`, returned once.
            unsafe { cache.insert_batch(class, chain_of(chunk), true) };
        }
        let (transfer, empty, spans, _) = held(cache, class);
        let built = TransferStack::BUILT as u16;
        assert_eq!((transfer, empty), (built, 1));
        assert!(
            spans > built as usize,
            "the reserved span and the transfer batch's span"
        );
        assert!(cache.pages.stats.spans_freed.load(Ordering::Relaxed) > freed_before);
        // A refill takes the transfer cache's batch first, then the reserved span before
        // carving a new one.
        let t = if TransferStack::BUILT {
            let t = cache.remove_batch(class, batch);
            assert_eq!((t.len, held(cache, class).1), (batch, 1));
            t
        } else {
            Chain::EMPTY
        };
        let allocated = cache.pages.stats.spans_allocated.load(Ordering::Relaxed);
        let c = cache.remove_batch(class, 5);
        assert_eq!(held(cache, class).1, 0, "the reserved span is in use again");
        assert_eq!(
            cache.pages.stats.spans_allocated.load(Ordering::Relaxed),
            allocated
        );
        // SAFETY: as above.
        unsafe {
            cache.insert_batch(class, c, true);
            if t.len > 0 {
                cache.insert_batch(class, t, true);
            }
        }
        // The out-of-memory drain gives everything back.
        cache.release_held();
        assert_eq!(held(cache, class), (0, 0, 0, 0));
        assert_eq!(cache.free_bytes(), 0);
        assert_eq!(cache.pages.stats.span_pages.load(Ordering::Relaxed), 0);
    }
}
