//! `cargo xtask bench --global`: the global-allocator benchmarks. Runs every
//! `target/release/global-<alloc>` binary (each with its allocator as `#[global_allocator]`,
//! see `benches/src/global/workloads.rs`) on every workload, several runs with the allocator
//! order rotated between runs, and writes a markdown table of the median of same-run ratios
//! cpuheap / peer to `benches/results/global.md` (`global-quick.md` with `--quick`).
//!
//! Plain std only.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Allocators, cpuheap first (the baseline); a missing binary is skipped.
const ALLOCS: &[&str] = &["cpuheap", "glibc", "mimalloc", "jemalloc", "snmalloc"];
const PEERS: &[&str] = &["glibc", "mimalloc", "jemalloc", "snmalloc"];

/// Timed workloads, in table order (`rss` is run once per allocator, after them).
const WORKLOADS: &[&str] = &[
    "churn1",
    "churn2",
    "bare",
    "threadchurn",
    "mixed1",
    "mixed2",
    "prodcons",
    "ring",
    "larson",
    "realloc-grow",
];

/// The targets: (workload, peer, minimum advantage). `realloc-grow` is a time, and
/// its advantage is peer time / cpuheap time, so "at most 2x glibc's time" is 0.5.
const TARGETS: &[(&str, &str, f64)] = &[
    ("churn1", "mimalloc", 1.1),
    ("churn2", "mimalloc", 1.1),
    ("bare", "mimalloc", 1.0),
    ("threadchurn", "mimalloc", 1.0),
    ("threadchurn", "glibc", 1.0),
    ("mixed1", "mimalloc", 1.0),
    ("mixed2", "mimalloc", 1.0),
    ("prodcons", "jemalloc", 1.0),
    ("ring", "jemalloc", 1.1),
    ("larson", "mimalloc", 1.1),
    ("realloc-grow", "glibc", 0.5),
];

/// One parsed `GLOBALBENCH` line.
#[derive(Clone, Debug, Default)]
struct Sample {
    value: f64,
    /// `mops` (higher is better) or `ms` (lower is better).
    higher_better: bool,
    /// false when the binary cut the workload off (realloc-grow): `value` is a bound.
    complete: bool,
    fields: BTreeMap<String, String>,
}

fn parse(line: &str) -> Option<Sample> {
    let rest = line.strip_prefix("GLOBALBENCH ")?;
    let fields: BTreeMap<String, String> = rest
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Sample {
        value: fields.get("value")?.parse().ok()?,
        higher_better: fields.get("unit").map(String::as_str) != Some("ms"),
        complete: fields.get("complete").map(String::as_str) != Some("0"),
        fields,
    })
}

fn run_one(bin: &Path, workload: &str, ms: u64, seed: u64) -> Result<Sample, String> {
    let out = Command::new(bin)
        .args([
            workload,
            "--ms",
            &ms.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} {workload}: {} {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut sample = stdout
        .lines()
        .find_map(parse)
        .ok_or_else(|| format!("{} {workload}: no GLOBALBENCH line", bin.display()))?;
    // cpuheap's own counters, if the binary printed them (global-cpuheap does).
    if let Some(rest) = stdout.lines().find_map(|l| l.strip_prefix("CPUHEAPSTATS ")) {
        for (k, v) in rest.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            sample.fields.insert(k.to_string(), v.to_string());
        }
    }
    Ok(sample)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// How much CPU two threads really get: work done by 2 spinning threads / by 1 in the same
/// time (2.00 = both cores free).
fn cpu_probe() -> f64 {
    fn spin(d: Duration) -> u64 {
        let t0 = Instant::now();
        let mut n = 0u64;
        let mut x = 1u64;
        while t0.elapsed() < d {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            n += 1;
        }
        n
    }
    let d = Duration::from_millis(200);
    let one = spin(d);
    let hs: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || spin(d)))
        .collect();
    let two: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    two as f64 / one.max(1) as f64
}

