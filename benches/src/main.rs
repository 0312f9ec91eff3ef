//! `cpuheap-bench`: runs every workload on every allocator, several times, and prints
//! the comparison as markdown (ratios against cpuheap from the same run, median over
//! runs). `cargo xtask bench` drives it; `--help` lists the options.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cpuheap_bench::peers::{Group, Kind, Region, REGION_BYTES};
use cpuheap_bench::report::{self, cell, md_table, ChartRow};
use cpuheap_bench::workloads::{self, Latency, Params};
use cpuheap_bench::{median, with_alloc};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Wl {
    A,
    B,
    C,
    D1,
    D2,
    F1,
    F2,
    E,
}

impl Wl {
    const ALL: [Wl; 8] = [Wl::A, Wl::B, Wl::C, Wl::D1, Wl::D2, Wl::F1, Wl::F2, Wl::E];
    fn id(self) -> &'static str {
        match self {
            Wl::A => "a",
            Wl::B => "b",
            Wl::C => "c",
            Wl::D1 => "d1",
            Wl::D2 => "d2",
            Wl::F1 => "f1",
            Wl::F2 => "f2",
            Wl::E => "e",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Wl::A => "(a) small churn, 1 thread",
            Wl::B => "(b) small churn, 2 threads",
            Wl::C => "(c) producer/consumer",
            Wl::D1 => "(d) mixed actions, 1 thread",
            Wl::D2 => "(d) mixed actions, 2 threads",
            Wl::F1 => "(f) latency, 1 thread",
            Wl::F2 => "(f) latency, 2 threads",
            Wl::E => "(e) heap efficiency",
        }
    }
    fn from_id(s: &str) -> Option<Wl> {
        Wl::ALL.iter().copied().find(|w| w.id() == s)
    }
}

struct Opts {
    quick: bool,
    runs: usize,
    window: Duration,
    workloads: Vec<Wl>,
    kinds: Vec<Kind>,
    out: Option<PathBuf>,
    name: String,
    eff_bytes: usize,
}

const HELP: &str =
    "cpuheap-bench [--quick] [--runs N] [--window-ms MS] [--only a,b,c,d1,d2,f1,f2,e]
              [--alloc NAME,NAME...] [--eff-mib MIB] [--out DIR] [--name NAME]
  --quick      3 runs, short windows (about 1-2 minutes)
  --out DIR    also write DIR/NAME.md and DIR/NAME.svg (NAME from --name, default latest)
workloads: a small churn 1T, b small churn 2T, c producer/consumer, d1/d2 mixed actions 1T/2T,
           f1/f2 alloc/free latency 1T/2T, e heap efficiency on a fixed region (bare-metal only)";

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        runs: 0,
        window: Duration::ZERO,
        workloads: Wl::ALL.to_vec(),
        kinds: Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.available())
            .collect(),
        out: None,
        name: "latest".to_string(),
        eff_bytes: 16 << 20,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--runs" => o.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--window-ms" => {
                o.window =
                    Duration::from_millis(val()?.parse().map_err(|e| format!("--window-ms: {e}"))?)
            }
            "--eff-mib" => {
                o.eff_bytes = val()?
                    .parse::<usize>()
                    .map_err(|e| format!("--eff-mib: {e}"))?
                    << 20
            }
            "--only" => {
                o.workloads = val()?
                    .split(',')
                    .map(|s| Wl::from_id(s).ok_or(format!("unknown workload {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--alloc" => {
                o.kinds = val()?
                    .split(',')
                    .map(|s| Kind::from_name(s).ok_or(format!("unknown allocator {s}")))
                    .collect::<Result<_, _>>()?;
                for k in &o.kinds {
                    if !k.available() {
                        return Err(format!("{} is not built into this harness", k.name()));
                    }
                }
            }
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--name" => o.name = val()?,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{HELP}")),
        }
    }
    if o.runs == 0 {
        o.runs = if o.quick { 3 } else { 5 };
    }
    if o.window.is_zero() {
        o.window = Duration::from_millis(if o.quick { 150 } else { 600 });
    }
    Ok(o)
}

/// Live-set sizes (slots per thread).
const CHURN_SLOTS: usize = 8192;
const MIXED_SLOTS: usize = 2048;

