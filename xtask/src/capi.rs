//! The C ABI tests (issue 6): build `target/release/libcpuheap.so`, then check the C
//! semantics through the C symbols and run real programs (python3, git, a multi-threaded C
//! program, a fork test) with and without `LD_PRELOAD`, comparing what they print.
//! [`run`] prints one line per test and returns `(passed, failed)`; `Err` when the library
//! cannot be built at all. Needs `cc`; python3 and git tests fail if those are missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (the parent of `xtask/`, or the current directory if that is not it).
fn root() -> PathBuf {
    let from_manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if from_manifest.join("capi/Cargo.toml").is_file() {
        from_manifest
    } else {
        std::env::current_dir().unwrap_or(from_manifest)
    }
}

/// What a finished (or timed-out) program did.
struct Ran {
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }

    fn describe(&self) -> String {
        let mut s = if self.timed_out {
            "timed out".to_string()
        } else {
            format!("exit status {:?}", self.status)
        };
        let err = String::from_utf8_lossy(&self.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        if !tail.is_empty() {
            s.push_str("; stderr: ");
            s.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
        }
        s
    }
}

/// Run `cmd` with its output in files under `scratch` (no pipe can fill up), killing it
/// after `limit`.
fn run_limited(
    mut cmd: Command,
    scratch: &Path,
    tag: &str,
    limit: Duration,
) -> Result<Ran, String> {
    let out_path = scratch.join(format!("{tag}.stdout"));
    let err_path = scratch.join(format!("{tag}.stderr"));
    let out = fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) => break st,
            None if start.elapsed() > limit => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().map_err(|e| e.to_string())?;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Ok(Ran {
        status: status.code(),
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
        timed_out,
    })
}

/// The tests' bookkeeping: one line per test.
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn record(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(note) => {
                self.passed += 1;
                println!(
                    "capi: {name} ... ok{}",
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!(" ({note})")
                    }
                );
            }
            Err(why) => {
                self.failed += 1;
                println!("capi: {name} ... FAILED: {why}");
            }
        }
    }
}