/// `results[run][workload][alloc]`.
type Results = Vec<BTreeMap<&'static str, BTreeMap<&'static str, Sample>>>;

/// Run everything and return the markdown report (also written to `out`).
pub fn run(bin_dir: &Path, quick: bool, out: &Path) -> Result<String, String> {
    let (runs, ms) = if quick { (3usize, 100u64) } else { (5, 300) };
    let allocs: Vec<&'static str> = ALLOCS
        .iter()
        .copied()
        .filter(|a| bin_dir.join(super::exe(&format!("global-{a}"))).is_file())
        .collect();
    if !allocs.contains(&"cpuheap") {
        return Err("target/release/global-cpuheap is missing (feature cpuheap-std?)".into());
    }
    let load_start = loadavg();
    let probe_start = cpu_probe();
    let t_start = Instant::now();
    let mut results: Results = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for r in 0..runs {
        let mut order = allocs.clone();
        order.rotate_left(r % allocs.len());
        eprintln!("global run {}/{runs}: order {}", r + 1, order.join(","));
        let mut this: BTreeMap<&'static str, BTreeMap<&'static str, Sample>> = BTreeMap::new();
        for &w in WORKLOADS {
            for &a in &order {
                let bin = bin_dir.join(super::exe(&format!("global-{a}")));
                match run_one(&bin, w, ms, r as u64 + 1) {
                    Ok(s) => {
                        this.entry(w).or_default().insert(a, s);
                    }
                    Err(e) => {
                        eprintln!("  {e}");
                        failures.push(format!("run {}: {e}", r + 1));
                    }
                }
            }
        }
        results.push(this);
    }
    let mut rss: Vec<(&str, Sample)> = Vec::new();
    for &a in &allocs {
        let bin = bin_dir.join(super::exe(&format!("global-{a}")));
        match run_one(&bin, "rss", ms, 1) {
            Ok(s) => rss.push((a, s)),
            Err(e) => failures.push(format!("rss: {e}")),
        }
    }
    let load_end = loadavg();
    let probe_end = cpu_probe();
    let md = report(
        &results,
        &allocs,
        &rss,
        &failures,
        Header {
            quick,
            runs,
            ms,
            load_start,
            load_end,
            probe: (probe_start, probe_end),
            secs: t_start.elapsed().as_secs_f64(),
        },
    );
    std::fs::write(out, &md).map_err(|e| format!("write {}: {e}", out.display()))?;
    Ok(md)
}

struct Header {
    quick: bool,
    runs: usize,
    ms: u64,
    load_start: String,
    load_end: String,
    probe: (f64, f64),
    secs: f64,
}

/// cpuheap's advantage over `peer` on `w` in each run (NaN where either is missing), and
/// whether any of them is only a bound (cpuheap cut off: the advantage is at most that).
fn advantages(results: &Results, w: &str, peer: &str) -> (Vec<f64>, bool) {
    let mut bound = false;
    let v = results
        .iter()
        .map(|run| {
            let m = run.get(w);
            match (
                m.and_then(|m| m.get("cpuheap")),
                m.and_then(|m| m.get(peer)),
            ) {
                (Some(c), Some(p)) => {
                    bound |= !c.complete;
                    if c.higher_better {
                        c.value / p.value
                    } else {
                        p.value / c.value
                    }
                }
                _ => f64::NAN,
            }
        })
        .collect();
    (v, bound)
}

fn abs_median(results: &Results, w: &str, a: &str) -> (f64, bool) {
    let mut cut = false;
    let v = results
        .iter()
        .filter_map(|run| run.get(w).and_then(|m| m.get(a)))
        .map(|s| {
            cut |= !s.complete;
            s.value
        })
        .collect();
    (median(v), cut)
}

