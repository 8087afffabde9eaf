//! The HTTP load generator behind `scalelab load`: keeps N HTTP/1 connections busy (closed
//! loop) or sends at a fixed rate (open loop), either one ramped through stages, and reports
//! throughput, latency percentiles, errors, which node and worker served each response
//! (`x-node`, `x-worker`), the run second by second, and whether it met its thresholds.
//!
//! # Layout
//!
//! A pipeline, one file per stage:
//!
//! - `config.rs`: [`LoadConfig`], the validated description of a run, and [`LoadError`].
//! - `mix.rs`: [`Mix`], the `--mix op1=9,op2=1` paths, unrolled into a shuffled, reproducible sequence.
//! - `stages.rs`: `--stages` and the [`Curve`] they make: rates or connections ramped linearly.
//! - `schedule.rs`: [`Schedule`], the load model as data: it hands out tickets (which path,
//!   and in open loop when it is meant to go) until the count or the duration runs out.
//! - `arrivals.rs`: [`Arrivals`], how open-loop tickets are spaced: evenly or as a Poisson
//!   process.
//! - `client.rs`: one kept-alive hyper connection and the single worker loop, which turns
//!   tickets into requests and pushes each outcome into the connection's own aggregate.
//! - `report.rs`: [`Aggregate`] (`push`, `merge`; pure) and the serde [`Report`] it becomes.
//! - `seconds.rs`: [`Seconds`], the run second by second ([`SecondRow`]), for `--timeline`.
//! - `by_stage.rs`: a staged run stage by stage ([`StageSummary`]), each request counted in
//!   the stage that sent it.
//! - `runner.rs`: one run: resolve, start the connections, merge, report ([`Run`]).
//! - `slo.rs`: `--slo` thresholds ([`Slo`]) and their verdicts ([`Threshold`]).
//! - `printer.rs`: the report as a text summary or JSON.
//! - `hgrm.rs`: the latency histogram as HdrHistogram's percentile-distribution text.
//! - `progress.rs`: the terminal progress bar.
//!
//! This file holds the command line ([`LoadArgs`]) and the library entry points
//! ([`run_load`], [`run_load_full`], [`run_load_blocking`]). The `scalelab load` command
//! around them (printing, files, exit status) is the CLI's (`src/load.rs`).

mod arrivals;
mod by_stage;
mod client;
mod config;
pub mod hgrm;
mod mix;
mod printer;
mod progress;
mod report;
mod runner;
mod schedule;
mod seconds;
mod slo;
mod stages;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

pub use arrivals::{Arrivals, DEFAULT_SEED as DEFAULT_ARRIVAL_SEED};
pub use by_stage::StageSummary;
pub use config::{
    parse_rate, parse_url, BaseUrl, LoadConfig, LoadError, DEFAULT_CONNECTIONS, MAX_CONNECTIONS, MAX_RATE,
};
pub use mix::{Mix, MixEntry, MixError};
pub use printer::{describe_load, natural_cmp, Output};
pub use report::{
    Aggregate, ErrorCounts, ErrorKind, Fairness, Latency, Mode, Report, RunInfo, Sample, ScheduleReport,
    Spread,
};
pub use runner::Run;
pub use schedule::{Pace, Schedule, Ticket};
pub use seconds::{SecondRow, Seconds, MAX_SECONDS};
pub use slo::{judge, Slo, Threshold, EXIT_THRESHOLD_FAILED, MAX_SLOS};
pub use stages::{Curve, Stage, StageList, StageTarget, Stages, MAX_STAGED_DURATION, MAX_STAGES};

/// How long a run lasts when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Runtime threads when `--threads` is not given: half the CPUs, at least one. The lab runs
/// its servers on the same machine, and they need the other half. Measured on the lab's
/// 2-core machine against one node worker (`/op1`, 32 connections, wrk as the yardstick): one
/// thread matched wrk's requests per second at the same CPU cost per request; a second thread
/// cost more CPU per request (work stealing, cross-thread wake-ups) and only competed with the
/// server for the cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// What `scalelab load --help` ends with: its exit status.
const EXIT_STATUS_HELP: &str = "Exit status: 0 when the run got 2xx responses and met every --slo; \
1 when no request got a 2xx response, or on an error (the report is still printed when the run \
happened); 2 for bad flags (nothing is sent); 3 when the run completed but a --slo threshold \
failed.";

/// Flags of `scalelab load`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Drive HTTP load and report throughput, latency and who served what",
    after_help = EXIT_STATUS_HELP
)]
pub struct LoadArgs {
    /// Base URL of the server or balancer (http only; a path here prefixes every request).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = config::parse_url)]
    pub url: BaseUrl,

    /// The path to request (`op1` means `/op1`). Use --mix for several.
    #[arg(long, default_value = "/op1", conflicts_with = "mix")]
    pub path: String,

