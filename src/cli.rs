//! The command line: one subcommand per part of the lab. Each part's crate owns its flags
//! (`NodeArgs`, `BalancerArgs`, `LoadArgs`); this file only names the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::render;

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
    /// Render compose.yaml (Docker Compose), stack.yaml (Swarm) and kubernetes.yaml (Kubernetes) from the topology.
    Compose(ComposeArgs),
    /// Apply a topology edit to the Compose lab: re-render, then `docker compose up -d` (`--watch`: on every save, with autoscaling).
    Apply(ApplyArgs),
    /// Run one node: a primary process and its workers sharing one listening port.
    Node(scalelab_node::NodeArgs),
    /// Run the pingora load balancer in front of the topology's nodes.
    Balancer(scalelab_balancer::BalancerArgs),
    /// Drive HTTP load and report throughput, latency and who served what.
    Load(Box<scalelab_loadgen::LoadArgs>),
    /// Measure a series of topologies or loads (vary workers, replicas, cpus, algorithm, distribution, load or rate), fit the USL or the queueing models, draw a report.
    Sweep(scalelab_experiment::sweep::SweepArgs),
    /// Fit the Universal Scalability Law to measured (N, throughput) pairs from a CSV file.
    Fit(scalelab_experiment::fit::FitArgs),
    /// Re-render report.html from a sweep's results.json.
    Report(scalelab_experiment::report::ReportArgs),
    /// Compare two sweeps' results.json point by point against their rounds' noise; write
    /// compare.html; exit 4 when a --fail-if threshold is crossed.
    Compare(scalelab_experiment::compare::CompareArgs),
    /// The whole lesson, measured on this machine: seven steps (one process, vertical,
    /// horizontal, the latency knee, a slow node, a node killed, the autoscaler), each
    /// explained with its numbers, and tour.html with every step's chart.
    Tour(scalelab_experiment::tour::TourArgs),
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
    /// The topology to render; compose.yaml, stack.yaml and kubernetes.yaml are written next to it.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
    /// Do not write: exit non-zero when compose.yaml, stack.yaml or kubernetes.yaml is out of date.
    #[arg(long)]
    pub check: bool,
    /// The image the rendered files run (a registry's, for a cluster that pulls: e.g.
    /// registry.example:5000/scalelab:1.0).
    #[arg(long, default_value = render::image::DEFAULT_IMAGE)]
    pub image: render::Image,
}

/// Flags of `scalelab apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The edited topology; compose.yaml next to it is re-rendered and applied.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
    /// The image the rendered files run (as `scalelab compose --image`).
    #[arg(long, default_value = render::image::DEFAULT_IMAGE)]
    pub image: render::Image,
    /// Keep following the file: apply every valid save, and run the autoscaler of the groups
    /// that have an `autoscale` block against the Compose lab (`--scale GROUP=N`), until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
}
