//! Tier 1, the per-CPU caches: one slot per CPU, a free list per size class in each, and all
//! of the tier's behaviour: the allocate and free fast paths, refills from and flushes to the
//! central cache, the per-slot byte budget, publishing the slots' counters and draining.
//!
//! A slot is entered one of two ways, as the platform says ([`Platform::EXCLUSIVE`]):
//! - *owned*: the platform promises that the index it gives names a slot only this context
//!   uses (a thread that claimed it, a CPU with preemption off, a single core). The owner
//!   enters with plain loads and stores and a compiler fence; no atomic read-modify-write.
//!   An interrupt or signal handler that re-enters finds the slot's flag set and uses the
//!   central cache. The rare operations on someone else's owned slot (a drain before an
//!   out-of-memory null, the invariant check) announce themselves with a flag and the
//!   platform's heavy barrier, and back off if the owner is inside (`SlotLock`).
//! - *shared*: a try-lock (an atomic swap). The index is then only a hint: if the slot is
//!   taken (a stale index, a migrated task, a re-entering interrupt), the operation goes to
//!   the central cache instead.
//!
//! Either way nobody waits for a slot, the slot's lists are only ever touched by the one
//! context inside it, and the common case touches no shared cache line.
//!
//! Each list's length limit starts at one object and grows each time the list runs dry (slow
//! start), so a class that is used rarely keeps little memory parked here. A slot whose cached
//! bytes exceed its budget sends objects back.
//!
//! When the tier below has nothing left, the allocation drains every slot (this tier's and,
//! through the central cache, the transfer caches and span reserves) and tries once more
//! before it returns null, so memory parked in caches never causes a false out-of-memory.

mod free_list;
mod slot;

use core::ptr;

use lock_api::RawMutex;

use crate::central_cache::{CentralCache, Chain};
use crate::heap::StoredCacheBytes;
use crate::page_source::PageSource;
use crate::platform::{Fault, FaultKind, Platform};
use crate::size_class::{class_size, NUM_CLASSES};
use crate::span::FreeObj;
use crate::stats::{add_owned, SharedStats, SlotStats};
use crate::sync::{AtomicUsize, BackOff, Ordering};
use free_list::MAX_LIMIT;

pub(crate) use self::free_list::FreeLists;
pub(crate) use self::slot::{CpuSlot, SlotGuard};

/// Tier 1: `CPUS` slots over the central cache, which this tier owns, and the platform that
/// says which slot a context uses.
/// `repr(C)`: the slots first, at the heap's own address (see `Heap`).
#[repr(C)]
pub(crate) struct CpuCache<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> {
    pub(crate) slots: [CpuSlot; CPUS],
    pub(crate) platform: P,
    /// The platform's [`vacated`](Platform::vacated) count when vacant slots were last
    /// drained.
    seen_vacated: AtomicUsize,
    pub(crate) central: CentralCache<S, R>,
    /// Counters of the paths that do not own a slot, and the heap-wide in-use total.
    pub(crate) shared: SharedStats,
    /// Bytes of free objects a slot may keep before it sends some back.
    pub(crate) budget: StoredCacheBytes,
}

impl<S: PageSource, P: Platform, R: RawMutex, const CPUS: usize> CpuCache<S, P, R, CPUS> {
    /// Slots `0..OWNED` are owned (entered without atomics); the rest are shared.
    pub(crate) const OWNED: usize = match P::EXCLUSIVE {
        Some(e) if e.shared < CPUS => CPUS - e.shared,
        _ => 0,
    };

    /// Whether the platform runs every context on one core, so an owner needs no memory
    /// barrier (`ExclusiveSlots::on_one_core`).
    pub(crate) const ONE_CORE: bool = match P::EXCLUSIVE {
        Some(e) => e.one_core,
        None => false,
    };

    pub(crate) const fn new(central: CentralCache<S, R>, platform: P, budget: usize) -> Self {
        Self {
            slots: [const { CpuSlot::new() }; CPUS],
            platform,
            seen_vacated: AtomicUsize::new(0),
            central,
            shared: SharedStats::new(),
            budget: StoredCacheBytes::new(budget),
        }
    }

