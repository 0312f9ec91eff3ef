//! Project commands: `cargo xtask test`, `cargo xtask qemu`, `cargo xtask bench`.

use std::process::{Command, ExitCode, Stdio};

mod bench;
mod capi;
mod firmware;
mod qemu;
mod reliability;

/// Bare-metal targets the core must build for, with the features each needs.
const CROSS_TARGETS: &[(&str, &str)] = &[
    ("thumbv7em-none-eabihf", ""),
    ("thumbv7m-none-eabi", ""),
    ("thumbv6m-none-eabi", ""),
    ("riscv64gc-unknown-none-elf", ""),
    ("thumbv7em-none-eabihf", "critical-section,checked"),
    ("thumbv7em-none-eabihf", "defmt,critical-section"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        // `qemu::run` prints its own `N passed, N failed` line.
        Some("qemu") => qemu::run().and_then(|(_, f)| {
            if f == 0 {
                Ok(())
            } else {
                Err(format!("{f} failed"))
            }
        }),
        Some("targets") => ensure_targets(),
        Some("bench") if args.iter().any(|a| a == "--firmware") => firmware::bench(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("flash-budget") => {
            let (p, f) = firmware::flash_budget_test();
            summary(p, f)
        }
        Some("quickstart") => {
            let (p, f) = firmware::quickstart_test();
            summary(p, f)
        }
        Some("capi") => capi::run().and_then(|(p, f)| summary(p, f)),
        Some("fuzz") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            reliability::fuzz_short(secs).and_then(|(p, f)| summary(p, f))
        }
        Some("loom") => reliability::loom().and_then(|(p, f)| summary(p, f)),
        Some("soak") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(600);
            reliability::soak(secs).and_then(|(p, f)| summary(p, f))
        }
        Some("asan") => reliability::asan().and_then(|(p, f)| summary(p, f)),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test      run every test: host unit/integration tests (plain and checked),\n            \
                 cross builds for the bare-metal targets, and the QEMU suites\n  \
                 qemu      run the QEMU suites only\n  \
                 capi      build libcpuheap.so and run the C ABI and LD_PRELOAD tests\n  \
                 fuzz [S]  run the cargo-fuzz target for S seconds (default 60)\n  \
                 loom      run the loom models of the concurrency protocol\n  \
                 soak [S]  run the multi-threaded soak test for S seconds (default 600)\n  \
                 asan      run the host tests under AddressSanitizer (nightly)\n  \
                 bench     compare against other allocators (see benches/README.md);\n            \
                 --firmware: flash/RAM/speed on thumbv7em (benches/firmware)\n  \
                 flash-budget  cpuheap firmware flash over baseline vs. its budget, and its\n            \
                 HEAP in .bss (no .data) within its RAM budget\n  \
                 quickstart  README's firmware quick start is examples/firmware-quickstart,\n            \
                 which builds for thumbv7em\n  \
                 targets   install the Rust targets the tests need"
            );
            Err("no command".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn summary(passed: usize, failed: usize) -> Result<(), String> {
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} failed"))
    }
}

/// `rustup target add` every target that is missing.
fn ensure_targets() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    let installed = String::from_utf8_lossy(&out.stdout).to_string();
    let mut missing: Vec<&str> = CROSS_TARGETS
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Rust targets {missing:?}");
    let ok = Command::new("rustup")
        .args(["target", "add"])
        .args(&missing)
        .status()
        .map_err(|e| format!("rustup: {e}"))?
        .success();
    if ok {
        Ok(())
    } else {
        Err(format!("rustup target add {} failed", missing.join(" ")))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Run a cargo test command, echo its output, and add up its `test result:` lines.
fn cargo_test(label: &str, args: &[&str], envs: &[(&str, &str)]) -> (usize, usize) {
    println!("\n=== {label}: cargo {}", args.join(" "));
    let mut cmd = cargo();
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            return (0, 1);
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let (mut passed, mut failed) = (0, 0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    if !out.status.success() && failed == 0 {
        // A build failure or a crash: count it as one failed test.
        failed = 1;
    }
    (passed, failed)
}

/// The number before `word` in a `test result:` line.
fn count(line: &str, word: &str) -> usize {
    line.find(word)
        .and_then(|i| line[..i].rsplit([' ', '.']).next()?.parse().ok())
        .unwrap_or(0)
}

fn test(args: &[String]) -> Result<(), String> {
    let skip_qemu = args.iter().any(|a| a == "--no-qemu");
    ensure_targets()?;
    let mut passed = 0;
    let mut failed = 0;
    let mut add = |(p, f): (usize, usize)| {
        passed += p;
        failed += f;
    };
    add(cargo_test("host tests", &["test", "-p", "cpuheap"], &[]));
    add(cargo_test(
        "host tests, checked build (and the critical-section lock)",
        &[
            "test",
            "-p",
            "cpuheap",
            "--features",
            "checked,critical-section",
        ],
        &[],
    ));
    add(cargo_test(
        "host tests, std mode (StdHeap as the global allocator of whole test binaries)",
        &["test", "-p", "cpuheap", "--features", "std"],
        &[],
    ));
    add(cargo_test(
        "host tests, std mode, checked build",
        &["test", "-p", "cpuheap", "--features", "std,checked"],
        &[],
    ));
    add(cargo_test(
        "host tests, release build, checked, no default features (firmware's set: no transfer cache)",
        &[
            "test",
            "-p",
            "cpuheap",
            "--release",
            "--no-default-features",
            "--features",
            "checked",
        ],
        &[],
    ));
    for (target, features) in CROSS_TARGETS {
        let mut a = vec![
            "build",
            "-p",
            "cpuheap",
            "--no-default-features",
            "--target",
            target,
        ];
        if !features.is_empty() {
            a.extend(["--features", features]);
        }
        println!("\n=== cross build: cargo {}", a.join(" "));
        let ok = cargo()
            .args(&a)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        println!(
            "cross build {target} [{features}]: {}",
            if ok { "ok" } else { "FAILED" }
        );
        add(if ok { (1, 0) } else { (0, 1) });
    }
    println!("\n=== firmware flash and heap RAM budgets (benches/firmware)");
    add(firmware::flash_budget_test());
    println!("\n=== README's firmware quick start (examples/firmware-quickstart)");
    add(firmware::quickstart_test());
    let mut run = |label: &str, r: Result<(usize, usize), String>| {
        println!("\n=== {label}");
        match r {
            Ok(x) => add(x),
            Err(e) => {
                eprintln!("xtask {label}: {e}");
                add((0, 1));
            }
        }
    };
    run("C ABI (libcpuheap.so, LD_PRELOAD)", capi::run());
    run("loom models", reliability::loom());
    run("fuzzing, 60 s", reliability::fuzz_short(60));
    run("AddressSanitizer", reliability::asan());
    if !skip_qemu {
        println!("\n=== QEMU suites");
        match qemu::run() {
            Ok(r) => add(r),
            Err(e) => {
                eprintln!("xtask qemu: {e}");
                add((0, 1));
            }
        }
    }
    println!();
    summary(passed, failed)
}
