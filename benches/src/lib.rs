//! Benchmark harness for cpuheap (issue 3): cpuheap against desktop allocators
//! (glibc, mimalloc, jemalloc, snmalloc, rpmalloc) and bare-metal heaps over a fixed
//! region (talc, rlsf, linked_list_allocator, buddy_system_allocator), on the same
//! workloads, through the same interface ([`iface::BenchAlloc`]).

pub mod cpuheap_adapter;
pub mod iface;
pub mod peers;
pub mod report;
pub mod rng;
pub mod workloads;

/// Median of a non-empty slice (NaNs sorted last).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
#[cfg(feature = "cpuheap")]
pub mod small_heap;