    /// The slot CPU `cpu` uses.
    #[inline(always)]
    pub(crate) fn slot(&self, cpu: usize) -> &CpuSlot {
        &self.slots[Self::slot_index(cpu)]
    }

    /// Add one to a counter of CPU `cpu`'s slot that is kept outside the slot (realloc's),
    /// without entering it. A context that owns its slot on a multi-core platform adds with
    /// a plain load and store: an atomic read-modify-write is a full barrier on x86 (`lock`),
    /// which waits for the store buffer to drain, and after realloc's copy that was 13% of the
    /// time of the global benchmark's mixed1. Only a signal handler that reallocates between
    /// its owner's load and store can make such a count miss one. Shared slots, and every
    /// context of a one-core platform (whose interrupt handlers interleave with `main`; there
    /// the read-modify-write is an exclusive-monitor loop or a critical section, no barrier),
    /// add atomically.
    #[inline(always)]
    pub(crate) fn count(&self, cpu: usize, counter: impl Fn(&SlotStats) -> &AtomicUsize) {
        let c = counter(&self.slot(cpu).stats);
        // (`OWNED` is 0 on a platform without owned slots.)
        if !Self::ONE_CORE && cpu < Self::OWNED {
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        } else {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The slot index CPU index `cpu` uses. (A shared index on a platform without shared
    /// slots names slot 0 here; the fast paths never enter it, see `enter`.)
    #[inline(always)]
    fn slot_index(cpu: usize) -> usize {
        if P::EXCLUSIVE.is_none() {
            return cpu % CPUS;
        }
        if cpu < Self::OWNED {
            return cpu;
        }
        match CPUS - Self::OWNED {
            0 => 0,
            shared => Self::OWNED + cpu % shared,
        }
    }

    /// Enter the slot of CPU `cpu` for a fast path, or `None` if it is taken.
    #[inline(always)]
    fn enter(&self, cpu: usize) -> Option<SlotGuard<'_>> {
        if P::EXCLUSIVE.is_some() {
            if cpu < Self::OWNED {
                // SAFETY: the platform promises (`ExclusiveSlots::new`) that an index below
                // `OWNED` names a slot only this context uses during this call.
                return unsafe { self.slots[cpu].enter_owned(Self::ONE_CORE) };
            }
            if CPUS == Self::OWNED {
                return None;
            }
        }
        self.slot(cpu).try_lock()
    }

    /// Enter slot `index` from a slow path run by CPU index `me`: as its owner if it is
    /// `me`'s own, as a remote operation (with the platform's heavy barrier) if another
    /// context owns it, through the try-lock if it is shared.
    fn enter_any(&self, index: usize, me: usize) -> Option<SlotGuard<'_>> {
        let slot = &self.slots[index];
        if index >= Self::OWNED {
            return slot.try_lock();
        }
        if index == me {
            // SAFETY: `me` is the caller's own CPU index, which names `index` (see `enter`).
            return unsafe { slot.enter_owned(Self::ONE_CORE) };
        }
        slot.enter_remote(|| self.platform.remote_barrier())
    }

    // ----- fast paths -------------------------------------------------------------------
    //
    // Each fast path is the slot entry, the list operation and a return; everything else (a
    // refill, a flush, an index the platform must claim, a taken slot) is a tail call, so the
    // compiled `alloc` and `dealloc` need no stack frame of their own.

    /// An object of `class` for CPU `cpu`, or null if memory is exhausted (after every slot
    /// was drained and the allocation tried once more, so that memory parked in caches never
    /// causes a false out-of-memory).
    #[inline(always)]
    pub(crate) fn alloc(&self, cpu: usize, class: usize) -> *mut u8 {
        if P::EXCLUSIVE.is_none() {
            return match self.slot(cpu).try_lock() {
                Some(g) => self.alloc_in(g, class),
                None => self.alloc_fallback(class),
            };
        }
        if cpu < Self::OWNED {
            // SAFETY: the platform promises (`ExclusiveSlots::new`) that an index below
            // `OWNED` names a slot only this context uses during this call.
            return match unsafe { self.slots[cpu].try_enter_owned(Self::ONE_CORE) } {
                Ok(g) => self.alloc_in(g, class),
                Err(b) => self.alloc_backed_off(cpu, class, b),
            };
        }
        self.alloc_slow(cpu, class)
    }

    /// The owner found its slot in use (it interrupted itself there, or a remote operation is
    /// inside): undo the entry and go to the central cache.
    #[cold]
    #[inline(never)]
    fn alloc_backed_off(&self, cpu: usize, class: usize, b: BackOff) -> *mut u8 {
        self.slots[cpu].lock.back_off(b);
        self.alloc_fallback(class)
    }

    /// Pop an object of `class` inside the slot, or refill.
    #[inline(always)]
    fn alloc_in(&self, g: SlotGuard<'_>, class: usize) -> *mut u8 {
        let obj = Self::pop_counted(&g, class);
        if !obj.is_null() {
            return obj;
        }
        self.refill(g, class)
    }

    /// Pop an object of `class` inside the held slot and count the allocation, or null if
    /// the list is empty.
    #[inline(always)]
    fn pop_counted(g: &SlotGuard<'_>, class: usize) -> *mut u8 {
        // SAFETY: we are inside the slot.
        let obj = unsafe { g.lists().pop(class) };
        if !obj.is_null() {
            add_owned(&g.slot.stats.allocs, 1);
        }
        obj.cast()
    }

    /// `alloc` on a platform with owned slots, for an index that named none (the platform may
    /// have to claim one) or a slot already in use (a re-entering handler).
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, cpu: usize, class: usize) -> *mut u8 {
        let cpu = self.claimed(cpu);
        match self.enter(cpu) {
            Some(g) => self.alloc_in(g, class),
            None => self.alloc_fallback(class),
        }
    }

