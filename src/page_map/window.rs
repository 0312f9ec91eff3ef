//! [`WindowMap`]: one flat table over the source's window of address space, and a radix tree
//! for every page outside it (64-bit targets).

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

#[cfg(feature = "checked")]
use super::live_words;
use super::{sealed, PageMap, PageRef, RadixMap};
use crate::page_source::Window;
use crate::span::Span;
#[cfg(test)]
use crate::span::CLASS_NONE;
#[cfg(feature = "checked")]
use crate::sync::AtomicUsize as LiveWord;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Where the arrays of a window's table lie: class bytes at offset 0 (one per page), span
/// pointers at `spans`, live bits (checked builds) at `live`; `total` bytes in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TableLayout {
    spans: usize,
    #[cfg_attr(not(feature = "checked"), allow(dead_code))]
    live: usize,
    total: usize,
}

impl TableLayout {
    /// The table of a window of `len` bytes, or `None` if its size overflows.
    fn of(len: usize, page_shift: u32) -> Option<Self> {
        let pages = len >> page_shift;
        let spans = pages.checked_next_multiple_of(align_of::<AtomicPtr<Span>>())?;
        let live = spans.checked_add(pages.checked_mul(size_of::<AtomicPtr<Span>>())?)?;
        #[cfg(feature = "checked")]
        let total = live.checked_add(live_words(len).checked_mul(size_of::<LiveWord>())?)?;
        #[cfg(not(feature = "checked"))]
        let total = live;
        Some(Self { spans, live, total })
    }
}

/// The page map of a source that places its runs in one *window* of address space
/// ([`PageSource::window`](crate::PageSource::window); `MmapSource` reserves 64 GiB): a
/// flat table over the whole window gives the entries of a page there by one index, and a
/// [`RadixMap`] covers every page outside it (direct mappings, runs made after the window
/// filled up, all runs if the source gave no window). 64-bit targets only.
///
/// The free fast path's lookup is then a range check and one load: `addr - base < len`, then
/// `classes[(addr - base) >> page_shift]`. The table is the source's zero-filled memory
/// (with mmap: reserved with `MAP_NORESERVE`, so a page of it costs memory only once an
/// entry in it is written: with 4 KiB pages, 9 bytes per heap page in use where the pages
/// in use are dense). Any address inside the window can be looked up without a fault:
/// a page no run covers reads as never used. An address outside it goes to the radix map,
/// which answers `None` for what it does not cover.
pub struct WindowMap {
    /// First byte of the window; with the arrays, written once before `len`.
    base: AtomicUsize,
    /// Bytes in the window: 0 until a window is set, so every lookup misses it; a nonzero
    /// length (stored with Release) publishes `base` and the arrays.
    len: AtomicUsize,
    classes: AtomicPtr<AtomicU8>,
    spans: AtomicPtr<AtomicPtr<Span>>,
    #[cfg(feature = "checked")]
    live: AtomicPtr<LiveWord>,
    /// The heap's page shift, as it is (the heap stores its own encoded, which would cost
    /// the free fast path a decode); written once before `len`.
    shift: AtomicU8,
    /// Whether the source was offered the window (written under the page-heap lock).
    asked: AtomicBool,
    /// Every page outside the window.
    rest: RadixMap,
}

impl sealed::Sealed for WindowMap {}

impl WindowMap {
    /// The window, `(base, len)`, once the source gave one the map could use.
    pub fn window(&self) -> Option<(usize, usize)> {
        match self.len.load(Ordering::Acquire) {
            0 => None,
            len => Some((self.base.load(Ordering::Relaxed), len)),
        }
    }

    /// The radix map that covers the pages outside the window.
    pub fn outside(&self) -> &RadixMap {
        &self.rest
    }

    /// The window index of the page holding `addr`, or `None` outside the window. The
    /// Acquire load of the length comes first: a nonzero one publishes the rest, the page
    /// shift among them (the heap's, kept here undecoded).
    #[inline(always)]
    fn index(&self, addr: usize) -> Option<usize> {
        let len = self.len.load(Ordering::Acquire);
        let off = addr.wrapping_sub(self.base.load(Ordering::Relaxed));
        if off >= len {
            return None;
        }
        // The shift `set_window` checked: below the word size.
        Some(off >> (self.shift.load(Ordering::Relaxed) & (usize::BITS - 1) as u8))
    }

    /// Where `[base, base + bytes)` lies: `Some(true)` inside the window, `Some(false)` wholly
    /// outside it, `None` across its edge (or past the end of the address space).
    fn place(&self, base: usize, bytes: usize) -> Option<bool> {
        let end = base.checked_add(bytes)?;
        let (wb, wl) = self.window().unwrap_or((0, 0));
        let wend = wb + wl;
        if wl == 0 || end <= wb || base >= wend {
            Some(false)
        } else if base >= wb && end <= wend {
            Some(true)
        } else {
            None
        }
    }

