//! `scalelab compare A_DIR B_DIR`: two sweeps' `results.json` side by side. Per matching point,
//! throughput and every percentile of A and B (each the median of its rounds) with their ratio,
//! judged as benchstat judges benchmarks: a Mann–Whitney U test over the two runs' rounds, B
//! better or worse only at p ≤ 0.05, within the noise otherwise, and "too few rounds to tell"
//! when the rounds could not show a difference however large (fewer than 4 a side).
//! `compare.html` draws both runs on the same charts, each point a median and its rounds'
//! spread. `--fail-if 'p99>+10%'` turns a significant change past the threshold into exit code
//! 4, so a CI job can guard a change to the topology or to the code.
//!
//! Runs of different machines or workloads are refused before anything is written; points
//! that only one run has are named, never silently dropped.
//!
//! # Layout
//! - [`judge`]: the metrics, the verdicts, `--fail-if` thresholds.
//! - [`mann_whitney`]: the Mann–Whitney U test, exact for small samples, as benchstat's.
//! - [`pair`]: the machine and workload checks, matching points, the comparison.
//! - `chart`: one chart per metric, both runs on it.
//! - `page`: `compare.html` (template `templates/compare.html`).
//! - [`terminal`]: what reaches the terminal, stripped of control characters.

mod chart;
pub mod judge;
pub mod mann_whitney;
mod page;
pub mod pair;
pub mod terminal;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::report;
use crate::results::Results;
use judge::Threshold;
use pair::Comparison;

/// The exit code when a `--fail-if` threshold is crossed significantly (3 is
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
    /// Exit 4 when a metric moves past a threshold at any point, significantly (Mann–Whitney U
    /// over the rounds, p ≤ 0.05, which takes at least 4 rounds a side): `p99>+10%` (rose by
    /// more than 10%), `rps<-5%` (fell by more than 5%). Metrics: rps, p50, p90, p99, p99.9.
    /// Repeat for several.
    #[arg(long = "fail-if", value_name = "RULE")]
    pub fail_if: Vec<Threshold>,
}

/// Runs `scalelab compare`: prints the comparison, writes compare.html, and exits 4 when a
/// threshold was crossed. What it prints, errors included, is stripped of control characters
/// (the files it reads may hold any string).
pub fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    compare_runs(args).map_err(|e| anyhow::anyhow!(terminal::printable(&format!("{e:#}"))))
}

fn compare_runs(args: &CompareArgs) -> anyhow::Result<ExitCode> {
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
    println!("{}", terminal::printable(&text(&comparison, &names, &args.fail_if)));
    println!("page: {}", terminal::printable(&path.display().to_string()));
    Ok(if comparison.crossings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_THRESHOLD) })
}

/// `DIR/results.json`, parsed (a regular file of bounded size only); errors name the run and
/// the file.
fn read(dir: &Path, run: &str) -> anyhow::Result<Results> {
    Results::read(&dir.join(report::RESULTS_FILE)).with_context(|| format!("{run}"))
}

/// The terminal report: a block per matching point, then the unmatched points, the notes and
/// the thresholds' outcome.
pub fn text(c: &Comparison, (a, b): &(String, String), thresholds: &[Threshold]) -> String {
    let mut out = format!(
        "A: {a}\nB: {b}\n(medians of the rounds; p: Mann–Whitney U test over the rounds, two-sided, \
         a difference at p ≤ {})\n",
        mann_whitney::ALPHA
    );
    let mut series = "";
    for p in &c.pairs {
        if p.series != series {
            series = &p.series;
            let _ = writeln!(out, "\nvary {series}");
            let _ = writeln!(
                out,
                "  {:<22} {:<7} {:>10} {:>10} {:>7} {:>6} {:>6}  verdict",
                "point", "metric", "A", "B", "B/A", "p", "rounds"
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
            let pvalue = cell.p.map_or("-".to_string(), |p| format!("{p:.3}"));
            let rounds = format!("{}+{}", cell.rounds.0, cell.rounds.1);
            let verdict = cell.verdict.map_or("no measurement", |v| v.name());
            let _ = writeln!(
                out,
                "  {point:<22} {:<7} {:>10} {:>10} {ratio:>7} {pvalue:>6} {rounds:>6}  {verdict}",
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
        let _ = write!(out, "passed: no point crossed {} significantly", all.join(", "));
    } else {
        for x in &c.crossings {
            let _ = writeln!(out, "FAILED {}", crossing(x));
        }
        let _ = write!(out, "exit {EXIT_THRESHOLD}: {} threshold crossing(s)", c.crossings.len());
    }
    out
}

/// `p99>+10%: load at distribution=shared: load=0.9 changed +30.0% (p = 0.008, 5+5 rounds)`.
pub fn crossing(x: &pair::Crossing) -> String {
    format!(
        "{}: {}: {} changed {:+.1}% (p = {:.3}, {}+{} rounds)",
        x.threshold,
        x.series,
        x.point,
        x.change * 100.0,
        x.p,
        x.rounds.0,
        x.rounds.1
    )
}

/// A run's directory shortened for a legend: its last two path components.
fn short(dir: &str) -> String {
    let mut parts: Vec<&str> = dir.trim_end_matches('/').rsplit('/').take(2).collect();
    parts.reverse();
    parts.join("/")
}

#[cfg(test)]
mod tests;
