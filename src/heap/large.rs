//! Large objects: requests above the small-object limit (or aligned beyond a page) are page
//! spans straight from the page heap, freed straight back, and resized in place when the
//! pages around them allow.

use core::alloc::Layout;
use core::ptr;

use lock_api::RawMutex;

use super::Heap;
use crate::page_map::{PageMap, PageRef};
use crate::page_source::PageSource;
use crate::platform::{FaultKind, Platform};
use crate::span::CLASS_LARGE;
use crate::sync::Ordering;

impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> Heap<S, P, R, CPUS> {
    /// A page span for a request above the small-object limit or aligned beyond it.
    #[cold]
    #[inline(never)]
    pub(super) fn alloc_large(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc_large_zeroed(size, align).0
    }

    /// [`alloc_large`](Self::alloc_large), and whether the span's pages are known zero (fresh
    /// from a zero-filling source such as mmap, or discarded since).
    #[cold]
    pub(super) fn alloc_large_zeroed(&self, size: usize, align: usize) -> (*mut u8, bool) {
        let page = self.page_size();
        let align = align.max(page);
        // What the source must give for it: whole pages, and the slack to align them. More
        // than the source can ever give fails here, before any lock or metadata.
        let pages = size
            .checked_add(page - 1)
            .map(|b| (b >> self.page_shift()).max(1));
        let Some(pages) = pages.filter(|&p| {
            (p << self.page_shift())
                .checked_add(align - page)
                .is_some_and(|b| b <= self.pages().max_request())
        }) else {
            self.cpu.shared.failed.fetch_add(1, Ordering::Relaxed);
            return (ptr::null_mut(), false);
        };
        let mut got = self.pages().alloc_span(pages, align, 0);
        if got.is_none() {
            self.cpu.drain_all();
            got = self.pages().alloc_span(pages, align, 0);
        }
        let Some((span, zeroed)) = got else {
            self.cpu.shared.failed.fetch_add(1, Ordering::Relaxed);
            return (ptr::null_mut(), false);
        };
        self.cpu.shared.large_allocs.fetch_add(1, Ordering::Relaxed);
        self.cpu
            .shared
            .record_other(true, pages << self.page_shift());
        // SAFETY: a live span record just allocated.
        (unsafe { (*span).start as *mut u8 }, zeroed)
    }

    /// Free a pointer whose page is not a small-object page: a large span, or a fault.
    #[cold]
    pub(super) fn free_page_span(&self, tag: u8, addr: usize, layout: Layout) {
        match self.map().page(addr, self.page_shift()) {
            Some(pr) if tag == CLASS_LARGE => self.free_large(&pr, addr, layout),
            _ => self.bad_page(tag, addr),
        }
    }

    #[cold]
    fn free_large(&self, pr: &PageRef<'_>, addr: usize, layout: Layout) {
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page tagged large points at its live span record.
        let (start, pages) = unsafe { ((*span).start, (*span).pages) };
        if start != addr {
            self.fault(FaultKind::InteriorPointer, addr);
        }
        #[cfg(feature = "checked")]
        self.check_free(pr, addr, layout, true);
        #[cfg(not(feature = "checked"))]
        let _ = layout;
        // SAFETY: a page tagged large points at a record handed out for a large allocation.
        if !unsafe { self.pages().free_large(pr, span) } {
            self.fault(FaultKind::DoubleFree, addr);
        }
        self.cpu
            .shared
            .record_other(false, pages << self.page_shift());
    }

    /// Shrink or grow a large span without copying: in place, or for a span with a direct run
    /// of its own by remapping it (which may move it, if `align` allows). Returns the
    /// object's address now, or `None` if the caller must move it.
    pub(super) fn resize_large(
        &self,
        pr: &PageRef<'_>,
        addr: usize,
        new_size: usize,
        align: usize,
    ) -> Option<*mut u8> {
        let span = pr.span.load(Ordering::Relaxed);
        // SAFETY: a page tagged large points at its live span record.
        let (start, pages) = unsafe { ((*span).start, (*span).pages) };
        if start != addr {
            self.fault(FaultKind::InteriorPointer, addr);
        }
        let new_pages = new_size
            .checked_add(self.page_size() - 1)
            .map(|b| (b >> self.page_shift()).max(1))?;
        // More than the source could ever give: leave it to the caller, whose new allocation
        // fails at once.
        if new_pages > pages && new_pages << self.page_shift() > self.pages().max_request() {
            return None;
        }
        let mut at = addr;
        let delta = if new_pages == pages {
            return Some(addr as *mut u8);
        } else if new_pages < pages {
            // SAFETY: a live large span, shrunk to at least one page.
            unsafe { self.pages().shrink_span(span, new_pages) };
            -(((pages - new_pages) << self.page_shift()) as isize)
        } else {
            // SAFETY: a live large span, grown; its one object is the caller's, being
            // reallocated, so it may move (the realloc contract hands out the new address).
            let grown = unsafe { self.pages().extend_span(span, new_pages) }
                || S::DIRECT_RUNS
                    && match unsafe {
                        self.pages()
                            .remap_direct(span, new_pages, align <= self.page_size())
                    } {
                        Some(s) => {
                            at = s;
                            true
                        }
                        None => false,
                    };
            if !grown {
                return None;
            }
            ((new_pages - pages) << self.page_shift()) as isize
        };
        if delta > 0 {
            self.cpu
                .shared
                .other_alloc_bytes
                .fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.cpu
                .shared
                .other_free_bytes
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        }
        self.cpu.shared.sync_in_use(delta);
        Some(at as *mut u8)
    }
}