    /// Off the fast path: an address outside the window.
    #[cold]
    #[inline(never)]
    fn class_outside(&self, addr: usize, page_shift: u32) -> u8 {
        self.rest.class_of(addr, page_shift)
    }

    #[cold]
    #[inline(never)]
    fn page_outside(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>> {
        self.rest.page(addr, page_shift)
    }
}

impl PageMap for WindowMap {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Self = Self {
        base: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        classes: AtomicPtr::new(ptr::null_mut()),
        spans: AtomicPtr::new(ptr::null_mut()),
        #[cfg(feature = "checked")]
        live: AtomicPtr::new(ptr::null_mut()),
        shift: AtomicU8::new(0),
        asked: AtomicBool::new(false),
        rest: RadixMap::EMPTY,
    };

    fn meta_bound(pages: usize, page_shift: u32) -> usize {
        // A run outside the window needs what the radix map needs; one inside needs nothing.
        RadixMap::meta_bound(pages, page_shift)
    }

    fn meta_need(&self, base: usize, pages: usize, page_shift: u32) -> usize {
        let Some(bytes) = pages.checked_mul(1 << page_shift) else {
            return usize::MAX;
        };
        match self.place(base, bytes) {
            Some(true) => 0,
            Some(false) => self.rest.meta_need(base, pages, page_shift),
            None => usize::MAX,
        }
    }

    fn runs_left(&self) -> usize {
        usize::MAX
    }

    unsafe fn register(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        meta: &mut dyn FnMut(usize, usize) -> Option<NonNull<u8>>,
    ) -> bool {
        let Some(bytes) = pages.checked_mul(1 << page_shift) else {
            return false;
        };
        match self.place(base, bytes) {
            // The table already covers every page of the window.
            Some(true) => true,
            // SAFETY: the caller's guarantee; the run does not touch the window, so it
            // overlaps no run the radix map covers either.
            Some(false) => unsafe { self.rest.register(base, pages, page_shift, meta) },
            None => false,
        }
    }

    unsafe fn unregister(
        &self,
        base: usize,
        pages: usize,
        page_shift: u32,
        discard: &mut dyn FnMut(usize, usize),
    ) {
        let Some(bytes) = pages.checked_mul(1 << page_shift) else {
            return;
        };
        // Inside the window the entries (free or never used) simply stay in the table.
        if self.place(base, bytes) == Some(false) {
            // SAFETY: the caller's guarantee; a run outside the window was registered with
            // the radix map.
            unsafe { self.rest.unregister(base, pages, page_shift, discard) };
        }
    }

    #[inline(always)]
    fn wants_window(&self) -> bool {
        !self.asked.load(Ordering::Relaxed)
    }

    fn window_table(len: usize, page_shift: u32) -> usize {
        TableLayout::of(len, page_shift).map_or(0, |t| t.total)
    }

    unsafe fn set_window(&self, window: Option<Window>, page_shift: u32) {
        self.asked.store(true, Ordering::Relaxed);
        let Some(w) = window else { return };
        let page = 1usize << page_shift;
        let usable = w.len > 0
            && w.base % page == 0
            && w.len % page == 0
            && w.base.checked_add(w.len).is_some()
            && (w.table.as_ptr() as usize) % align_of::<AtomicPtr<Span>>() == 0;
        let Some(t) =
            TableLayout::of(w.len, page_shift).filter(|t| usable && t.total <= w.table_len)
        else {
            return;
        };
        let table = w.table.as_ptr();
        self.base.store(w.base, Ordering::Relaxed);
        self.shift.store(page_shift as u8, Ordering::Relaxed);
        self.classes.store(table.cast(), Ordering::Relaxed);
        // `wrapping_add`: the offsets lie inside the table (`t.total <= table_len`).
        self.spans
            .store(table.wrapping_add(t.spans).cast(), Ordering::Relaxed);
        #[cfg(feature = "checked")]
        self.live
            .store(table.wrapping_add(t.live).cast(), Ordering::Relaxed);
        // Publishes the fields above (and the zeroed table) to lock-free readers.
        self.len.store(w.len, Ordering::Release);
    }

    #[inline(always)]
    fn class_of(&self, addr: usize, page_shift: u32) -> u8 {
        match self.class_quick(addr, page_shift) {
            Some(tag) => tag,
            None => self.class_outside(addr, page_shift),
        }
    }

