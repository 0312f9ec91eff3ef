//! loom models of the heap's concurrency protocol.
//!
//! The real `Heap` cannot run under loom: it is built by `const fn`s over `portable-atomic`
//! atomics and `spin` locks, which loom can neither instrument nor replace without turning the
//! core's `const` constructors into runtime ones. So these are *models*: small re-statements of
//! the protocol that keep the real code's structure, its atomics and their orderings, its lock
//! order (CPU slot -> central[class] -> page heap), and its intrusive links (every free-list
//! link is a write into the object itself, so loom sees the object memory change hands).
//! `loom_models_mirror_the_source` (a plain test, no loom needed) fails when the orderings in
//! the source drift away from the ones modelled here. See docs/reliability.md.
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom_protocol
//! ```
//!
//! What each model checks, in every interleaving loom explores:
//! - `loom_slot_try_lock_*`: two CPUs with the same (stale) CPU hint contend for one slot;
//!   the loser goes to the central cache; no object is handed out twice, the slot's lists
//!   never race, and every object is conserved.
//! - `loom_batch_transfer_*`: one CPU flushes a batch into the central cache while another
//!   refills a batch from it.
//! - `loom_transfer_cache_*`: a whole batch is handed from one CPU to another through the
//!   class's transfer cache (linked through the second word of its first object) while a
//!   third context runs the out-of-memory drain (`CentralCache::release_held`) that sorts
//!   the transfer cache back into spans.
//! - `loom_span_return_*`: the last objects of a span come back on two CPUs at once while a
//!   third allocates (and may get the span's page back as a new span); the span goes to the
//!   page heap exactly once, never while an object of it is live, and the lock-free page-map
//!   reads of live objects always see their class.
//! - `loom_cross_cpu_free_*`: an object allocated on one CPU (maybe in a brand-new span) is
//!   handed to another CPU and freed there through the lock-free page map.
//! - `loom_checked_*` / `loom_large_*`: racing double frees are decided by the live bit's
//!   atomic clear (checked builds) and by the re-check under the page-heap lock (page spans).
//! - `loom_relaxed_try_lock_is_caught`: the same model with a `Relaxed` try-lock must fail,
//!   which shows the models are able to see a broken ordering.
//! - `loom_owned_*` (module `owned`): the owned-slot protocol of src/sync.rs `SlotLock`: an
//!   owner's plain fast path against a remote drain; a thread exit racing a drain of its slot
//!   and the slot's reuse by a new thread (src/hosted/platform.rs `ThreadSlot`,
//!   src/cpu_cache/mod.rs `sweep_vacated`). Loom has no asymmetric fence, so the owner's
//!   compiler fence plus the remote side's heavy barrier (`membarrier`) is modelled as a
//!   `SeqCst` fence on each side: the guarantee `membarrier` gives is that strong.

/// The orderings the models use, checked against the source. Runs without loom.
#[test]
fn loom_models_mirror_the_source() {
    let sync = include_str!("../src/sync.rs");
    let try_lock_swap = "swap(true, Ordering::Acquire)";
    let try_lock_cas = "compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)";
    assert!(
        sync.contains(try_lock_swap) || sync.contains(try_lock_cas),
        "TryLock::try_lock changed: update tests/loom_protocol.rs (TryKind)"
    );
    assert!(
        sync.contains("self.busy.store(false, Ordering::Release)"),
        "SlotLock::leave changed: update tests/loom_protocol.rs"
    );
    // The owned-slot protocol (`owned` below): the owner's store, fence and load, the
    // remote side's claim and check.
    assert!(
        sync.contains("busy.store(true, Ordering::Relaxed);")
            && sync.contains("compiler_fence(Ordering::SeqCst)")
            && sync.contains("if inside | self.remote_for_owner(one_core) {")
            && sync.contains("plain(&self.remote).load(Ordering::Acquire)")
            && sync.contains("plain(&self.busy).store(false, Ordering::Release);")
            && sync.contains("if self.busy.load(Ordering::Acquire) {"),
        "SlotLock owned/remote protocol changed: update tests/loom_protocol.rs (owned)"
    );
    let page_heap = include_str!("../src/page_heap/spans.rs");
    assert!(
        page_heap.contains("pr.span.store(span, Ordering::Relaxed);")
            && page_heap.contains("pr.class.store(tag, Ordering::Release);"),
        "page-map writes changed: update tests/loom_protocol.rs (set_map)"
    );
    let heap = include_str!("../src/heap/mod.rs");
    let checked = include_str!("../src/heap/checked.rs");
    assert!(
        heap.contains("let tag = pr.class.load(Ordering::Relaxed);"),
        "page-map read of the free path changed: update tests/loom_protocol.rs (free)"
    );
    assert!(
        checked.contains("word.fetch_and(!bit, Ordering::Relaxed) & bit == 0"),
        "checked-mode live-bit clear changed: update tests/loom_protocol.rs"
    );
}

