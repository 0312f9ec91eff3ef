//! Death tests: each misuse runs in a child process (this test binary, re-executed with
//! `CPUHEAP_DEATH=<scenario>`), whose heap's fatal hook prints the fault and aborts, as
//! `default_fatal` does with the `std` feature. The parent asserts the message on standard
//! error and that the child died by `SIGABRT`, not by a clean exit or a panic.
//!
//! Foreign pointers, interior pointers of page spans and double frees of page spans are
//! detected in every build, and so is a small object freed twice in a row; interior
//! pointers of small objects need `--features misuse-checks` or `checked`; other double
//! frees of small objects and size class mismatches need `--features checked` (without it those scenarios are skipped, and
//! `checked_scenarios_need_the_checked_feature` says so).

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::process::Command;

use cpuheap::{Config, DefaultRawMutex, Fault, Heap, Platform, StaticRegion};

const ENV: &str = "CPUHEAP_DEATH";

/// A platform whose fatal hook prints the fault and aborts: what `default_fatal` does with
/// `std`, available in every feature set.
struct AbortingCpu;

impl Platform for AbortingCpu {
    fn current_cpu(&self) -> usize {
        0
    }
    fn fatal(&self, fault: &Fault) -> ! {
        eprintln!("{fault}");
        std::process::abort()
    }
}

type DeathHeap = Heap<StaticRegion<1>, AbortingCpu, DefaultRawMutex, 2>;

fn heap() -> &'static DeathHeap {
    let h: &'static DeathHeap = Box::leak(Box::new(Heap::new(
        StaticRegion::new(),
        AbortingCpu,
        Config::new(),
    )));
    let region: &'static mut [MaybeUninit<u8>] =
        Box::leak(vec![MaybeUninit::uninit(); 4 << 20].into_boxed_slice());
    assert!(h.add_region(region));
    h
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Run scenario `name` in this process; it must not return.
fn scenario(name: &str) {
    let h = heap();
    let small = layout(48);
    let large = layout(100_000);
    // SAFETY: every scenario misuses the heap on purpose; the fatal hook aborts before the
    // misuse can do harm.
    unsafe {
        match name {
            "double_free_small" => {
                let p = std::hint::black_box(h.allocate(small));
                h.deallocate(p, small);
                h.deallocate(p, small);
            }
            "double_free_large" => {
                let p = std::hint::black_box(h.allocate(large));
                h.deallocate(p, large);
                h.deallocate(p, large);
            }
            "realloc_after_free" => {
                let p = std::hint::black_box(h.allocate(small));
                h.deallocate(p, small);
                h.reallocate(p, small, 64);
            }
            "foreign_pointer" => {
                let mut local = [0u64; 8];
                let p = std::hint::black_box(local.as_mut_ptr().cast::<u8>());
                h.deallocate(p, small);
            }
            "foreign_pointer_in_region" => {
                // Inside the heap's memory, but never handed out: a page no span owns.
                let keep = std::hint::black_box(h.allocate(small));
                h.deallocate(keep.add(1 << 20), small);
            }
            "interior_small" => {
                let p = std::hint::black_box(h.allocate(small));
                h.deallocate(p.add(16), small);
            }
            "interior_large" => {
                let p = std::hint::black_box(h.allocate(large));
                h.deallocate(p.add(8192), large);
            }
            "size_mismatch" => {
                let p = std::hint::black_box(h.allocate(small));
                h.deallocate(p, layout(4000));
            }
            "size_mismatch_large" => {
                let p = std::hint::black_box(h.allocate(large));
                h.deallocate(p, layout(300_000));
            }
            #[cfg(feature = "std")]
            "default_fatal_hook" => {
                let h: &'static Heap<StaticRegion<1>> = Box::leak(Box::new(Heap::new(
                    StaticRegion::new(),
                    cpuheap::SingleCpu::new(),
                    Config::new(),
                )));
                assert!(h.add_region(Box::leak(
                    vec![MaybeUninit::uninit(); 1 << 20].into_boxed_slice()
                )));
                let p = std::hint::black_box(h.allocate(large));
                h.deallocate(p, large);
                h.deallocate(p, large);
            }
            other => panic!("unknown death scenario {other}"),
        }
    }
    eprintln!("scenario {name} returned");
}

/// The child's entry point: does nothing unless `CPUHEAP_DEATH` names a scenario.
#[test]
fn death_child() {
    if let Ok(name) = std::env::var(ENV) {
        scenario(&name);
    }
}

/// Run `name` in a child; assert it aborted with a message containing `expect`.
fn dies_with(name: &str, expect: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "death_child", "--nocapture", "--test-threads=1"])
        .env(ENV, name)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("re-run the test binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cpuheap: {expect} at 0x")),
        "{name}: expected \"{expect}\" on stderr, got status {:?} and:\n{stderr}",
        out.status
    );
    assert!(!out.status.success(), "{name}: the child exited cleanly");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{name}: the child did not die by SIGABRT: {:?}\n{stderr}",
            out.status
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "{name}: the fault unwound instead of aborting:\n{stderr}"
    );
}

#[test]
fn death_foreign_pointer() {
    dies_with("foreign_pointer", "not allocated by this heap");
}

#[test]
fn death_foreign_pointer_inside_the_region() {
    dies_with("foreign_pointer_in_region", "not allocated by this heap");
}

#[test]
fn death_double_free_of_a_page_span() {
    dies_with("double_free_large", "double free");
}

#[test]
fn death_interior_pointer_of_a_page_span() {
    dies_with("interior_large", "interior pointer");
}

#[test]
fn death_double_free_of_a_small_object() {
    dies_with("double_free_small", "double free");
}

#[cfg(feature = "checked")]
#[test]
fn death_realloc_of_a_freed_object() {
    dies_with("realloc_after_free", "double free");
}

#[cfg(any(feature = "checked", feature = "misuse-checks"))]
#[test]
fn death_interior_pointer_of_a_small_object() {
    dies_with("interior_small", "interior pointer");
}

#[cfg(feature = "checked")]
#[test]
fn death_size_class_mismatch() {
    dies_with("size_mismatch", "size class mismatch");
}

#[cfg(feature = "checked")]
#[test]
fn death_page_count_mismatch_of_a_page_span() {
    dies_with("size_mismatch_large", "size class mismatch");
}

/// `default_fatal` itself prints and aborts only with `std`.
#[cfg(feature = "std")]
#[test]
fn death_default_fatal_hook_prints_and_aborts() {
    dies_with("default_fatal_hook", "double free");
}

#[cfg(not(feature = "checked"))]
#[test]
fn checked_scenarios_need_the_checked_feature() {
    eprintln!(
        "skipped: small-object double free, small interior pointer and size class mismatch \
         death tests need --features checked"
    );
}
