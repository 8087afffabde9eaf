//! scalelab: a horizontal-scaling lab.
//!
//! # Layout
//! - `topology/`: the `topology.yaml` types, parsing, validation and change polling.
//! - `node/`: a prefork node: a primary supervising worker processes that share one port.
//! - `balancer/`: the pingora round-robin load balancer with health checks and metrics.
//! - `loadgen/`: the HTTP load generator behind `scalelab load`.
//! - this crate: the `scalelab` CLI. [`up`] supervises a whole lab on one machine; [`check`]
//!   validates a topology; [`compose`] renders it for Docker Compose and Swarm; [`apply`]
//!   applies an edit to a running Compose lab.

pub mod apply;
pub mod check;
pub mod cli;
pub mod compose;
pub mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs one CLI command to completion.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging();
    match cli.command {
        Command::Up(args) => up::run(args),
        Command::Check(args) => Ok(check::run(args)),
        Command::Compose(args) => compose::run(&args.topology, args.check).map(|fresh| {
            if fresh {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Apply(args) => apply::run(&args.topology),
        Command::Node(args) => scalelab_node::run(args).map(|()| ExitCode::SUCCESS),
        Command::Worker => scalelab_node::run_worker().map(|()| ExitCode::SUCCESS),
        Command::Balancer(args) => scalelab_balancer::run(args).map(|()| ExitCode::SUCCESS),
        Command::Load(args) => scalelab_loadgen::run(args),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`), so stdout stays for reports
/// (`scalelab load --json`) and tables.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