fn fmt(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Same-run ratio `num`/`den` of one allocator's throughput on two workloads.
fn scaling(results: &Results, a: &str, num: &str, den: &str) -> f64 {
    median(
        results
            .iter()
            .map(|run| {
                let g = |w: &str| run.get(w).and_then(|m| m.get(a)).map(|s| s.value);
                match (g(num), g(den)) {
                    (Some(n), Some(d)) => n / d,
                    _ => f64::NAN,
                }
            })
            .collect(),
    )
}

fn report(
    results: &Results,
    allocs: &[&str],
    rss: &[(&str, Sample)],
    failures: &[String],
    h: Header,
) -> String {
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| allocs.contains(p))
        .collect();
    let mut s = String::new();
    s.push_str(&format!(
        "## Global-allocator benchmarks{}\n\n\
         `cargo xtask bench --global{}`: each allocator is the `#[global_allocator]` of its own binary \
         (`target/release/global-<alloc>`, one shared source `benches/src/global/workloads.rs`), one \
         process per measurement, {} runs x {} ms windows, allocator order rotated between runs; {:.0} s in all. \
         Load average (1/5/15 min) {} at the start, {} at the end; 2-thread CPU probe {:.2}x / {:.2}x \
         (2.00 = both cores free; well below that, 2-thread and cross-thread columns say more about \
         the scheduler than the allocators).\n\n\
         A ratio cell is the **median over runs of the same-run ratio** cpuheap / peer for throughput \
         (Mops/s), peer / cpuheap for realloc-grow's time: **> 1 = cpuheap better**. `≤` = cpuheap \
         was cut off (realloc-grow after 2 s), so the true ratio is at most that.\n\n",
        if h.quick { " (quick)" } else { "" },
        if h.quick { " --quick" } else { "" },
        h.runs,
        h.ms,
        h.secs,
        h.load_start,
        h.load_end,
        h.probe.0,
        h.probe.1
    ));
    // Main table.
    s.push_str("| workload | cpuheap |");
    for p in &peers {
        s.push_str(&format!(" vs {p} |"));
    }
    s.push_str(" target | met |\n|---|---:|");
    for _ in &peers {
        s.push_str("---:|");
    }
    s.push_str("---|---|\n");
    for &w in WORKLOADS {
        let (abs, cut) = abs_median(results, w, "cpuheap");
        let unit = if w == "realloc-grow" { " ms" } else { "" };
        let abs_s = format!("{}{}{unit}", if cut { "≥" } else { "" }, fmt(abs));
        s.push_str(&format!("| {w} | {abs_s} |"));
        let mut adv_of: BTreeMap<&str, f64> = BTreeMap::new();
        for &p in &peers {
            let (v, bound) = advantages(results, w, p);
            let m = median(v);
            adv_of.insert(p, m);
            s.push_str(&format!(" {}{} |", if bound { "≤" } else { "" }, fmt(m)));
        }
        let mut tgt = Vec::new();
        let mut met = Vec::new();
        for &(tw, tp, min) in TARGETS.iter().filter(|t| t.0 == w) {
            tgt.push(if tw == "realloc-grow" {
                format!("time ≤ 2x {tp}")
            } else {
                format!("≥{min:.1}x {tp}")
            });
            let m = adv_of.get(tp).copied().unwrap_or(f64::NAN);
            met.push(if !m.is_finite() {
                "?"
            } else if m >= min {
                "yes"
            } else {
                "no"
            });
        }
        if w == "mixed2" {
            let sc = scaling(results, "cpuheap", "mixed2", "mixed1");
            tgt.push("2T ≥1.8x 1T".into());
            met.push(if sc >= 1.8 { "yes" } else { "no" });
        }
        s.push_str(&format!(" {} | {} |\n", tgt.join(", "), met.join(", ")));
    }
    s.push_str(
        "\ncpuheap column: median Mops/s (ms per 64 MiB grow for realloc-grow; `≥` = cut off, time so far).\n\n",
    );
    // Absolute numbers.
    s.push_str(
        "### Absolute medians (Mops/s; realloc-grow: ms per grow, moves per grow)\n\n| workload |",
    );
    for a in allocs {
        s.push_str(&format!(" {a} |"));
    }
    s.push_str("\n|---|");
    for _ in allocs {
        s.push_str("---:|");
    }
    s.push('\n');
    for &w in WORKLOADS {
        s.push_str(&format!("| {w} |"));
        for &a in allocs {
            let (m, cut) = abs_median(results, w, a);
            let extra = if w == "realloc-grow" {
                let moves = median(
                    results
                        .iter()
                        .filter_map(|r| r.get(w).and_then(|m| m.get(a)))
                        .filter_map(|s| s.fields.get("moves").and_then(|v| v.parse().ok()))
                        .collect(),
                );
                let reached = results
                    .iter()
                    .filter_map(|r| r.get(w).and_then(|m| m.get(a)))
                    .filter(|s| !s.complete)
                    .filter_map(|s| s.fields.get("reached_kib").cloned())
                    .next();
                match reached {
                    Some(k) => format!(
                        " ({} moves, cut off at {} MiB)",
                        fmt(moves),
                        k.parse::<u64>().unwrap_or(0) >> 10
                    ),
                    None => format!(" ({} moves)", fmt(moves)),
                }
            } else {
                String::new()
            };
            s.push_str(&format!(
                " {}{}{extra} |",
                if cut { "≥" } else { "" },
                fmt(m)
            ));
        }
        s.push('\n');
    }
    // Scaling.
    s.push_str("\n### 2-thread / 1-thread scaling (median of same-run ratios of total throughput)\n\n| allocator | churn2 / churn1 | mixed2 / mixed1 |\n|---|---:|---:|\n");
    for &a in allocs {
        s.push_str(&format!(
            "| {a} | {} | {} |\n",
            fmt(scaling(results, a, "churn2", "churn1")),
            fmt(scaling(results, a, "mixed2", "mixed1"))
        ));
    }
    // cpuheap's in-place realloc rate, from its own statistics.
    s.push_str("\n### cpuheap: reallocs that stayed in place (`Stats::reallocs_in_place / reallocs`, all runs pooled)\n\n| workload | reallocs | in place | rate |\n|---|---:|---:|---:|\n");
    for &w in WORKLOADS {
        let (mut n, mut kept) = (0u64, 0u64);
        for run in results {
            if let Some(smp) = run.get(w).and_then(|m| m.get("cpuheap")) {
                let get = |k: &str| smp.fields.get(k).and_then(|v| v.parse::<u64>().ok());
                if let (Some(r), Some(i)) = (get("reallocs"), get("reallocs_in_place")) {
                    n += r;
                    kept += i;
                }
            }
        }
        if n > 0 {
            s.push_str(&format!(
                "| {w} | {n} | {kept} | {:.1} % |\n",
                100.0 * kept as f64 / n as f64
            ));
        }
    }
    // RSS.
    s.push_str("\n### RSS probe: 1000 short-lived threads (8 alive at a time, 4000 alloc/free actions each, 8..=1024 B)\n\n\
                VmRSS from /proc/self/status at the start of the process and after the last thread was joined; VmHWM = peak.\n\n\
                | allocator | RSS before (KiB) | RSS after (KiB) | peak (KiB) | seconds |\n|---|---:|---:|---:|---:|\n");
    for (a, smp) in rss {
        let f = |k: &str| smp.fields.get(k).cloned().unwrap_or_else(|| "?".into());
        s.push_str(&format!(
            "| {a} | {} | {} | {} | {} |\n",
            f("rss_before_kib"),
            f("rss_after_kib"),
            f("hwm_kib"),
            f("secs")
        ));
    }
    if !failures.is_empty() {
        s.push_str("\n### Failures\n\n");
        for f in failures {
            s.push_str(&format!("- {f}\n"));
        }
    }
    s
}