#[derive(Default)]
struct Results {
    thr: BTreeMap<(Wl, Kind), Vec<f64>>,
    lat: BTreeMap<(Wl, Kind), Vec<Latency>>,
    eff: BTreeMap<Kind, Vec<f64>>,
    /// Pure-compute 2-thread/1-thread scaling, one per run.
    scaling: Vec<f64>,
    /// Load average at the start and at the end.
    load: Vec<f64>,
}

fn measure(
    r: &mut Results,
    wl: Wl,
    k: Kind,
    region: &Region,
    eff_region: &Region,
    p: Params,
    o: &Opts,
) {
    let lat_ops = if o.quick { 200_000 } else { 1_000_000 };
    match wl {
        Wl::E => {
            if k.group() != Group::BareMetal {
                return;
            }
            let v = with_alloc!(k, eff_region, |a| workloads::efficiency(
                a,
                eff_region.len(),
                p.seed
            ));
            r.eff.entry(k).or_default().push(v);
        }
        Wl::F1 | Wl::F2 => {
            let t = if wl == Wl::F1 { 1 } else { 2 };
            let p = Params {
                max_ops: lat_ops,
                ..p
            };
            let v = with_alloc!(k, region, |a| workloads::latency(a, t, CHURN_SLOTS, p));
            r.lat.entry((wl, k)).or_default().push(v);
        }
        _ => {
            let v = with_alloc!(k, region, |a| match wl {
                Wl::A => workloads::churn(a, 1, CHURN_SLOTS, p),
                Wl::B => workloads::churn(a, 2, CHURN_SLOTS, p),
                Wl::C => workloads::producer_consumer(a, p),
                Wl::D1 => workloads::mixed(a, 1, MIXED_SLOTS, p),
                Wl::D2 => workloads::mixed(a, 2, MIXED_SLOTS, p),
                _ => unreachable!(),
            });
            r.thr.entry((wl, k)).or_default().push(v.mops());
        }
    }
}

/// The cpuheap flavour each group is compared against (a stand-in when cpuheap is
/// not built in, so the harness still runs).
fn baseline(g: Group, kinds: &[Kind]) -> Option<Kind> {
    let pref: &[Kind] = match g {
        Group::Desktop => &[Kind::CpuheapStd, Kind::CpuheapRegion, Kind::Glibc],
        Group::BareMetal => &[Kind::CpuheapRegion, Kind::Talc],
    };
    pref.iter().copied().find(|k| kinds.contains(k))
}

/// Per-run ratio "cpuheap advantage" (> 1 = cpuheap better), median over runs.
/// `higher_better`: throughput/efficiency (base/peer inverted accordingly).
fn advantage(peer: &[f64], base: &[f64], higher_better: bool) -> f64 {
    let v: Vec<f64> = peer
        .iter()
        .zip(base)
        .map(|(p, b)| if higher_better { b / p } else { p / b })
        .collect();
    median(&v)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    cpuheap_bench::peers::rp_init_process();
    let t_start = Instant::now();
    let region = Region::new(REGION_BYTES);
    let eff_region = Region::new(o.eff_bytes);
    let _ = (workloads::ns_per_tick(), workloads::timer_overhead_ticks());
    let mut res = Results::default();
    res.load.push(workloads::loadavg().unwrap_or(f64::NAN));
    for run in 0..o.runs {
        res.scaling
            .push(workloads::cpu_scaling(Duration::from_millis(100)));
        let mut kinds = o.kinds.clone();
        let n = kinds.len().max(1);
        kinds.rotate_left(run % n);
        for &wl in &o.workloads {
            eprint!("run {}/{} {:<3}", run + 1, o.runs, wl.id());
            for &k in &kinds {
                let p = Params {
                    window: o.window,
                    max_ops: 1 << 40,
                    seed: 0x5eed_0000 + run as u64,
                };
                measure(&mut res, wl, k, &region, &eff_region, p, &o);
                eprint!(" {}", k.name());
            }
            eprintln!(" [{:.0}s]", t_start.elapsed().as_secs_f64());
        }
    }
    res.load.push(workloads::loadavg().unwrap_or(f64::NAN));
    let md = render(&o, &res, t_start.elapsed());
    println!("{md}");
    if let Some(dir) = &o.out {
        std::fs::create_dir_all(dir).expect("create output dir");
        let (md_path, svg_path) = (
            dir.join(format!("{}.md", o.name)),
            dir.join(format!("{}.svg", o.name)),
        );
        std::fs::write(&md_path, &md).expect("write markdown");
        std::fs::write(&svg_path, chart(&o, &res)).expect("write svg");
        eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    }
}