#[cfg(loom)]
mod models {
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    const NIL: usize = usize::MAX;
    /// Objects per (one-page) span.
    const OPP: usize = 2;
    /// Page-map class bytes, as in src/span.rs.
    const CLASS: u8 = 1;
    const CLASS_NONE: u8 = 0;
    const CLASS_FREED: u8 = 0xFD;
    const CLASS_LARGE: u8 = 0xFF;
    /// What a user writes into an object it holds.
    const USER: usize = 0xA110C;

    /// How `TryLock::try_lock` takes the lock (src/sync.rs has had both).
    #[derive(Clone, Copy)]
    enum TryKind {
        Swap,
        Cas,
    }

    /// src/sync.rs `TryLock`, with its orderings as parameters so a broken variant can be
    /// shown to fail.
    struct TryLock {
        flag: AtomicBool,
        kind: TryKind,
        acquire: Ordering,
    }

    impl TryLock {
        fn try_lock(&self) -> bool {
            match self.kind {
                TryKind::Swap => !self.flag.swap(true, self.acquire),
                TryKind::Cas => self
                    .flag
                    .compare_exchange(false, true, self.acquire, Ordering::Relaxed)
                    .is_ok(),
            }
        }
        fn unlock(&self) {
            self.flag.store(false, Ordering::Release);
        }
    }

    /// src/cpu_cache/free_list.rs `FreeList`: the head and counts live in the slot (guarded by the
    /// try-lock), the links in the objects.
    #[derive(Clone, Copy)]
    struct List {
        head: usize,
        len: usize,
        max_len: usize,
    }

    struct Slot {
        lock: TryLock,
        cache: UnsafeCell<List>,
        /// `SlotStats::cached_bytes`: written by the holder with load + store, read by anyone.
        cached: AtomicUsize,
    }

    /// src/span.rs `Span`, one page each; guarded by the central lock.
    #[derive(Clone, Copy)]
    struct SpanRec {
        live: bool,
        free: usize,
        carved: usize,
        allocated: usize,
        in_central: bool,
    }

    struct Central {
        spans: Vec<SpanRec>,
        /// `CentralClass::free_objects`.
        free_objects: usize,
        /// `CentralList::transfer`: batches, each linked to the next through the second word
        /// of its first object; all whole but perhaps the top, of `top_len` objects.
        /// `transfer_len` is `CentralClass::transfer_count`, the objects held.
        transfer: usize,
        top_len: usize,
        transfer_len: usize,
    }

    struct PageHeap {
        used: Vec<bool>,
        spans_allocated: usize,
        spans_freed: usize,
    }

    struct World {
        /// The first word of every object: its free-list link, or user data.
        objs: Vec<UnsafeCell<usize>>,
        /// The second word of every object: a transfer batch's link to the next batch.
        objs2: Vec<UnsafeCell<usize>>,
        /// `Config::transfer_batches` (0: no transfer cache).
        transfer_cap: usize,
        slots: Vec<Slot>,
        central: Mutex<Central>,
        page_heap: Mutex<PageHeap>,
        /// The page map: class byte and span pointer (here: page index + 1) per page.
        page_class: Vec<AtomicU8>,
        page_span: Vec<AtomicUsize>,
        /// Oracle: bit `o` is set while object `o` is in a user's hands.
        user: AtomicUsize,
        batch: usize,
    }

    impl World {
        fn new(pages: usize, cpus: usize, kind: TryKind, acquire: Ordering) -> Arc<World> {
            Self::build(pages, cpus, kind, acquire, 0)
        }

        fn with_transfer(pages: usize, cpus: usize, transfer_cap: usize) -> Arc<World> {
            Self::build(pages, cpus, TryKind::Cas, Ordering::Acquire, transfer_cap)
        }

        fn build(
            pages: usize,
            cpus: usize,
            kind: TryKind,
            acquire: Ordering,
            transfer_cap: usize,
        ) -> Arc<World> {
            Arc::new(World {
                objs: (0..pages * OPP).map(|_| UnsafeCell::new(0)).collect(),
                objs2: (0..pages * OPP).map(|_| UnsafeCell::new(0)).collect(),
                transfer_cap,
                slots: (0..cpus)
                    .map(|_| Slot {
                        lock: TryLock {
                            flag: AtomicBool::new(false),
                            kind,
                            acquire,
                        },
                        cache: UnsafeCell::new(List {
                            head: NIL,
                            len: 0,
                            max_len: 1,
                        }),
                        cached: AtomicUsize::new(0),
                    })
                    .collect(),
                central: Mutex::new(Central {
                    spans: vec![
                        SpanRec {
                            live: false,
                            free: NIL,
                            carved: 0,
                            allocated: 0,
                            in_central: false,
                        };
                        pages
                    ],
                    free_objects: 0,
                    transfer: NIL,
                    top_len: 0,
                    transfer_len: 0,
                }),
                page_heap: Mutex::new(PageHeap {
                    used: vec![false; pages],
                    spans_allocated: 0,
                    spans_freed: 0,
                }),
                page_class: (0..pages).map(|_| AtomicU8::new(CLASS_NONE)).collect(),
                page_span: (0..pages).map(|_| AtomicUsize::new(0)).collect(),
                user: AtomicUsize::new(0),
                batch: 2,
            })
        }

