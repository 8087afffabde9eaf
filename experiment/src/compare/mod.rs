//! `scalelab compare A_DIR B_DIR`: two sweeps' `results.json` side by side. Per matching point,
//! throughput and every percentile of A and B with their ratio, each judged against the spread
//! of the rounds (better, worse, or within noise); `compare.html` draws both runs on the same
//! charts. `--fail-if 'p99>+10%'` turns a difference beyond the noise into exit code 4, so a
//! CI job can guard a change to the topology or to the code.
//!
//! Runs of different machines or workloads are refused before anything is written; points
//! that only one run has are named, never silently dropped.
//!
//! # Layout
//! - [`judge`]: the metrics, the noise rule, `--fail-if` thresholds.
//! - [`pair`]: the machine and workload checks, matching points, the comparison.
//! - `chart`: one chart per metric, both runs on it.
//! - `page`: `compare.html` (template `templates/compare.html`).

mod chart;
pub mod judge;
mod page;
pub mod pair;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::report;
use crate::results::Results;
use judge::Threshold;
use pair::Comparison;

/// The exit code when a `--fail-if` threshold is crossed beyond the noise (3 is
/// `scalelab load --slo`'s).
pub const EXIT_THRESHOLD: u8 = 4;
/// The page `compare` writes.
pub const COMPARE_FILE: &str = "compare.html";

/// Flags of `scalelab compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The baseline run: a directory holding results.json.
    pub a: PathBuf,
    /// The run judged against it.
    pub b: PathBuf,
    /// Where compare.html goes (created if missing; default: B's directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 4 when a metric moves past a threshold beyond the rounds' noise at any point:
    /// `p99>+10%` (rose by more than 10%), `rps<-5%` (fell by more than 5%). Metrics: rps, p50,
    /// p90, p99, p99.9. Repeat for several.
    #[arg(long = "fail-if", value_name = "RULE")]
    pub fail_if: Vec<Threshold>,
}

/// Runs `scalelab compare`: prints the comparison, writes compare.html, and exits 4 when a
/// threshold was crossed.
pub fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    if args.fail_if.len() > judge::MAX_THRESHOLDS {
        bail!("--fail-if: at most {} thresholds, found {}", judge::MAX_THRESHOLDS, args.fail_if.len());
    }
    let a = read(&args.a, "A")?;
    let b = read(&args.b, "B")?;
    let comparison = pair::compare(&a, &b, &args.fail_if).context("scalelab compare")?;
    let out_dir = args.out.clone().unwrap_or_else(|| args.b.clone());
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("--out: cannot create {}", out_dir.display()))?;
    let names = (args.a.display().to_string(), args.b.display().to_string());
    let html = page::render(&comparison, &a, &b, &names)?;
    let path = out_dir.join(COMPARE_FILE);
    report::write_atomically(&path, &html)?;
    println!("{}", text(&comparison, &names, &args.fail_if));
    println!("page: {}", path.display());
    Ok(if comparison.crossings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_THRESHOLD) })
}

/// `DIR/results.json`, parsed; errors name the run and the file.
fn read(dir: &Path, run: &str) -> anyhow::Result<Results> {
    let file = dir.join(report::RESULTS_FILE);
    let json =
        std::fs::read_to_string(&file).with_context(|| format!("{run}: reading {}", file.display()))?;
    serde_json::from_str(&json).with_context(|| format!("{run}: parsing {}", file.display()))
}

/// The terminal report: a block per matching point, then the unmatched points, the notes and
/// the thresholds' outcome.
pub fn text(c: &Comparison, (a, b): &(String, String), thresholds: &[Threshold]) -> String {
    let mut out = format!("A: {a}\nB: {b}\n");
    let mut series = "";
    for p in &c.pairs {
        if p.series != series {
            series = &p.series;
            let _ = writeln!(out, "\nvary {series}");
            let _ = writeln!(
                out,
                "  {:<22} {:<7} {:>10} {:>10} {:>7}  verdict",
                "point", "metric", "A", "B", "B/A"
            );
        }
        for (i, cell) in p.cells.iter().enumerate() {
            let point = if i == 0 { p.point.as_str() } else { "" };
            let value = |v: Option<f64>| match (v, cell.metric) {
                (None, _) => "-".to_string(),
                (Some(x), judge::Metric::Rps) => format!("{x:.1}"),
                (Some(x), _) => format!("{x:.2}"),
            };
            let ratio = cell.change.map_or("-".to_string(), |ch| format!("{:.2}", ch + 1.0));
            let verdict = cell.verdict.map_or("no measurement", |v| v.name());
            let _ = writeln!(
                out,
                "  {point:<22} {:<7} {:>10} {:>10} {ratio:>7}  {verdict}",
                cell.metric.name(),
                value(cell.a),
                value(cell.b)
            );
        }
        for note in &p.notes {
            let _ = writeln!(out, "  {:<22} note: {note}", "");
        }
    }
    for (run, list) in [("A", &c.only_a), ("B", &c.only_b)] {
        if !list.is_empty() {
            let _ = writeln!(out, "\nonly in {run} (not compared): {}", list.join("; "));
        }
    }
    for note in &c.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    let _ = writeln!(out);
    if thresholds.is_empty() {
        out.push_str("no --fail-if thresholds: exit 0");
    } else if c.crossings.is_empty() {
        let all: Vec<String> = thresholds.iter().map(Threshold::to_string).collect();
        let _ = write!(out, "passed: no point crossed {} beyond the noise", all.join(", "));
    } else {
        for x in &c.crossings {
            let _ = writeln!(
                out,
                "FAILED {}: {}: {} changed {:+.1}%, beyond the rounds' spread",
                x.threshold,
                x.series,
                x.point,
                x.change * 100.0
            );
        }
        let _ = write!(out, "exit {EXIT_THRESHOLD}: {} threshold crossing(s)", c.crossings.len());
    }
    out
}

/// A run's directory shortened for a legend: its last two path components.
fn short(dir: &str) -> String {
    let mut parts: Vec<&str> = dir.trim_end_matches('/').rsplit('/').take(2).collect();
    parts.reverse();
    parts.join("/")
}

#[cfg(test)]
mod tests;
