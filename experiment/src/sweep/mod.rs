//! `scalelab sweep`: the experiment itself. For every `--vary` series and every value in it,
//! move a lab to that topology, warm it up, measure `--rounds` rounds of load (pausing between
//! them so leftover `/op2` burns are not charged to the next), and record throughput, latency,
//! who served what and the CPU each node used, beside the theoretical capacity, and the CPU
//! used outside the lab meanwhile (a point where that passes a tenth of a core is noisy). Each series
//! gets a USL fit. `results.json` is rewritten after every point, so an interrupted sweep keeps
//! what it measured, and each point leaves `FIELD=VALUE.hgrm`, its rounds' latencies merged;
//! `results.csv` and `report.html` follow at the end.
//!
//! - [`vary`]: `--vary FIELD=V1,...` and the topology each value makes.
//! - [`plan`]: every flag and point checked before anything starts.
//! - [`theory`]: the capacity a topology should have.
//! - [`load`]: load series: each point's rate, the queueing models' predictions, the knee.
//! - [`runner`]: where points run (native processes or Docker Compose).
//! - [`outside`]: the CPU used outside the lab while a point is measured, and when that
//!   makes the point noisy.
//! - [`summary`]: the terminal table and `results.csv`.

pub mod load;
pub mod outside;
pub mod plan;
pub mod runner;
pub mod summary;
pub mod theory;
pub mod vary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use scalelab_loadgen::{Arrivals, Mix, Report};
use scalelab_topology::Topology;
use tokio::signal::unix::{signal, SignalKind};

use crate::results::{Machine, Percentiles, Point, Results, Round, Series};
use crate::{report, usl};
use plan::{Plan, PlannedPoint};
use runner::Runner;
use vary::{Setting, Vary};

/// Bounds on what a sweep may be asked to do.
pub(crate) const MAX_SERIES: usize = 8;
const MAX_ROUNDS: u32 = 20;
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(300);
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);
/// What a point costs besides its load: applying the topology and waiting for it, roughly.
const POINT_OVERHEAD: Duration = Duration::from_secs(2);

/// Flags of `scalelab sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The base topology; every series changes one field of it.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
    /// A series: `workers=1,2,4`, `replicas=1,2,4`, `cpus=0.5,1,2`, `algorithm=round_robin,p2c`,
    /// `distribution=shared,reuseport,round_robin`, `load=0.2,0.5,0.9` (open loop at those
    /// fractions of the lab's theoretical capacity) or `rate=50,100` (req/s). Repeat for more
    /// series.
    #[arg(long = "vary", required = true, value_name = "FIELD=V1,V2,...")]
    pub vary: Vec<Vary>,
    /// Cross two --vary flags: a series of the second for each value of the first (e.g.
    /// `--vary distribution=shared,reuseport --vary load=0.2,0.5,0.9 --grid`).
    #[arg(long)]
    pub grid: bool,
    /// The path every request asks for. Use --mix for several.
    #[arg(long, default_value = "/op2", conflicts_with = "mix")]
    pub path: String,
    /// Weighted paths, e.g. `op1=9,op2=1`.
    #[arg(long, value_name = "PATH=WEIGHT,...")]
    pub mix: Option<Mix>,
    /// Closed loop: concurrent connections (with --rate: the most requests in flight).
    #[arg(long, short, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Open loop: requests per second, whatever the lab does.
    #[arg(long, short, value_parser = scalelab_loadgen::parse_rate)]
    pub rate: Option<f64>,
    /// Open-loop arrivals: `uniform` or `poisson` (the default for --vary load/rate, the
    /// arrivals the queueing models assume; each round draws its own fixed seed).
    #[arg(long, value_name = "uniform|poisson")]
    pub arrivals: Option<Arrivals>,
    /// Measured time per round, e.g. `5s` (at most 5 minutes).
    #[arg(long, short, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before the first round of each point (at most 1 minute).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Measured rounds per point (1 to 20).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS as i64))]
    pub rounds: u32,
    /// Idle time between rounds, so a round does not pay for its predecessor's queued work
    /// (at most 1 minute).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// Where results.json, results.csv and report.html go (created if missing), with one
    /// `FIELD=VALUE.hgrm` per point: its rounds' latency histogram, in HdrHistogram's
    /// percentile-distribution format.
    #[arg(long)]
    pub out: PathBuf,
    /// Run the points with Docker Compose instead of native processes (the image
    /// scalelab:latest must exist).
    #[arg(long)]
    pub compose: bool,
}