    /// The index to use on a slow path, given the one the fast path read: the platform's
    /// claimed index if that one named no owned slot.
    #[inline]
    fn claimed(&self, cpu: usize) -> usize {
        if cpu < Self::OWNED {
            cpu
        } else {
            self.platform.claim_cpu()
        }
    }

    /// Take back a free object of `class` on CPU `cpu`.
    ///
    /// # Safety
    /// `obj` must be an object of `class` handed out by this heap and no longer in use.
    #[inline(always)]
    pub(crate) unsafe fn free(&self, cpu: usize, obj: *mut FreeObj, class: usize) {
        if P::EXCLUSIVE.is_none() {
            return match self.slot(cpu).try_lock() {
                // SAFETY: the caller's guarantee.
                Some(g) => unsafe { self.free_in(g, obj, class) },
                // SAFETY: the caller's guarantee.
                None => unsafe { self.free_fallback(obj, class) },
            };
        }
        if cpu < Self::OWNED {
            // SAFETY: as in `alloc`.
            return match unsafe { self.slots[cpu].try_enter_owned(Self::ONE_CORE) } {
                // SAFETY: the caller's guarantee.
                Ok(g) => unsafe { self.free_in(g, obj, class) },
                // SAFETY: the caller's guarantee.
                Err(b) => unsafe { self.free_backed_off(cpu, obj, class, b) },
            };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.free_slow(cpu, obj, class) }
    }

    /// As [`alloc_backed_off`](Self::alloc_backed_off), for `free`.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    #[inline(never)]
    unsafe fn free_backed_off(&self, cpu: usize, obj: *mut FreeObj, class: usize, b: BackOff) {
        self.slots[cpu].lock.back_off(b);
        // SAFETY: the caller's guarantee.
        unsafe { self.free_fallback(obj, class) }
    }