/// Compile `capi/tests/c/<file>` into `scratch` (`cc`, or `c++` for `.cc`).
fn compile(root: &Path, scratch: &Path, file: &str) -> Result<PathBuf, String> {
    let src = root.join("capi/tests/c").join(file);
    let (name, compiler) = match file.strip_suffix(".cc") {
        Some(stem) => (stem, "c++"),
        None => (file.trim_end_matches(".c"), "cc"),
    };
    let exe = scratch.join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(["-O2", "-fno-builtin", "-Wall", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src);
    if compiler == "cc" {
        cmd.arg("-ldl");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if out.status.success() {
        Ok(exe)
    } else {
        Err(format!(
            "{compiler} {file} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Lines of the `CPUHEAP_STATS` file: the `allocs=` of each process.
fn stats_allocs(path: &Path) -> Vec<usize> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("allocs="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// The first differing line of two outputs, for a failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: {x:?} vs {y:?}", i + 1);
        }
    }
    format!("{} lines vs {} lines", a.lines().count(), b.lines().count())
}

/// Run `program` (a compiled test) with and without the preload and compare stdout and
/// exit status.
fn same_with_preload(
    exe: &Path,
    lib: &Path,
    scratch: &Path,
    tag: &str,
    envs: &[(&str, &str)],
    limit: Duration,
) -> Result<(Ran, Ran), String> {
    let mut plain = Command::new(exe);
    plain.envs(envs.iter().copied()).env_remove("LD_PRELOAD");
    let plain = run_limited(plain, scratch, &format!("{tag}-plain"), limit)?;
    let mut pre = Command::new(exe);
    pre.envs(envs.iter().copied()).env("LD_PRELOAD", lib);
    let pre = run_limited(pre, scratch, &format!("{tag}-preload"), limit)?;
    if !pre.ok() {
        return Err(format!("with LD_PRELOAD: {}", pre.describe()));
    }
    if !plain.ok() {
        return Err(format!("without LD_PRELOAD: {}", plain.describe()));
    }
    if plain.stdout != pre.stdout {
        return Err(format!(
            "outputs differ: {}",
            first_difference(&plain.stdout, &pre.stdout)
        ));
    }
    Ok((plain, pre))
}

fn test_semantics(root: &Path, lib: &Path, scratch: &Path, tag: &str) -> Result<String, String> {
    let exe = compile(root, scratch, "semantics.c")?;
    let mut cmd = Command::new(exe);
    cmd.env("LD_PRELOAD", lib);
    let ran = run_limited(cmd, scratch, tag, Duration::from_secs(60))?;
    let out = String::from_utf8_lossy(&ran.stdout).to_string();
    let checks = out.lines().filter(|l| l.starts_with("ok ")).count();
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    if ran.ok() && failures.is_empty() && checks > 0 {
        Ok(format!("{checks} checks"))
    } else if !failures.is_empty() {
        Err(failures.join("; "))
    } else {
        Err(ran.describe())
    }
}

fn test_python(root: &Path, lib: &Path, scratch: &Path) -> Result<String, String> {
    // The real interpreter, not a shim script (pyenv), so that the statistics are its own.
    let exe = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("python3 not found: {e}"))?;
    let exe = PathBuf::from(String::from_utf8_lossy(&exe.stdout).trim());
    let script = root.join("capi/tests/py/workload.py");
    let stats = scratch.join("python.stats");
    let envs = [("PYTHONMALLOC", "malloc"), ("PYTHONHASHSEED", "0")];
    let limit = Duration::from_secs(90);
    let mut plain = Command::new(&exe);
    plain.arg(&script).envs(envs).env_remove("LD_PRELOAD");
    let plain = run_limited(plain, scratch, "python-plain", limit)?;
    let mut pre = Command::new(&exe);
    pre.arg(&script)
        .envs(envs)
        .env("LD_PRELOAD", lib)
        .env("CPUHEAP_STATS", &stats);
    let pre = run_limited(pre, scratch, "python-preload", limit)?;
    if !plain.ok() {
        return Err(format!("without LD_PRELOAD: {}", plain.describe()));
    }
    if !pre.ok() {
        return Err(format!("with LD_PRELOAD: {}", pre.describe()));
    }
    if plain.stdout != pre.stdout {
        return Err(format!(
            "outputs differ: {}",
            first_difference(&plain.stdout, &pre.stdout)
        ));
    }
    let allocs = stats_allocs(&stats);
    match allocs.iter().max() {
        Some(&n) if n >= 1_000_000 => Ok(format!(
            "{} output lines identical; cpuheap served {n} allocations",
            String::from_utf8_lossy(&pre.stdout).lines().count()
        )),
        _ => Err(format!(
            "preload not in effect: CPUHEAP_STATS shows {allocs:?}"
        )),
    }
}

/// File `i` of the scratch repository at revision `rev`.
fn git_file_text(i: usize, rev: usize) -> String {
    let mut s = String::new();
    let lines = 20 + (i * 7) % 60;
    for l in 0..lines {
        let changed = rev > 0 && (l + i).is_multiple_of(rev + 3);
        s.push_str(&format!(
            "file {i} line {l}: {}{}\n",
            "lorem ipsum dolor sit amet ".repeat(1 + (i + l) % 4),
            if changed {
                format!(" edited in revision {rev}")
            } else {
                String::new()
            }
        ));
    }
    s
}

/// One git session on a scratch repository in `dir`: every command's output and status.
fn git_session(dir: &Path, preload: Option<(&Path, &Path)>) -> Result<Vec<u8>, String> {
    let repo = dir.join("repo");
    let home = dir.join("home");
    fs::create_dir_all(&repo).map_err(|e| e.to_string())?;
    fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let mut transcript = Vec::new();
    let mut date = 1_600_000_000u64;
    let git = |args: &[&str], transcript: &mut Vec<u8>, date: u64| -> Result<(), String> {
        let mut cmd = Command::new("git");
        cmd.current_dir(&repo)
            .args([
                "-c",
                "pack.threads=1",
                "-c",
                "gc.auto=0",
                "-c",
                "core.pager=cat",
            ])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "ada@example.org")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "ada@example.org")
            .env("GIT_AUTHOR_DATE", format!("@{date} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{date} +0000"));
        if let Some((lib, stats)) = preload {
            cmd.env("LD_PRELOAD", lib).env("CPUHEAP_STATS", stats);
        }
        let out = cmd.output().map_err(|e| format!("git: {e}"))?;
        transcript.extend_from_slice(format!("$ git {}\n", args.join(" ")).as_bytes());
        transcript.extend_from_slice(&out.stdout);
        transcript.extend_from_slice(&out.stderr);
        transcript.extend_from_slice(format!("[exit {:?}]\n", out.status.code()).as_bytes());
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    const FILES: usize = 300;
    let write = |i: usize, rev: usize| -> Result<(), String> {
        let p = repo.join(format!("src/d{}/f{i}.txt", i % 12));
        fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::write(p, git_file_text(i, rev)).map_err(|e| e.to_string())
    };
    git(&["init", "-q", "-b", "main"], &mut transcript, date)?;
    for i in 0..FILES {
        write(i, 0)?;
    }
    git(&["add", "-A"], &mut transcript, date)?;
    git(
        &["commit", "-q", "-m", "initial import"],
        &mut transcript,
        date,
    )?;
    for rev in 1..=6 {
        date += 3600;
        for i in (rev..FILES).step_by(rev + 4) {
            write(i, rev)?;
        }
        if rev % 2 == 0 {
            let from = format!("src/d{}/f{}.txt", rev % 12, rev);
            let to = format!("src/moved-{rev}.txt");
            git(&["mv", &from, &to], &mut transcript, date)?;
        }
        if rev == 3 {
            git(&["rm", "-q", "src/d5/f5.txt"], &mut transcript, date)?;
        }
        git(&["add", "-A"], &mut transcript, date)?;
        git(
            &["commit", "-q", "-m", &format!("revision {rev}")],
            &mut transcript,
            date,
        )?;
        if rev == 4 {
            git(
                &["tag", "-a", "v1", "-m", "version one"],
                &mut transcript,
                date,
            )?;
            git(
                &["checkout", "-q", "-b", "side", "HEAD~2"],
                &mut transcript,
                date,
            )?;
            let side = repo.join("src/d7/f7.txt");
            let text = fs::read_to_string(&side).map_err(|e| e.to_string())?;
            fs::write(&side, format!("{text}a line from the side branch\n"))
                .map_err(|e| e.to_string())?;
            git(
                &["commit", "-q", "-a", "-m", "side change"],
                &mut transcript,
                date,
            )?;
            git(&["checkout", "-q", "main"], &mut transcript, date)?;
            git(&["merge", "-q", "--no-edit", "side"], &mut transcript, date)?;
        }
    }
    for args in [
        &["log", "--stat", "--format=%H %an %ad %s", "--date=iso"][..],
        &["log", "--graph", "--oneline", "--all"],
        &["diff", "v1", "HEAD"],
        &["diff", "--stat", "-M", "HEAD~5", "HEAD"],
        &["status", "--short"],
        &["grep", "-n", "edited in revision 5"],
        &["blame", "-s", "src/d7/f7.txt"],
        &["gc", "-q", "--aggressive"],
        &["fsck", "--full", "--strict"],
        &["count-objects", "-v"],
        &["verify-pack", "-s", ".git/objects/pack/*.idx"],
        &["rev-list", "--all", "--objects"],
        &["log", "--format=%H %s", "-n", "3"],
        &["archive", "--format=tar", "HEAD"],
    ] {
        // verify-pack needs the glob expanded; the pack name is the same in both runs.
        if args[0] == "verify-pack" {
            let pack_dir = repo.join(".git/objects/pack");
            let mut idx: Vec<_> = fs::read_dir(&pack_dir)
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "idx"))
                .collect();
            idx.sort();
            let mut a: Vec<String> = vec!["verify-pack".into(), "-s".into()];
            a.extend(idx.iter().map(|p| {
                format!(
                    ".git/objects/pack/{}",
                    p.file_name().unwrap().to_string_lossy()
                )
            }));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            git(&a, &mut transcript, date)?;
        } else {
            git(args, &mut transcript, date)?;
        }
    }
    Ok(transcript)
}

