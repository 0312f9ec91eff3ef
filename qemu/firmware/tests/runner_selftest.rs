//! Proves the runner's verdicts: a passing test passes, a panicking test is
//! seen to abort, a hang is killed by the timeout.
//!
//! Tests whose name starts with `xfail_` are `#[ignore]`d (other embedded-test
//! runners skip them); `cargo xtask qemu` runs them anyway and counts them as
//! passed only when they FAIL (nonzero exit or timeout).
#![no_std]
#![no_main]

use cpuheap_qemu_firmware as _;

#[embedded_test::tests(default_timeout = 10)]
mod tests {
    #[test]
    fn trivially_passes() {
        assert_eq!(core::hint::black_box(2) + 2, 4);
    }

    #[test]
    fn result_ok_passes() -> Result<(), u32> {
        Ok(())
    }

    #[test]
    #[should_panic]
    fn should_panic_panics() {
        assert_eq!(core::hint::black_box(2) + 2, 5, "deliberate");
    }

    #[test]
    #[ignore]
    fn xfail_assert_fails() {
        assert_eq!(core::hint::black_box(2) + 2, 5, "deliberate failure");
    }

    #[test]
    #[ignore]
    fn xfail_result_err_fails() -> Result<(), u32> {
        Err(core::hint::black_box(7))
    }

    #[test]
    #[ignore]
    #[timeout(2)]
    fn xfail_hang_times_out() {
        loop {
            core::hint::spin_loop();
        }
    }
}