        fn link(&self, o: usize) -> usize {
            self.objs[o].with(|p| unsafe { *p })
        }
        fn set_link(&self, o: usize, next: usize) {
            self.objs[o].with_mut(|p| unsafe { *p = next });
        }
        fn batch_link(&self, o: usize) -> usize {
            self.objs2[o].with(|p| unsafe { *p })
        }
        fn set_batch_link(&self, o: usize, next: usize) {
            self.objs2[o].with_mut(|p| unsafe { *p = next });
        }

        // ----- page heap (src/page_heap/) ---------------------------------------------

        /// `PageHeap::alloc_span` + `set_map`: under the page-heap lock.
        fn alloc_span(&self, ph: &mut PageHeap) -> Option<usize> {
            let page = ph.used.iter().position(|u| !u)?;
            ph.used[page] = true;
            ph.spans_allocated += 1;
            self.page_span[page].store(page + 1, Ordering::Relaxed);
            self.page_class[page].store(CLASS, Ordering::Release);
            Some(page)
        }

        /// `PageHeap::free_span`: under the page-heap lock.
        fn free_span(&self, ph: &mut PageHeap, page: usize) {
            self.page_span[page].store(0, Ordering::Relaxed);
            self.page_class[page].store(CLASS_FREED, Ordering::Release);
            assert!(ph.used[page], "span freed twice");
            ph.used[page] = false;
            ph.spans_freed += 1;
        }

        // ----- central cache (src/central_cache.rs) -----------------------------------

        /// `CentralCache::remove_batch`: from the transfer cache's top batch if there is one
        /// (`pop_transfer`: all of it if it holds at most `n`, else its first `n`, the rest
        /// staying as a shorter top), else up to `n` objects from the spans as a chain linked
        /// through them (`remove_from_spans`).
        fn remove_batch(&self, n: usize) -> (usize, usize) {
            let mut c = self.central.lock().unwrap();
            if n > 0 && c.transfer != NIL {
                let (head, len) = (c.transfer, c.top_len);
                let next = self.batch_link(head);
                if n >= len {
                    c.transfer = next;
                    c.top_len = if next == NIL { 0 } else { self.batch };
                    c.transfer_len -= len;
                    return (head, len);
                }
                let mut tail = head;
                for _ in 1..n {
                    tail = self.link(tail);
                }
                let rest = self.link(tail);
                self.set_link(tail, NIL);
                self.set_batch_link(rest, next);
                c.transfer = rest;
                c.top_len = len - n;
                c.transfer_len -= n;
                return (head, n);
            }
            let (mut head, mut len) = (NIL, 0);
            while len < n {
                let span = match c.spans.iter().position(|s| s.in_central) {
                    Some(s) => s,
                    None => {
                        let got = self.alloc_span(&mut self.page_heap.lock().unwrap());
                        let Some(page) = got else { break };
                        c.spans[page] = SpanRec {
                            live: true,
                            free: NIL,
                            carved: 0,
                            allocated: 0,
                            in_central: true,
                        };
                        c.free_objects += OPP;
                        page
                    }
                };
                let c = &mut *c;
                let s = &mut c.spans[span];
                while len < n && (s.free != NIL || s.carved < OPP) {
                    // `Span::take`: a returned object first, else carve the next one.
                    let o = if s.free != NIL {
                        let o = s.free;
                        s.free = self.link(o);
                        o
                    } else {
                        s.carved += 1;
                        span * OPP + s.carved - 1
                    };
                    s.allocated += 1;
                    c.free_objects -= 1;
                    // `Chain::push`.
                    self.set_link(o, head);
                    head = o;
                    len += 1;
                }
                if s.free == NIL && s.carved == OPP {
                    s.in_central = false;
                }
            }
            (head, len)
        }

        /// `CentralCache::insert_batch`: a whole batch into the transfer cache if there is
        /// room (`push_transfer`: on top, or under a short top), else the objects back into
        /// their spans.
        fn insert_batch(&self, head: usize, len: usize) {
            let mut c = self.central.lock().unwrap();
            if len == self.batch && c.transfer_len + len <= self.transfer_cap * self.batch {
                if c.transfer != NIL && c.top_len < len {
                    self.set_batch_link(head, self.batch_link(c.transfer));
                    self.set_batch_link(c.transfer, head);
                } else {
                    self.set_batch_link(head, c.transfer);
                    c.transfer = head;
                    c.top_len = len;
                }
                c.transfer_len += len;
                return;
            }
            self.insert_into_spans(&mut c, head);
        }

