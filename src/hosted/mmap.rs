//! [`MmapSource`]: pages from the operating system through `mmap` (Linux, `std` feature).
//!
//! - Address space is reserved (`PROT_NONE`) and handed to the heap in runs of at least
//!   32 MiB, made readable and writable with `mprotect` as they go. Untouched pages cost no
//!   memory, so large runs keep the page heap's extent list short.
//! - The first reservation is the page map's *window* (64 GiB by default; halved until the
//!   kernel grants it, down to 1 GiB), with a table of 9 bytes per heap page beside it
//!   (`MAP_NORESERVE`: a page of the table costs memory once an entry in it is written), so
//!   that a free finds its page's class with a range check and one load ([`WindowMap`]).
//!   Runs are carved from the window while they fit; after that, from reservations of 1 GiB
//!   anywhere, which the map covers with its radix tree.
//! - Spans of at least 8 MiB get a mapping of their own (`grow_direct`), unmapped as soon as the
//!   span is freed.
//! - A request larger than [`os_max_request`] (RAM plus swap, as the kernel's overcommit
//!   heuristic judges glibc's mappings) fails at once: mappings with `MAP_NORESERVE` are not
//!   checked by the kernel, so nothing else would stop a 64 TiB request before it is touched.
//! - Free pages stay mapped until more than 32 MiB of them are idle; then the page heap gives
//!   the excess back with `madvise(MADV_DONTNEED)`, down to half that, and the pages read as
//!   zero when next touched. Not eagerly: a discarded page costs a page fault when reused.
//!   (It was 64 MiB. At 32 MiB redis after FLUSHALL kept 60 MB resident instead of 87, and
//!   the global benchmark's mixed, larson and realloc-grow runs were unchanged; at 16 MiB
//!   realloc-grow took 13% longer.)
//!
//! The source never allocates: its state is a few words, and it is only called under the
//! page-heap lock.

use core::ptr::NonNull;

use crate::page_map::WindowMap;
use crate::page_source::{PageSource, Run, Window};

/// A [`PageSource`] over anonymous private mappings. See the [module docs](self).
#[derive(Debug)]
pub struct MmapSource {
    reserve_bytes: usize,
    window_bytes: usize,
    run_bytes: usize,
    direct_threshold: usize,
    idle_bytes: usize,
    /// `[next, end)`: reserved address space outside the window not yet handed out.
    next: usize,
    end: usize,
    /// The window `[win_base, win_end)` (all 0 without one); `[win_next, win_end)` is not
    /// handed out yet. Never unmapped: the page map's table describes all of it.
    win_base: usize,
    win_next: usize,
    win_end: usize,
    /// Bytes of the window's table (0 without a window).
    table_bytes: usize,
    /// The operating system's page size (0 until first needed).
    os_page: usize,
    reserved: usize,
    direct_now: usize,
    direct_maps: usize,
}

