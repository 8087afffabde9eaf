//! The command line: one subcommand per part of the lab. Each part's crate owns its flags
//! (`NodeArgs`, `BalancerArgs`, `LoadArgs`); this file only names the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// scalelab: prefork nodes behind a pingora balancer, driven by one topology file.
#[derive(Debug, Parser)]
#[command(name = "scalelab", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole lab locally: the balancer and every node, supervised, with live edits.
    Up(UpArgs),
    /// Validate a topology file; print every problem with its line and column.
    Check(CheckArgs),
    /// Render compose.yaml (Docker Compose) and stack.yaml (Swarm) from the topology.
    Compose(ComposeArgs),
    /// Apply a topology edit to the Compose lab: re-render, then `docker compose up -d`.
    Apply(ApplyArgs),
    /// Run one node: a primary process and its workers sharing one listening port.
    Node(scalelab_node::NodeArgs),
    /// Run the pingora load balancer in front of the topology's nodes.
    Balancer(scalelab_balancer::BalancerArgs),
    /// Drive HTTP load and report throughput, latency and who served what.
    Load(Box<scalelab_loadgen::LoadArgs>),
    /// Measure a series of topologies (vary workers, replicas, cpus, algorithm or distribution), fit the USL, draw a report.
    Sweep(scalelab_experiment::sweep::SweepArgs),
    /// Fit the Universal Scalability Law to measured (N, throughput) pairs from a CSV file.
    Fit(scalelab_experiment::fit::FitArgs),
    /// Re-render report.html from a sweep's results.json.
    Report(scalelab_experiment::report::ReportArgs),
    /// A node worker process (started by a node primary, not by hand).
    #[command(hide = true)]
    Worker,
}

/// Flags of `scalelab up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The topology file to run and watch for edits.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
    /// Log more: `-v` adds informational lines after the table, `-vv` debug lines
    /// (`RUST_LOG`, when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Flags of `scalelab check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The topology file to validate.
    #[arg(default_value = "topology.yaml")]
    pub file: PathBuf,
}

/// Flags of `scalelab compose`.
#[derive(Debug, clap::Args)]
pub struct ComposeArgs {
    /// The topology to render; compose.yaml and stack.yaml are written next to it.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
    /// Do not write: exit non-zero when compose.yaml or stack.yaml is out of date.
    #[arg(long)]
    pub check: bool,
}

/// Flags of `scalelab apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The edited topology; compose.yaml next to it is re-rendered and applied.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
}