/// Ordered rows: each group's baseline first, then its peers.
fn ordered(o: &Opts) -> Vec<(Kind, Option<Kind>)> {
    let mut rows = Vec::new();
    for g in [Group::Desktop, Group::BareMetal] {
        let base = baseline(g, &o.kinds);
        let mut ks: Vec<Kind> = o.kinds.iter().copied().filter(|k| k.group() == g).collect();
        ks.sort_by_key(|k| (Some(*k) != base, *k));
        rows.extend(ks.into_iter().map(|k| (k, base)));
    }
    // cpuheap-region also appears in the desktop comparison when StdHeap is absent.
    rows
}

fn thr_adv(r: &Results, wl: Wl, k: Kind, base: Option<Kind>) -> f64 {
    let (Some(p), Some(b)) = (r.thr.get(&(wl, k)), base.and_then(|b| r.thr.get(&(wl, b)))) else {
        return f64::NAN;
    };
    advantage(p, b, true)
}

fn lat_adv(
    r: &Results,
    wl: Wl,
    k: Kind,
    base: Option<Kind>,
    pick: impl Fn(&Latency) -> f64,
) -> f64 {
    let (Some(p), Some(b)) = (r.lat.get(&(wl, k)), base.and_then(|b| r.lat.get(&(wl, b)))) else {
        return f64::NAN;
    };
    let pv: Vec<f64> = p.iter().map(&pick).collect();
    let bv: Vec<f64> = b.iter().map(&pick).collect();
    advantage(&pv, &bv, false)
}

fn eff_adv(r: &Results, k: Kind, base: Option<Kind>) -> f64 {
    let (Some(p), Some(b)) = (r.eff.get(&k), base.and_then(|b| r.eff.get(&b))) else {
        return f64::NAN;
    };
    advantage(p, b, true)
}

