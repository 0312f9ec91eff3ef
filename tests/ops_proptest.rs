//! A proptest state machine over the heap: random streams of alloc (sizes up to ~600 KB and
//! requests no source can meet, `ops::HUGE`,
//! alignments up to 64 KiB), free, realloc, CPU-slot switches, slot drains and releases, on
//! three configurations, checked against a model of the live allocations (see
//! `tests/support/ops.rs`, which the cargo-fuzz target in `fuzz/` shares).
//!
//! `PROPTEST_CASES` raises the number of streams (default 64 per test).

#[path = "support/ops.rs"]
mod ops;

use cpuheap::StaticRegion;
use ops::ScribbleSource;
use ops::{Harness, Op, MAX_ALIGN_SHIFT};
use proptest::prelude::*;

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=128,
        4 => 0usize..=2048,
        2 => 2049usize..=40_000,
        1 => 40_001usize..=600_000,
        1 => prop::sample::select(ops::HUGE.to_vec()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (size(), 0..=MAX_ALIGN_SHIFT)
            .prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        2 => (size(), 0u8..=3).prop_map(|(size, s)| Op::Alloc { size, align_shift: s }),
        2 => (size(), 0u8..=13).prop_map(|(size, s)| Op::AllocZeroed { size, align_shift: s }),
        8 => any::<usize>().prop_map(|idx| Op::Free { idx }),
        4 => (any::<usize>(), size()).prop_map(|(idx, new_size)| Op::Realloc { idx, new_size }),
        2 => (0usize..9).prop_map(|cpu| Op::SwitchCpu { cpu }),
        1 => (0usize..9).prop_map(|cpu| Op::DrainCpu { cpu }),
        1 => Just(Op::Release),
        1 => Just(Op::Check),
    ]
}

fn run(config: usize, ops: &[Op]) {
    ops::run_stream(config, ops);
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn ops_desktop_pages(ops in prop::collection::vec(op(), 1..400)) {
        run(0, &ops);
    }

    #[test]
    fn ops_firmware_pages(ops in prop::collection::vec(op(), 1..400)) {
        run(1, &ops);
    }

    #[test]
    fn ops_small_caches(ops in prop::collection::vec(op(), 1..400)) {
        run(2, &ops);
    }

    #[test]
    fn ops_source_hooks_direct_runs_and_discards(ops in prop::collection::vec(op(), 1..400)) {
        run(3, &ops);
    }
}

/// The fuzz target's decoder feeds the same harness: a fixed byte stream must run cleanly.
#[test]
fn fuzz_decoder_drives_the_harness() {
    let mut data = vec![2u8];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push(x as u8);
    }
    for cfg in 0..ops::configs().len() as u8 {
        data[0] = cfg;
        let (c, ops) = ops::decode(&data);
        assert!(ops.len() > 500);
        run(c, &ops);
    }
}

/// Fill a small heap until it refuses, on every slot, then free it all: exhaustion and the
/// drain-before-failing path under the model.
#[test]
fn exhaustion_across_slots_under_the_model() {
    let mut h = Harness::<StaticRegion<1>>::new(1);
    for i in 0..20_000usize {
        h.apply(&Op::SwitchCpu { cpu: i % 5 });
        h.apply(&Op::Alloc {
            size: 1 + (i * 37) % 700,
            align_shift: (i % 4) as u8,
        });
        if i % 7 == 0 {
            h.apply(&Op::Free { idx: i });
        }
    }
    assert!(h.nulls > 0, "the heap was never exhausted");
    h.finish();
}

/// The scribbling source really is exercised: huge spans come as direct runs and go back
/// with `release`, idle pages past the limit go back with `discard`, and everything the heap
/// still uses survives the scribbling.
#[test]
fn source_hooks_release_and_discard_under_the_model() {
    let mut h = Harness::<ScribbleSource>::new(3);
    for i in 0..3000usize {
        h.apply(&Op::Alloc {
            size: 16 + i % 2000,
            align_shift: 3,
        });
    }
    h.apply(&Op::Alloc {
        size: 300_000,
        align_shift: 12,
    });
    for i in 0..2500usize {
        h.apply(&Op::Free { idx: i * 7 });
    }
    h.apply(&Op::Release);
    for i in 0..100usize {
        h.apply(&Op::Alloc {
            size: 200_000 + i,
            align_shift: 0,
        });
        h.apply(&Op::Free { idx: i * 13 });
    }
    h.finish();
    let (discards, releases) = h.heap().with_source(|s| (s.discards, s.releases));
    assert!(releases > 0, "no direct run was released");
    assert!(discards > 0, "no idle page was discarded");
}
