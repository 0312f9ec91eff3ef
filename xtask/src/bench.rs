//! `cargo xtask bench`: build and run the benchmark harness (`benches/`, package
//! `cpuheap-bench`), print its markdown table, write `benches/results/latest.{md,svg}`,
//! and count the small-object fast path's instructions under callgrind.
//!
//! ```text
//! cargo xtask bench                 full run (5 runs, ~5-8 min) + callgrind
//! cargo xtask bench --quick         3 short runs (~1-2 min) + callgrind
//! cargo xtask bench --callgrind     only the instruction count
//! cargo xtask bench --no-callgrind  skip the instruction count
//! cargo xtask bench --small-heap     only the small-heap efficiency table
//! cargo xtask bench --global        only the global-allocator benchmarks (global.rs)
//! cargo xtask bench --no-global     full run without them
//! any other argument is passed to the harness binary (see `--help` there), e.g.
//! cargo xtask bench --quick --only a,b --alloc cpuheap,mimalloc,glibc
//! ```
//!
//! Plain std only: no crates.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "global.rs"]
mod global;

const USAGE: &str =
    "cargo xtask bench [--quick] [--callgrind | --no-callgrind] [--size BYTES] [HARNESS ARGS...]
  --quick          3 short runs (about 1 minute); writes benches/results/quick.{md,svg}
                   instead of latest.{md,svg}
  --callgrind      only the callgrind instruction count of the alloc+free fast path
  --no-callgrind   skip the instruction count
  --small-heap     only the small-heap efficiency table (benches/results/small-heap.md; also
                   run after a full or quick run): 32 KiB region, host and, if the
                   i686-unknown-linux-musl target is installed, 32-bit
  --size BYTES     object size of the fast-path probe (default 32)
  --global         only the global-allocator benchmarks (each allocator the #[global_allocator]
                   of its own binary): 5 runs (3 with --quick), to benches/results/global.md
                   (global-quick.md with --quick). The full run (no --quick) includes them.
  --no-global      full run without the global-allocator benchmarks
  HARNESS ARGS     passed to cpuheap-bench: --runs N --window-ms MS --only a,b,c,d1,d2,f1,f2,e
                   --alloc NAME,... --eff-mib MIB (run `target/release/cpuheap-bench --help`)";

/// Allocators probed by callgrind (those the harness build has; `noop` is the loop alone).
const CALLGRIND_ALLOCS: &[&str] = &[
    "cpuheap",
    "cpuheap-region",
    "mimalloc",
    "mimalloc-raw",
    "jemalloc",
    "snmalloc",
    "rpmalloc",
    "glibc",
    "talc",
    "rlsf",
    "noop",
];

/// Pair counts of the two callgrind runs; their difference cancels start-up costs.
const N1: u64 = 200_000;
const N2: u64 = 400_000;