fn render(o: &Opts, r: &Results, took: Duration) -> String {
    use std::fmt::Write;
    let has = |w: Wl| o.workloads.contains(&w);
    let mut s = String::new();
    let _ = writeln!(s, "## cpuheap benchmark\n");
    let _ = writeln!(
        s,
        "Machine: {}. Mode: {}, {} runs, {} ms window per measurement, took {:.0} s.\n",
        report::machine(),
        if o.quick { "quick" } else { "full" },
        o.runs,
        o.window.as_millis(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "Machine load: load average {} at the start, {} at the end; two threads got {}x one thread's CPU \
         in a pure-compute probe (median over runs; 2.00 = both cores free). Below about 1.8, the 2-thread \
         columns measure the scheduler as much as the allocators.\n",
        cell(r.load.first().copied().unwrap_or(f64::NAN), 2),
        cell(r.load.last().copied().unwrap_or(f64::NAN), 2),
        cell(median(&r.scaling), 2)
    );
    let rows = ordered(o);
    let base_note: Vec<String> = [Group::Desktop, Group::BareMetal]
        .iter()
        .filter_map(|g| baseline(*g, &o.kinds).map(|b| format!("{g:?}: `{}`", b.name())))
        .collect();
    let _ = writeln!(
        s,
        "### cpuheap advantage (× , > 1 = cpuheap better)\n\nEach cell is the median over runs of a same-run ratio against the group's cpuheap ({}): throughput cpuheap/peer, latency peer/cpuheap, efficiency cpuheap/peer.\n",
        base_note.join(", ")
    );
    // Summary table.
    let mut header = vec!["allocator".to_string()];
    let thr_wls: Vec<Wl> = [Wl::A, Wl::B, Wl::C, Wl::D1, Wl::D2]
        .into_iter()
        .filter(|w| has(*w))
        .collect();
    for w in &thr_wls {
        header.push(w.id().to_string());
    }
    let lat_wls: Vec<Wl> = [Wl::F1, Wl::F2].into_iter().filter(|w| has(*w)).collect();
    for w in &lat_wls {
        header.push(format!("{} p99 alloc", w.id()));
        header.push(format!("{} p99 free", w.id()));
    }
    if has(Wl::E) {
        header.push("e".into());
    }
    let mut table = Vec::new();
    for &(k, base) in &rows {
        let mut row = vec![format!(
            "{}{}",
            k.name(),
            if Some(k) == base { " (base)" } else { "" }
        )];
        for &w in &thr_wls {
            row.push(cell(thr_adv(r, w, k, base), 2));
        }
        for &w in &lat_wls {
            row.push(cell(lat_adv(r, w, k, base, |l| l.alloc[1]), 2));
            row.push(cell(lat_adv(r, w, k, base, |l| l.free[1]), 2));
        }
        if has(Wl::E) {
            row.push(if k.group() == Group::BareMetal {
                cell(eff_adv(r, k, base), 3)
            } else {
                "–".into()
            });
        }
        table.push(row);
    }
    s.push_str(&md_table(&header, &table));
    // Absolute numbers.
    let _ = writeln!(s, "\n### Absolute medians\n\nThroughput in million ops/s (an op is one alloc, free or realloc; in (c) one object passed and freed). `b/a` is 2-thread over 1-thread throughput. Efficiency is live requested bytes / region bytes at the first failure, {} MiB region.\n", o.eff_bytes >> 20);
    let mut header = vec!["allocator".to_string()];
    for w in &thr_wls {
        header.push(format!("{} Mops/s", w.id()));
    }
    if has(Wl::A) && has(Wl::B) {
        header.push("b/a".into());
    }
    if has(Wl::E) {
        header.push("e eff %".into());
    }
    let mut table = Vec::new();
    for &(k, _) in &rows {
        let mut row = vec![k.name().to_string()];
        let med = |w: Wl| r.thr.get(&(w, k)).map(|v| median(v)).unwrap_or(f64::NAN);
        for &w in &thr_wls {
            row.push(cell(med(w), 1));
        }
        if has(Wl::A) && has(Wl::B) {
            row.push(cell(med(Wl::B) / med(Wl::A), 2));
        }
        if has(Wl::E) {
            row.push(cell(
                r.eff.get(&k).map(|v| median(v) * 100.0).unwrap_or(f64::NAN),
                1,
            ));
        }
        table.push(row);
    }
    s.push_str(&md_table(&header, &table));
    // Latency.
    for &w in &lat_wls {
        let _ = writeln!(s, "\n### {} — nanoseconds (median over runs of each run's percentile; TSC-timed, the timer's own {:.0} ns subtracted)\n", w.title(), workloads::timer_overhead_ticks() as f64 * workloads::ns_per_tick());
        let header: Vec<String> = [
            "allocator",
            "alloc p50",
            "alloc p99",
            "alloc max",
            "free p50",
            "free p99",
            "free max",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        let mut table = Vec::new();
        for &(k, _) in &rows {
            let Some(v) = r.lat.get(&(w, k)) else {
                continue;
            };
            let m = |f: &dyn Fn(&Latency) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
            table.push(vec![
                k.name().to_string(),
                cell(m(&|l| l.alloc[0]), 0),
                cell(m(&|l| l.alloc[1]), 0),
                cell(m(&|l| l.alloc[2]), 0),
                cell(m(&|l| l.free[0]), 0),
                cell(m(&|l| l.free[1]), 0),
                cell(m(&|l| l.free[2]), 0),
            ]);
        }
        s.push_str(&md_table(&header, &table));
    }
    s
}

fn chart(o: &Opts, r: &Results) -> String {
    let rows_k = ordered(o);
    let mut rows = Vec::new();
    for &w in &o.workloads {
        let mut bars = Vec::new();
        for &(k, base) in &rows_k {
            if Some(k) == base {
                continue;
            }
            let v = match w {
                Wl::E => {
                    if k.group() != Group::BareMetal {
                        continue;
                    }
                    eff_adv(r, k, base)
                }
                Wl::F1 | Wl::F2 => lat_adv(r, w, k, base, |l| l.alloc[1] + l.free[1]),
                _ => thr_adv(r, w, k, base),
            };
            bars.push((k.name().to_string(), v));
        }
        let label = match w {
            Wl::F1 | Wl::F2 => format!("{} (p99 a+f)", w.title()),
            _ => w.title().to_string(),
        };
        rows.push(ChartRow { label, bars });
    }
    report::svg(
        "cpuheap vs peers",
        &format!(
            "{} · {} runs · median of same-run ratios · 2-thread CPU probe {}x (2.00 = idle)",
            report::machine(),
            o.runs,
            cell(median(&r.scaling), 2)
        ),
        &rows,
    )
}
