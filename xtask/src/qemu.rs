//! `cargo xtask qemu`: build the bare-metal suites under `qemu/` and run them in QEMU.
//!
//! Std only, no crates. Every suite is an **embedded-test** suite (`qemu/firmware` on the
//! Cortex-M machines, `qemu/kernel` on riscv64 `virt -smp 4`): each test binary lists its
//! tests in the ELF's `.embedded_test` section (one symbol per test whose *name* is a JSON
//! descriptor and whose value is a `(fn() -> !, &'static str)` tuple: entry point and
//! module path). Every test is one boot of QEMU with
//! `-semihosting-config enable=on,target=native,arg=run_addr,arg=<entry, decimal>`;
//! embedded-test calls the entry, which ends in semihosting `exit(0)` (pass) or
//! `abort()` = exit status 134 (fail / panic). On the 4-hart kernel the test runs on hart 0
//! and hands its body to the other harts; any hart may end the boot with `abort()`.
//!
//! Every QEMU run has a deadline; a hang is killed and counted as a failure.
//!
//! Tests named `xfail_*` (and `#[ignore]`d, so other runners skip them) are the runner's
//! own self-check: they must FAIL (nonzero exit or timeout), and count as passed when
//! they do. That proves the pass/fail/timeout detection on every machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Default per-test deadline when a test declares none (seconds).
const DEFAULT_TIMEOUT_S: u64 = 30;
/// Extra time granted on top of a test's own timeout for QEMU to start and load.
const BOOT_SLACK_S: u64 = 2;

/// One crate built for one target and booted on one QEMU machine.
struct Suite {
    /// Directory of the crate, relative to the repository root.
    crate_dir: &'static str,
    target: &'static str,
    /// Extra cargo features for this build.
    features: &'static [&'static str],
    /// Build without the crate's default features.
    no_default_features: bool,
    machine: &'static str,
    qemu: &'static str,
    qemu_args: &'static [&'static str],
}

const SUITES: &[Suite] = &[
    Suite {
        crate_dir: "qemu/firmware",
        target: "thumbv7em-none-eabihf",
        features: &[],
        no_default_features: false,
        machine: "mps2-an386",
        qemu: "qemu-system-arm",
        qemu_args: &["-M", "mps2-an386", "-cpu", "cortex-m4"],
    },
    // The same suite without the `checked` feature: the fast paths that ship.
    Suite {
        crate_dir: "qemu/firmware",
        target: "thumbv7em-none-eabihf",
        features: &[],
        no_default_features: true,
        machine: "mps2-an386",
        qemu: "qemu-system-arm",
        qemu_args: &["-M", "mps2-an386", "-cpu", "cortex-m4"],
    },
    Suite {
        crate_dir: "qemu/firmware",
        target: "thumbv7m-none-eabi",
        features: &[],
        no_default_features: false,
        machine: "mps2-an385",
        qemu: "qemu-system-arm",
        qemu_args: &["-M", "mps2-an385", "-cpu", "cortex-m3"],
    },
    Suite {
        crate_dir: "qemu/firmware",
        target: "thumbv6m-none-eabi",
        features: &[],
        no_default_features: false,
        machine: "microbit",
        qemu: "qemu-system-arm",
        qemu_args: &["-M", "microbit"],
    },
    Suite {
        crate_dir: "qemu/kernel",
        target: "riscv64gc-unknown-none-elf",
        features: &[],
        no_default_features: false,
        machine: "virt -smp 4",
        qemu: "qemu-system-riscv64",
        qemu_args: &["-M", "virt", "-smp", "4", "-m", "128M", "-bios", "none"],
    },
];

/// Common QEMU arguments: no window, no monitor on stdio.
const QEMU_COMMON: &[&str] = &["-nographic", "-monitor", "none"];

