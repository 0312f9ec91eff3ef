//! Instruction-count probe of the small-object fast path: `N` alloc+free pairs of one
//! small size on one thread, through the harness's common interface.
//!
//! Run under `valgrind --tool=callgrind --toggle-collect='*fastpath*pairs*'` twice with
//! different `N`; (I(N2) - I(N1)) / (N2 - N1) is instructions per pair, with start-up
//! and first-touch costs cancelled. `cargo xtask bench --callgrind` does exactly that.
//!
//! Usage: fastpath ALLOC N [SIZE]    |    fastpath --list

use core::alloc::Layout;
use core::hint::black_box;

use cpuheap_bench::iface::BenchAlloc;
use cpuheap_bench::peers::{Kind, Region};
use cpuheap_bench::with_alloc;

/// The measured loop. Not inlined, so callgrind can collect exactly this function
/// (and its callees).
#[inline(never)]
fn pairs<A: BenchAlloc>(a: &A, n: u64, size: usize) -> usize {
    let l = Layout::from_size_align(size, 8).unwrap();
    let mut acc = 0usize;
    for _ in 0..n {
        unsafe {
            let p = a.alloc(black_box(l));
            if p.is_null() {
                std::process::abort();
            }
            acc = acc.wrapping_add(black_box(p) as usize);
            a.dealloc(p, l);
        }
    }
    acc
}

/// Loop-only baseline: "allocates" one static block. Its count is the harness's own
/// per-pair overhead (loop, black_box, null check).
struct Noop;
static mut NOOP_BLOCK: [u64; 512] = [0; 512];
unsafe impl BenchAlloc for Noop {
    #[inline(always)]
    unsafe fn alloc(&self, _l: Layout) -> *mut u8 {
        (&raw mut NOOP_BLOCK).cast()
    }
    #[inline(always)]
    unsafe fn dealloc(&self, _p: *mut u8, _l: Layout) {}
    unsafe fn realloc(&self, p: *mut u8, _l: Layout, _n: usize) -> *mut u8 {
        p
    }
}

/// mimalloc's own C entry points (`mi_malloc`/`mi_free`): the `mimalloc` crate's
/// `GlobalAlloc` always goes through `mi_malloc_aligned`, which costs more.
struct MiRaw;
unsafe impl BenchAlloc for MiRaw {
    #[inline(always)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        libmimalloc_sys::mi_malloc(l.size()).cast()
    }
    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, _l: Layout) {
        libmimalloc_sys::mi_free(p.cast())
    }
    unsafe fn realloc(&self, p: *mut u8, _l: Layout, n: usize) -> *mut u8 {
        libmimalloc_sys::mi_realloc(p.cast(), n).cast()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        let names: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| k.available())
            .map(|k| k.name())
            .chain(["mimalloc-raw", "noop"])
            .collect();
        println!("{}", names.join(" "));
        return;
    }
    if args.len() < 2 {
        eprintln!("usage: fastpath ALLOC N [SIZE]   |   fastpath --list");
        std::process::exit(2);
    }
    let n: u64 = args[1].parse().expect("N");
    let size: usize = args.get(2).map(|s| s.parse().expect("SIZE")).unwrap_or(32);
    cpuheap_bench::peers::rp_init_process();
    let acc = if args[0] == "noop" {
        pairs(&Noop, n, size)
    } else if args[0] == "mimalloc-raw" {
        pairs(&MiRaw, n, size)
    } else {
        let k =
            Kind::from_name(&args[0]).unwrap_or_else(|| panic!("unknown allocator {}", args[0]));
        assert!(k.available(), "{} is not built in", k.name());
        let region = Region::new(8 << 20);
        with_alloc!(k, &region, |a| {
            a.thread_start(0);
            // Warm up outside the collected function's first call too.
            let r = pairs(a, n, size);
            a.thread_end();
            r
        })
    };
    black_box(acc);
}
