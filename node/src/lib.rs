//! A prefork node in the style of Node.js `cluster`: one primary process supervises worker
//! processes that serve one port. `--distribution` says how connections reach them: all
//! workers accept on one shared socket (`shared`), each on its own `SO_REUSEPORT` socket
//! (`reuseport`), or the primary accepts and hands them out in turn (`round_robin`).
//!
//! # Layout
//! - this file: the flags ([`NodeArgs`]) and the two entry points, [`run`] (the primary) and
//!   [`run_worker`] (a worker, started by the primary as `scalelab worker`).
//! - `config`: what a worker is told by its primary, and the environment variables that carry it.
//! - `front`: the node's front door per distribution mode: what the primary binds, what a
//!   worker gets at fd 3, what changes when workers come and go.
//! - `listener`: binding a listening socket in the primary, passing it as fd 3, taking it back
//!   in the worker.
//! - `reuseport`: the per-slot `SO_REUSEPORT` sockets and the BPF program that steers new
//!   connections to running workers only.
//! - `round_robin`: the primary's dispatcher: accept, hand each connection to the next worker.
//! - `handoff`: the Unix socket between the primary and a round-robin worker (`SCM_RIGHTS`
//!   out, acknowledgements back).
//! - [`lifeline`]: how a child notices its supervisor is gone (parent-death signal and a pipe);
//!   every supervisor in scalelab arms its children with [`lifeline::arm_parent_death_signal`].
//! - `primary`: the supervisor, gunicorn-arbiter style: `spawn_worker`, `reap_workers`,
//!   `kill_worker`, `manage_workers`, all driven from one select loop.
//! - `signals`: the primary's signal intake; handlers only enqueue.
//! - [`backoff`]: the respawn delay of a slot that keeps crashing right after it starts, with
//!   a [`backoff::Policy`] per supervisor (this node's workers, and the lab's children).
//! - `watch`: applying the topology file's group (`workers`) and `workload` to this node.
//! - `worker`: a worker's single-threaded runtime, its accept (or receive) loop and its stop.
//! - `connections`: a worker's connections served by hyper, and the drain that answers every
//!   one it accepted.
//! - `routes`: the HTTP endpoints (`/op1`, `/op2`, `/health`, `/info`).
//! - `cpu_queue`: a worker's CPU: `/op2` burns one at a time in arrival order, a bounded
//!   queue in front, and load shedding (503 + `Retry-After`) beyond it.
//! - `cpu`: the thread CPU clock, and burning an exact amount of it for `/op2`.
//! - `cgroup_stats`: the node's own CPU use and cap, from its cgroups, for `/stats`.
//!
//! Workers are never `fork()`ed from a process that runs tokio: the primary re-executes its own
//! binary (`current_exe() worker`) with the settings in environment variables.

pub mod backoff;
pub mod cgroup_stats;
mod config;
mod connections;
mod cpu;
mod cpu_queue;
mod front;
mod handoff;
pub mod lifeline;
mod listener;
mod primary;
mod reuseport;
mod round_robin;
mod routes;
mod signals;
mod watch;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use scalelab_topology::{Distribution, Workload};

pub use config::EXIT_BOOT_FAILED;

/// Flags of `scalelab node`: one replica, i.e. a primary and its workers on one port. The
/// type owns its command line both ways: clap parses it, [`NodeArgs::to_args`] writes it for
/// whoever starts a node (`scalelab up`, the compose renderer).
#[derive(Debug, Clone, PartialEq, clap::Args)]
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

    /// What `/op2` costs (`--op2-cpu-ms`, `--max-cpu-ms`) and how many requests a worker
    /// queues (`--max-queue`); the topology's `workload`, when `--topology` is given, wins.
    #[command(flatten)]
    pub workload: Workload,

    /// Milliseconds a stopping worker may spend finishing in-flight requests before SIGKILL.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,

    /// How connections reach the workers: one shared socket, one `SO_REUSEPORT` socket per
    /// worker, or handed out in turn by the primary.
    #[arg(long, value_enum, default_value_t = Distribution::Shared)]
    pub distribution: Distribution,

    /// Topology file to watch: this node follows its group's `workers` and the `workload`.
    #[arg(long)]
    pub topology: Option<PathBuf>,

    /// Group of this node in the topology (default: the name without a trailing `-<digits>`).
    #[arg(long, requires = "topology")]
    pub group: Option<String>,

    /// Cgroup directories the primary joins before starting workers, so they inherit its CPU
    /// cap and are accounted together (one per cgroup hierarchy; repeat the flag).
    #[arg(long, hide = true)]
    pub cgroup: Vec<PathBuf>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("a node needs at least 1 worker".into()),
        Err(e) => Err(format!("expected a whole number of workers: {e}")),
    }
}

