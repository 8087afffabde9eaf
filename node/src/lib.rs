//! A prefork node in the style of Node.js `cluster`: one primary process supervises worker
//! processes that all accept on one shared listening socket.
//!
//! # Layout
//! - this file: the flags ([`NodeArgs`]) and the two entry points, [`run`] (the primary) and
//!   [`run_worker`] (a worker, started by the primary as `scalelab worker`).
//! - `config`: what a worker is told by its primary, and the environment variables that carry it.
//! - `listener`: binding the shared socket in the primary, passing it as fd 3, taking it back in
//!   the worker.
//! - `lifeline`: how a worker notices its primary is gone (parent-death signal and a pipe).
//! - `primary`: the supervisor, gunicorn-arbiter style: `spawn_worker`, `reap_workers`,
//!   `kill_worker`, `manage_workers`, all driven from one select loop.
//! - `signals`: the primary's signal intake; handlers only enqueue.
//! - `backoff`: the respawn delay of a worker slot that keeps crashing right after it starts.
//! - `watch`: applying the topology file's group (`workers`) and `workload` to this node.
//! - `worker`: a worker's single-threaded runtime, its fair accept loop and graceful drain.
//! - `routes`: the HTTP endpoints (`/op1`, `/op2`, `/health`, `/info`).
//! - `cpu`: the thread CPU clock, and burning an exact amount of it for `/op2`.
//!
//! Workers are never `fork()`ed from a process that runs tokio: the primary re-executes its own
//! binary (`current_exe() worker`) with the settings in environment variables.

mod backoff;
mod config;
mod cpu;
mod lifeline;
mod listener;
mod primary;
mod routes;
mod signals;
mod watch;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

pub use config::EXIT_BOOT_FAILED;

/// Flags of `scalelab node`: one replica, i.e. a primary and its workers on one port.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Replica name, sent in every response's `x-node` header (e.g. node-1). `{hostname}` is
    /// replaced by the machine's host name: containers of one service share a command line,
    /// and this tells their replicas apart (`node@{hostname}`).
    #[arg(long, default_value = "node-1")]
    pub name: String,

    /// Address to listen on; port 0 picks a free port (the log line names it).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Worker processes to start (at least 1); SIGTTIN adds one, SIGTTOU removes one.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub workers: usize,

    /// CPU milliseconds one `/op2` request burns.
    #[arg(long, default_value_t = 20)]
    pub op2_cpu_ms: u64,

    /// Largest `?cpu_ms=` override `/op2` accepts, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub max_cpu_ms: u64,

    /// Milliseconds a stopping worker may spend finishing in-flight requests before SIGKILL.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,

    /// Topology file to watch: this node follows its group's `workers` and the `workload`.
    #[arg(long)]
    pub topology: Option<PathBuf>,

    /// Group of this node in the topology (default: the name without a trailing `-<digits>`).
    #[arg(long, requires = "topology")]
    pub group: Option<String>,

    /// Cgroup directory the primary joins before starting workers, so they inherit its CPU cap.
    #[arg(long, hide = true)]
    pub cgroup: Option<PathBuf>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("a node needs at least 1 worker".into()),
        Err(e) => Err(format!("expected a whole number of workers: {e}")),
    }
}

impl NodeArgs {
    /// The topology group this node follows: `--group`, or the name without `-<digits>`.
    pub fn group_name(&self) -> String {
        self.group.clone().unwrap_or_else(|| default_group(&self.name).to_string())
    }
}

/// `node-12` → `node`; a name without a numeric suffix is its own group.
fn default_group(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((group, index))
            if !group.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) =>
        {
            group
        }
        _ => name,
    }
}

/// Runs a node's primary until SIGTERM or SIGINT: binds the port, starts and supervises the
/// workers, then stops them gracefully and returns.
pub fn run(mut args: NodeArgs) -> anyhow::Result<()> {
    if args.name.contains("{hostname}") {
        let host = nix::unistd::gethostname().context("--name uses {hostname}: cannot read the host name")?;
        args.name = args.name.replace("{hostname}", &host.to_string_lossy());
    }
    if args.op2_cpu_ms > args.max_cpu_ms {
        anyhow::bail!(
            "--op2-cpu-ms {} exceeds --max-cpu-ms {}; raise --max-cpu-ms or lower --op2-cpu-ms",
            args.op2_cpu_ms,
            args.max_cpu_ms
        );
    }
    hyper::header::HeaderValue::from_str(&args.name).map_err(|_| {
        anyhow::anyhow!("--name {:?} must be printable ASCII (it is sent as a header)", args.name)
    })?;
    if let Some(dir) = &args.cgroup {
        join_cgroup(dir)?;
    }
    let socket = listener::bind(args.listen).with_context(|| format!("--listen {}", args.listen))?;
    let lifeline = lifeline::Lifeline::new().context("creating the workers' lifeline pipe")?;
    let exe = std::env::current_exe().context("locating the scalelab binary to re-execute as workers")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the primary's event loop")?;
    let arbiter = primary::Arbiter::new(primary::Settings {
        exe,
        name: args.name.clone(),
        workers: args.workers,
        op2_cpu_ms: args.op2_cpu_ms,
        max_cpu_ms: args.max_cpu_ms,
        grace: Duration::from_millis(args.grace_ms),
        topology: args.topology.clone().map(|path| watch::NodeWatch::new(path, args.group_name())),
        socket,
        lifeline,
    })?;
    runtime.block_on(arbiter.run())
}

/// Moves this process into the cgroup at `dir`; children started later inherit it.
fn join_cgroup(dir: &std::path::Path) -> anyhow::Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, format!("{}\n", std::process::id()))
        .with_context(|| format!("--cgroup: cannot move the node primary into {}", procs.display()))
}

/// Runs one worker (`scalelab worker`), configured by the environment its primary set. A
/// worker that cannot boot exits with [`EXIT_BOOT_FAILED`] so the primary stops respawning.
pub fn run_worker() -> anyhow::Result<()> {
    worker::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_drops_a_numeric_suffix_only() {
        assert_eq!(default_group("node-1"), "node");
        assert_eq!(default_group("api-v2-10"), "api-v2");
        assert_eq!(default_group("node"), "node");
        assert_eq!(default_group("node-"), "node-");
        assert_eq!(default_group("node-x1"), "node-x1");
        assert_eq!(default_group("-3"), "-3");
    }

    #[test]
    fn workers_must_be_positive() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("two").is_err());
    }
}