fn test_git(lib: &Path, scratch: &Path) -> Result<String, String> {
    Command::new("git")
        .arg("--version")
        .output()
        .map_err(|e| format!("git not found: {e}"))?;
    let stats = scratch.join("git.stats");
    let plain = git_session(&scratch.join("git-plain"), None)?;
    let pre = git_session(&scratch.join("git-preload"), Some((lib, &stats)))?;
    if plain != pre {
        return Err(format!(
            "transcripts differ: {}",
            first_difference(&plain, &pre)
        ));
    }
    let allocs = stats_allocs(&stats);
    let busy = allocs.iter().filter(|&&n| n > 0).count();
    if busy < 20 {
        return Err(format!(
            "preload not in effect: {} processes reported statistics",
            busy
        ));
    }
    Ok(format!(
        "{} bytes of transcript identical; {busy} git processes served by cpuheap, {} allocations",
        plain.len(),
        allocs.iter().sum::<usize>()
    ))
}

fn test_threads(root: &Path, lib: &Path, scratch: &Path, tag: &str) -> Result<String, String> {
    let exe = compile(root, scratch, "threads.c")?;
    let (_, pre) = same_with_preload(&exe, lib, scratch, tag, &[], Duration::from_secs(60))?;
    Ok(String::from_utf8_lossy(&pre.stdout).trim().to_string())
}