impl NodeArgs {
    /// Flags for `name` on `listen`, everything else at its default.
    pub fn new(name: impl Into<String>, listen: SocketAddr) -> NodeArgs {
        NodeArgs {
            name: name.into(),
            listen,
            workers: 1,
            workload: Workload::default(),
            distribution: Distribution::Shared,
            grace_ms: 5000,
            topology: None,
            group: None,
            cgroup: Vec::new(),
        }
    }

    /// The topology group this node follows: `--group`, or the name without `-<digits>`.
    pub fn group_name(&self) -> String {
        self.group.clone().unwrap_or_else(|| default_group(&self.name).to_string())
    }

    /// The argv after `scalelab node` that parses back into these flags. Flags at their
    /// default are left out, so a rendered command line shows only what was chosen.
    pub fn to_args(&self) -> Vec<String> {
        let defaults = NodeArgs::new("", self.listen);
        let mut args =
            vec!["--name".to_string(), self.name.clone(), "--listen".into(), self.listen.to_string()];
        let mut flag = |name: &str, value: String, default: String| {
            if value != default {
                args.extend([name.to_string(), value]);
            }
        };
        let (w, d) = (&self.workload, &defaults.workload);
        flag("--workers", self.workers.to_string(), defaults.workers.to_string());
        flag("--op2-cpu-ms", w.op2_cpu_ms.to_string(), d.op2_cpu_ms.to_string());
        flag("--max-cpu-ms", w.max_cpu_ms.to_string(), d.max_cpu_ms.to_string());
        flag("--max-queue", w.max_queue.to_string(), d.max_queue.to_string());
        flag("--grace-ms", self.grace_ms.to_string(), defaults.grace_ms.to_string());
        flag(
            "--distribution",
            self.distribution.to_possible_value().expect("no variant is skipped").get_name().to_string(),
            "shared".to_string(),
        );
        if let Some(p) = &self.topology {
            args.extend(["--topology".to_string(), p.display().to_string()]);
        }
        if let Some(g) = &self.group {
            args.extend(["--group".to_string(), g.clone()]);
        }
        for dir in &self.cgroup {
            args.extend(["--cgroup".to_string(), dir.display().to_string()]);
        }
        args
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

/// Everything a node checks before it starts anything: the flags, with `{hostname}`
/// resolved. `Err` names the flag at fault. `scalelab up` and the tests run the same check on
/// the arguments a topology turns into.
pub fn preflight(mut args: NodeArgs) -> anyhow::Result<NodeArgs> {
    if args.name.contains("{hostname}") {
        let host = nix::unistd::gethostname().context("--name uses {hostname}: cannot read the host name")?;
        args.name = args.name.replace("{hostname}", &host.to_string_lossy());
    }
    if let Some((field, why)) = args.workload.problems().into_iter().next() {
        anyhow::bail!("--{}: {why}", field.replace('_', "-"));
    }
    hyper::header::HeaderValue::from_str(&args.name).map_err(|_| {
        anyhow::anyhow!("--name {:?} must be printable ASCII (it is sent as a header)", args.name)
    })?;
    Ok(args)
}

/// Runs a node's primary until SIGTERM or SIGINT: binds the port, starts and supervises the
/// workers, then stops them gracefully and returns.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let args = preflight(args)?;
    for dir in &args.cgroup {
        join_cgroup(dir)?;
    }
    let front = front::Front::bind(args.distribution, args.listen).with_context(|| {
        let mode = args.distribution.to_possible_value().expect("no variant is skipped");
        format!("--listen {} (--distribution {})", args.listen, mode.get_name())
    })?;
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
        workload: args.workload,
        grace: Duration::from_millis(args.grace_ms),
        topology: args.topology.clone().map(|path| watch::NodeWatch::new(path, args.group_name())),
        front,
        lifeline,
        cgroups: cgroup_stats::own_cgroups(&args.cgroup),
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
    fn to_args_parses_back_into_the_same_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            node: NodeArgs,
        }
        let mut args = NodeArgs::new("node-3", "127.0.0.1:8083".parse().unwrap());
        args.workers = 4;
        args.workload.max_queue = 7;
        args.distribution = Distribution::RoundRobin;
        args.topology = Some("/tmp/t.yaml".into());
        args.group = Some("node".into());
        args.cgroup = vec!["/sys/fs/cgroup/cpu/x".into(), "/sys/fs/cgroup/cpuacct/x".into()];
        let argv = std::iter::once("node".to_string()).chain(args.to_args());
        assert_eq!(<Cli as clap::Parser>::try_parse_from(argv).unwrap().node, args);
        let plain = NodeArgs::new("node-1", "0.0.0.0:8081".parse().unwrap());
        assert_eq!(plain.to_args(), ["--name", "node-1", "--listen", "0.0.0.0:8081"]);
    }

    #[test]
    fn workers_must_be_positive() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("two").is_err());
    }
}
