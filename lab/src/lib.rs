//! A whole lab on one machine, as a library: every node of a topology and the pingora
//! balancer in front of them, as supervised child processes that follow live edits. `scalelab
//! up` is this plus signals and a file watch; `scalelab sweep` drives it through a series of
//! topologies.
//!
//! ```no_run
//! # async fn demo(t: scalelab_topology::Topology, edited: scalelab_topology::Topology) -> anyhow::Result<()> {
//! use std::time::Duration;
//! let lab = scalelab_lab::Lab::start(&t, scalelab_lab::LabOptions::current_exe()?).await?;
//! lab.wait_ready(Duration::from_secs(10)).await?;
//! let plan = lab.apply(&edited).await?; // live: start/stop nodes, re-cap, hand the balancer over
//! lab.shutdown(std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - this file: [`Lab`], the handle: `start`, `wait_ready`, `apply`, `view`, `cpu_usage`,
//!   `shutdown`; and what they answer ([`View`], [`NotReady`]).
//! - `supervisor`: the task that owns the children (reap, respawn, retire, stop, restart one
//!   at a time, hand over, scale).
//! - `child`: one child under its name, and the stages of its life.
//! - [`plan`]: what a topology edit means for the running lab (pure).
//! - `launch`: the seam where children are started (real processes, or fakes in tests).
//! - `process`: one real child: how it is started and stopped.
//! - `sockets`: the balancer's listening sockets, bound once and handed to each balancer.
//! - `snapshot`: the published topology the children watch.
//! - [`cgroup`]: per-node CPU caps and CPU accounting.
//! - [`autoscale`]: the autoscaler (Kubernetes' HPA rules) that sets autoscaled groups' counts.
//! - `ready`: readiness probes (a node listens; the balancer sees every node healthy).

pub mod autoscale;
pub mod cgroup;
mod child;
mod launch;
pub mod plan;
mod process;
mod ready;
mod snapshot;
mod sockets;
mod supervisor;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use scalelab_balancer::BalancerArgs;
use scalelab_node::NodeArgs;
use scalelab_topology::{Replica, Topology};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

pub use plan::Plan;
pub use ready::{balancer_sees_healthy, get_state};
use supervisor::{Command, Supervisor};

/// How long start-up waits for the nodes to listen before it starts the balancer anyway.
const NODES_LISTEN_WAIT: Duration = Duration::from_secs(10);

/// The flags a lab starts replica `r` of `t` with, watching `topology_file` (CPU cgroups
/// aside, which only a running lab has).
pub fn node_args(t: &Topology, r: &Replica, topology_file: &Path) -> NodeArgs {
    let mut args = NodeArgs::new(r.name.clone(), r.listen);
    args.workers = r.workers;
    args.workload = t.workload;
    args.distribution = r.distribution;
    args.topology = Some(topology_file.to_path_buf());
    args.group = Some(r.group.clone());
    args
}

/// Runs every child's own start-up checks on what `t` would start them with, so a topology
/// that passes here starts (the lab refuses an edit that would not, and keeps running).
pub fn preflight(t: &Topology) -> anyhow::Result<()> {
    let file = Path::new("topology.yaml");
    scalelab_balancer::preflight(&BalancerArgs::new(file), t).context("the balancer would not start")?;
    for r in t.replicas() {
        scalelab_node::preflight(node_args(t, &r, file))
            .with_context(|| format!("{} would not start", r.name))?;
    }
    Ok(())
}

/// How a lab runs its children.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The scalelab executable the children run (`scalelab node`, `scalelab balancer`).
    pub exe: PathBuf,
    /// `RUST_LOG` for the children; `None` leaves them the environment's.
    pub log_filter: Option<String>,
}

impl LabOptions {
    /// Children run this very executable (right for the `scalelab` binary itself).
    pub fn current_exe() -> anyhow::Result<LabOptions> {
        let exe = std::env::current_exe().context("cannot find the scalelab executable")?;
        Ok(LabOptions { exe, log_filter: None })
    }
}

/// A snapshot of the running lab.
#[derive(Debug, Clone)]
pub struct View {
    /// The topology in force.
    pub topology: Topology,
    /// Every node, with its pid (`None` while it restarts).
    pub nodes: Vec<NodeView>,
    /// The balancer's pid (`None` while it restarts).
    pub balancer_pid: Option<u32>,
    /// The balancer taking over from it after a `balancer:` edit, until it serves.
    pub successor_pid: Option<u32>,
    /// The cgroup version enforcing CPU caps, or why none is.
    pub caps: Result<cgroup::Version, String>,
    /// The topology file the children watch (the lab's published copy).
    pub published: PathBuf,
}

/// One node of a [`View`].
#[derive(Debug, Clone)]
pub struct NodeView {
    pub replica: Replica,
    pub pid: Option<u32>,
}

/// What was not ready in time.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The balancer process never reported that it serves.
    #[error("the balancer did not report ready within {0:?}")]
    Balancer(Duration),
    /// The balancer serves but does not see every node healthy; says what it saw last.
    #[error("the balancer does not see every node healthy: {0}")]
    Nodes(String),
    /// The lab is gone (shut down, or its supervisor failed).
    #[error("the lab is not running")]
    Gone,
}