/// Entry point called by `xtask/src/main.rs` for `cargo xtask bench ARGS`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut callgrind = true;
    let mut only_callgrind = false;
    let mut only_small_heap = false;
    let mut size = 32usize;
    let mut pass: Vec<String> = Vec::new();
    let mut name = "latest";
    let mut only_global = false;
    let mut no_global = false;
    let mut quick = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--callgrind" => only_callgrind = true,
            "--no-callgrind" => callgrind = false,
            "--small-heap" => only_small_heap = true,
            "--size" => {
                size = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--size needs a number of bytes")?
            }
            "--quick" => {
                name = "quick";
                quick = true;
                pass.push(a.clone());
            }
            "--global" => only_global = true,
            "--no-global" => no_global = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => pass.push(a.clone()),
        }
    }
    let root = workspace_root();
    let results = root.join("benches").join("results");
    std::fs::create_dir_all(&results).map_err(|e| format!("create {}: {e}", results.display()))?;

    build(&root)?;
    let bin_dir = target_dir(&root).join("release");
    let bench = bin_dir.join(exe("cpuheap-bench"));
    let fastpath = bin_dir.join(exe("fastpath"));
    if only_small_heap {
        return small_heap(&root, &bin_dir, &results);
    }

    if only_global {
        let out = results.join(if quick {
            "global-quick.md"
        } else {
            "global.md"
        });
        let md = global::run(&bin_dir, quick, &out)?;
        println!("{md}");
        eprintln!("results: {}", out.display());
        return Ok(());
    }

    if !only_callgrind {
        let mut cmd = Command::new(&bench);
        cmd.args(&pass)
            .arg("--out")
            .arg(&results)
            .args(["--name", name])
            .current_dir(&root);
        eprintln!("+ {:?}", cmd);
        let st = cmd
            .status()
            .map_err(|e| format!("run {}: {e}", bench.display()))?;
        if !st.success() {
            return Err(format!("cpuheap-bench failed: {st}"));
        }
    }
    if !only_callgrind && !quick && !no_global {
        let out = results.join("global.md");
        let md = global::run(&bin_dir, false, &out)?;
        println!("{md}");
        eprintln!("results: {}", out.display());
    }
    if callgrind || only_callgrind {
        match callgrind_table(&fastpath, size) {
            Ok(md) => {
                println!("{md}");
                std::fs::write(results.join("callgrind.md"), &md)
                    .map_err(|e| format!("write callgrind.md: {e}"))?;
                if !only_callgrind {
                    let latest = results.join(format!("{name}.md"));
                    let mut s = std::fs::read_to_string(&latest).unwrap_or_default();
                    s.push('\n');
                    s.push_str(&md);
                    std::fs::write(&latest, s).map_err(|e| format!("write latest.md: {e}"))?;
                }
            }
            Err(e) if !only_callgrind => eprintln!("callgrind skipped: {e}"),
            Err(e) => return Err(e),
        }
    }
    if !only_callgrind {
        small_heap(&root, &bin_dir, &results)?;
    }
    eprintln!(
        "results: {} {}",
        results.join(format!("{name}.md")).display(),
        results.join(format!("{name}.svg")).display()
    );
    Ok(())
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The repository root: xtask's parent, or else the nearest ancestor of the current
/// directory that holds `benches/Cargo.toml`.
fn workspace_root() -> PathBuf {
    let has_benches = |d: &Path| d.join("benches").join("Cargo.toml").is_file();
    if let Some(p) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        if has_benches(p) {
            return p.to_path_buf();
        }
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| has_benches(d))
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root.join(d)
            }
        }
        None => root.join("target"),
    }
}

fn build(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "-p", "cpuheap-bench", "--bins"])
        .current_dir(root);
    eprintln!("+ {:?}", cmd);
    let st = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("building cpuheap-bench failed: {st}"))
    }
}

/// The small-heap efficiency table (`benches/src/small_heap.rs`): the host build, then the
/// same file built alone for i686-unknown-linux-musl (`benches/small-heap-32`) when that
/// target is installed. Writes `benches/results/small-heap.md`.
fn small_heap(root: &Path, bin_dir: &Path, results: &Path) -> Result<(), String> {
    let run = |cmd: &mut Command| -> Result<String, String> {
        eprintln!("+ {:?}", cmd);
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{cmd:?} failed: {}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut md = String::from(
        "# Small-heap efficiency\n\nWritten by `cargo xtask bench --small-heap` \
         (`benches/src/small_heap.rs`; the 32-bit part is the same file built for \
         i686-unknown-linux-musl by `benches/small-heap-32`).\n\n",
    );
    md.push_str(&run(&mut Command::new(bin_dir.join(exe("small_heap"))))?);
    let m32 = root.join("benches").join("small-heap-32");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t32 = "i686-unknown-linux-musl";
    let built = run(Command::new(&cargo)
        .args(["build", "--release", "--target", t32, "--manifest-path"])
        .arg(m32.join("Cargo.toml")));
    let bin32 = m32
        .join("target")
        .join(t32)
        .join("release")
        .join("small_heap_32");
    match built.and_then(|_| run(&mut Command::new(&bin32))) {
        Ok(s) => md.push_str(&format!("\n{s}")),
        Err(e) => {
            eprintln!("32-bit small-heap table skipped: {e}");
            md.push_str(&format!(
                "\n(32-bit table skipped: {e}; `rustup target add {t32}` enables it.)\n"
            ));
        }
    }
    println!("{md}");
    std::fs::write(results.join("small-heap.md"), &md)
        .map_err(|e| format!("write small-heap.md: {e}"))
}

/// Instructions collected inside `fastpath::pairs` for `n` pairs.
fn collected(fastpath: &Path, alloc: &str, n: u64, size: usize) -> Result<u64, String> {
    let out = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--toggle-collect=*fastpath*pairs*",
        ])
        .arg(fastpath)
        .args([alloc, &n.to_string(), &size.to_string()])
        .output()
        .map_err(|e| format!("valgrind: {e} (is valgrind installed?)"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "valgrind {alloc} {n} failed: {}\n{err}",
            out.status
        ));
    }
    err.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("Collected :")?;
            rest.trim().replace(',', "").parse().ok()
        })
        .ok_or_else(|| format!("no 'Collected' line in callgrind output for {alloc}:\n{err}"))
}

