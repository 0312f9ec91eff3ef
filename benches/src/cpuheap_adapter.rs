//! cpuheap's adapters: `StdHeap` (desktop) and `Heap` over a fixed region.

#[cfg(not(feature = "cpuheap"))]
#[doc(hidden)]
#[macro_export]
macro_rules! with_cpuheap {
    ($kind:expr, $region:expr, |$a:ident| $body:expr) => {{
        let _ = $region;
        panic!("{:?}: this harness was built without cpuheap", $kind)
    }};
}
