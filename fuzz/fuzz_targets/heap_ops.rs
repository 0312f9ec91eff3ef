//! Fuzz the heap with operation streams: alloc (sizes up to ~600 KB, alignments up to
//! 64 KiB), free, realloc, CPU-slot switches, slot drains and releases, checked against a
//! model of the live allocations. The harness is shared with `tests/ops_proptest.rs`.
//!
//! ```text
//! cargo +nightly fuzz run heap_ops -- -max_total_time=60
//! ```
#![no_main]

#[path = "../../tests/support/ops.rs"]
mod ops;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (config, ops) = ops::decode(data);
    ops::run_stream(config, &ops);
});