/// The OS page size (`sysconf(_SC_PAGESIZE)`; 4096 if that fails), cached after the first
/// call. Allocates nothing, so an allocator may call it.
pub fn os_page_size() -> usize {
    static PAGE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let p = PAGE.load(core::sync::atomic::Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: `sysconf` has no preconditions and does not allocate.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 && (p as usize).is_power_of_two() {
        p as usize
    } else {
        4096
    };
    PAGE.store(p, core::sync::atomic::Ordering::Relaxed);
    p
}

/// User address space of x86-64 and AArch64 Linux with 4-level page tables (47 bits).
const USER_ADDRESS_SPACE: usize = 1 << 47;

/// The most one mapping of this process could hold in memory, cached after the first call:
/// total RAM plus swap (`sysinfo`), which is what Linux's default overcommit heuristic
/// (`vm.overcommit_memory = 0`) refuses to exceed in one private writable mapping, and so
/// where glibc's `malloc` (whose mappings are accounted) starts to fail. With
/// `vm.overcommit_memory = 1` (always overcommit) the kernel refuses nothing, so the bound is
/// the 47-bit user address space. Never above `RLIMIT_AS`. Our own mappings use
/// `MAP_NORESERVE`, which the heuristic does not check, so without this bound a request of
/// tens of TiB would be mapped and fail only when touched. Allocates nothing.
pub fn os_max_request() -> usize {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static MAX: AtomicUsize = AtomicUsize::new(0);
    let m = MAX.load(Ordering::Relaxed);
    if m != 0 {
        return m;
    }
    let mut m = if overcommit_mode() == Some(b'1') {
        USER_ADDRESS_SPACE
    } else {
        // SAFETY: `sysinfo` only writes the struct it is given, which is plain data.
        let mut si: libc::sysinfo = unsafe { core::mem::zeroed() };
        // SAFETY: as above; `si` is valid for writes.
        if unsafe { libc::sysinfo(&mut si) } == 0 {
            (si.totalram as usize)
                .saturating_add(si.totalswap as usize)
                .saturating_mul((si.mem_unit as usize).max(1))
                .min(USER_ADDRESS_SPACE)
        } else {
            USER_ADDRESS_SPACE
        }
    };
    // SAFETY: `getrlimit` only writes the struct it is given.
    let mut rl: libc::rlimit = unsafe { core::mem::zeroed() };
    // SAFETY: as above; `rl` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) } == 0
        && rl.rlim_cur != libc::RLIM_INFINITY
    {
        m = m.min(rl.rlim_cur as usize);
    }
    let m = m.max(1);
    MAX.store(m, Ordering::Relaxed);
    m
}

/// The first byte of `/proc/sys/vm/overcommit_memory`, read without allocating.
fn overcommit_mode() -> Option<u8> {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/sys/vm/overcommit_memory".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut b = [0u8; 1];
    // SAFETY: `b` is valid for one byte; `fd` is ours.
    let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    (n == 1).then_some(b[0])
}

impl MmapSource {
    /// A window of up to 64 GiB first, then 1 GiB at a time; runs of at least 32 MiB;
    /// spans of 8 MiB or more mapped directly; up to 32 MiB of idle pages kept.
    pub const fn new() -> Self {
        Self {
            reserve_bytes: 1 << 30,
            window_bytes: 64 << 30,
            run_bytes: 32 << 20,
            direct_threshold: 8 << 20,
            idle_bytes: 32 << 20,
            next: 0,
            end: 0,
            win_base: 0,
            win_next: 0,
            win_end: 0,
            table_bytes: 0,
            os_page: 0,
            reserved: 0,
            direct_now: 0,
            direct_maps: 0,
        }
    }

    /// Address space to reserve at a time outside the window.
    pub const fn with_reserve_bytes(mut self, bytes: usize) -> Self {
        self.reserve_bytes = bytes;
        self
    }

    /// The most address space to reserve for the page map's window (see the
    /// [module docs](self)); if the kernel refuses it, half as much is tried, down to 1 GiB
    /// (or `bytes`, if that is less). 0: no window, every run is covered by the radix tree.
    pub const fn with_window_bytes(mut self, bytes: usize) -> Self {
        self.window_bytes = bytes;
        self
    }

    /// The least a run handed to the heap holds.
    pub const fn with_run_bytes(mut self, bytes: usize) -> Self {
        self.run_bytes = bytes;
        self
    }

    /// Spans of at least this many bytes get a mapping of their own (`usize::MAX`: never).
    pub const fn with_direct_threshold(mut self, bytes: usize) -> Self {
        self.direct_threshold = bytes;
        self
    }

    /// Bytes of idle free pages kept before the heap discards the excess (`usize::MAX`:
    /// never discard).
    pub const fn with_idle_limit(mut self, bytes: usize) -> Self {
        self.idle_bytes = bytes;
        self
    }

    /// Address space reserved so far (the window, and reservations outside it; not counting
    /// direct mappings or the window's table).
    pub fn reserved_bytes(&self) -> usize {
        self.reserved
    }

    /// The window, `(base, len)`, once the heap asked for it and the kernel granted it.
    pub fn window(&self) -> Option<(usize, usize)> {
        (self.win_end != 0).then_some((self.win_base, self.win_end - self.win_base))
    }

    /// Bytes of address space reserved for the window's table (0 without a window); only
    /// the pages of it that hold written entries cost memory.
    pub fn window_table_bytes(&self) -> usize {
        self.table_bytes
    }

    /// Bytes in direct mappings now.
    pub fn direct_mapped_bytes(&self) -> usize {
        self.direct_now
    }

    /// Direct mappings made so far.
    pub fn direct_maps(&self) -> usize {
        self.direct_maps
    }

    fn os_page(&mut self) -> usize {
        if self.os_page == 0 {
            self.os_page = os_page_size();
        }
        self.os_page
    }

    /// Map `len` bytes (a multiple of the OS page) with protection `prot`, or `None`.
    fn map(len: usize, prot: libc::c_int) -> Option<usize> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p as usize)
    }

    /// Unmap `[addr, addr + len)`, which this source mapped and nothing uses.
    fn unmap(addr: usize, len: usize) -> bool {
        // SAFETY: the caller passes a range of this source's own mappings that holds nothing
        // anyone uses.
        len == 0 || unsafe { libc::munmap(addr as *mut libc::c_void, len) } == 0
    }

    /// Map `len` bytes aligned to `align` (a power of two, at least the OS page), trimming
    /// the over-mapped head and tail.
    fn map_aligned(&mut self, len: usize, align: usize, prot: libc::c_int) -> Option<usize> {
        let os = self.os_page();
        let len = len.checked_next_multiple_of(os)?;
        let extra = align.saturating_sub(os);
        let total = len.checked_add(extra)?;
        let p = Self::map(total, prot)?;
        let start = p.next_multiple_of(align);
        Self::unmap(p, start - p);
        Self::unmap(start + len, p + total - (start + len));
        Some(start)
    }
}

