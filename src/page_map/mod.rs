//! The page map: from any address to the span that owns its page, read without locks.
//!
//! For every page the map holds two words: the page's class byte (what the free fast path
//! needs) and a pointer to its span record. In checked builds it also holds one "live" bit for
//! every 8 bytes, set while an object starting there is allocated to the user.
//!
//! Entries are written only under the page-heap lock, and only for pages that no live object
//! occupies, so a reader that asks about a live object always sees a stable entry.

use core::ptr::NonNull;

use crate::page_source::Window;
use crate::span::{Span, CLASS_NONE};
#[cfg(feature = "checked")]
use crate::sync::AtomicUsize;
use crate::sync::{AtomicPtr, AtomicU8, Ordering};

/// The entries of one page.
#[doc(hidden)]
pub struct PageRef<'a> {
    pub(crate) class: &'a AtomicU8,
    pub(crate) span: &'a AtomicPtr<Span>,
    /// Live bits (checked builds): bit `i` covers the 8 bytes at `live_base + 8 * i`.
    #[cfg(feature = "checked")]
    pub(crate) live: *const AtomicUsize,
    /// The address that live bit 0 covers.
    #[cfg(feature = "checked")]
    pub(crate) live_base: usize,
}

/// Bits in a live-bit word.
#[cfg(feature = "checked")]
pub(crate) const LIVE_BITS: usize = usize::BITS as usize;

/// Words of live bits needed for `bytes` bytes of heap memory (checked builds).
#[cfg(feature = "checked")]
const fn live_words(bytes: usize) -> usize {
    (bytes / 8).div_ceil(LIVE_BITS)
}

mod sealed {
    pub trait Sealed {}
}

/// A page-map implementation. Choose one in [`PageSource::Map`](crate::PageSource::Map);
/// the trait itself is sealed.
pub trait PageMap: sealed::Sealed + Sync + Send + Sized {
    /// An empty map, usable in a `static`.
    #[doc(hidden)]
    const EMPTY: Self;

    /// Whether [`class_quick`](Self::class_quick) covers every page the map does, so that its
    /// `None` means [`CLASS_NONE`] (a map of one run).
    #[doc(hidden)]
    const QUICK_IS_ALL: bool = false;

    /// How many runs the map can cover (`usize::MAX`: no bound).
    #[doc(hidden)]
    const RUNS: usize = usize::MAX;

    /// An upper bound of the metadata bytes that [`register`](Self::register) asks for to
    /// cover `pages` pages.
    #[doc(hidden)]
    fn meta_bound(pages: usize, page_shift: u32) -> usize;

    /// The metadata bytes that [`register`](Self::register) would ask for right now to cover
    /// `pages` pages at `base` (at most [`meta_bound`](Self::meta_bound)). Call it under the
    /// page-heap lock, so that nothing is registered in between.
    #[doc(hidden)]
    fn meta_need(&self, base: usize, pages: usize, page_shift: u32) -> usize {
        let _ = base;
        Self::meta_bound(pages, page_shift)
    }

    /// How many more runs can be registered (`usize::MAX`: no bound).
    #[doc(hidden)]
    fn runs_left(&self) -> usize;

    /// Cover the pages `[base, base + pages << page_shift)`. Metadata comes from `meta`,
    /// which returns zeroed, exclusively owned memory of the given size and alignment.
    /// Returns `false` if the map cannot take the run (it is full, or `meta` failed).
    ///
    /// # Safety
    /// Must be called under the page-heap lock; the run must not overlap a covered one.
    #[doc(hidden)]
    unsafe fn register(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        meta: &mut dyn FnMut(usize, usize) -> Option<NonNull<u8>>,
    ) -> bool;

    /// Stop covering `[base, base + pages << page_shift)`, which [`register`](Self::register)
    /// covered and whose entries all say free or never used. The map may hand `discard`
    /// page-aligned ranges `(addr, len)` of its own metadata that now describe nothing; they
    /// may be discarded (contents lost, reading as zero afterwards) but stay mapped, because
    /// a lock-free reader may still look at them. The default keeps everything.
    ///
    /// # Safety
    /// Must be called under the page-heap lock, once per registration of the range.
    #[doc(hidden)]
    unsafe fn unregister(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        discard: &mut dyn FnMut(usize, usize),
    ) {
        let _ = (base, pages, page_shift, discard);
    }

    /// Whether the map takes a [`Window`] and has not been offered one yet: the page heap
    /// then asks its source ([`PageSource::window`](crate::PageSource::window)) once, before
    /// it first grows. The default: never.
    #[doc(hidden)]
    #[inline(always)]
    fn wants_window(&self) -> bool {
        false
    }

    /// Table bytes the map needs for a window of `len` bytes (0: no window of that length).
    #[doc(hidden)]
    fn window_table(len: usize, page_shift: u32) -> usize {
        let _ = (len, page_shift);
        0
    }

    /// Take the source's answer to the one offer of a window: `None`, or a window whose table
    /// holds [`window_table`](Self::window_table) bytes. A window the map cannot use (not
    /// page-aligned, too short a table) is ignored, and its runs are covered another way.
    ///
    /// # Safety
    /// Must be called under the page-heap lock, at most once, before any run is registered
    /// inside the window; the window must be as [`Window`]'s fields say.
    #[doc(hidden)]
    unsafe fn set_window(&self, window: Option<Window>, page_shift: u32) {
        let _ = (window, page_shift);
    }

    /// The entries of the page holding `addr`, or `None` if no covered run holds it.
    #[doc(hidden)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>>;

    /// The class byte of the page holding `addr` (what the free fast path needs), or
    /// [`CLASS_NONE`] (0, never used) if no covered run holds it: to a free, both say the
    /// pointer is not this heap's, and a plain byte spares the fast path an `Option`'s test.
    #[doc(hidden)]
    #[inline(always)]
    fn class_of(&self, addr: usize, page_shift: u32) -> u8 {
        self.page(addr, page_shift)
            .map_or(CLASS_NONE, |p| p.class.load(Ordering::Relaxed))
    }

    /// The class byte of the page holding `addr` if the map's quickest lookup finds it (the
    /// window, the first run), else `None`: then ask [`class_of`](Self::class_of). The free
    /// fast path uses it so that its only call is the slow path's, a tail call.
    #[doc(hidden)]
    #[inline(always)]
    fn class_quick(&self, addr: usize, page_shift: u32) -> Option<u8> {
        Some(self.class_of(addr, page_shift))
    }
}

mod flat;
#[cfg(target_pointer_width = "64")]
mod radix;
#[cfg(target_pointer_width = "64")]
mod window;

pub use self::flat::FlatMap;
#[cfg(target_pointer_width = "64")]
pub use self::radix::RadixMap;
#[cfg(target_pointer_width = "64")]
pub use self::window::WindowMap;

/// Zeroed, leaked metadata memory for the maps' unit tests.
#[cfg(test)]
fn test_meta(size: usize, align: usize) -> Option<NonNull<u8>> {
    extern crate std;
    use std::alloc::{alloc_zeroed, Layout};
    // SAFETY: test allocation, leaked on purpose.
    NonNull::new(unsafe { alloc_zeroed(Layout::from_size_align(size.max(1), align).ok()?) })
}
