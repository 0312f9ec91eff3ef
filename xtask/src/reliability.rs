//! Reliability runs: the fuzz target, the loom models, the test suite under AddressSanitizer,
//! and a long soak. Each returns `(passed, failed)` counts for the summary line, or `Err`
//! when the run could not happen at all (a missing toolchain, a build failure).
//! See docs/reliability.md.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The repository root (the parent of `xtask/`).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// Whether `cargo +nightly` works.
fn have_nightly() -> bool {
    Command::new("cargo")
        .args(["+nightly", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Install cargo-fuzz unless `cargo fuzz` already works (about a minute on a fresh machine).
pub fn ensure_cargo_fuzz() -> Result<(), String> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz");
    let ok = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .map_err(|e| format!("cargo install cargo-fuzz: {e}"))?
        .success();
    if ok {
        Ok(())
    } else {
        Err("cargo install cargo-fuzz failed".into())
    }
}

/// Sum the `test result:` lines of a cargo test run.
fn count(stdout: &str) -> (usize, usize) {
    let mut passed = 0;
    let mut failed = 0;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next()) {
                match (n.parse::<usize>(), what) {
                    (Ok(n), "passed") => passed += n,
                    (Ok(n), "failed") => failed += n,
                    _ => {}
                }
            }
        }
    }
    (passed, failed)
}

/// Run `cmd`, echoing its output, and count its test results. A failing exit with no failed
/// test counted (a build error, a crash of the harness) counts as one failure.
fn run_tests(what: &str, mut cmd: Command) -> Result<(usize, usize), String> {
    println!("xtask: {what}");
    let out = cmd
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    let (passed, mut failed) = count(&stdout);
    if !out.status.success() && failed == 0 {
        if passed == 0 {
            return Err(format!("{what}: {}", out.status));
        }
        failed = 1;
    }
    Ok((passed, failed))
}

/// Fuzz `heap_ops` for `secs` seconds (`cargo +nightly fuzz run`, AddressSanitizer on).
/// Installs cargo-fuzz when missing. One passed run, or one failure when the fuzzer found a
/// crash (its input is in `fuzz/artifacts/heap_ops/`).
pub fn fuzz_short(secs: u64) -> Result<(usize, usize), String> {
    if !have_nightly() {
        return Err(
            "fuzzing needs the nightly toolchain (`rustup toolchain install nightly`)".into(),
        );
    }
    ensure_cargo_fuzz()?;
    println!("xtask: fuzzing heap_ops for {secs} s");
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "run", "heap_ops", "--"])
        .arg(format!("-max_total_time={secs}"))
        .arg("-max_len=4096")
        .arg("-len_control=0")
        .arg("-print_final_stats=1")
        .current_dir(root())
        .status()
        .map_err(|e| format!("cargo fuzz: {e}"))?;
    Ok(if status.success() { (1, 0) } else { (0, 1) })
}

/// The loom models: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_protocol`, in
/// their own target directory so the flag does not invalidate the usual build.
pub fn loom() -> Result<(usize, usize), String> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "-p",
        "cpuheap",
        "--test",
        "loom_protocol",
    ])
    .env("RUSTFLAGS", "--cfg loom")
    .env("CARGO_TARGET_DIR", root().join("target/loom"));
    run_tests("loom models", cmd)
}

/// The host test suite (`--features checked`, unit and integration tests) under
/// AddressSanitizer on nightly. Leak detection is off: the tests leak their heaps' buffers
/// on purpose. About two minutes from scratch on two cores.
pub fn asan() -> Result<(usize, usize), String> {
    if !have_nightly() {
        return Err("AddressSanitizer needs the nightly toolchain".into());
    }
    let mut cmd = Command::new("cargo");
    cmd.args([
        "+nightly",
        "test",
        "-p",
        "cpuheap",
        "--features",
        "checked",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--tests",
    ])
    .env("RUSTFLAGS", "-Zsanitizer=address")
    .env("ASAN_OPTIONS", "detect_leaks=0")
    .env("CPUHEAP_SOAK_SECS", "1")
    .env("CARGO_TARGET_DIR", root().join("target/asan"));
    run_tests("test suite under AddressSanitizer", cmd)
}

/// The soak tests for `secs` seconds each, release build, checked mode.
pub fn soak(secs: u64) -> Result<(usize, usize), String> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "-p",
        "cpuheap",
        "--features",
        "checked",
        "--test",
        "soak",
        "--",
        "--nocapture",
    ])
    .env("CPUHEAP_SOAK_SECS", secs.to_string());
    run_tests("soak", cmd)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_test_result_lines() {
        let out = "running 3 tests\n\
                   test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured\n";
        assert_eq!(count(out), (5, 1));
    }
}