        /// `CentralCache::release_held`: every transfer batch back into its spans.
        fn release_held(&self) {
            let mut c = self.central.lock().unwrap();
            while c.transfer != NIL {
                let head = c.transfer;
                c.transfer = self.batch_link(head);
                c.transfer_len -= c.top_len;
                c.top_len = if c.transfer == NIL { 0 } else { self.batch };
                self.insert_into_spans(&mut c, head);
            }
        }

        /// `CentralClass::insert_into_spans`: objects back into their spans (found through
        /// the page map); a span with nothing out goes to the page heap (no span reserve).
        fn insert_into_spans(&self, c: &mut Central, mut head: usize) {
            while head != NIL {
                let o = head;
                head = self.link(o);
                let page = self.page_span[o / OPP].load(Ordering::Relaxed);
                assert_ne!(page, 0, "object {o} returned to a freed span");
                let page = page - 1;
                let s = &mut c.spans[page];
                assert!(s.live && s.allocated > 0, "span accounting broken");
                self.set_link(o, s.free);
                s.free = o;
                s.allocated -= 1;
                c.free_objects += 1;
                let s = &mut c.spans[page];
                s.in_central = true;
                if s.allocated == 0 {
                    s.in_central = false;
                    s.live = false;
                    s.free = NIL;
                    s.carved = 0;
                    c.free_objects -= OPP;
                    self.free_span(&mut self.page_heap.lock().unwrap(), page);
                }
            }
        }

        // ----- CPU slots and the heap's paths (src/cpu_cache/, src/heap/) -----------------------------

        fn bump_cached(&self, slot: &Slot, delta: isize) {
            let v = slot.cached.load(Ordering::Relaxed) as isize + delta;
            slot.cached.store(v as usize, Ordering::Relaxed);
        }

        /// `alloc_small`: the slot if its try-lock is free (refilling a batch from the
        /// central cache when its list is empty), else `alloc_fallback`.
        fn alloc(&self, cpu: usize) -> Option<usize> {
            let slot = &self.slots[cpu];
            let o = if slot.lock.try_lock() {
                let o = slot.cache.with_mut(|l| {
                    let l = unsafe { &mut *l };
                    if l.head != NIL {
                        let o = l.head;
                        l.head = self.link(o);
                        l.len -= 1;
                        self.bump_cached(slot, -1);
                        return Some(o);
                    }
                    // `refill`.
                    let want = l.max_len.clamp(1, self.batch);
                    let (head, len) = self.remove_batch(want);
                    if len == 0 {
                        return None;
                    }
                    let o = head;
                    let rest = self.link(o);
                    // `push_chain` of the rest: find its tail, link it to the list.
                    if len > 1 {
                        let mut tail = rest;
                        while self.link(tail) != NIL {
                            tail = self.link(tail);
                        }
                        self.set_link(tail, l.head);
                        l.head = rest;
                        l.len += len - 1;
                        self.bump_cached(slot, (len - 1) as isize);
                    }
                    l.max_len = (l.max_len + 1).min(self.batch);
                    Some(o)
                });
                slot.lock.unlock();
                o
            } else {
                let (head, len) = self.remove_batch(1);
                (len == 1).then_some(head)
            }?;
            let bit = 1usize << o;
            assert_eq!(
                self.user.fetch_or(bit, Ordering::Relaxed) & bit,
                0,
                "object {o} handed out twice"
            );
            // The user owns the object: it writes it.
            self.set_link(o, USER);
            Some(o)
        }

        /// `deallocate` of a small object: the lock-free page-map read, then `free_small`
        /// (push on the slot, flush a batch when over the limit) or the fallback.
        fn free(&self, cpu: usize, o: usize) {
            let tag = self.page_class[o / OPP].load(Ordering::Relaxed);
            assert_eq!(tag, CLASS, "live object {o} whose page says {tag:#x}");
            assert_eq!(self.objs[o].with(|p| unsafe { *p }), USER);
            self.user.fetch_and(!(1usize << o), Ordering::Relaxed);
            let slot = &self.slots[cpu];
            if slot.lock.try_lock() {
                slot.cache.with_mut(|l| {
                    let l = unsafe { &mut *l };
                    self.set_link(o, l.head);
                    l.head = o;
                    l.len += 1;
                    self.bump_cached(slot, 1);
                    if l.len > l.max_len {
                        // `flush` -> `pop_chain(batch)` -> `insert_batch`.
                        let n = self.batch.min(l.len);
                        let head = l.head;
                        let mut tail = head;
                        for _ in 1..n {
                            tail = self.link(tail);
                        }
                        l.head = self.link(tail);
                        self.set_link(tail, NIL);
                        l.len -= n;
                        self.bump_cached(slot, -(n as isize));
                        // `flush` grows a short limit by one, up to a batch.
                        if l.max_len < self.batch {
                            l.max_len += 1;
                        }
                        self.insert_batch(head, n);
                    }
                });
                slot.lock.unlock();
            } else {
                self.set_link(o, NIL);
                self.insert_batch(o, 1);
            }
        }