fn callgrind_table(fastpath: &Path, size: usize) -> Result<String, String> {
    let listed = Command::new(fastpath)
        .arg("--list")
        .output()
        .map_err(|e| format!("run {}: {e}", fastpath.display()))?;
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let available: Vec<&str> = listed.split_whitespace().collect();
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for &a in CALLGRIND_ALLOCS.iter().filter(|a| available.contains(a)) {
        eprint!("callgrind {a} ... ");
        match collected(fastpath, a, N1, size)
            .and_then(|i1| Ok((i1, collected(fastpath, a, N2, size)?)))
        {
            Ok((i1, i2)) => {
                let per = i2.saturating_sub(i1) as f64 / (N2 - N1) as f64;
                eprintln!("{per:.1} instructions/pair");
                rows.push((a.to_string(), per));
            }
            Err(e) => {
                // e.g. snmalloc aborts under valgrind (its address-space reservation fails).
                let first = e.lines().next().unwrap_or("").to_string();
                eprintln!("failed: {first}");
                failed.push(a.to_string());
            }
        }
    }
    let noop = rows
        .iter()
        .find(|r| r.0 == "noop")
        .map(|r| r.1)
        .unwrap_or(0.0);
    let base = rows
        .iter()
        .find(|r| r.0 == "cpuheap")
        .or_else(|| rows.iter().find(|r| r.0 == "cpuheap-region"))
        .map(|r| r.1 - noop);
    let mut s = String::new();
    s.push_str(&format!(
        "### Fast path: instructions per alloc+free pair ({size} B, one thread, callgrind)\n\n\
         `valgrind --tool=callgrind --toggle-collect='*fastpath*pairs*'` on `benches/src/bin/fastpath.rs`, \
         (I({N2}) - I({N1})) / {} pairs. `net` subtracts the harness loop alone (`noop`). \
         `mimalloc` is the crate's `GlobalAlloc` (always `mi_malloc_aligned`), `mimalloc-raw` calls `mi_malloc`/`mi_free`.\n\n",
        N2 - N1
    ));
    s.push_str(
        "| allocator | instructions/pair | net | vs cpuheap (net) |\n|---|---:|---:|---:|\n",
    );
    for (a, per) in &rows {
        let net = per - noop;
        let vs = match base {
            Some(b) if a != "noop" && b > 0.0 => format!("{:.2}", net / b),
            _ => "–".into(),
        };
        let net_s = if a == "noop" {
            "–".to_string()
        } else {
            format!("{net:.1}")
        };
        s.push_str(&format!("| {a} | {per:.1} | {net_s} | {vs} |\n"));
    }
    for a in &failed {
        s.push_str(&format!("| {a} | does not run under valgrind | – | – |\n"));
    }
    Ok(s)
}