    /// Weighted paths, e.g. `op1=9,op2=1` (`opN` means `/opN`; `/x?y=1=3` is a literal path
    /// with weight 3). Requests sequence deterministically in these proportions.
    #[arg(long, value_name = "PATH=WEIGHT,...")]
    pub mix: Option<Mix>,

    /// Concurrent kept-alive connections (1 to 100000) [default: 16]. In open loop, the most
    /// requests in flight at once.
    #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..=MAX_CONNECTIONS as i64))]
    pub connections: Option<u32>,

    /// How long to send, e.g. `10s`, `1m` (default 10s unless --requests is given).
    #[arg(long, short, value_parser = humantime::parse_duration, conflicts_with = "stages")]
    pub duration: Option<Duration>,

    /// Total requests to send (with --duration too, whichever ends first).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open loop: send this many requests per second in total, whatever the server does, and
    /// measure latency from each request's intended send time. Without it: closed loop.
    #[arg(long, short, value_parser = config::parse_rate, conflicts_with = "stages")]
    pub rate: Option<f64>,

    /// With --rate: `uniform` sends every 1/rate seconds; `poisson` spaces requests as a
    /// Poisson process (exponential gaps, a fixed seed), the arrivals queueing models assume.
    #[arg(long, default_value = "uniform", value_name = "uniform|poisson", requires = "rate")]
    pub arrivals: Arrivals,

    /// Staged load, e.g. `20s:30,40s:140,60s:30`: each stage moves linearly from the previous
    /// target (0 before the first; `0s:N` steps to N at once) to its own over its duration.
    /// Targets are requests per second in open loop (like k6's ramping-arrival-rate), or
    /// connections with `--stages-of connections` (like k6's ramping VUs). The run lasts as
    /// long as the stages: at most 1h and 100 stages; rates up to 10000000 req/s,
    /// connections up to 100000.
    #[arg(long, value_name = "DURATION:TARGET,...", value_parser = clap::value_parser!(StageList))]
    pub stages: Option<StageList>,

    /// What the --stages targets are: `rate` (req/s, open loop) or `connections` (active
    /// connections, closed loop; then --connections is not given).
    #[arg(long, value_enum, default_value_t = StageTarget::Rate, requires = "stages")]
    pub stages_of: StageTarget,

    /// A threshold the run must meet (repeat for more, at most 16): `p50|p90|p99|p99.9<N`
    /// with a unit (us, ms, s), `errors<N%` (share of finished requests without a 2xx),
    /// `rps>N` (2xx per second) or `rps>N%` (2xx as a share of the offered requests); `<=`
    /// and `>=` work too. Any failed threshold exits with status 3.
    #[arg(long = "slo", value_name = "THRESHOLD", value_parser = clap::value_parser!(Slo))]
    pub slos: Vec<Slo>,

    /// Write the latency histogram to FILE in HdrHistogram's percentile-distribution format
    /// (`.hgrm`, values in ms), which HdrHistogram's plotter reads.
    #[arg(long, value_name = "FILE")]
    pub hdr: Option<PathBuf>,

    /// Write the run second by second into DIR (created if missing): timeline.json,
    /// timeline.csv and timeline.html.
    #[arg(long, value_name = "DIR")]
    pub timeline: Option<PathBuf>,

    /// The balancer's admin URL (the default lab's is http://127.0.0.1:9090): with
    /// --timeline, ask its /state and /live once a second for replicas per group, the
    /// autoscaler's metric and decisions, and CPU per node. A failed ask is a gap.
    #[arg(long, value_name = "URL", value_parser = config::parse_url, requires = "timeline")]
    pub admin: Option<BaseUrl>,

    /// Per-request limit, e.g. `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Load generator runtime threads (default: half the CPUs, at least 1).
    #[arg(long, short, default_value_t = default_threads(), value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: usize,

    /// Print only the JSON report, on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs a load on the current Tokio runtime (which must have the time and I/O drivers) and
/// returns its report. Request failures are counted in the report; `Err` means the run could
/// not start.
pub async fn run_load(cfg: LoadConfig) -> Result<Report, LoadError> {
    Ok(runner::execute(cfg, false).await?.report)
}

/// [`run_load`] with everything the run measured: the merged latency histogram and the
/// run second by second. Draws a progress bar on stderr when `show_progress`.
pub async fn run_load_full(cfg: LoadConfig, show_progress: bool) -> Result<Run, LoadError> {
    runner::execute(cfg, show_progress).await
}

/// [`run_load`] on a runtime of its own with `cfg.threads` threads.
pub fn run_load_blocking(cfg: LoadConfig) -> anyhow::Result<Report> {
    let rt = runtime(cfg.threads)?;
    Ok(rt.block_on(run_load(cfg))?)
}

/// The multi-threaded runtime a load runs on, with `threads` worker threads.
pub fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("scalelab-load")
        .enable_all()
        .build()
        .context("start the load generator runtime")
}
