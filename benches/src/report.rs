//! Result tables (markdown) and the chart (hand-written SVG).

use std::fmt::Write;

/// One row of the chart: a workload label and, per allocator, cpuheap's advantage
/// (> 1 = cpuheap better).
pub struct ChartRow {
    /// Workload label.
    pub label: String,
    /// (allocator name, advantage) pairs; NaN = not measured.
    pub bars: Vec<(String, f64)>,
}

const PALETTE: [&str; 11] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#86bcb6",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal grouped bar chart on a log2 axis centred on 1.0 (= parity with cpuheap).
/// Bars to the right: cpuheap better by that factor; to the left: the peer is better.
pub fn svg(title: &str, subtitle: &str, rows: &[ChartRow]) -> String {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        for (n, _) in &r.bars {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let (lo, hi) = (-4.0f64, 10.0f64); // log2 range: 1/16 .. 1024
    let left = 270.0;
    let width = 620.0;
    let bar_h = 9.0;
    let gap = 10.0;
    let top = 70.0;
    let x_of = |v: f64| left + (v.log2().clamp(lo, hi) - lo) / (hi - lo) * width;
    let mut y = top;
    let mut body = String::new();
    for r in rows {
        let n = r.bars.len() as f64;
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="12" font-weight="bold">{}</text>"#,
            left - 8.0,
            y + n * bar_h / 2.0 + 4.0,
            esc(&r.label)
        );
        for (name, v) in &r.bars {
            let ci = names.iter().position(|x| x == name).unwrap_or(0) % PALETTE.len();
            if v.is_finite() && *v > 0.0 {
                let (x0, x1) = (x_of(1.0), x_of(*v));
                let _ = writeln!(
                    body,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {:.2}x</title></rect>"#,
                    x0.min(x1),
                    y,
                    (x1 - x0).abs().max(1.0),
                    bar_h - 1.0,
                    PALETTE[ci],
                    esc(name),
                    v
                );
                let (tx, anchor) = if *v >= 1.0 {
                    (x1 + 3.0, "start")
                } else {
                    (x1 - 3.0, "end")
                };
                let _ = writeln!(
                    body,
                    r#"<text x="{tx:.1}" y="{:.1}" font-size="8" text-anchor="{anchor}">{:.2}</text>"#,
                    y + bar_h - 2.0,
                    v
                );
            }
            y += bar_h;
        }
        y += gap;
    }
    let height = y + 60.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" font-family="sans-serif">"#,
        left + width + 150.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="42" font-size="11" fill="#444">{}</text>"##,
        esc(subtitle)
    );
    // grid
    for e in (lo as i32)..=(hi as i32) {
        let x = x_of(2f64.powi(e));
        let label = if e >= 0 {
            format!("{}x", 1u64 << e)
        } else {
            format!("1/{}", 1u64 << -e)
        };
        let stroke = if e == 0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{label}</text>"#,
            top - 8.0,
            y,
            y + 14.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">cpuheap advantage (log scale; right of 1x = cpuheap better)</text>"#,
        left + width / 2.0,
        y + 32.0
    );
    s.push_str(&body);
    // legend
    for (i, n) in names.iter().enumerate() {
        let ly = top + i as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{ly:.1}" width="12" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            left + width + 15.0,
            PALETTE[i % PALETTE.len()],
            left + width + 32.0,
            ly + 9.0,
            esc(n)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A markdown table from a header and rows of cells.
pub fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(
        s,
        "|{}",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// Format a number for a table cell: NaN -> "–".
pub fn cell(v: f64, prec: usize) -> String {
    if v.is_finite() {
        format!("{v:.prec$}")
    } else {
        "–".to_string()
    }
}

/// A one-line description of the machine: CPU model, cores, kernel.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kb| format!(", {:.0} GiB RAM", kb / 1048576.0))
        .unwrap_or_default();
    format!("{model}, {cores} cores{mem}, Linux {kernel}")
}