/// Build every suite, boot every test, print one line per test and the summary line
/// `N passed, N failed`. Returns `(passed, failed)`; `Err` only when nothing could be
/// run at all (tools missing and not installable).
pub fn run() -> Result<(usize, usize), String> {
    let root = repo_root()?;
    ensure_qemu(&root)?;
    let mut tally = Tally::default();
    for suite in SUITES {
        println!();
        println!(
            "== QEMU machine {} ({}, {}{}) ==",
            suite.machine,
            suite.target,
            suite.crate_dir,
            match (suite.no_default_features, suite.features.is_empty()) {
                (false, true) => String::new(),
                (true, true) => ", --no-default-features".to_string(),
                (nd, false) => format!(
                    ",{} features {}",
                    if nd { " --no-default-features," } else { "" },
                    suite.features.join(",")
                ),
            }
        );
        if let Err(e) = ensure_rust_target(suite.target) {
            println!("build {} ... FAILED\n{}", suite.target, indent(&e));
            tally.failed += 1;
            continue;
        }
        let binaries = match build(&root, suite) {
            Ok(b) => b,
            Err(e) => {
                println!(
                    "build {} for {} ... FAILED\n{}",
                    suite.crate_dir,
                    suite.target,
                    indent(&e)
                );
                tally.failed += 1;
                continue;
            }
        };
        for (name, elf) in binaries {
            run_embedded_test_binary(suite, &name, &elf, &mut tally);
        }
    }
    println!();
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok((tally.passed, tally.failed))
}

/// Cargo-runner entry point (see `qemu/runner`): `<machine> <elf> [filter]`.
/// Runs every test of one embedded-test ELF on the named machine.
/// Returns `(passed, failed)`.
#[allow(dead_code)] // used by qemu/runner (the cargo runner), not by the xtask binary
pub fn run_elf(machine: &str, elf: &Path, filter: Option<&str>) -> Result<(usize, usize), String> {
    let suite = SUITES
        .iter()
        .find(|s| s.machine == machine || s.machine.split(' ').next() == Some(machine))
        .ok_or_else(|| {
            let known: Vec<_> = SUITES.iter().map(|s| s.machine).collect();
            format!("unknown machine {machine:?}; known: {known:?}")
        })?;
    let root = repo_root()?;
    ensure_qemu(&root)?;
    let name = elf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = strip_hash(&name).to_string();
    println!("== QEMU machine {} ({}) ==", suite.machine, elf.display());
    let mut tally = Tally {
        filter: filter.map(str::to_string),
        ..Tally::default()
    };
    run_embedded_test_binary(suite, &name, elf, &mut tally);
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok((tally.passed, tally.failed))
}

/// `CPUHEAP_QEMU_VERBOSE=1`: show the output of passing tests too.
fn verbose() -> bool {
    std::env::var("CPUHEAP_QEMU_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0")
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    filter: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Tools: repository root, Rust targets, QEMU.

pub(crate) fn repo_root() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CPUHEAP_ROOT") {
        return Ok(PathBuf::from(dir));
    }
    let is_root = |p: &Path| p.join("qemu/firmware/Cargo.toml").is_file();
    let mut dir = std::env::current_dir().map_err(|e| e.to_string())?;
    loop {
        if is_root(&dir) {
            return Ok(dir);
        }
        if !dir.pop() {
            break;
        }
    }
    // Fall back on where this file was compiled from: <root>/xtask.
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"));
    for cand in [compiled.parent(), compiled.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
    {
        if is_root(cand) {
            return Ok(cand.to_path_buf());
        }
    }
    Err("cannot find the repository root (a directory with qemu/firmware/Cargo.toml); set CPUHEAP_ROOT".into())
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root_user() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// QEMU present, or installed now (as root, via `qemu/install-qemu.sh`), or an error that
/// tells the exact command.
pub(crate) fn ensure_qemu(root: &Path) -> Result<(), String> {
    let needed = ["qemu-system-arm", "qemu-system-riscv64"];
    if needed.iter().all(|p| on_path(p)) {
        return Ok(());
    }
    let script = root.join("qemu/install-qemu.sh");
    if is_root_user() {
        println!("QEMU missing: running {}", script.display());
        let status = Command::new("sh")
            .arg(&script)
            .status()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if status.success() && needed.iter().all(|p| on_path(p)) {
            return Ok(());
        }
        return Err(format!("{} failed ({status})", script.display()));
    }
    Err(format!(
        "QEMU is not installed ({} needed). Install it with:\n    sudo sh {}\n\
         (on Debian bookworm it takes qemu-system-arm and qemu-system-riscv from bookworm-backports;\n\
         elsewhere: install your distribution's qemu-system-arm and qemu-system-riscv64 / qemu-system-misc)",
        needed.join(" and "),
        script.display()
    ))
}

pub(crate) fn ensure_rust_target(target: &str) -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
    {
        return Ok(());
    }
    println!("rustup target add {target}");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("rustup target add {target}: {e} (install the target by hand)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustup target add {target} failed ({status})"))
    }
}