        /// Drain slot `cpu` (`drain_cpu`), if it is free.
        fn drain(&self, cpu: usize) -> bool {
            let slot = &self.slots[cpu];
            if !slot.lock.try_lock() {
                return false;
            }
            slot.cache.with_mut(|l| {
                let l = unsafe { &mut *l };
                if l.head != NIL {
                    let (head, len) = (l.head, l.len);
                    self.bump_cached(slot, -(l.len as isize));
                    *l = List {
                        head: NIL,
                        len: 0,
                        max_len: 1,
                    };
                    self.insert_batch(head, len);
                }
            });
            slot.lock.unlock();
            true
        }

        fn set_max_len(&self, cpu: usize, max_len: usize) {
            self.slots[cpu]
                .cache
                .with_mut(|l| unsafe { (*l).max_len = max_len });
        }

        /// After every thread is joined: drain everything and check conservation.
        fn check_quiescent(&self, live: &[usize]) {
            for cpu in 0..self.slots.len() {
                assert!(self.drain(cpu), "slot {cpu} left locked");
                assert_eq!(self.slots[cpu].cached.load(Ordering::Relaxed), 0);
            }
            self.release_held();
            let mut user = 0;
            for &o in live {
                user |= 1 << o;
            }
            assert_eq!(self.user.load(Ordering::Relaxed), user, "user set");
            let c = self.central.lock().unwrap();
            assert_eq!(
                (c.transfer, c.transfer_len),
                (NIL, 0),
                "transfer cache drained"
            );
            let ph = self.page_heap.lock().unwrap();
            let mut free_objects = 0;
            for (page, s) in c.spans.iter().enumerate() {
                assert_eq!(s.live, ph.used[page], "span record vs bitmap, page {page}");
                let class = self.page_class[page].load(Ordering::Relaxed);
                if s.live {
                    assert_eq!(class, CLASS);
                    let mut n = 0;
                    let mut o = s.free;
                    while o != NIL {
                        assert_eq!(o / OPP, page, "foreign object on a span list");
                        n += 1;
                        o = self.link(o);
                    }
                    assert_eq!(n + s.allocated, s.carved, "objects not conserved");
                    let mine = live.iter().filter(|&&o| o / OPP == page).count();
                    assert_eq!(s.allocated, mine, "allocated count vs live objects");
                    assert!(s.allocated > 0, "empty span kept out of the page heap");
                    free_objects += OPP - s.allocated;
                } else {
                    assert_ne!(class, CLASS, "freed page still tagged with the class");
                    assert!(live.iter().all(|&o| o / OPP != page), "live object lost");
                }
            }
            assert_eq!(c.free_objects, free_objects, "central free-object counter");
            assert_eq!(
                ph.spans_allocated - ph.spans_freed,
                ph.used.iter().filter(|u| **u).count()
            );
        }
    }

