//! The HTTP load generator behind `scalelab load`: keeps N HTTP/1 connections busy (closed
//! loop) or sends at a fixed rate (open loop), and reports throughput, latency percentiles,
//! errors, and which node and worker served each response (`x-node`, `x-worker`).
//!
//! # Layout
//!
//! A pipeline, one file per stage:
//!
//! - `config.rs`: [`LoadConfig`], the validated description of a run, and [`LoadError`].
//! - `mix.rs`: [`Mix`], the `--mix op1=9,op2=1` paths, unrolled into a shuffled, reproducible sequence.
//! - `schedule.rs`: [`Schedule`], the load model as data: it hands out tickets (which path,
//!   and in open loop when it is meant to go) until the count or the duration runs out.
//! - `arrivals.rs`: [`Arrivals`], how open-loop tickets are spaced: evenly or as a Poisson
//!   process.
//! - `client.rs`: one kept-alive hyper connection and the single worker loop, which turns
//!   tickets into requests and pushes each outcome into the connection's own aggregate.
//! - `report.rs`: [`Aggregate`] (`push`, `merge`; pure) and the serde [`Report`] it becomes.
//! - `runner.rs`: one run: resolve, start the connections, merge, report.
//! - `printer.rs`: the report as a text summary or JSON.
//! - `progress.rs`: the terminal progress bar.
//!
//! This file holds the command line ([`LoadArgs`], [`run`]) and the library entry points
//! ([`run_load`], [`run_load_blocking`]).

mod arrivals;
mod client;
mod config;
mod mix;
mod printer;
mod progress;
mod report;
mod runner;
mod schedule;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub use arrivals::{Arrivals, DEFAULT_SEED as DEFAULT_ARRIVAL_SEED};
pub use config::{parse_rate, BaseUrl, LoadConfig, LoadError};
pub use mix::{Mix, MixEntry, MixError};
pub use printer::{natural_cmp, Output};
pub use report::{
    Aggregate, ErrorCounts, ErrorKind, Fairness, Latency, Mode, Report, RunInfo, Sample, ScheduleReport,
    Spread,
};
pub use schedule::{Pace, Schedule, Ticket};

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

/// Flags of `scalelab load`.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Drive HTTP load and report throughput, latency and who served what")]
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

    /// Concurrent kept-alive connections.
    #[arg(long, short, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,

    /// How long to send, e.g. `10s`, `1m` (default 10s unless --requests is given).
    #[arg(long, short, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Total requests to send (with --duration too, whichever ends first).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open loop: send this many requests per second in total, whatever the server does, and
    /// measure latency from each request's intended send time. Without it: closed loop.
    #[arg(long, short, value_parser = config::parse_rate)]
    pub rate: Option<f64>,

    /// With --rate: `uniform` sends every 1/rate seconds; `poisson` spaces requests as a
    /// Poisson process (exponential gaps, a fixed seed), the arrivals queueing models assume.
    #[arg(long, default_value = "uniform", value_name = "uniform|poisson", requires = "rate")]
    pub arrivals: Arrivals,

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

/// `scalelab load`: runs the load, prints the summary (or JSON), and fails when no request
/// got a 2xx response.
pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let cfg = LoadConfig::from_args(&args)?;
    let show_progress = !args.json && !args.no_progress && std::io::stderr().is_terminal();
    let report = runtime(cfg.threads)?.block_on(runner::execute(cfg, show_progress))?;
    let output = if args.json { Output::Json } else { Output::Text };
    print!("{}", output.render(&report));
    Ok(if report.any_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs a load on the current Tokio runtime (which must have the time and I/O drivers) and
/// returns its report. Request failures are counted in the report; `Err` means the run could
/// not start.
pub async fn run_load(cfg: LoadConfig) -> Result<Report, LoadError> {
    runner::execute(cfg, false).await
}

/// [`run_load`] on a runtime of its own with `cfg.threads` threads.
pub fn run_load_blocking(cfg: LoadConfig) -> anyhow::Result<Report> {
    let rt = runtime(cfg.threads)?;
    Ok(rt.block_on(run_load(cfg))?)
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("scalelab-load")
        .enable_all()
        .build()
        .context("start the load generator runtime")
}
