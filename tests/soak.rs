//! Soak: many short-lived threads (more than cores and than CPU slots) allocate, verify,
//! reallocate and free mixed sizes, hand objects to each other through shared mailboxes,
//! switch CPU slots and drain them, while the main thread keeps replacing the threads that
//! exit. Afterwards: object conservation (`check_invariants`, in-use bytes 0, allocs ==
//! frees), and once the slots are drained, every span is back in the page heap.
//!
//! Each soak runs `CPUHEAP_SOAK_SECS` seconds (default 2; `0.5` works too):
//!
//! ```text
//! CPUHEAP_SOAK_SECS=600 cargo test --release --test soak -- --nocapture
//! ```

mod common;

use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use cpuheap::Config;

const SLOTS: usize = 4;
const SHARDS: usize = 8;

fn soak_secs() -> f64 {
    std::env::var("CPUHEAP_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

/// Counters for the report.
#[derive(Default)]
struct Totals {
    threads: AtomicUsize,
    ops: AtomicUsize,
    nulls: AtomicUsize,
    handed: AtomicUsize,
}

struct Soak<'a> {
    h: &'a TestHeap<SLOTS>,
    mailboxes: Vec<Mutex<Vec<Obj>>>,
    totals: Totals,
    /// Largest request; smaller under memory pressure.
    max: u64,
    stop: std::sync::atomic::AtomicBool,
}

impl Soak<'_> {
    fn random_size(&self, rng: &mut Rng) -> usize {
        let r = rng.below(100);
        let cap = if r < 70 {
            256
        } else if r < 90 {
            4096
        } else if r < 98 {
            32_768
        } else {
            self.max
        };
        rng.below(cap.min(self.max) + 1) as usize
    }

    fn alloc(&self, rng: &mut Rng, seed: u64) -> Option<Obj> {
        let size = self.random_size(rng);
        let align = if rng.below(8) == 0 {
            1 << rng.below(13)
        } else {
            8
        };
        let l = Layout::from_size_align(size, align).unwrap();
        let p = std::hint::black_box(self.h.allocate(l));
        if p.is_null() {
            self.totals.nulls.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        assert_eq!(p as usize % align, 0, "misaligned");
        // SAFETY: a fresh allocation of `size` bytes.
        unsafe { fill(p, size, seed) };
        Some(Obj {
            addr: p as usize,
            size,
            align,
            seed,
        })
    }

    fn free(&self, o: Obj) {
        // SAFETY: `o` is live with this layout, and owned by the caller.
        unsafe {
            assert!(
                verify(o.addr as *const u8, o.size, o.seed),
                "object {:#x}+{} corrupted",
                o.addr,
                o.size
            );
            self.h
                .deallocate(std::hint::black_box(o.addr as *mut u8), o.layout());
        }
    }

    fn realloc(&self, rng: &mut Rng, o: Obj) -> Obj {
        let new_size = self.random_size(rng);
        // SAFETY: `o` is live with this layout; the kept prefix is checked, the rest filled.
        unsafe {
            assert!(verify(o.addr as *const u8, o.size, o.seed), "corrupted");
            let q = self.h.reallocate(o.addr as *mut u8, o.layout(), new_size);
            if q.is_null() {
                self.totals.nulls.fetch_add(1, Ordering::Relaxed);
                return o;
            }
            assert!(
                verify(q, o.size.min(new_size), o.seed),
                "realloc lost the contents"
            );
            fill(q, new_size, o.seed);
            Obj {
                addr: q as usize,
                size: new_size,
                ..o
            }
        }
    }

    /// One worker thread's life: a few thousand operations, then exit.
    fn worker(&self, id: u64) {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ id.wrapping_mul(0x2545_f491));
        set_cpu(rng.below(2 * SLOTS as u64) as usize);
        let mut live: Vec<Obj> = Vec::new();
        let ops = 500 + rng.below(5000);
        let mut n = 0;
        for i in 0..ops {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            n += 1;
            let seed = id << 32 | i;
            match rng.below(100) {
                0..=44 => {
                    if let Some(o) = self.alloc(&mut rng, seed) {
                        live.push(o);
                    }
                }
                45..=74 => {
                    if !live.is_empty() {
                        let o = live.swap_remove(rng.below(live.len() as u64) as usize);
                        self.free(o);
                    }
                }
                75..=84 => {
                    // Hand an object to whoever looks into this mailbox next.
                    if !live.is_empty() {
                        let o = live.swap_remove(rng.below(live.len() as u64) as usize);
                        let b = rng.below(SHARDS as u64) as usize;
                        self.mailboxes[b].lock().unwrap().push(o);
                        self.totals.handed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                85..=92 => {
                    // Free what others handed over.
                    let b = rng.below(SHARDS as u64) as usize;
                    let got: Vec<Obj> = {
                        let mut m = self.mailboxes[b].lock().unwrap();
                        let k = m.len().min(8);
                        let at = m.len() - k;
                        m.split_off(at)
                    };
                    for o in got {
                        self.free(o);
                    }
                }
                93..=96 => {
                    if !live.is_empty() {
                        let k = rng.below(live.len() as u64) as usize;
                        live[k] = self.realloc(&mut rng, live[k]);
                    }
                }
                97 => set_cpu(rng.below(2 * SLOTS as u64) as usize),
                98 => {
                    // May find the slot in use by another thread and leave it.
                    self.h.drain_cpu(rng.below(SLOTS as u64) as usize);
                }
                _ => {
                    let _ = std::hint::black_box(self.h.stats());
                }
            }
        }
        self.totals.ops.fetch_add(n as usize, Ordering::Relaxed);
        // Exit: free everything, or leave it all for the other threads.
        if rng.below(3) == 0 {
            let b = rng.below(SHARDS as u64) as usize;
            self.totals.handed.fetch_add(live.len(), Ordering::Relaxed);
            self.mailboxes[b].lock().unwrap().extend(live);
        } else {
            for o in live {
                self.free(o);
            }
        }
    }
}

/// Keep `threads` workers alive for the soak's duration on a heap of `bytes` bytes.
fn soak(config: Config, bytes: usize, threads: usize, max: u64) {
    let h = heap::<SLOTS>(bytes, config);
    let s = Soak {
        h,
        mailboxes: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        totals: Totals::default(),
        max,
        stop: std::sync::atomic::AtomicBool::new(false),
    };
    let deadline = Instant::now() + Duration::from_secs_f64(soak_secs());
    std::thread::scope(|scope| {
        let mut running = Vec::new();
        let mut next_id = 1u64;
        while Instant::now() < deadline {
            running.retain(|t: &std::thread::ScopedJoinHandle<'_, ()>| !t.is_finished());
            while running.len() < threads {
                let (s, id) = (&s, next_id);
                next_id += 1;
                s.totals.threads.fetch_add(1, Ordering::Relaxed);
                running.push(scope.spawn(move || s.worker(id)));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        s.stop.store(true, Ordering::Relaxed);
    });
    // Every worker has exited: free what is still in the mailboxes.
    for m in &s.mailboxes {
        for o in m.lock().unwrap().drain(..) {
            s.free(o);
        }
    }
    let t = &s.totals;
    eprintln!(
        "soak: {} threads, {} ops, {} objects handed across threads, {} null returns",
        t.threads.load(Ordering::Relaxed),
        t.ops.load(Ordering::Relaxed),
        t.handed.load(Ordering::Relaxed),
        t.nulls.load(Ordering::Relaxed)
    );
    h.check_invariants().unwrap();
    let st = h.stats();
    assert_eq!(st.in_use_bytes, 0, "objects not conserved: {st:?}");
    assert_eq!(st.allocs, st.frees, "{st:?}");
    for cpu in 0..SLOTS {
        assert!(
            h.drain_cpu(cpu),
            "slot {cpu} still held after every thread exited"
        );
    }
    h.check_invariants().unwrap();
    assert_eq!(h.stats().cpu_cache_bytes, 0);
    // Whole batches in the transfer caches and reserved empty spans stay until the
    // out-of-memory drain (which `drain_all_cpus` runs).
    h.drain_all_cpus();
    h.check_invariants().unwrap();
    let st = h.stats();
    assert_eq!(st.span_bytes, 0, "memory not back in the page heap: {st:?}");
    assert_eq!(
        st.cpu_cache_bytes + st.central_cache_bytes + st.transfer_cache_bytes,
        0,
        "{st:?}"
    );
    // And the heap still works.
    let l = Layout::from_size_align(100, 8).unwrap();
    let p = h.allocate(l);
    assert!(!p.is_null());
    // SAFETY: just allocated with `l`.
    unsafe { h.deallocate(p, l) };
}

#[test]
fn soak_threads_come_and_go() {
    soak(Config::new(), 256 << 20, 6, 256 << 10);
}

#[test]
fn soak_under_memory_pressure() {
    // A firmware-sized heap that runs out: failures, drains and fallbacks under threads.
    soak(Config::small(), 256 << 10, 5, 3000);
}