    fn slot_contention(kind: TryKind, acquire: Ordering) {
        loom::model(move || {
            let w = World::new(2, 1, kind, acquire);
            // One object cached in slot 0, the rest of its span in the central cache.
            let a = w.alloc(0).unwrap();
            w.free(0, a);
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let w = w.clone();
                    // Both CPUs report slot 0 (a stale hint): one of them falls back.
                    thread::spawn(move || {
                        let o = w.alloc(0).expect("memory for two objects");
                        w.free(0, o);
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            w.check_quiescent(&[]);
        });
    }

    /// The try-lock as src/sync.rs writes it now (`swap`). loom 0.7 lets a plain store
    /// slip between the read and the write of a concurrent read-modify-write (loom issues
    /// #254/#389, fix pending in loom PR #391), so it reports the slot "left locked" after
    /// `swap`-lock, `swap`-fail, unlock -- an execution the C++/Rust memory model forbids.
    /// Until loom has the fix, the CAS variant below stands in: a `swap(true)` that finds
    /// `true` writes the value that is already there, which no thread can tell apart from a
    /// failed compare-exchange that writes nothing.
    #[test]
    #[ignore = "loom#254: RMW atomicity is not enforced against concurrent stores"]
    fn loom_slot_try_lock_falls_back_to_central_swap() {
        slot_contention(TryKind::Swap, Ordering::Acquire);
    }

    #[test]
    fn loom_slot_try_lock_falls_back_to_central_cas() {
        slot_contention(TryKind::Cas, Ordering::Acquire);
    }

    /// A try-lock that does not acquire lets the second holder touch the slot's lists
    /// without seeing the first holder's writes: loom must report it.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_relaxed_try_lock_is_caught() {
        slot_contention(TryKind::Cas, Ordering::Relaxed);
    }

    #[test]
    fn loom_batch_transfer_between_slot_and_central() {
        loom::model(|| {
            let w = World::new(2, 2, TryKind::Cas, Ordering::Acquire);
            // CPU 0 holds two objects and caches one; its next free overflows the list.
            let a = w.alloc(0).unwrap();
            let b = w.alloc(0).unwrap();
            let c = w.alloc(0).unwrap();
            w.free(0, c);
            w.set_max_len(0, 1);
            let t0 = {
                let w = w.clone();
                thread::spawn(move || {
                    // Pushes `a` (2 > max 1): flushes a batch of 2 to the central cache.
                    w.free(0, a);
                })
            };
            let t1 = {
                let w = w.clone();
                thread::spawn(move || {
                    // An empty slot: refills from the central cache (maybe from the batch
                    // that CPU 0 is flushing, maybe a new span).
                    let x = w.alloc(1);
                    let y = w.alloc(1);
                    (x, y)
                })
            };
            t0.join().unwrap();
            let (x, y) = t1.join().unwrap();
            let mut live = vec![b];
            live.extend(x);
            live.extend(y);
            w.check_quiescent(&live);
        });
    }

    #[test]
    fn loom_transfer_cache_hands_a_batch_over_while_a_drain_runs() {
        loom::model(|| {
            let w = World::with_transfer(3, 2, 1);
            // CPU 0 holds three objects and caches one; its next free flushes a whole batch
            // of two, which fits in the transfer cache.
            let a = w.alloc(0).unwrap();
            let b = w.alloc(0).unwrap();
            let c = w.alloc(0).unwrap();
            w.free(0, c);
            w.set_max_len(0, 1);
            // CPU 1's refill wants a whole batch.
            w.set_max_len(1, 2);
            let t0 = {
                let w = w.clone();
                thread::spawn(move || w.free(0, a))
            };
            let t1 = {
                let w = w.clone();
                // From the transfer cache if the batch is there, else from the spans (a
                // drained batch's, or a new span).
                thread::spawn(move || (w.alloc(1), w.alloc(1)))
            };
            let t2 = {
                let w = w.clone();
                // The out-of-memory drain's central half, on a third context.
                thread::spawn(move || w.release_held())
            };
            t0.join().unwrap();
            let (x, y) = t1.join().unwrap();
            t2.join().unwrap();
            let mut live = vec![b];
            live.extend(x);
            live.extend(y);
            w.check_quiescent(&live);
            for o in live {
                w.free(1, o);
            }
            w.check_quiescent(&[]);
        });
    }

    #[test]
    fn loom_span_return_while_another_cpu_frees_into_it() {
        loom::model(|| {
            let w = World::new(2, 3, TryKind::Cas, Ordering::Acquire);
            // Both objects of the span on page 0 are out; no slot caches anything and every
            // free goes straight on to the central cache (max_len 0).
            w.set_max_len(0, 0);
            let a = w.alloc(0).unwrap();
            w.set_max_len(0, 0);
            let b = w.alloc(0).unwrap();
            assert_eq!((a / OPP, b / OPP), (0, 0));
            for cpu in 0..3 {
                w.set_max_len(cpu, 0);
            }
            let ta = {
                let w = w.clone();
                thread::spawn(move || w.free(0, a))
            };
            let tb = {
                let w = w.clone();
                thread::spawn(move || w.free(1, b))
            };
            let tc = {
                let w = w.clone();
                // A third CPU allocates meanwhile: from the half-empty span, or a new span,
                // which may be the very page the others just gave back.
                thread::spawn(move || w.alloc(2))
            };
            ta.join().unwrap();
            tb.join().unwrap();
            let c = tc.join().unwrap();
            let live: Vec<usize> = c.into_iter().collect();
            w.check_quiescent(&live);
            if let Some(c) = c {
                w.free(2, c);
                w.check_quiescent(&[]);
            }
            assert!(w.page_heap.lock().unwrap().used.iter().all(|u| !u));
        });
    }

    #[test]
    fn loom_cross_cpu_free_through_the_page_map() {
        loom::model(|| {
            let w = World::new(2, 2, TryKind::Cas, Ordering::Acquire);
            let mailbox = Arc::new(AtomicUsize::new(NIL));
            let producer = {
                let (w, m) = (w.clone(), mailbox.clone());
                thread::spawn(move || {
                    // A fresh heap: this allocation creates the span and its page-map entry.
                    let o = w.alloc(0).unwrap();
                    m.store(o, Ordering::Release);
                })
            };
            let consumer = {
                let (w, m) = (w.clone(), mailbox.clone());
                thread::spawn(move || loop {
                    let o = m.load(Ordering::Acquire);
                    if o != NIL {
                        w.free(1, o);
                        break;
                    }
                    thread::yield_now();
                })
            };
            producer.join().unwrap();
            consumer.join().unwrap();
            w.check_quiescent(&[]);
        });
    }

    /// Checked builds: two frees of one object race; `check_free` loads the live bit, and the
    /// atomic clear decides which of them is the double free.
    #[test]
    fn loom_checked_live_bit_decides_a_racing_double_free() {
        loom::model(|| {
            let live = Arc::new(AtomicUsize::new(0b100));
            let freed = Arc::new(AtomicUsize::new(0));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (live, freed) = (live.clone(), freed.clone());
                    thread::spawn(move || {
                        let bit = 0b100;
                        if live.load(Ordering::Relaxed) & bit == 0 {
                            return; // fault: double free
                        }
                        if live.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
                            return; // fault: double free
                        }
                        freed.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(freed.load(Ordering::Relaxed), 1, "exactly one free wins");
        });
    }

    /// `free_large`: the span pointer is read lock-free, then re-checked under the page-heap
    /// lock, so two racing frees of one page span free it once.
    #[test]
    fn loom_large_span_double_free_is_decided_under_the_lock() {
        loom::model(|| {
            let class = Arc::new(AtomicU8::new(CLASS_LARGE));
            let span = Arc::new(AtomicUsize::new(1));
            let page_heap = Arc::new(Mutex::new(0usize));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (class, span, ph) = (class.clone(), span.clone(), page_heap.clone());
                    thread::spawn(move || {
                        if class.load(Ordering::Relaxed) != CLASS_LARGE {
                            return false;
                        }
                        let s = span.load(Ordering::Relaxed);
                        let mut freed = ph.lock().unwrap();
                        if class.load(Ordering::Relaxed) != CLASS_LARGE
                            || span.load(Ordering::Relaxed) != s
                        {
                            return false;
                        }
                        span.store(0, Ordering::Relaxed);
                        class.store(CLASS_FREED, Ordering::Release);
                        *freed += 1;
                        true
                    })
                })
                .collect();
            let wins = ts
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(wins, 1);
            assert_eq!(*page_heap.lock().unwrap(), 1, "freed exactly once");
        });
    }
}

