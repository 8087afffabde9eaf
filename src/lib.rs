//! scalelab: a horizontal-scaling lab.
//!
//! # Layout
//! - `topology/`: the `topology.yaml` types, parsing, validation and change polling.
//! - `node/`: a prefork node: a primary supervising worker processes that share one port.
//! - `balancer/`: the pingora round-robin load balancer with health checks and metrics.
//! - `loadgen/`: the HTTP load generator behind `scalelab load`.
//! - this crate: the `scalelab` CLI; [`up`] supervises a whole lab on one machine.

pub mod cli;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs one CLI command to completion.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(_args) => todo!("up"),
        Command::Check(_args) => todo!("check"),
        Command::Node(args) => scalelab_node::run(args).map(|()| ExitCode::SUCCESS),
        Command::Worker => scalelab_node::run_worker().map(|()| ExitCode::SUCCESS),
        Command::Balancer(args) => scalelab_balancer::run(args).map(|()| ExitCode::SUCCESS),
        Command::Load(args) => scalelab_loadgen::run(args),
    }
}