    /// Push a free object of `class` inside the slot, and flush if the list is too long.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    unsafe fn free_in(&self, g: SlotGuard<'_>, obj: *mut FreeObj, class: usize) {
        let lists = g.lists();
        // The cheapest misuse check, in every build: the object freed just before is freed
        // again (glibc's tcache catches the same). Reported outside the slot.
        // SAFETY: we are inside the slot.
        if unsafe { lists.head(class) } == obj {
            drop(g);
            self.double_free(obj);
        }
        // SAFETY: we are inside the slot; the object is free and of this class.
        if unsafe { lists.push(class, obj) } {
            self.flush(g, class);
        }
    }

    /// Realloc's move of a small block to another class, inside one entry of the slot: pop
    /// an object of `new_class`, copy `len` bytes of `old` into it, push `old` onto its list
    /// of `old_class`, refilling the new class's list if it is empty. `None` (nothing done) if
    /// the slot is taken or the central cache has no object of the new class; the caller
    /// then moves the block the general way.
    ///
    /// Where entering a slot is an atomic read-modify-write (a shared slot, `SingleCpu`,
    /// a try-locked kernel slot), a free after the copy is one that waits for the store
    /// buffer the copy filled to drain (x86's `xchg` is a full barrier; it was 85% of
    /// realloc's own samples in talc's `random_actions` at 30 000 B); here the slot is
    /// entered before the copy and left with a plain store after it. Interrupt handlers and
    /// remote operations that come meanwhile find the slot taken and use the central cache.
    ///
    /// # Safety
    /// `old` must be a live object of `old_class` that the caller gives up, at least `len`
    /// bytes long, and `len` at most `new_class`'s size.
    #[cfg(not(feature = "checked"))]
    #[inline]
    pub(crate) unsafe fn move_object(
        &self,
        cpu: usize,
        old: *mut u8,
        old_class: usize,
        new_class: usize,
        len: usize,
    ) -> Option<*mut u8> {
        if Self::ONE_CORE {
            // One core enters its slot with plain stores (no barrier to wait on after the
            // copy): the general path costs a few instructions more, and this one 290 bytes
            // of a firmware image.
            return None;
        }
        let g = self.enter(cpu)?;
        let mut new = Self::pop_counted(&g, new_class);
        if new.is_null() {
            // Refilled inside the same entry; out of memory, the general path drains.
            new = self.refill_batch(&g, new_class);
            if new.is_null() {
                return None;
            }
        }
        // SAFETY: `new` is a fresh object of `new_class`, at least `len` bytes (the caller's
        // guarantee), distinct from the live `old`, which holds at least `len` bytes.
        unsafe { ptr::copy_nonoverlapping(old, new, len) };
        // SAFETY: the caller gives `old` up, and it is of `old_class`.
        unsafe { self.free_in(g, old.cast(), old_class) };
        Some(new)
    }

    /// `free` on a platform with owned slots, as [`alloc_slow`](Self::alloc_slow).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(&self, cpu: usize, obj: *mut FreeObj, class: usize) {
        let cpu = self.claimed(cpu);
        match self.enter(cpu) {
            // SAFETY: the caller's guarantee.
            Some(g) => unsafe { self.free_in(g, obj, class) },
            // SAFETY: the caller's guarantee.
            None => unsafe { self.free_fallback(obj, class) },
        }
    }

    /// The fault of an object freed twice in a row.
    #[cold]
    fn double_free(&self, obj: *mut FreeObj) -> ! {
        self.platform
            .fatal(&Fault::new(FaultKind::DoubleFree, obj as usize))
    }

    // ----- refill and flush -------------------------------------------------------------

    /// The slot's list for `class` is empty: take a batch from the central cache.
    #[cold]
    #[inline(never)]
    fn refill(&self, g: SlotGuard<'_>, class: usize) -> *mut u8 {
        // The guard is taken by value so that the fast path need not spill it to the stack.
        let p = self.refill_batch(&g, class);
        if p.is_null() {
            drop(g);
            return self.alloc_after_drain(class);
        }
        p
    }

    /// The tiers below found no memory for `class`: drain every CPU slot and try once more.
    #[cold]
    fn alloc_after_drain(&self, class: usize) -> *mut u8 {
        self.drain_all();
        // The drain emptied this context's slot too (if it could enter it), so there is
        // nothing to pop: refill.
        let p = match self.enter(self.claimed(self.platform.current_cpu())) {
            Some(g) => self.refill_batch(&g, class),
            None => self.take_one(class),
        };
        if p.is_null() {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    /// Refill the slot's empty list for `class` and return its first object, or null if the
    /// central cache has none.
    fn refill_batch(&self, g: &SlotGuard<'_>, class: usize) -> *mut u8 {
        let lists = g.lists();
        let batch = self.central.batch(class);
        let want = lists.max_len(class).clamp(1, batch);
        self.sweep_vacated();
        let mut chain = self.central.remove_batch(class, want);
        if chain.len == 0 {
            return ptr::null_mut();
        }
        let st = &g.slot.stats;
        add_owned(&st.refills, 1);
        add_owned(&st.refill_objs, chain.len);
        add_owned(&st.refill_bytes, chain.len * class_size(class));
        add_owned(&st.allocs, 1);
        let obj = chain.head;
        // SAFETY: we are inside the slot. The chain's objects are free and ours; the first
        // goes to the caller, the rest (fewer than `want`, at most the old limit) onto the
        // empty list, whose limit only grows.
        unsafe {
            lists.grow_limit(class, batch, self.list_cap(class, batch));
            chain.head = (*obj).next;
            chain.len -= 1;
            lists.push_chain(class, chain);
        }
        if lists.capacity() > self.budget.get() {
            self.enforce_budget(g, class);
        }
        self.publish(g);
        obj.cast()
    }

    /// Longest list a slot keeps for `class`.
    fn list_cap(&self, class: usize, batch: usize) -> usize {
        (self.budget.get() / class_size(class))
            .max(batch)
            .min(MAX_LIMIT)
    }

    /// A list grew past its limit: send a batch back to the central cache. (The budget is
    /// enforced here and on refills, the only places where a limit grows, which keeps the
    /// check off the fast path.)
    #[cold]
    #[inline(never)]
    fn flush(&self, g: SlotGuard<'_>, class: usize) {
        let g = &g;
        let lists = g.lists();
        let max = lists.max_len(class);
        if max == 0 {
            // A fresh (all-zero) list: its first free keeps the object and starts the slow
            // start at one, instead of sending that object back.
            // SAFETY: we are inside the slot; the list holds one object, its new limit.
            unsafe { lists.set_max_len(class, 1) };
        } else {
            let batch = self.central.batch(class);
            // SAFETY: we are inside the slot.
            let chain = unsafe { lists.pop_chain(class, batch) };
            // A list that only ever frees (a consumer) never refills, so its limit grows
            // here, one per flush up to a batch: its flushes then send whole batches, which
            // the transfer cache takes as they are. A list longer than a batch that
            // overflows three times with no refill between is in a phase of frees (a
            // program freeing a large structure): its limit drops by about a batch, so that what
            // the list keeps at the end of the phase, each object pinning its span in the
            // central cache, shrinks back towards a batch. (Without it, redis after
            // FLUSHALL kept 12 MB of objects in its slot, and those pinned 141 MB of spans.)
            if max < batch {
                // SAFETY: we are inside the slot.
                unsafe { lists.set_max_len(class, max + 1) };
            // SAFETY: as above.
            } else if max > batch && unsafe { lists.overflowed(class) } {
                // The list holds `max + 1 - batch` objects now: that is its new limit.
                // SAFETY: as above.
                unsafe { lists.set_max_len(class, max + 1 - batch) };
            }
            self.release_chain(g, class, chain);
        }
        if lists.capacity() > self.budget.get() {
            self.enforce_budget(g, class);
        }
    }

    /// The slot's limits allow more than its budget: halve other classes' limits (and send
    /// back what their lists hold beyond them), starting after `class` and ending with it,
    /// until they allow at most three quarters of the budget.
    #[cold]
    fn enforce_budget(&self, g: &SlotGuard<'_>, class: usize) {
        self.shrink(g, class, false, self.budget.get() - self.budget.get() / 4);
    }

    /// Lower the limits of the slot's lists to half (or to 0 with `empty`), starting with the
    /// class after `class` and ending with it, and send back what each list holds beyond its
    /// new limit, until the slot's capacity is at most `target`.
    fn shrink(&self, g: &SlotGuard<'_>, class: usize, empty: bool, target: usize) {
        let lists = g.lists();
        // The classes with a limit (a list with limit 0 is empty, see `drain_slot`): those
        // after `class`, then those up to it.
        for (lo, hi) in [(class + 1, NUM_CLASSES), (1, class + 1)] {
            for c in lists.active_classes(lo, hi) {
                if lists.capacity() <= target {
                    return;
                }
                let keep = if empty { 0 } else { lists.max_len(c) / 2 };
                // SAFETY: we are inside the slot.
                let chain = unsafe {
                    lists.set_max_len(c, keep);
                    lists.pop_chain(c, lists.len(c).saturating_sub(keep))
                };
                self.release_chain(g, c, chain);
            }
        }
    }

    /// Send a chain popped from the held slot's list of `class` to the central cache.
    fn release_chain(&self, g: &SlotGuard<'_>, class: usize, chain: Chain) {
        if chain.len == 0 {
            return;
        }
        let st = &g.slot.stats;
        add_owned(&st.flushes, 1);
        add_owned(&st.flush_objs, chain.len);
        add_owned(&st.flush_bytes, chain.len * class_size(class));
        self.publish(g);
        // SAFETY: the chain holds free objects of `class` that were cached in the slot.
        unsafe { self.central.insert_batch(class, chain, CPUS > 1) };
    }

    // ----- when the slot is taken -------------------------------------------------------

    /// The slot is taken: take one object straight from the central cache.
    #[cold]
    fn alloc_fallback(&self, class: usize) -> *mut u8 {
        self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        let p = self.take_one(class);
        if p.is_null() {
            return self.alloc_after_drain(class);
        }
        p
    }

    /// One object straight from the central cache, or null.
    fn take_one(&self, class: usize) -> *mut u8 {
        let chain = self.central.remove_batch(class, 1);
        if chain.len == 0 {
            return ptr::null_mut();
        }
        self.shared.record_other(true, class_size(class));
        chain.head.cast()
    }

    /// The slot is taken: give the object straight to the central cache.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    unsafe fn free_fallback(&self, obj: *mut FreeObj, class: usize) {
        self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a single free object of `class`, handed out by this heap.
        unsafe {
            (*obj).next = ptr::null_mut();
            let one = Chain {
                head: obj,
                tail: obj,
                len: 1,
            };
            self.central.insert_batch(class, one, CPUS > 1);
        }
        self.shared.record_other(false, class_size(class));
    }

    // ----- statistics -------------------------------------------------------------------

    /// Fold the slot's net in-use bytes into the heap-wide counter and the peak. Runs on the
    /// slow paths (refill, flush), where the lists' contents are not counted (that would be a
    /// sum over every class): what they hold is taken as their capacity, which bounds it, so
    /// the peak never exceeds the true one and falls short by at most what the slots' limits
    /// allow. (`Stats::collect` counts the lists exactly.)
    ///
    /// With several slots, changes up to a sixteenth of the slot budget (at most 16 KiB) wait
    /// for a later slow path: the shared counter is one cache line for every CPU, and touching
    /// it on every refill and flush costs more than the refill when two CPUs do it at once.
    fn publish(&self, g: &SlotGuard<'_>) {
        let st = &g.slot.stats;
        let net = st.net_in_use(g.lists().capacity());
        let delta = net.wrapping_sub(st.published.load(Ordering::Relaxed));
        // One slot has no one to contend with: publish every change.
        let min = if CPUS == 1 {
            0
        } else {
            (self.budget.get() / 16).min(16 * 1024)
        };
        if (delta as isize).unsigned_abs() > min {
            st.published.store(net, Ordering::Relaxed);
            self.shared.sync_in_use(delta as isize);
        }
    }

    // ----- draining ---------------------------------------------------------------------

    /// Send every object cached in slot `index` back to the central cache. Returns `false`
    /// if the slot was in use and left alone (or is another context's and the platform has
    /// no heavy barrier).
    pub(crate) fn drain_cpu(&self, index: usize) -> bool {
        let index = index % CPUS;
        match self.enter_any(index, Self::slot_index(self.platform.current_cpu())) {
            Some(g) => {
                self.drain_slot(&g);
                true
            }
            None => false,
        }
    }

    fn drain_slot(&self, g: &SlotGuard<'_>) {
        // Every limit to 0, from class 1 on. A slot whose limits are all 0 holds nothing (a
        // list holds more than its limit only between a free's push and its flush), so the
        // walk stops as soon as the capacity is 0.
        self.shrink(g, NUM_CLASSES - 1, true, 0);
    }

    /// Drain every slot that is not in use, then the central cache's transfer caches and span
    /// reserve, so memory parked in caches goes back to the page heap before an allocation
    /// gives up. Owned slots of other contexts are claimed first and
    /// then share one heavy barrier.
    #[cold]
    pub(crate) fn drain_all(&self) {
        self.shared.drains.fetch_add(1, Ordering::Relaxed);
        for g in self.enter_all().iter().flatten() {
            self.drain_slot(g);
        }
        // What the drained batches did not empty: whole batches parked in the transfer caches
        // and the reserved empty spans.
        self.central.release_held();
    }

    /// Enter every slot this context can enter now (its own, shared ones that are free, owned
    /// ones whose owner is outside, if the platform has a heavy barrier); `None` for the
    /// others. Other contexts' owned slots are claimed first and then
    /// share one heavy barrier.
    pub(crate) fn enter_all(&self) -> [Option<SlotGuard<'_>>; CPUS] {
        let me = Self::slot_index(self.platform.current_cpu());
        let mut claimed = [false; CPUS];
        let mut any = false;
        for (i, c) in claimed.iter_mut().enumerate().take(Self::OWNED) {
            if i != me {
                *c = self.slots[i].lock.claim_remote();
                any |= *c;
            }
        }
        let barrier = any && self.platform.remote_barrier();
        core::array::from_fn(|i| {
            let slot = &self.slots[i];
            if claimed[i] {
                if barrier {
                    return slot.confirm_remote();
                }
                slot.lock.leave_remote();
                None
            } else if i < Self::OWNED && i != me {
                None
            } else {
                self.enter_any(i, me)
            }
        })
    }

    /// Drain the owned slots that contexts have given up (threads that exited) since the last
    /// look: their caches go back to the central cache instead of waiting for a new owner.
    #[inline]
    fn sweep_vacated(&self) {
        if P::EXCLUSIVE.is_none() {
            return;
        }
        let v = self.platform.vacated();
        // `v == 0`: nothing was ever vacated (a platform whose slots are never given up
        // answers a constant 0, and this whole sweep compiles away).
        if v != 0 && v != self.seen_vacated.load(Ordering::Relaxed) {
            self.sweep_vacated_slow(v);
        }
    }

    #[cold]
    fn sweep_vacated_slow(&self, v: usize) {
        self.seen_vacated.store(v, Ordering::Relaxed);
        for (i, slot) in self.slots.iter().enumerate().take(Self::OWNED) {
            // An emptied slot keeps its limits (see `empty_lists`), so its contents, not its
            // capacity, say whether there is anything to drain.
            if slot.lists.capacity() == 0
                || slot.lists.contents().0 == 0
                || !self.platform.hold_vacant(i)
            {
                continue;
            }
            // No context can claim the slot while it is held, so no owner can be inside: the
            // remote flag only keeps other remote operations out, and no barrier is needed.
            if let Some(g) = slot.enter_remote(|| true) {
                self.empty_lists(&g);
            }
            self.platform.release_vacant(i);
        }
    }

    /// Send back everything the slot's lists hold, keeping their limits: the next context
    /// to own the slot (a new thread, on a platform that hands out the lowest free index)
    /// refills whole batches at once instead of slowly starting every class from one object.
    /// A limit holds no memory; the budget bounds the limits as before.
    fn empty_lists(&self, g: &SlotGuard<'_>) {
        let lists = g.lists();
        for c in lists.active_classes(1, NUM_CLASSES) {
            let n = lists.len(c);
            if n > 0 {
                // SAFETY: we are inside the slot.
                let chain = unsafe { lists.pop_chain(c, n) };
                self.release_chain(g, c, chain);
            }
        }
    }
}