/// The owned-slot protocol. See the module docs.
#[cfg(loom)]
mod owned {
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    const NIL: usize = usize::MAX;

    /// src/sync.rs `SlotLock`.
    struct SlotLock {
        busy: AtomicBool,
        remote: AtomicBool,
    }

    impl SlotLock {
        fn enter_owned(&self) -> bool {
            let inside = self.busy.load(Ordering::Relaxed);
            self.busy.store(true, Ordering::Relaxed);
            // The compiler fence, made a full fence by the remote side's heavy barrier.
            fence(Ordering::SeqCst);
            if inside | self.remote.load(Ordering::Acquire) {
                if !inside {
                    self.busy.store(false, Ordering::Release);
                }
                return false;
            }
            true
        }
        fn leave(&self) {
            self.busy.store(false, Ordering::Release);
        }
        fn claim_remote(&self) -> bool {
            let ok = self
                .remote
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
            fence(Ordering::SeqCst);
            ok
        }
        fn confirm_remote(&self) -> bool {
            // After the heavy barrier (here: the fence in `claim_remote`).
            if self.busy.load(Ordering::Acquire) {
                self.leave_remote();
                return false;
            }
            true
        }
        fn leave_remote(&self) {
            self.remote.store(false, Ordering::Release);
        }
    }

    /// One slot with one class's list (head, length) and objects whose first word links them.
    struct World {
        lock: SlotLock,
        list: UnsafeCell<(usize, usize)>,
        objs: Vec<UnsafeCell<usize>>,
        /// The central cache: free objects.
        central: Mutex<Vec<usize>>,
        /// Oracle: bit `o` set while object `o` is in a user's hands.
        user: AtomicUsize,
        /// src/hosted/platform.rs: the index's state (0 vacant, 1 owned, 2 held) and
        /// `VACATED`.
        id: AtomicU8,
        vacated: AtomicUsize,
    }

    impl World {
        fn new(n: usize, cached: usize) -> Arc<World> {
            let w = World {
                lock: SlotLock {
                    busy: AtomicBool::new(false),
                    remote: AtomicBool::new(false),
                },
                list: UnsafeCell::new((NIL, 0)),
                objs: (0..n).map(|_| UnsafeCell::new(NIL)).collect(),
                central: Mutex::new((cached..n).collect()),
                user: AtomicUsize::new(0),
                id: AtomicU8::new(1),
                vacated: AtomicUsize::new(0),
            };
            // The first `cached` objects start on the slot's list.
            for o in 0..cached {
                w.push(o);
            }
            Arc::new(w)
        }