/// `scalelab sweep`: runs the plan, prints the summary, writes the results. Exits 130 when
/// interrupted (what was measured is kept).
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(&args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out: cannot create {}", args.out.display()))?;
    let runtime = scalelab_loadgen::runtime(scalelab_loadgen::default_threads())?;
    let outcome = runtime.block_on(sweep(&args, &plan))?;
    let results = outcome.results;
    write_outputs(&args.out, &results)?;
    println!("{}", summary::table(&results));
    println!("results: {}", args.out.join(report::RESULTS_FILE).display());
    println!("report:  {}", args.out.join(report::REPORT_FILE).display());
    match outcome.stopped {
        None => Ok(ExitCode::SUCCESS),
        Some(why) => {
            eprintln!("scalelab sweep: stopped early ({why}); the points measured before are kept");
            Ok(ExitCode::from(if why == "interrupted" { 130 } else { 1 }))
        }
    }
}

/// What a sweep measured, and why it stopped early if it did.
pub(crate) struct Outcome {
    pub(crate) results: Results,
    pub(crate) stopped: Option<String>,
}

pub(crate) async fn sweep(args: &SweepArgs, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let cores = plan.cores;
    let mut results = Results {
        scalelab_version: env!("CARGO_PKG_VERSION").to_string(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        cores,
        runner: if args.compose { "compose" } else { "native" }.to_string(),
        machine: Some(Machine::current(cores)),
        base: args.topology.display().to_string(),
        load: plan.spec.clone(),
        series: Vec::new(),
    };
    let first = &plan.series[0].points[0].topology;
    let started = tokio::select! {
        r = Runner::start(first, args.compose, &args.out) => Some(r),
        _ = int.recv() => None,
        _ = term.recv() => None,
    };
    let Some(started) = started else {
        // A native lab stops with its dropped start; a Compose project outlives it.
        runner::abandon(args.compose, &args.out).await;
        return Ok(Outcome { results, stopped: Some("interrupted".into()) });
    };
    let mut runner = started?;
    let per_point = args.warmup + (args.duration + args.pause) * args.rounds + POINT_OVERHEAD;
    let mut progress =
        Progress { done: 0, total: plan.points(), per_point, point_start: tokio::time::Instant::now() };
    let mut stopped = None;
    'series: for planned in &plan.series {
        results.series.push(Series {
            vary: planned.field.name().into(),
            at: planned.at.map(Setting::label),
            points: Vec::new(),
            fit: None,
            fit_note: None,
            knee: None,
        });
        for (position, p) in planned.points.iter().enumerate() {
            let label = match planned.at {
                Some(at) => format!("{} {}", at.label(), p.setting.label()),
                None => p.setting.label(),
            };
            let point = tokio::select! {
                p = measure(&mut runner, p, position, &label, args, cores, &mut progress) => p,
                _ = int.recv() => { stopped = Some("interrupted".into()); break 'series; }
                _ = term.recv() => { stopped = Some("interrupted".into()); break 'series; }
            };
            match point {
                Ok(p) => results.series.last_mut().expect("pushed above").points.push(p),
                Err(e) => {
                    eprintln!("scalelab sweep: {label}: {e:#}");
                    stopped = Some(format!("{label} failed"));
                    break 'series;
                }
            }
            let series = results.series.last_mut().expect("pushed above");
            fit_series(series);
            series.knee = load::knee(&series.points, planned.knee);
            write_results(&args.out, &results)?;
        }
    }
    runner.shutdown().await;
    Ok(Outcome { results, stopped })
}

/// Prints one line per step of a point: where the sweep is and how long it has left.
struct Progress {
    done: usize,
    total: usize,
    /// What a point should take.
    per_point: Duration,
    /// When the current point began.
    point_start: tokio::time::Instant,
}

impl Progress {
    fn show(&self, label: &str, what: &str) {
        let this = self.per_point.saturating_sub(self.point_start.elapsed());
        let left = self.per_point * (self.total - self.done - 1) as u32 + this;
        eprintln!(
            "[{}/{}] {label:<16} {what:<12} about {} left",
            self.done + 1,
            self.total,
            humantime::format_duration(Duration::from_secs(left.as_secs()))
        );
    }
}

/// One point: apply, warm up, measure every round.
#[allow(clippy::too_many_arguments)]
async fn measure(
    runner: &mut Runner,
    planned: &PlannedPoint,
    position: usize,
    label: &str,
    args: &SweepArgs,
    cores: usize,
    progress: &mut Progress,
) -> anyhow::Result<Point> {
    let t = &planned.topology;
    progress.point_start = tokio::time::Instant::now();
    progress.show(label, "applying");
    runner.apply(t).await?;
    if !args.warmup.is_zero() {
        progress.show(label, "warming up");
        let mut warm = round_load(planned, 0);
        warm.duration = Some(args.warmup);
        scalelab_loadgen::run_load(warm).await?;
        tokio::time::sleep(args.pause).await;
    }
    let mut rounds: Vec<(Report, Round)> = Vec::new();
    // Every round's latency histogram, for the point's `.hgrm`.
    let mut latencies = Vec::new();
    let mut cpu_used: BTreeMap<String, Duration> = BTreeMap::new();
    let mut measured = Duration::ZERO;
    // CPU others used during the rounds; `None` once a reading failed.
    let mut others = Some(outside::Outside::default());
    for r in 1..=args.rounds {
        progress.show(label, &format!("round {r}/{}", args.rounds));
        let before = runner.cpu_used().await;
        let outside_before = outside::Reading::take(runner.containers_cpu().await);
        let run = scalelab_loadgen::run_load_full(round_load(planned, r), false).await?;
        let outside_after = outside::Reading::take(runner.containers_cpu().await);
        let report = run.report;
        latencies.push(run.latency);
        let after = runner.cpu_used().await;
        others = match (others, outside_before, outside_after) {
            (Some(mut o), Some(x), Some(y)) => {
                o.add(outside::Outside::between(&x, &y));
                Some(o)
            }
            _ => None,
        };
        for (node, end) in &after {
            if let Some(start) = before.get(node) {
                *cpu_used.entry(node.clone()).or_default() += end.saturating_sub(*start);
            }
        }
        measured += Duration::from_secs_f64(report.duration_s);
        let round = Round {
            rps: report.ok_rps,
            errors: report.errors,
            latency_ms: percentiles(&report.latency_ms),
            latency_by_path_ms: report
                .latency_by_path_ms
                .iter()
                .map(|(p, l)| (p.clone(), percentiles(l)))
                .collect(),
            by_worker: report.by_worker.clone(),
            completed: Some(report.requests),
            in_flight: report.in_flight_at_end,
        };
        rounds.push((report, round));
        if r < args.rounds {
            tokio::time::sleep(args.pause).await;
        }
    }
    // One `.hgrm` per point, its rounds merged: HdrHistogram's plotter compares the points.
    let hgrm = args.out.join(format!("{label}.hgrm"));
    report::write_atomically(&hgrm, &scalelab_loadgen::hgrm::write_merged(&latencies))?;
    progress.done += 1;
    let paths: Vec<(String, u32)> =
        planned.load.mix.entries().iter().map(|e| (e.path.clone(), e.weight)).collect();
    let mut p = point(t, planned.setting, position, rounds, cpu_used, measured, &paths, cores, runner.kind());
    p.offered = planned.offered.clone();
    p.outside_cpu_cores = others.and_then(|o| o.cores());
    p.noisy = p.outside_cpu_cores.is_some_and(outside::is_noisy);
    if p.noisy {
        eprintln!(
            "[{}/{}] {label:<16} noisy: processes outside the lab used {:.2} cores while it was measured",
            progress.done,
            progress.total,
            p.outside_cpu_cores.unwrap_or_default()
        );
    }
    Ok(p)
}

/// The load of round `round` (0 is the warm-up) of a point: Poisson arrivals draw a seed per
/// round, the same in every sweep, so two sweeps offer their rounds the same arrivals.
fn round_load(planned: &PlannedPoint, round: u32) -> scalelab_loadgen::LoadConfig {
    let mut load = planned.load.clone();
    if let Arrivals::Poisson { .. } = load.arrivals {
        load.arrivals = Arrivals::Poisson { seed: scalelab_loadgen::DEFAULT_ARRIVAL_SEED + u64::from(round) };
    }
    load
}

/// Folds a point's rounds together: the median round's throughput and latency, the sums of
/// everything counted.
#[allow(clippy::too_many_arguments)]
fn point(
    t: &Topology,
    setting: Setting,
    position: usize,
    rounds: Vec<(Report, Round)>,
    cpu_used: BTreeMap<String, Duration>,
    measured: Duration,
    paths: &[(String, u32)],
    cores: usize,
    kind: &str,
) -> Point {
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|&a, &b| rounds[a].1.rps.total_cmp(&rounds[b].1.rps));
    let median = &rounds[order[order.len() / 2]];
    let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_worker: BTreeMap<String, u64> = BTreeMap::new();
    if kind == "native" {
        // Workers that served nothing still count: their zero is the unevenness to see.
        for r in t.replicas() {
            by_node.insert(r.name.clone(), 0);
            for w in 1..=r.workers {
                by_worker.insert(format!("{}/{w}", r.name), 0);
            }
        }
    }
    for (report, _) in &rounds {
        for (k, v) in &report.by_node {
            *by_node.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &report.by_worker {
            *by_worker.entry(k.clone()).or_default() += v;
        }
    }
    let theory = theory::capacity(t, cores, paths).unwrap_or(0.0);
    let secs = measured.as_secs_f64().max(f64::EPSILON);
    let (value, label) = match (setting.number(), setting.choice()) {
        (Some(x), _) => (x, None),
        (None, name) => (position as f64 + 1.0, name.map(str::to_string)),
    };
    Point {
        value,
        label,
        n: vary::scale(t, setting, position),
        rps: median.1.rps,
        theory_rps: theory,
        ratio: if theory > 0.0 { median.1.rps / theory } else { 0.0 },
        latency_ms: median.1.latency_ms,
        latency_by_path_ms: median.1.latency_by_path_ms.clone(),
        errors: rounds.iter().map(|(r, _)| r.errors).sum(),
        by_node,
        by_worker,
        cpu_used: cpu_used.into_iter().map(|(k, d)| (k, d.as_secs_f64() / secs)).collect(),
        topology: t.to_yaml(),
        rounds: rounds.into_iter().map(|(_, r)| r).collect(),
        offered: None,
        outside_cpu_cores: None,
        noisy: false,
    }
}

fn percentiles(l: &scalelab_loadgen::Latency) -> Percentiles {
    Percentiles { p50: l.p50, p90: l.p90, p99: l.p99, p999: l.p999, max: l.max, stdev: l.stdev }
}

/// Fits the USL to every round of every point of `series` (x = the point's scale), or notes
/// why it cannot.
fn fit_series(series: &mut Series) {
    if series.is_load() {
        series.fit = None;
        series.fit_note = Some(format!("{} is the offered load, not a scale: see the knee", series.vary));
        return;
    }
    if series.is_choice() {
        series.fit = None;
        series.fit_note = Some(format!("{} is a choice, not a scale: the USL does not apply", series.vary));
        return;
    }
    let measurements: Vec<(f64, f64)> =
        series.points.iter().flat_map(|p| p.rounds.iter().map(move |r| (p.n, r.rps))).collect();
    match usl::fit(&measurements) {
        Ok(fit) => {
            series.fit = Some(fit);
            series.fit_note = None;
        }
        Err(e) => {
            series.fit = None;
            series.fit_note = Some(e.to_string());
        }
    }
}

/// `results.json`, replaced atomically.
fn write_results(out: &Path, results: &Results) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(results).context("encoding results.json")?;
    report::write_atomically(&out.join(report::RESULTS_FILE), &json)
}

/// `results.json`, `results.csv` and `report.html`.
pub(crate) fn write_outputs(out: &Path, results: &Results) -> anyhow::Result<()> {
    write_results(out, results)?;
    let csv = out.join("results.csv");
    std::fs::write(&csv, summary::csv(results)).with_context(|| format!("cannot write {}", csv.display()))?;
    report::write(out, results).context("drawing report.html")?;
    Ok(())
}