// ---------------------------------------------------------------------------------------
// Building.

/// `cargo test --no-run` for one suite; returns `(binary name, ELF path)` of every test
/// artifact.
fn build(root: &Path, suite: &Suite) -> Result<Vec<(String, PathBuf)>, String> {
    let dir = root.join(suite.crate_dir);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["test", "--no-run", "--tests"]);
    cmd.args([
        "--target",
        suite.target,
        "--message-format=json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(dir.join("Cargo.toml"))
    .current_dir(&dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if !suite.features.is_empty() {
        cmd.args(["--features", &suite.features.join(",")]);
    }
    if suite.no_default_features {
        cmd.arg("--no-default-features");
    }
    // The suite is its own workspace with its own target dir; do not inherit the
    // host build's settings from `cargo xtask`.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(|e| format!("spawning cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(tail(&stderr, 60));
    }
    let want_kind = "\"kind\":[\"test\"]";
    let mut bins = Vec::new();
    for line in stdout.lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains(want_kind) {
            continue;
        }
        let (Some(exe), Some(name)) = (json_str(line, "executable"), target_name(line)) else {
            continue;
        };
        bins.push((name, PathBuf::from(exe)));
    }
    if bins.is_empty() {
        return Err("cargo built no test binaries".to_string());
    }
    bins.sort();
    Ok(bins)
}

fn target_name(line: &str) -> Option<String> {
    let at = line.find("\"target\":{")?;
    json_str(&line[at..], "name")
}

/// The string value of the first `"key":"..."` in `json` (no escapes beyond `\"`/`\\`).
fn json_str(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = json.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn json_bool(json: &str, key: &str) -> bool {
    json.contains(&format!("\"{key}\":true"))
}

fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let start = json.find(&pat)? + pat.len();
    let digits: String = json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Running QEMU.

struct Outcome {
    /// `None`: killed at the deadline.
    code: Option<i32>,
    output: String,
    elapsed: Duration,
}

fn boot(
    suite: &Suite,
    elf: &Path,
    semihosting_args: &[String],
    deadline: Duration,
) -> Result<Outcome, String> {
    let mut cmd = Command::new(suite.qemu);
    cmd.args(suite.qemu_args)
        .args(QEMU_COMMON)
        .args(["-serial", "none"]);
    let mut semi = String::from("enable=on,target=native");
    for a in semihosting_args {
        semi.push_str(",arg=");
        semi.push_str(a);
    }
    cmd.args(["-semihosting-config", &semi]);
    cmd.arg("-kernel").arg(elf);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", suite.qemu))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status.code().unwrap_or(-1)),
            Ok(None) if start.elapsed() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let elapsed = start.elapsed();
    let mut output = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err_t.join().unwrap_or_default()));
    Ok(Outcome {
        code,
        output,
        elapsed,
    })
}