/// A running lab. Dropping it stops every child (SIGKILL); call [`Lab::shutdown`] to stop
/// them gracefully.
pub struct Lab {
    cmd_tx: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
    decisions: broadcast::Sender<autoscale::GroupDecision>,
    /// The autoscaler's task; it holds no strong handle on the supervisor, so dropping the
    /// lab still closes its command channel.
    _autoscaling: AbortOnDrop,
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The native lab as the autoscaler's [`autoscale::Scaler`]: a decision is a command to the
/// supervisor, answered once applied.
struct LabScaler(mpsc::WeakSender<Command>);

impl autoscale::Scaler for LabScaler {
    async fn scale(&mut self, group: &str, replicas: usize) -> anyhow::Result<()> {
        let tx = self.0.upgrade().context("the lab is not running")?;
        let (reply, answer) = oneshot::channel();
        let group = group.to_string();
        tx.send(Command::Scale { group, replicas, reply }).await.ok().context("the lab is not running")?;
        answer.await.context("the lab is not running")?.map(drop)
    }
}

impl Lab {
    /// Binds the balancer's sockets, starts every node, waits (bounded) for them to listen,
    /// then starts the balancer. A port that cannot be bound or a child that cannot be
    /// started is an error, and nothing is left running.
    pub async fn start(topology: &Topology, options: LabOptions) -> anyhow::Result<Lab> {
        preflight(topology)?;
        let env = options.log_filter.iter().map(|f| ("RUST_LOG", f.clone())).collect();
        let launcher = Box::new(launch::Processes { exe: options.exe, env });
        let caps = cgroup::CpuCaps::detect().map_err(|e| format!("{e:#}"));
        let mut sup = Supervisor::new(topology.clone(), launcher, caps)?;
        sup.spawn_nodes();
        let late = ready::listening(&sup.node_addrs(), NODES_LISTEN_WAIT).await;
        for addr in late {
            tracing::warn!("node {addr} is not accepting connections after {NODES_LISTEN_WAIT:?}");
        }
        sup.spawn_balancer();
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let status = sup.lab_dir().join(scalelab_balancer::discovery::AUTOSCALE_FILE);
        let autoscaler = autoscale::Autoscaler::new(sup.admin_addr(), sup.topology_rx(), Some(status));
        let decisions = autoscaler.decisions();
        let autoscaling = AbortOnDrop(tokio::spawn(autoscaler.run(LabScaler(cmd_tx.downgrade()))));
        let task = tokio::spawn(sup.run(cmd_rx));
        Ok(Lab { cmd_tx, task, decisions, _autoscaling: autoscaling })
    }

    /// The autoscaler's decisions from now on, each once, with its reason.
    pub fn decisions(&self) -> broadcast::Receiver<autoscale::GroupDecision> {
        self.decisions.subscribe()
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx.send(cmd(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Waits until the balancer serves and lists exactly the topology's nodes, all healthy,
    /// so the first request sent after it is balanced over all of them.
    pub async fn wait_ready(&self, within: Duration) -> Result<(), NotReady> {
        let end = Instant::now() + within;
        let probe = loop {
            let probe = self.ask(Command::Probe).await.ok_or(NotReady::Gone)?;
            if probe.balancer_ready && probe.settled {
                break probe;
            }
            if Instant::now() >= end {
                return Err(if probe.balancer_ready {
                    NotReady::Nodes(format!(
                        "nodes {:?} still wait for their predecessors to exit",
                        probe.names
                    ))
                } else {
                    NotReady::Balancer(within)
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // A node restarted on its own port answers the balancer's health checks only once it
        // listens again; until then the balancer may still call the old one healthy.
        let late = ready::listening(&probe.node_addrs, end.saturating_duration_since(Instant::now())).await;
        if !late.is_empty() {
            return Err(NotReady::Nodes(format!("nodes at {late:?} do not accept connections")));
        }
        let left = end.saturating_duration_since(Instant::now());
        ready::balancer_sees(probe.admin, &probe.names, left).await.map_err(NotReady::Nodes)
    }

    /// Applies a valid edit live and says what it did: nodes started, retired, restarted on a
    /// new port, re-capped, resized, and whether a new balancer takes over. An error (a new
    /// balancer address that cannot be bound) changes nothing.
    pub async fn apply(&self, topology: &Topology) -> anyhow::Result<Plan> {
        self.ask(|tx| Command::Apply(Box::new(topology.clone()), tx))
            .await
            .context("the lab is not running")?
    }

    /// Runs `replicas` nodes of the autoscaled `group` (clamped to its bounds): what an
    /// autoscaler decided. Scale-in retires nodes as a `replicas` edit does.
    pub async fn scale(&self, group: &str, replicas: usize) -> anyhow::Result<Plan> {
        let group = group.to_string();
        self.ask(|reply| Command::Scale { group, replicas, reply }).await.context("the lab is not running")?
    }

    /// Tells the lab's children that an edit was refused, with why (the dashboard shows it);
    /// the lab keeps running what it ran.
    pub async fn reject(&self, why: String) {
        let _ = self.cmd_tx.send(Command::Rejected(why)).await;
    }

    /// What runs now.
    pub async fn view(&self) -> Option<View> {
        self.ask(Command::View).await
    }

    /// CPU time each node has used since it started, from its cgroup (empty when CPU caps
    /// are not enforced).
    pub async fn cpu_usage(&self) -> BTreeMap<String, Duration> {
        self.ask(Command::CpuUsage).await.unwrap_or_default()
    }

    /// Stops everything gracefully (balancer first, then nodes, each draining in-flight
    /// requests) and removes what the lab created. If `force` resolves first (a second
    /// Ctrl-C), whatever still runs is SIGKILLed.
    pub async fn shutdown(self, force: impl Future<Output = ()>) {
        self._autoscaling.0.abort();
        let (tx, rx) = oneshot::channel();
        if self.cmd_tx.send(Command::Shutdown(tx)).await.is_ok() {
            tokio::pin!(force);
            tokio::select! {
                _ = rx => {}
                () = &mut force => {
                    let _ = self.cmd_tx.send(Command::Kill).await;
                }
            }
        }
        drop(self.cmd_tx);
        if let Err(e) = self.task.await {
            tracing::error!("the lab supervisor failed: {e}");
        }
    }
}