    #[inline(always)]
    fn class_quick(&self, addr: usize, page_shift: u32) -> Option<u8> {
        let _ = page_shift;
        let i = self.index(addr)?;
        // SAFETY: `i` is below the window's page count, and the class array holds one byte
        // per page; the Acquire load of the nonzero length in `index` saw it published, and
        // the table stays valid for the source's life.
        Some(unsafe { (*self.classes.load(Ordering::Relaxed).add(i)).load(Ordering::Relaxed) })
    }

    #[inline(always)]
    fn page(&self, addr: usize, page_shift: u32) -> Option<PageRef<'_>> {
        let Some(i) = self.index(addr) else {
            return self.page_outside(addr, page_shift);
        };
        // SAFETY: as in `class_of`: `i` indexes both arrays (one entry per page of the
        // window), which were published by the length and live as long as the source.
        unsafe {
            Some(PageRef {
                class: &*self.classes.load(Ordering::Relaxed).add(i),
                span: &*self.spans.load(Ordering::Relaxed).add(i),
                #[cfg(feature = "checked")]
                live: self.live.load(Ordering::Relaxed),
                #[cfg(feature = "checked")]
                live_base: self.base.load(Ordering::Relaxed),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::test_meta as meta;
    use super::*;

    const SHIFT: u32 = 12;
    const PAGE: usize = 1 << SHIFT;

    /// A window of `pages` pages at `base`, with a zeroed, leaked table of the size the map
    /// asks for.
    fn window(base: usize, pages: usize) -> Window {
        let len = pages * PAGE;
        let table_len = WindowMap::window_table(len, SHIFT);
        Window {
            base,
            len,
            table: meta(table_len, 8).unwrap(),
            table_len,
        }
    }

    fn class(map: &WindowMap, addr: usize) -> Option<u8> {
        map.page(addr, SHIFT)
            .map(|p| p.class.load(Ordering::Relaxed))
    }

    #[test]
    fn every_page_of_the_window_has_its_own_entry() {
        let map = WindowMap::EMPTY;
        let (base, pages) = (0x7f00_0000_0000usize, 1024usize);
        assert!(map.wants_window());
        assert_eq!(class(&map, base), None, "no window yet");
        assert_eq!(map.class_of(base, SHIFT), CLASS_NONE);
        let w = window(base, pages);
        assert_eq!(
            w.table_len,
            pages
                + 8 * pages
                + if cfg!(feature = "checked") {
                    pages * PAGE / 64
                } else {
                    0
                }
        );
        // SAFETY: single-threaded test; nothing is registered yet.
        unsafe { map.set_window(Some(w), SHIFT) };
        assert!(!map.wants_window(), "offered once");
        assert_eq!(map.window(), Some((base, pages * PAGE)));
        // A run inside the window needs no metadata and no registration work.
        assert_eq!(map.meta_need(base + PAGE, 10, SHIFT), 0);
        // SAFETY: as above.
        assert!(unsafe { map.register(base + PAGE, 10, SHIFT, &mut |_, _| None) });
        // Every page reads as never used, then keeps what is written to it.
        for i in 0..pages {
            let a = base + i * PAGE;
            assert_eq!(class(&map, a), Some(0), "page {i}");
            let p = map.page(a + PAGE / 2, SHIFT).unwrap();
            p.class.store((i % 80) as u8 + 1, Ordering::Relaxed);
            p.span.store((i + 1) as *mut Span, Ordering::Relaxed);
        }
        for i in 0..pages {
            let a = base + i * PAGE;
            for b in [a, a + 1, a + PAGE - 1] {
                assert_eq!(map.class_of(b, SHIFT), (i % 80) as u8 + 1, "page {i}");
                let p = map.page(b, SHIFT).unwrap();
                assert_eq!(p.span.load(Ordering::Relaxed) as usize, i + 1);
                #[cfg(feature = "checked")]
                assert_eq!(p.live_base, base);
            }
        }
        // Just outside the window on either side, and far away: not covered, no fault.
        for a in [
            base - 1,
            base - PAGE,
            base + pages * PAGE,
            0,
            8,
            0x5555_0000_0000,
            1 << 50,
            usize::MAX,
        ] {
            assert_eq!(class(&map, a), None, "{a:#x}");
            assert_eq!(map.class_of(a, SHIFT), CLASS_NONE, "{a:#x}");
        }
    }

    #[test]
    fn runs_across_the_edge_are_refused_and_runs_outside_go_to_the_radix_map() {
        let map = WindowMap::EMPTY;
        let (base, pages) = (0x7f00_0000_0000usize, 64usize);
        // SAFETY: single-threaded test; nothing is registered yet.
        unsafe { map.set_window(Some(window(base, pages)), SHIFT) };
        for (b, n) in [
            (base - PAGE, 2),
            (base + (pages - 1) * PAGE, 2),
            (base - PAGE, pages + 2),
        ] {
            assert_eq!(map.meta_need(b, n, SHIFT), usize::MAX, "{b:#x} + {n}");
            // SAFETY: as above.
            assert!(!unsafe { map.register(b, n, SHIFT, &mut meta) });
        }
        assert_eq!(map.outside().leaves(), 0, "nothing registered outside");
        // A direct mapping's first page, away from the window.
        let direct = 0x7e00_0000_0000usize;
        assert_eq!(class(&map, direct), None);
        assert!(map.meta_need(direct, 1, SHIFT) > 0);
        assert!(map.meta_need(direct, 1, SHIFT) <= WindowMap::meta_bound(1, SHIFT));
        // SAFETY: as above.
        assert!(unsafe { map.register(direct, 1, SHIFT, &mut meta) });
        assert_eq!(map.outside().leaves(), 1);
        map.page(direct, SHIFT)
            .unwrap()
            .class
            .store(0xFF, Ordering::Relaxed);
        assert_eq!(map.class_of(direct + 100, SHIFT), 0xFF);
        assert_eq!(
            class(&map, direct + PAGE),
            Some(0),
            "same leaf, next page: never used"
        );
        // Neighbours of the window just outside it are radix territory too.
        // SAFETY: as above.
        assert!(unsafe { map.register(base + pages * PAGE, 3, SHIFT, &mut meta) });
        assert_eq!(class(&map, base + pages * PAGE), Some(0));
        let mut discarded = 0;
        // SAFETY: the direct page's entry is set back to free, as the heap does first.
        unsafe {
            map.page(direct, SHIFT)
                .unwrap()
                .class
                .store(0xFD, Ordering::Relaxed);
            map.unregister(direct, 1, SHIFT, &mut |_, len| discarded += len);
        }
        assert!(
            discarded > 0,
            "the direct page's leaf describes nothing: discarded"
        );
        // Unregistering inside the window leaves its table alone.
        // SAFETY: as above (the entries are never used).
        unsafe { map.unregister(base, 4, SHIFT, &mut |_, _| panic!("window table discarded")) };
        assert_eq!(class(&map, base), Some(0));
    }

    #[test]
    fn without_a_usable_window_everything_is_radix() {
        let refused = WindowMap::EMPTY;
        // SAFETY: single-threaded test; nothing is registered yet.
        unsafe { refused.set_window(None, SHIFT) };
        assert!(!refused.wants_window(), "asked once, answered no");
        let base = 0x7f00_0000_0000usize;
        for bad in [
            Window {
                base: base + 1,
                ..window(base, 16)
            },
            Window {
                len: 16 * PAGE + 1,
                ..window(base, 16)
            },
            Window {
                table_len: 16 * 9 - 1,
                ..window(base, 16)
            },
            Window {
                len: 0,
                ..window(base, 16)
            },
            Window {
                base: (usize::MAX & !(PAGE - 1)) - 15 * PAGE,
                ..window(base, 16)
            },
        ] {
            let map = WindowMap::EMPTY;
            // SAFETY: as above.
            unsafe { map.set_window(Some(bad), SHIFT) };
            assert!(!map.wants_window());
            assert_eq!(map.window(), None, "{bad:?}");
            assert_eq!(class(&map, bad.base), None);
        }
        for map in [refused, WindowMap::EMPTY] {
            assert!(map.meta_need(base, 4, SHIFT) > 0);
            // SAFETY: as above.
            assert!(unsafe { map.register(base, 4, SHIFT, &mut meta) });
            assert_eq!(class(&map, base + 3 * PAGE), Some(0));
            assert_eq!(
                class(&map, base + 4 * PAGE),
                Some(0),
                "rest of the radix leaf"
            );
            assert_eq!(class(&map, base + (1 << 30)), None);
        }
    }

    #[test]
    fn readers_race_with_the_window_being_set() {
        let map: &'static WindowMap = std::boxed::Box::leak(std::boxed::Box::new(WindowMap::EMPTY));
        let base = 0x7f00_0000_0000usize;
        let reader = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut sweeps = 0usize;
            // Until one sweep sees every entry published.
            loop {
                let mut ones = 0;
                for i in 0..64usize {
                    let c = map.class_of(base + i * PAGE, SHIFT);
                    assert!(c <= 1, "a reader saw an unpublished entry");
                    ones += c as usize;
                }
                sweeps += 1;
                if ones == 64 {
                    return sweeps;
                }
                assert!(std::time::Instant::now() < deadline, "never saw the window");
            }
        });
        // SAFETY: the only writer; nothing is registered yet.
        unsafe { map.set_window(Some(window(base, 64)), SHIFT) };
        for i in 0..64usize {
            map.page(base + i * PAGE, SHIFT)
                .unwrap()
                .class
                .store(1, Ordering::Release);
        }
        assert!(reader.join().unwrap() >= 1);
    }
}