impl Default for MmapSource {
    fn default() -> Self {
        Self::new()
    }
}

/// Alignment of the window: huge-page size on x86-64 and AArch64 (4 KiB pages), so that the
/// window's runs line up with transparent huge pages where the kernel uses them.
const WINDOW_ALIGN: usize = 2 << 20;

impl MmapSource {
    /// The start of a run of `want` bytes aligned to `align` in `[next, end)`, if it fits.
    fn fit(next: usize, end: usize, want: usize, align: usize) -> Option<usize> {
        let start = next.checked_next_multiple_of(align)?;
        (next != 0 && start.checked_add(want)? <= end).then_some(start)
    }

    /// Whether `[addr, addr + len)` lies in the window.
    fn in_window(&self, addr: usize, len: usize) -> bool {
        self.win_end != 0 && addr >= self.win_base && addr.saturating_add(len) <= self.win_end
    }
}

// SAFETY: runs are fresh anonymous mappings (or fresh parts of a reservation made readable
// and writable), each handed out once; they stay mapped until `release` unmaps exactly them.
// The window is one reservation, and the runs carved from it lie wholly inside it; the
// others come from reservations or mappings elsewhere, which the kernel never places inside
// the window while it is mapped (and it stays mapped for the source's life). Its table is a
// fresh anonymous mapping (zero-filled, page-aligned) that nothing but the page map uses
// and that is never unmapped.
unsafe impl PageSource for MmapSource {
    type Map = WindowMap;

    const ZERO_FILLED: bool = true;