fn run_embedded_test_binary(suite: &Suite, bin: &str, elf: &Path, tally: &mut Tally) {
    let tests = match read_elf(elf).and_then(|e| e.embedded_tests()) {
        Ok(t) => t,
        Err(e) => {
            println!(
                "{bin}: reading tests from {} ... FAILED: {e}",
                elf.display()
            );
            tally.failed += 1;
            return;
        }
    };
    for t in tests {
        let full = format!("{bin}::{}", t.name);
        if let Some(f) = &tally.filter {
            if !full.contains(f.as_str()) {
                continue;
            }
        }
        let xfail = t.short_name().starts_with("xfail_");
        if t.ignored && !xfail {
            println!("test {full} ... ignored");
            continue;
        }
        let timeout = t.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
        let deadline = Duration::from_secs(timeout + BOOT_SLACK_S);
        let outcome = boot(
            suite,
            elf,
            &["run_addr".to_string(), t.addr.to_string()],
            deadline,
        );
        let output = outcome.as_ref().ok().map(|o| o.output.clone());
        let (ok, detail, secs) = match outcome {
            Err(e) => (false, format!("runner error: {e}"), 0.0),
            Ok(o) => {
                let secs = o.elapsed.as_secs_f64();
                let verdict = match (o.code, t.should_panic, xfail) {
                    (None, _, true) => Ok("expected failure: timed out".to_string()),
                    (None, _, false) => Err(format!("timed out after {}s", deadline.as_secs())),
                    (Some(0), false, false) => Ok(String::new()),
                    (Some(0), true, false) => Err("expected a panic, exited successfully".into()),
                    (Some(0), _, true) => {
                        Err("xfail test passed: the runner cannot see failures".into())
                    }
                    (Some(c), true, false) => Ok(format!("panicked as expected (exit {c})")),
                    (Some(c), _, true) => Ok(format!("expected failure: exit {c}")),
                    (Some(c), false, false) => Err(format!("exit status {c}")),
                };
                match verdict {
                    Ok(note) => (true, note, secs),
                    Err(why) => (
                        false,
                        format!("{why}\n{}", indent(&tail(&o.output, 40))),
                        secs,
                    ),
                }
            }
        };
        if ok {
            tally.passed += 1;
            let note = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            };
            println!("test {full} ... ok [{secs:.2}s]{note}");
            if let Some(out) = output
                .as_deref()
                .filter(|o| verbose() && !o.trim().is_empty())
            {
                println!("{}", indent(out));
            }
        } else {
            tally.failed += 1;
            println!("test {full} ... FAILED [{secs:.2}s]: {detail}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Just enough ELF to read embedded-test's `.embedded_test` section.

struct EmbeddedTest {
    /// `module::path::test_name` without the crate.
    name: String,
    addr: u64,
    ignored: bool,
    should_panic: bool,
    timeout: Option<u64>,
}

impl EmbeddedTest {
    fn short_name(&self) -> &str {
        self.name.rsplit("::").next().unwrap_or(&self.name)
    }
}

struct Section {
    name: String,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

struct Elf {
    data: Vec<u8>,
    is64: bool,
    sections: Vec<Section>,
}

fn read_elf(path: &Path) -> Result<Elf, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Elf::parse(data)
}

impl Elf {
    fn parse(data: Vec<u8>) -> Result<Elf, String> {
        if data.len() < 64 || &data[..4] != b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        if data[5] != 1 {
            return Err("big-endian ELF is not supported".into());
        }
        let is64 = data[4] == 2;
        let mut elf = Elf {
            data,
            is64,
            sections: Vec::new(),
        };
        let (shoff, shentsize, shnum, shstrndx) = if is64 {
            (
                elf.u(0x28, 8)?,
                elf.u(0x3a, 2)?,
                elf.u(0x3c, 2)?,
                elf.u(0x3e, 2)?,
            )
        } else {
            (
                elf.u(0x20, 4)?,
                elf.u(0x2e, 2)?,
                elf.u(0x30, 2)?,
                elf.u(0x32, 2)?,
            )
        };
        let mut raw = Vec::new();
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            let s = if is64 {
                (
                    elf.u(h, 4)?,
                    elf.u(h + 4, 4)?,
                    elf.u(h + 8, 8)?,
                    elf.u(h + 16, 8)?,
                    elf.u(h + 24, 8)?,
                    elf.u(h + 32, 8)?,
                    elf.u(h + 40, 4)?,
                )
            } else {
                (
                    elf.u(h, 4)?,
                    elf.u(h + 4, 4)?,
                    elf.u(h + 8, 4)?,
                    elf.u(h + 12, 4)?,
                    elf.u(h + 16, 4)?,
                    elf.u(h + 20, 4)?,
                    elf.u(h + 24, 4)?,
                )
            };
            raw.push(s);
        }
        let shstr = raw.get(shstrndx as usize).ok_or("bad e_shstrndx")?.4;
        for (name, kind, flags, addr, offset, size, link) in raw {
            let name = elf.cstr(shstr + name)?;
            elf.sections.push(Section {
                name,
                kind: kind as u32,
                flags,
                addr,
                offset,
                size,
                link: link as u32,
            });
        }
        Ok(elf)
    }

    fn u(&self, off: u64, len: usize) -> Result<u64, String> {
        let off = usize::try_from(off).map_err(|_| "offset overflow")?;
        let b = self
            .data
            .get(off..off + len)
            .ok_or("ELF read out of bounds")?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
    }

    fn cstr(&self, off: u64) -> Result<String, String> {
        let off = off as usize;
        let rest = self.data.get(off..).ok_or("string out of bounds")?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("unterminated string")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn word(&self) -> u64 {
        if self.is64 {
            8
        } else {
            4
        }
    }

    /// Bytes at a virtual address inside an allocated section that has file contents.
    fn at_vaddr(&self, addr: u64, len: u64) -> Result<&[u8], String> {
        const SHF_ALLOC: u64 = 2;
        const SHT_NOBITS: u32 = 8;
        let s = self
            .sections
            .iter()
            .find(|s| {
                s.flags & SHF_ALLOC != 0
                    && s.kind != SHT_NOBITS
                    && s.size > 0
                    && addr >= s.addr
                    && addr + len <= s.addr + s.size
            })
            .ok_or_else(|| format!("no section holds {addr:#x}"))?;
        let off = (s.offset + addr - s.addr) as usize;
        Ok(&self.data[off..off + len as usize])
    }

    fn embedded_tests(&self) -> Result<Vec<EmbeddedTest>, String> {
        const SHT_SYMTAB: u32 = 2;
        let (idx, sec) = self
            .sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == ".embedded_test")
            .ok_or("no .embedded_test section (not an embedded-test binary, or linked without -Tembedded-test.x)")?;
        let symtab = self
            .sections
            .iter()
            .find(|s| s.kind == SHT_SYMTAB)
            .ok_or("no symbol table (stripped?)")?;
        let strtab = self
            .sections
            .get(symtab.link as usize)
            .ok_or("bad symtab link")?;
        let entsize = if self.is64 { 24 } else { 16 };
        let mut tests = Vec::new();
        let mut version = None;
        for i in 0..symtab.size / entsize {
            let e = symtab.offset + i * entsize;
            let (name, value, shndx) = if self.is64 {
                (self.u(e, 4)?, self.u(e + 8, 8)?, self.u(e + 6, 2)?)
            } else {
                (self.u(e, 4)?, self.u(e + 4, 4)?, self.u(e + 14, 2)?)
            };
            if shndx as usize != idx {
                continue;
            }
            let name = self.cstr(strtab.offset + name)?;
            // Section-relative offset of the symbol's value.
            let rel = value
                .checked_sub(sec.addr)
                .ok_or("symbol before .embedded_test")?;
            let read = |k: u64| self.u(sec.offset + rel + k * self.word(), self.word() as usize);
            if name == "EMBEDDED_TEST_VERSION" {
                version = Some(read(0)?);
                continue;
            }
            if !name.starts_with('{') {
                continue;
            }
            let test =
                json_str(&name, "name").ok_or_else(|| format!("malformed descriptor {name}"))?;
            let (entry, path_ptr, path_len) = (read(0)?, read(1)?, read(2)?);
            let path = String::from_utf8_lossy(self.at_vaddr(path_ptr, path_len)?).into_owned();
            let module = path
                .split_once("::")
                .map(|(_, m)| m.to_string())
                .unwrap_or_default();
            tests.push(EmbeddedTest {
                name: if module.is_empty() {
                    test
                } else {
                    format!("{module}::{test}")
                },
                addr: entry,
                ignored: json_bool(&name, "ignored"),
                should_panic: json_bool(&name, "should_panic"),
                timeout: json_u64(&name, "timeout"),
            });
        }
        match version {
            Some(1) => {}
            Some(v) => {
                return Err(format!(
                    "embedded-test protocol version {v} (this runner speaks 1)"
                ))
            }
            None => return Err("no EMBEDDED_TEST_VERSION symbol".into()),
        }
        tests.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tests)
    }
}

// ---------------------------------------------------------------------------------------
// Text helpers.

#[allow(dead_code)]
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            base
        }
        _ => name,
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
