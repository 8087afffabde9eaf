//! scalelab: a horizontal-scaling lab.
//!
//! # Layout
//! - `topology/`: the `topology.yaml` types, parsing, validation and change polling.
//! - `node/`: a prefork node: a primary supervising worker processes that share one port.
//! - `balancer/`: the pingora round-robin load balancer with health checks and metrics.
//! - `loadgen/`: the HTTP load generator behind `scalelab load`.
//! - `lab/`: a whole lab on one machine as a library (`Lab`): start, apply edits, shut down.
//! - `experiment/`: `results.json`, the USL fit, the queueing models, `report.html` and
//!   `compare`.
//! - this crate: the `scalelab` CLI. [`up`] runs a lab until Ctrl-C, following the topology
//!   file; [`check`] validates a topology; [`render`] renders it for Docker Compose, Swarm and
//!   Kubernetes (`scalelab compose`); [`apply`] applies an edit to a running Compose lab; [`load`] runs `scalelab load`.

pub mod apply;
pub mod check;
pub mod cli;
pub mod load;
pub mod render;
pub mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs one CLI command to completion.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    let filter = log_filter(&cli.command);
    init_logging(&filter);
    match cli.command {
        Command::Up(args) => up::run(args, filter),
        Command::Check(args) => Ok(check::run(args)),
        Command::Compose(args) => render::run(&args.topology, args.check, &args.image).map(|fresh| {
            if fresh {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Apply(args) => apply::run(&args.topology, &args.image, args.watch),
        Command::Node(args) => scalelab_node::run(args).map(|()| ExitCode::SUCCESS),
        Command::Worker => scalelab_node::run_worker().map(|()| ExitCode::SUCCESS),
        Command::Balancer(args) => scalelab_balancer::run(args).map(|()| ExitCode::SUCCESS),
        Command::Load(args) => load::run(*args),
        Command::Sweep(args) => scalelab_experiment::sweep::run(args),
        Command::Fit(args) => scalelab_experiment::fit::run(&args),
        Command::Report(args) => scalelab_experiment::report::run(&args),
        Command::Compare(args) => scalelab_experiment::compare::run(&args),
        Command::Tour(args) => scalelab_experiment::tour::run(args),
    }
}

/// What to log: `RUST_LOG` when set; otherwise `info`, except for `up`, whose terminal shows
/// its table and then only warnings and errors (`-v` brings `info` back, `-vv` `debug`).
fn log_filter(command: &Command) -> String {
    if let Ok(env) = std::env::var("RUST_LOG") {
        return env;
    }
    match command {
        Command::Up(args) => ["warn", "info", "debug"][usize::from(args.verbose.min(2))].to_string(),
        Command::Sweep(_) | Command::Tour(_) => "warn".to_string(),
        _ => "info".to_string(),
    }
}

/// Logs go to stderr, so stdout stays for reports (`scalelab load --json`) and tables.
fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Raises this process's soft limit on open files to its hard limit, as nginx's
/// `worker_rlimit_nofile` does: the balancer holds two descriptors per proxied connection, and
/// every part of the lab inherits the raised limit. Failing to raise it is not fatal.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!("scalelab: cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
    }
}
