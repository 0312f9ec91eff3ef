//! Running a test on every hart: hart 0 runs the embedded-test test; the test hands a body to
//! [`on_all_harts`], which runs it on hart 0 and, at the same time, on every other hart (they
//! wait for it in `worker`). Bodies synchronise with [`sync`] and record failed checks with
//! [`check!`](crate::check) or [`fail`], on any hart.
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{hart_id, println, HARTS};

/// The body of the current job (set by hart 0 before it bumps [`JOB_GEN`]).
static JOB: spin::Mutex<Option<fn(usize)>> = spin::Mutex::new(None);
/// Bumped once per job; a worker runs the job when it sees a new generation.
static JOB_GEN: AtomicUsize = AtomicUsize::new(0);
/// Workers (harts 1..HARTS) that finished the current job.
static JOB_DONE: AtomicUsize = AtomicUsize::new(0);
/// Failed checks of the current job, from any hart.
static FAILED_CHECKS: AtomicUsize = AtomicUsize::new(0);
/// All [`HARTS`] harts.
static BARRIER: spin::Barrier = spin::Barrier::new(HARTS);

/// A test body that failed: how many checks failed, on all harts together (each printed a
/// `hart N: check failed: ...` line).
#[derive(Debug)]
pub struct Failed {
    pub checks: usize,
}

/// Run `body(hart)` on all [`HARTS`] harts at once; returns when every hart has finished it.
/// `Err` if any check failed on any hart. Call it from the test, which runs on hart 0.
pub fn on_all_harts(body: fn(usize)) -> Result<(), Failed> {
    assert_eq!(
        hart_id(),
        0,
        "on_all_harts is called by the test, on hart 0"
    );
    FAILED_CHECKS.store(0, Ordering::Relaxed);
    *JOB.lock() = Some(body);
    JOB_DONE.store(0, Ordering::Relaxed);
    // Publishes JOB and the JOB_DONE reset to the workers that see the new generation.
    JOB_GEN.fetch_add(1, Ordering::Release);
    body(0);
    while JOB_DONE.load(Ordering::Acquire) < HARTS - 1 {
        core::hint::spin_loop();
    }
    match FAILED_CHECKS.swap(0, Ordering::AcqRel) {
        0 => Ok(()),
        checks => {
            println!("{checks} failed check(s)");
            Err(Failed { checks })
        }
    }
}

/// Harts 1..HARTS after boot: run each job [`on_all_harts`] publishes, forever.
pub(crate) fn worker(hart: usize) -> ! {
    let mut seen = 0;
    loop {
        let generation = JOB_GEN.load(Ordering::Acquire);
        if generation == seen {
            core::hint::spin_loop();
            continue;
        }
        seen = generation;
        let body = JOB
            .lock()
            .expect("a job is published before its generation");
        body(hart);
        JOB_DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Wait until every hart running the current body is here (a reusable barrier).
pub fn sync() {
    BARRIER.wait();
}

/// Record a failed check from any hart (the test fails when the body returns).
pub fn fail(hart: usize, what: core::fmt::Arguments<'_>) {
    println!("  hart {hart}: check failed: {what}");
    FAILED_CHECKS.fetch_add(1, Ordering::Relaxed);
}

/// `check!(hart, condition, "format", args...)`: if `condition` is false, record a failed
/// check (with the message) and go on.
#[macro_export]
macro_rules! check {
    ($hart:expr, $cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::smp::fail($hart, format_args!($($arg)*));
        }
    };
}