/// Impossible and huge requests (`hostile.c`): the same results as glibc (stdout), fast and
/// without resident memory (checked by the program); the measurements it prints on stderr.
fn test_hostile(root: &Path, lib: &Path, scratch: &Path) -> Result<String, String> {
    let exe = compile(root, scratch, "hostile.c")?;
    let (plain, pre) =
        same_with_preload(&exe, lib, scratch, "hostile", &[], Duration::from_secs(60))?;
    let lines = |r: &Ran| {
        String::from_utf8_lossy(&r.stderr)
            .lines()
            .collect::<Vec<_>>()
            .join("; ")
    };
    Ok(format!(
        "cpuheap: {}; glibc: {}",
        lines(&pre),
        lines(&plain)
    ))
}

fn test_fork(root: &Path, lib: &Path, scratch: &Path) -> Result<String, String> {
    let exe = compile(root, scratch, "fork.c")?;
    let mut cmd = Command::new(exe);
    cmd.env("LD_PRELOAD", lib);
    let ran = run_limited(cmd, scratch, "fork", Duration::from_secs(60))?;
    if ran.ok() {
        Ok(String::from_utf8_lossy(&ran.stdout).trim().to_string())
    } else {
        Err(ran.describe())
    }
}

fn test_cxx(root: &Path, lib: &Path, scratch: &Path) -> Result<String, String> {
    let exe = compile(root, scratch, "cxx.cc")?;
    let (_, pre) = same_with_preload(&exe, lib, scratch, "cxx", &[], Duration::from_secs(60))?;
    Ok(String::from_utf8_lossy(&pre.stdout).trim().to_string())
}

/// `misuse <what>` must abort with `message` on stderr.
fn test_misuse(
    root: &Path,
    lib: &Path,
    scratch: &Path,
    what: &str,
    message: &str,
) -> Result<String, String> {
    let exe = compile(root, scratch, "misuse.c")?;
    let mut cmd = Command::new(exe);
    cmd.arg(what).env("LD_PRELOAD", lib);
    let ran = run_limited(
        cmd,
        scratch,
        &format!("misuse-{what}"),
        Duration::from_secs(30),
    )?;
    let err = String::from_utf8_lossy(&ran.stderr);
    if ran.status.is_none() && !ran.timed_out && err.contains(message) {
        Ok(err
            .lines()
            .find(|l| l.contains(message))
            .unwrap_or("")
            .to_string())
    } else {
        Err(format!(
            "expected an abort with {message:?}: {}",
            ran.describe()
        ))
    }
}