        fn push(&self, o: usize) {
            self.list.with_mut(|l| unsafe {
                self.objs[o].with_mut(|p| *p = (*l).0);
                *l = (o, (*l).1 + 1);
            });
        }
        fn pop(&self) -> Option<usize> {
            self.list.with_mut(|l| unsafe {
                let o = (*l).0;
                if o == NIL {
                    return None;
                }
                let next = self.objs[o].with(|p| *p);
                *l = (next, (*l).1 - 1);
                Some(o)
            })
        }
        fn hand_out(&self, o: usize) {
            let old = self.user.fetch_or(1 << o, Ordering::Relaxed);
            assert_eq!(old & (1 << o), 0, "object {o} handed out twice");
            // The user writes into the object.
            self.objs[o].with_mut(|p| unsafe { *p = 0xA110C });
        }
        fn take_back(&self, o: usize) {
            self.user.fetch_and(!(1 << o), Ordering::Relaxed);
        }

        /// `CpuCache::alloc` on the owned slot: the list, else the central cache.
        fn alloc(&self) -> Option<usize> {
            let o = if self.lock.enter_owned() {
                let o = self.pop();
                self.lock.leave();
                o
            } else {
                None
            };
            let o = o.or_else(|| self.central.lock().unwrap().pop())?;
            self.hand_out(o);
            Some(o)
        }

        /// `CpuCache::free` on the owned slot, else to the central cache.
        fn free(&self, o: usize) {
            self.take_back(o);
            if self.lock.enter_owned() {
                self.push(o);
                self.lock.leave();
            } else {
                self.central.lock().unwrap().push(o);
            }
        }

        /// `drain_slot` from outside: claim, barrier, confirm, move the list to central.
        fn remote_drain(&self) -> bool {
            if !self.lock.claim_remote() || !self.lock.confirm_remote() {
                return false;
            }
            while let Some(o) = self.pop() {
                self.central.lock().unwrap().push(o);
            }
            self.lock.leave_remote();
            true
        }

        /// Every object is in exactly one place: the list, the central cache or a user's hands.
        fn check_conserved(&self) {
            let mut seen = self.user.load(Ordering::Relaxed);
            for &o in self.central.lock().unwrap().iter() {
                assert_eq!(seen & (1 << o), 0, "object {o} twice");
                seen |= 1 << o;
            }
            while let Some(o) = self.pop() {
                assert_eq!(seen & (1 << o), 0, "object {o} twice");
                seen |= 1 << o;
            }
            assert_eq!(seen, (1 << self.objs.len()) - 1, "objects lost");
        }
    }

    #[test]
    fn loom_owned_fast_path_against_a_remote_drain() {
        loom::model(|| {
            let w = World::new(3, 2);
            let owner = {
                let w = w.clone();
                thread::spawn(move || {
                    // While the remote drain is inside, the owner uses the central cache,
                    // which may be momentarily empty (the heap then drains and retries).
                    let a = w.alloc();
                    let b = w.alloc();
                    for o in [a, b].into_iter().flatten() {
                        w.free(o);
                    }
                })
            };
            let remote = {
                let w = w.clone();
                thread::spawn(move || {
                    w.remote_drain();
                })
            };
            owner.join().unwrap();
            remote.join().unwrap();
            w.check_conserved();
        });
    }

    #[test]
    fn loom_owned_thread_exit_races_a_drain_and_the_slot_is_reused() {
        loom::model(|| {
            let w = World::new(2, 1);
            // Thread A owns the index: frees into its slot, then exits.
            let a = {
                let w = w.clone();
                thread::spawn(move || {
                    let o = w.alloc().expect("an object");
                    w.free(o);
                    // `on_thread_exit`.
                    w.id.store(0, Ordering::Release);
                    w.vacated.fetch_add(1, Ordering::Release);
                })
            };
            // Thread B claims the index once it is free and uses the slot as its owner.
            let b = {
                let w = w.clone();
                thread::spawn(move || {
                    while w
                        .id
                        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                        .is_err()
                    {
                        thread::yield_now();
                    }
                    if let Some(o) = w.alloc() {
                        w.free(o);
                    }
                })
            };
            // Thread C sweeps vacated slots (`sweep_vacated_slow`): hold, drain, release.
            let c = {
                let w = w.clone();
                thread::spawn(move || {
                    if w.vacated.load(Ordering::Acquire) != 0
                        && w.id
                            .compare_exchange(0, 2, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        if w.lock.claim_remote() {
                            if w.lock.confirm_remote() {
                                while let Some(o) = w.pop() {
                                    w.central.lock().unwrap().push(o);
                                }
                            }
                            w.lock.leave_remote();
                        }
                        w.id.store(0, Ordering::Release);
                    }
                })
            };
            a.join().unwrap();
            b.join().unwrap();
            c.join().unwrap();
            w.check_conserved();
        });
    }
}