    fn grow(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        let align = align.max(self.os_page());
        let want = min_bytes
            .max(self.run_bytes)
            .checked_next_multiple_of(align)?;
        let in_window = Self::fit(self.win_next, self.win_end, want, align);
        let start = match in_window {
            Some(start) => start,
            None => match Self::fit(self.next, self.end, want, align) {
                Some(start) => start,
                None => {
                    // Start a new reservation; the rest of the old one goes back.
                    let size = want
                        .max(self.reserve_bytes)
                        .checked_next_multiple_of(align)?;
                    let base = self.map_aligned(size, align, libc::PROT_NONE)?;
                    if self.next != 0 {
                        Self::unmap(self.next, self.end - self.next);
                        self.reserved -= self.end - self.next;
                    }
                    self.reserved += size;
                    self.next = base;
                    self.end = base + size;
                    base
                }
            },
        };
        // SAFETY: `[start, start + want)` lies in one of our reservations and was never
        // handed out.
        let ok = unsafe {
            libc::mprotect(
                start as *mut libc::c_void,
                want,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } == 0;
        if !ok {
            return None;
        }
        if in_window.is_some() {
            self.win_next = start + want;
        } else {
            self.next = start + want;
        }
        Some(Run {
            base: NonNull::new(start as *mut u8)?,
            len: want,
        })
    }

    unsafe fn release(&mut self, run: Run) -> bool {
        let (addr, len) = (run.base.as_ptr() as usize, run.len);
        if self.in_window(addr, len) {
            // The window stays reserved (no other mapping may move in): the run becomes
            // inaccessible, unbacked address space again, never handed out twice.
            // SAFETY: `[addr, addr + len)` is a run of the window that nothing uses any more;
            // MAP_FIXED replaces exactly those pages.
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            return p as usize == addr;
        }
        let ok = Self::unmap(addr, len);
        if ok {
            self.direct_now = self.direct_now.saturating_sub(len);
        }
        ok
    }

    fn window(&mut self, page_shift: u32, table_bytes: &dyn Fn(usize) -> usize) -> Option<Window> {
        if self.win_end != 0 {
            return None;
        }
        let os = self.os_page();
        let unit = os.max(1 << page_shift);
        let floor = self.window_bytes.min(1 << 30);
        let mut len = self.window_bytes & !(unit - 1);
        while len >= floor.max(unit) {
            let table = table_bytes(len);
            if table == 0 {
                return None;
            }
            let table_len = table.checked_next_multiple_of(os)?;
            if let Some(base) = self.map_aligned(len, WINDOW_ALIGN.max(unit), libc::PROT_NONE) {
                if let Some(t) = Self::map(table_len, libc::PROT_READ | libc::PROT_WRITE) {
                    // Entries are written sparsely: a huge page would back 2 MiB of table
                    // for a few entries. Only a hint; its failure changes nothing.
                    // SAFETY: `t` is the mapping just made.
                    unsafe {
                        libc::madvise(t as *mut libc::c_void, table_len, libc::MADV_NOHUGEPAGE)
                    };
                    self.win_base = base;
                    self.win_next = base;
                    self.win_end = base + len;
                    self.reserved += len;
                    self.table_bytes = table_len;
                    return Some(Window {
                        base,
                        len,
                        table: NonNull::new(t as *mut u8)?,
                        table_len,
                    });
                }
                Self::unmap(base, len);
            }
            len = (len / 2) & !(unit - 1);
        }
        None
    }

    const DIRECT_RUNS: bool = true;

    fn direct_threshold(&self) -> usize {
        self.direct_threshold
    }

    fn grow_direct(&mut self, min_bytes: usize, align: usize) -> Option<Run> {
        let align = align.max(self.os_page());
        let len = min_bytes.checked_next_multiple_of(self.os_page())?;
        let start = self.map_aligned(len, align, libc::PROT_READ | libc::PROT_WRITE)?;
        self.direct_now += len;
        self.direct_maps += 1;
        Some(Run {
            base: NonNull::new(start as *mut u8)?,
            len,
        })
    }

    unsafe fn resize_direct(&mut self, run: Run, new_len: usize, may_move: bool) -> Option<Run> {
        let new_len = new_len.checked_next_multiple_of(self.os_page())?;
        let flags = if may_move { libc::MREMAP_MAYMOVE } else { 0 };
        // SAFETY: `run` is one of this source's direct mappings (the caller's guarantee);
        // `mremap` keeps its contents, and on failure leaves it as it was.
        let p = unsafe { libc::mremap(run.base.as_ptr().cast(), run.len, new_len, flags) };
        if p == libc::MAP_FAILED {
            return None;
        }
        self.direct_now = self.direct_now - run.len + new_len;
        Some(Run {
            base: NonNull::new(p.cast())?,
            len: new_len,
        })
    }

    fn idle_limit(&self) -> usize {
        self.idle_bytes
    }

    /// [`os_max_request`]: RAM plus swap (the 47-bit address space with
    /// `vm.overcommit_memory = 1`), at most `RLIMIT_AS`.
    fn max_request(&self) -> usize {
        os_max_request()
    }

    unsafe fn discard(&mut self, range: Run) -> bool {
        let os = self.os_page();
        let addr = range.base.as_ptr() as usize;
        if addr % os != 0 || range.len % os != 0 {
            return false;
        }
        // SAFETY: the caller guarantees the range is ours and holds nothing needed; private
        // anonymous pages read as zero after MADV_DONTNEED.
        unsafe { libc::madvise(addr as *mut libc::c_void, range.len, libc::MADV_DONTNEED) == 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(addr: usize) -> u8 {
        // SAFETY: tests read bytes of runs the source handed out.
        unsafe { core::ptr::read_volatile(addr as *const u8) }
    }

    fn write(addr: usize, v: u8) {
        // SAFETY: tests write bytes of runs the source handed out.
        unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
    }

    #[test]
    fn runs_come_from_one_reservation_and_are_zero() {
        let mut s = MmapSource::new()
            .with_reserve_bytes(64 << 20)
            .with_run_bytes(1 << 20);
        let a = s.grow(4096, 4096).expect("first run");
        let b = s.grow(3 << 20, 4096).expect("second run");
        assert_eq!(a.len, 1 << 20, "at least run_bytes");
        assert_eq!(b.len, 3 << 20);
        let (a0, b0) = (a.base.as_ptr() as usize, b.base.as_ptr() as usize);
        assert_eq!(
            b0,
            a0 + a.len,
            "carved one after the other from the reservation"
        );
        assert_eq!(s.reserved_bytes(), 64 << 20);
        for x in [a0, a0 + a.len - 1, b0 + 12345] {
            assert_eq!(read(x), 0);
            write(x, 7);
            assert_eq!(read(x), 7);
        }
        // A run larger than what is left starts a new reservation.
        let c = s.grow(62 << 20, 4096).expect("new reservation");
        assert_eq!(c.len, 62 << 20);
        assert_eq!(
            s.reserved_bytes(),
            (4 << 20) + (64 << 20),
            "4 MiB used of the first"
        );
        // SAFETY: runs this source handed out; nothing uses them any more.
        unsafe { assert!(s.release(a) && s.release(b) && s.release(c)) };
    }

    /// The table a window of `len` bytes needs with 4 KiB pages (as the map asks).
    fn table(len: usize) -> usize {
        <WindowMap as crate::PageMap>::window_table(len, 12)
    }

    #[test]
    fn the_window_is_reserved_once_and_runs_are_carved_from_it() {
        let mut s = MmapSource::new()
            .with_window_bytes(1 << 30)
            .with_reserve_bytes(64 << 20)
            .with_run_bytes(1 << 20);
        assert_eq!(s.window(), None);
        let w = PageSource::window(&mut s, 12, &table).expect("a 1 GiB window");
        assert!(
            PageSource::window(&mut s, 12, &table).is_none(),
            "only once"
        );
        assert_eq!(s.window(), Some((w.base, 1 << 30)));
        assert_eq!(w.len, 1 << 30);
        assert_eq!(w.base % WINDOW_ALIGN, 0);
        assert!(w.table_len >= table(w.len) && w.table_len % 4096 == 0);
        assert_eq!(s.window_table_bytes(), w.table_len);
        assert_eq!(s.reserved_bytes(), 1 << 30);
        // The table reads as zero anywhere and takes writes.
        let t = w.table.as_ptr() as usize;
        for x in [t, t + w.table_len / 2, t + w.table_len - 1] {
            assert_eq!(read(x), 0);
            write(x, 9);
            assert_eq!(read(x), 9);
        }
        // Runs come from the window, one after the other.
        let a = s.grow(4096, 4096).unwrap();
        let b = s.grow(3 << 20, 4096).unwrap();
        let (a0, b0) = (a.base.as_ptr() as usize, b.base.as_ptr() as usize);
        assert_eq!(a0, w.base);
        assert_eq!(b0, a0 + (1 << 20));
        write(b0 + b.len - 1, 1);
        // A run larger than what is left goes outside; smaller ones still fit inside.
        let big = s.grow(1 << 30, 4096).expect("outside the window");
        let big0 = big.base.as_ptr() as usize;
        assert!(big0 + big.len <= w.base || big0 >= w.base + w.len);
        let c = s.grow(4096, 4096).unwrap();
        assert_eq!(c.base.as_ptr() as usize, b0 + b.len, "back in the window");
        assert_eq!(s.reserved_bytes(), (1 << 30) + (1 << 30));
        // SAFETY: runs this source handed out; nothing uses them any more.
        unsafe { assert!(s.release(a) && s.release(big)) };
        // The released window run stays reserved: the next run does not reuse it.
        let d = s.grow(4096, 4096).unwrap();
        assert_eq!(d.base.as_ptr() as usize, b0 + b.len + c.len);
        assert_eq!(s.window(), Some((w.base, 1 << 30)));
    }

    #[test]
    fn a_window_the_kernel_refuses_is_halved_until_granted() {
        let mut s = MmapSource::new().with_window_bytes(8 << 30);
        // A table too large to map for anything above 1 GiB: the source settles for 1 GiB.
        let picky = |len: usize| if len > 1 << 30 { 1 << 62 } else { table(len) };
        let w = PageSource::window(&mut s, 12, &picky).expect("1 GiB");
        assert_eq!(w.len, 1 << 30);
        let mut none = MmapSource::new().with_window_bytes(0);
        assert!(
            PageSource::window(&mut none, 12, &table).is_none(),
            "turned off"
        );
        let r = none.grow(4096, 4096).expect("runs still come");
        assert!(none.window().is_none());
        // SAFETY: a run this source handed out, unused.
        unsafe { assert!(none.release(r)) };
        let mut refused = MmapSource::new().with_window_bytes(1 << 30);
        assert!(
            PageSource::window(&mut refused, 12, &|_| 0).is_none(),
            "the map wants none"
        );
    }

    #[test]
    fn discard_makes_pages_read_zero_and_keeps_them_usable() {
        let mut s = MmapSource::new().with_run_bytes(1 << 20);
        let r = s.grow(1 << 20, 4096).unwrap();
        let base = r.base.as_ptr() as usize;
        for i in 0..16 {
            write(base + i * 4096, 0xAB);
        }
        let range = Run {
            base: r.base,
            len: 8 * 4096,
        };
        // SAFETY: a range of our run whose contents we no longer need.
        assert!(unsafe { s.discard(range) });
        assert_eq!(read(base), 0, "discarded");
        assert_eq!(read(base + 7 * 4096), 0, "discarded");
        assert_eq!(read(base + 8 * 4096), 0xAB, "kept");
        write(base, 1);
        assert_eq!(read(base), 1, "still mapped");
        let odd = Run {
            base: NonNull::new((base + 100) as *mut u8).unwrap(),
            len: 4096,
        };
        // SAFETY: as above.
        assert!(!unsafe { s.discard(odd) }, "not page-aligned: refused");
    }

    #[test]
    fn direct_runs_are_aligned_and_unmapped_on_release() {
        let mut s = MmapSource::new();
        let r = s.grow_direct(10 << 20, 2 << 20).expect("direct map");
        let base = r.base.as_ptr() as usize;
        assert_eq!(base % (2 << 20), 0);
        assert!(r.len >= 10 << 20);
        write(base + r.len - 1, 3);
        assert_eq!(s.direct_mapped_bytes(), r.len);
        assert_eq!(s.direct_maps(), 1);
        // SAFETY: a run this source handed out, no longer used.
        assert!(unsafe { s.release(r) });
        assert_eq!(s.direct_mapped_bytes(), 0);
        assert!(
            s.grow_direct(usize::MAX / 2, 4096).is_none(),
            "too large: None"
        );
        assert!(s.grow(usize::MAX - 4095, 4096).is_none(), "too large: None");
        assert_eq!(s.direct_threshold(), 8 << 20);
        assert_eq!(s.idle_limit(), 32 << 20);
    }
}