/// Build the library with the core's checked mode into `target/capi-checked/`.
fn build_checked(root: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "cpuheap-capi",
            "--features",
            "checked",
        ])
        .args(["--target-dir", "target/capi-checked"])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "checked build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(root.join("target/capi-checked/release/libcpuheap.so"))
}

/// Build the library, run every C ABI test, print a line per test; `(passed, failed)`.
pub fn run() -> Result<(usize, usize), String> {
    let root = root();
    println!("\n=== capi: cargo build --release -p cpuheap-capi");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "cpuheap-capi"])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let build_err = String::from_utf8_lossy(&build.stderr).to_string();
    if !build.status.success() {
        eprint!("{build_err}");
        return Err("cargo build --release -p cpuheap-capi failed".into());
    }
    // Honour CARGO_TARGET_DIR like cargo does (relative paths are relative to the root).
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    let lib = target_dir.join("release/libcpuheap.so");
    if !lib.is_file() {
        return Err(format!("{} was not built", lib.display()));
    }
    let scratch = std::env::temp_dir().join(format!("cpuheap-capi-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;

    let mut t = Tally {
        passed: 0,
        failed: 0,
    };
    t.record(
        "build: no output filename collision (target/release/libcpuheap.so)",
        if build_err.contains("collision") {
            Err(build_err
                .lines()
                .filter(|l| l.contains("collision"))
                .collect::<Vec<_>>()
                .join("; "))
        } else {
            Ok(String::new())
        },
    );
    let started = Instant::now();
    t.record(
        "C semantics through the C symbols (semantics.c, preloaded)",
        test_semantics(&root, &lib, &scratch, "semantics"),
    );
    t.record(
        "python3 workload: same output with and without LD_PRELOAD",
        test_python(&root, &lib, &scratch),
    );
    t.record(
        "git on a scratch repository: same transcript with and without LD_PRELOAD",
        test_git(&lib, &scratch),
    );
    t.record(
        "cross-thread frees (threads.c): same output with and without LD_PRELOAD",
        test_threads(&root, &lib, &scratch, "threads"),
    );
    t.record(
        "impossible and huge requests (hostile.c): glibc's results, fast, no RSS",
        test_hostile(&root, &lib, &scratch),
    );
    t.record(
        "fork in a multi-threaded program (fork.c, preloaded)",
        test_fork(&root, &lib, &scratch),
    );
    t.record(
        "C++ new/delete, aligned new, bad_alloc (cxx.cc): same output with and without LD_PRELOAD",
        test_cxx(&root, &lib, &scratch),
    );
    t.record(
        "free of a foreign pointer aborts with a message (misuse.c)",
        test_misuse(
            &root,
            &lib,
            &scratch,
            "foreign",
            "not allocated by this heap",
        ),
    );
    t.record(
        "double free of a small object aborts with a message (misuse.c)",
        test_misuse(&root, &lib, &scratch, "double", "double free"),
    );
    t.record(
        "interior pointer of a small object aborts with a message (misuse.c)",
        test_misuse(&root, &lib, &scratch, "interior", "interior pointer"),
    );
    match build_checked(&root) {
        Ok(checked) => {
            t.record(
                "checked build: C semantics (semantics.c)",
                test_semantics(&root, &checked, &scratch, "semantics-checked"),
            );
            t.record(
                "checked build: cross-thread frees (threads.c)",
                test_threads(&root, &checked, &scratch, "threads-checked"),
            );
            t.record(
                "checked build: double free aborts with a message (misuse.c)",
                test_misuse(&root, &checked, &scratch, "double", "double free"),
            );
            t.record(
                "checked build: interior pointer aborts with a message (misuse.c)",
                test_misuse(&root, &checked, &scratch, "interior", "interior pointer"),
            );
        }
        Err(e) => t.record("checked build (cargo build --features checked)", Err(e)),
    }
    println!(
        "capi: {} passed, {} failed in {:.1} s",
        t.passed,
        t.failed,
        started.elapsed().as_secs_f64()
    );
    if t.failed == 0 {
        let _ = fs::remove_dir_all(&scratch);
    } else {
        println!("capi: outputs kept in {}", scratch.display());
    }
    Ok((t.passed, t.failed))
}
