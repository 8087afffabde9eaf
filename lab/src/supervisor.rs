//! The task that owns a lab's children, in the manner of gunicorn's arbiter one level up: one
//! loop, woken by commands from the [`Lab`](crate::Lab) handle, by SIGCHLD and by a tick, that
//! reaps (`reap_children`), respawns (`manage_children`), retires and stops nodes, and hands
//! the balancer over to a successor. Nothing in it blocks: a stopping child is a deadline the
//! loop checks, so a command (or Ctrl-C in the program around the lab) is answered at once.
//!
//! The balancer's two listening sockets are bound here once and passed to every balancer
//! process (fds 3 and 4). A crashed balancer's replacement, or a new one after a `balancer:`
//! edit, accepts from the same kernel queue: connections wait instead of being refused.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use command_fds::FdMapping;
use nix::fcntl::OFlag;
use scalelab_balancer::sockets::{self, ADMIN_FD, LISTEN_FD};
use scalelab_balancer::BalancerArgs;
use scalelab_topology::{Replica, Topology};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::cgroup::CpuCaps;
use crate::plan::{self, Plan};
use crate::process::Proc;
use crate::snapshot::Snapshot;
use crate::{LabOptions, NodeView, View};

/// How long a stopping child may drain before its process group is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// A removed node keeps serving this long, so the balancer (which re-reads the topology about
/// every second) drops it before it stops accepting.
const RETIRE_DELAY: Duration = Duration::from_millis(2500);
/// How long a successor balancer may take to report ready before the handover is abandoned.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);
/// Respawn backoff of a child that keeps crashing: the first crash after a stable run is
/// respawned at once, then 0.5 s doubling up to 30 s.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before dying is not in a crash loop; its backoff resets.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How often the loop looks at its children without being woken.
const TICK: Duration = Duration::from_millis(100);
/// Where a balancer finds the write end of its readiness pipe.
const READY_FD: i32 = 5;

/// What the [`Lab`](crate::Lab) handle asks of the supervisor.
pub enum Command {
    Apply(Box<Topology>, oneshot::Sender<anyhow::Result<Plan>>),
    View(oneshot::Sender<View>),
    Probe(oneshot::Sender<Probe>),
    CpuUsage(oneshot::Sender<BTreeMap<String, Duration>>),
    /// An edit was refused (by whoever watches the user's file): tell the children.
    Rejected(String),
    /// Stop everything gracefully, then answer.
    Shutdown(oneshot::Sender<()>),
    /// During a shutdown: stop waiting, SIGKILL what is left.
    Kill,
}

/// What readiness needs to know.
pub struct Probe {
    pub admin: SocketAddr,
    /// The node names the balancer should list: those running and those waiting to start.
    pub names: Vec<String>,
    /// The running balancer reported ready.
    pub balancer_ready: bool,
    /// No node waits for its predecessor to free its port (a distribution change is done).
    pub settled: bool,
    /// Where the running nodes listen.
    pub node_addrs: Vec<SocketAddr>,
}

/// The balancer's two sockets and the addresses they are bound to.
struct Sockets {
    listen_addr: SocketAddr,
    admin_addr: SocketAddr,
    listen: TcpListener,
    admin: TcpListener,
}

impl Sockets {
    fn bind(t: &Topology) -> anyhow::Result<Sockets> {
        let b = &t.balancer;
        let l = sockets::Listeners::bind(b.listen, b.admin)?;
        Ok(Sockets { listen_addr: b.listen, admin_addr: b.admin, listen: l.listen, admin: l.admin })
    }

    /// Sockets for `t`'s addresses, reusing ours where an address is unchanged (it is bound
    /// already, so binding it again would fail).
    fn rebind(&self, t: &Topology) -> anyhow::Result<Sockets> {
        let b = &t.balancer;
        let take = |addr: SocketAddr, what: &str| -> anyhow::Result<TcpListener> {
            if addr == self.listen_addr {
                return self.listen.try_clone().context("duplicating the client listener");
            }
            if addr == self.admin_addr {
                return self.admin.try_clone().context("duplicating the admin listener");
            }
            sockets::bind(addr).with_context(|| format!("balancer.{what}: cannot listen on {addr}"))
        };
        Ok(Sockets {
            listen_addr: b.listen,
            admin_addr: b.admin,
            listen: take(b.listen, "listen")?,
            admin: take(b.admin, "admin")?,
        })
    }

    /// Mappings that place duplicates at fds 3 and 4 in a child.
    fn mappings(&self) -> anyhow::Result<Vec<FdMapping>> {
        let dup = |s: &TcpListener| -> anyhow::Result<OwnedFd> {
            Ok(s.try_clone().context("duplicating a listener")?.into())
        };
        Ok(vec![
            FdMapping { parent_fd: dup(&self.listen)?, child_fd: LISTEN_FD },
            FdMapping { parent_fd: dup(&self.admin)?, child_fd: ADMIN_FD },
        ])
    }
}

/// The read end of a balancer's readiness pipe.
struct ReadyPipe(OwnedFd);

impl ReadyPipe {
    /// A pipe whose write end goes to the child at [`READY_FD`].
    fn new() -> anyhow::Result<(ReadyPipe, FdMapping)> {
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).context("readiness pipe")?;
        Ok((ReadyPipe(read), FdMapping { parent_fd: write, child_fd: READY_FD }))
    }

    /// True once the child wrote its byte.
    fn ready(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(nix::unistd::read(&self.0, &mut byte), Ok(1))
    }
}

/// A supervised child and its respawn state.
#[derive(Default)]
struct Slot {
    proc: Option<Proc>,
    started: Option<Instant>,
    /// Consecutive quick crashes, for the backoff.
    crashes: u32,
    /// When a crashed child is due to start again.
    respawn_at: Option<Instant>,
}

impl Slot {
    fn running(proc: Proc) -> Slot {
        Slot { proc: Some(proc), started: Some(Instant::now()), crashes: 0, respawn_at: None }
    }

    /// Puts a freshly started child in the slot (a respawn keeps the crash count).
    fn restart(&mut self, proc: Proc) {
        self.proc = Some(proc);
        self.started = Some(Instant::now());
        self.respawn_at = None;
    }

    /// Notices an exit and schedules the respawn; returns the exit description.
    fn reap(&mut self) -> Option<String> {
        let status = self.proc.as_mut()?.try_wait()?;
        self.proc = None;
        let stable = self.started.is_some_and(|t| t.elapsed() > STABLE_AFTER);
        self.crashes = if stable { 1 } else { self.crashes + 1 };
        let delay = match self.crashes {
            0 | 1 => Duration::ZERO,
            n => BACKOFF_START.saturating_mul(1 << (n - 2).min(16)).min(BACKOFF_MAX),
        };
        self.respawn_at = Some(Instant::now() + delay);
        let when = if delay.is_zero() { "now".to_string() } else { format!("in {delay:.1?}") };
        Some(format!("{status}; restarting {when}"))
    }

    fn due(&self) -> bool {
        self.proc.is_none() && self.respawn_at.is_some_and(|t| Instant::now() >= t)
    }
}

/// The running balancer, or the one taking over from it.
struct BalancerProc {
    slot: Slot,
    ready: Option<ReadyPipe>,
    has_reported: bool,
}

/// A balancer started to take over, and what it was started on.
struct Successor {
    balancer: BalancerProc,
    sockets: Sockets,
    since: Instant,
}

/// A node replica: its place in the topology and its process.
struct NodeSlot {
    replica: Replica,
    slot: Slot,
}

/// Everything a lab runs.
pub struct Supervisor {
    exe: PathBuf,
    log_filter: Option<String>,
    snapshot: Snapshot,
    topology: Topology,
    /// CPU caps, or why they are not enforced.
    caps: Result<CpuCaps, String>,
    sockets: Sockets,
    balancer: BalancerProc,
    successor: Option<Successor>,
    nodes: BTreeMap<String, NodeSlot>,
    /// Replaced or removed nodes, serving until their SIGTERM is due.
    retiring: Vec<(String, Proc, Instant)>,
    /// Children sent SIGTERM, SIGKILLed (by group) if they outlast [`STOP_GRACE`].
    stopping: Vec<(String, Proc)>,
    /// Nodes to start once the process with the given pid (the node they replace on the same
    /// port) has exited.
    after_exit: Vec<(Replica, u32)>,
    /// Set once a shutdown completed and cleaned up.
    done: bool,
}

impl Supervisor {
    /// Binds the balancer's sockets, creates the cgroups and publishes `topology`; starts
    /// nothing yet.
    pub fn new(topology: Topology, options: LabOptions) -> anyhow::Result<Supervisor> {
        let sockets = Sockets::bind(&topology)?;
        let snapshot = Snapshot::create()?;
        snapshot.publish(&topology)?;
        let caps = CpuCaps::detect().map_err(|e| format!("{e:#}"));
        Ok(Supervisor {
            exe: options.exe,
            log_filter: options.log_filter,
            snapshot,
            topology,
            caps,
            sockets,
            balancer: BalancerProc { slot: Slot::default(), ready: None, has_reported: false },
            successor: None,
            nodes: BTreeMap::new(),
            retiring: Vec::new(),
            stopping: Vec::new(),
            after_exit: Vec::new(),
            done: false,
        })
    }

    /// Starts every node of the topology.
    pub fn spawn_nodes(&mut self) -> anyhow::Result<()> {
        for r in self.topology.replicas() {
            let proc = self.spawn_node(&r)?;
            self.nodes.insert(r.name.clone(), NodeSlot { replica: r, slot: Slot::running(proc) });
        }
        Ok(())
    }

    /// The addresses the nodes listen on.
    pub fn node_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.values().map(|n| n.replica.listen).collect()
    }

    /// Starts the balancer on the lab's sockets.
    pub fn spawn_balancer(&mut self) -> anyhow::Result<()> {
        let (proc, ready) = self.start_balancer(&self.sockets)?;
        self.balancer = BalancerProc { slot: Slot::running(proc), ready: Some(ready), has_reported: false };
        Ok(())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        self.log_filter.iter().map(|f| ("RUST_LOG", f.clone())).collect()
    }

    fn start_balancer(&self, sockets: &Sockets) -> anyhow::Result<(Proc, ReadyPipe)> {
        let mut args = BalancerArgs::new(self.snapshot.path());
        args.inherited = true;
        args.ready_fd = Some(READY_FD);
        let (ready, write_end) = ReadyPipe::new()?;
        let mut fds = sockets.mappings()?;
        fds.push(write_end);
        let mut argv = vec!["balancer".to_string()];
        argv.extend(args.to_args());
        let proc = Proc::spawn(&self.exe, &argv, fds, &self.env())?;
        Ok((proc, ready))
    }

    fn spawn_node(&self, r: &Replica) -> anyhow::Result<Proc> {
        let mut args = crate::node_args(&self.topology, r, self.snapshot.path());
        args.cgroup = self.cgroups_for(r);
        let mut argv = vec!["node".to_string()];
        argv.extend(args.to_args());
        Proc::spawn(&self.exe, &argv, Vec::new(), &self.env())
    }

    /// The replica's cgroups with its quota set, when caps are enforced; a failure is
    /// reported and the node runs uncapped.
    fn cgroups_for(&self, r: &Replica) -> Vec<PathBuf> {
        let Ok(caps) = &self.caps else { return Vec::new() };
        caps.replica(&r.name, r.cpus)
            .map_err(|e| tracing::warn!("{}: CPU cap not enforced: {e:#}", r.name))
            .unwrap_or_default()
    }

    /// Serves commands until a shutdown completes (or the handle is dropped).
    pub async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        let mut sigchld = signal(SignalKind::child()).ok();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        // While shutting down: the SIGKILL deadline, and who to tell when it is done.
        let mut shutdown: Option<(Instant, Vec<oneshot::Sender<()>>)> = None;
        loop {
            tokio::select! {
                cmd = cmd_rx.recv(), if commands_open => match (cmd, shutdown.as_mut()) {
                    (Some(Command::Shutdown(reply)), None) => {
                        self.stop_all();
                        shutdown = Some((Instant::now() + STOP_GRACE, vec![reply]));
                    }
                    (Some(Command::Shutdown(reply)), Some((_, waiting))) => waiting.push(reply),
                    (None, None) => {
                        commands_open = false;
                        self.stop_all();
                        shutdown = Some((Instant::now() + STOP_GRACE, Vec::new()));
                    }
                    (None, Some(_)) | (Some(Command::Kill), Some(_)) => {
                        commands_open = !cmd_rx.is_closed();
                        for (_, p) in &mut self.stopping {
                            p.kill_group();
                        }
                    }
                    // Nothing else is done once stopping; dropping the reply tells the caller.
                    (Some(_), Some(_)) => {}
                    (Some(cmd), None) => self.answer(cmd),
                },
                _ = recv_signal(&mut sigchld) => {}
                _ = tick.tick() => {}
            }
            self.reap_children();
            if let Some((deadline, waiting)) = &mut shutdown {
                if self.stopping.is_empty() {
                    for reply in waiting.drain(..) {
                        let _ = reply.send(());
                    }
                    break;
                }
                if Instant::now() >= *deadline {
                    tracing::warn!(
                        "{} children still draining after {STOP_GRACE:?}; SIGKILL",
                        self.stopping.len()
                    );
                    for (_, p) in &mut self.stopping {
                        p.kill_group();
                    }
                    *deadline = Instant::now() + Duration::from_secs(3600);
                }
                continue;
            }
            self.manage_children();
        }
        if let Ok(caps) = &self.caps {
            caps.cleanup();
        }
        self.done = true;
    }

    fn answer(&mut self, cmd: Command) {
        match cmd {
            Command::Apply(t, reply) => {
                let _ = reply.send(self.apply(*t));
            }
            Command::View(reply) => {
                let _ = reply.send(self.view());
            }
            Command::Probe(reply) => {
                let mut names: Vec<String> = self.nodes.keys().cloned().collect();
                names.extend(self.after_exit.iter().map(|(r, _)| r.name.clone()));
                let _ = reply.send(Probe {
                    admin: self.topology.balancer.admin,
                    names,
                    balancer_ready: self.balancer.has_reported,
                    settled: self.after_exit.is_empty(),
                    node_addrs: self.node_addrs(),
                });
            }
            Command::CpuUsage(reply) => {
                let usage = match &self.caps {
                    Ok(caps) => self.nodes.keys().filter_map(|n| Some((n.clone(), caps.usage(n)?))).collect(),
                    Err(_) => BTreeMap::new(),
                };
                let _ = reply.send(usage);
            }
            Command::Rejected(why) => {
                if let Err(e) = self.snapshot.note_rejected(&why) {
                    tracing::warn!("{e:#}");
                }
            }
            Command::Shutdown(_) | Command::Kill => {}
        }
    }

    /// Notices children that exited: schedules respawns, completes stops and handovers.
    fn reap_children(&mut self) {
        if let Some(why) = self.balancer.slot.reap() {
            tracing::warn!("balancer exited ({why})");
        }
        if let Some(ready) = &self.balancer.ready {
            if ready.ready() {
                self.balancer.has_reported = true;
                self.balancer.ready = None;
            }
        }
        for (name, node) in self.nodes.iter_mut() {
            if let Some(why) = node.slot.reap() {
                tracing::warn!("node {name} exited ({why})");
            }
        }
        self.watch_successor();
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.retiring).into_iter().partition(|(_, _, at)| now >= *at);
        self.retiring = waiting;
        for (name, mut proc, _) in due {
            proc.terminate();
            self.stopping.push((name, proc));
        }
        let caps = self.caps.as_ref().ok();
        let nodes = &self.nodes;
        self.stopping.retain_mut(|(name, proc)| {
            if proc.overdue(STOP_GRACE) {
                proc.kill_group();
            }
            let Some(status) = proc.try_wait() else { return true };
            tracing::info!("{name} stopped ({status})");
            if let (Some(c), false) = (caps, nodes.contains_key(name.as_str())) {
                c.remove_replica(name);
            }
            false
        });
    }

    /// Promotes a successor balancer that reported ready (the old one drains), or gives up on
    /// one that died or took too long.
    fn watch_successor(&mut self) {
        let Some(succ) = self.successor.as_mut() else { return };
        if let Some(status) = succ.balancer.slot.proc.as_mut().and_then(|p| p.try_wait()) {
            tracing::error!("the new balancer exited before serving ({status}); the running one stays");
            self.successor = None;
            return;
        }
        if succ.balancer.ready.as_ref().is_some_and(|r| r.ready()) {
            let succ = self.successor.take().expect("checked above");
            let old = std::mem::replace(&mut self.balancer, succ.balancer);
            self.balancer.has_reported = true;
            self.balancer.ready = None;
            self.sockets = succ.sockets;
            if let Some(mut p) = old.slot.proc {
                p.terminate();
                self.stopping.push(("the previous balancer".into(), p));
            }
            tracing::info!("the new balancer took over");
            return;
        }
        if succ.since.elapsed() > HANDOVER_WAIT {
            tracing::error!(
                "the new balancer did not become ready within {HANDOVER_WAIT:?}; the running one stays"
            );
            if let Some(mut p) = self.successor.take().and_then(|s| s.balancer.slot.proc) {
                p.kill_group();
                p.terminate();
                self.stopping.push(("the abandoned balancer".into(), p));
            }
        }
    }

    /// Respawns children whose backoff has passed, and starts the nodes that waited for their
    /// predecessor to let go of the port.
    fn manage_children(&mut self) {
        let stopping: Vec<u32> = self.stopping.iter().map(|(_, p)| p.pid()).collect();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.after_exit).into_iter().partition(|(_, pid)| !stopping.contains(pid));
        self.after_exit = waiting;
        for (r, _) in ready {
            match self.spawn_node(&r) {
                Ok(p) => {
                    self.nodes.insert(r.name.clone(), NodeSlot { replica: r, slot: Slot::running(p) });
                }
                Err(e) => tracing::error!("cannot start node {}: {e:#}", r.name),
            }
        }
        if self.balancer.slot.due() {
            match self.start_balancer(&self.sockets) {
                Ok((p, ready)) => {
                    self.balancer.slot.restart(p);
                    self.balancer.ready = Some(ready);
                    self.balancer.has_reported = false;
                }
                Err(e) => tracing::error!("cannot restart the balancer: {e:#}"),
            }
        }
        let due: Vec<Replica> =
            self.nodes.values().filter(|n| n.slot.due()).map(|n| n.replica.clone()).collect();
        for r in due {
            match self.spawn_node(&r) {
                Ok(p) => self.nodes.get_mut(&r.name).expect("listed above").slot.restart(p),
                Err(e) => tracing::error!("cannot restart node {}: {e:#}", r.name),
            }
        }
    }

    /// Applies a valid topology: what can fail (binding new balancer addresses, publishing)
    /// is done before anything changes.
    fn apply(&mut self, new: Topology) -> anyhow::Result<Plan> {
        crate::preflight(&new)?;
        let plan = plan::plan(&self.topology, &new);
        let sockets = if plan.restart_balancer { Some(self.sockets.rebind(&new)?) } else { None };
        if plan.is_empty() {
            self.topology = new;
            return Ok(plan);
        }
        self.snapshot.publish(&new)?;
        self.topology = new;
        for (r, _) in &plan.resize {
            if let Some(n) = self.nodes.get_mut(&r.name) {
                n.replica.workers = r.workers;
            }
        }
        for r in &plan.recap {
            let _ = self.cgroups_for(r);
            if let Some(n) = self.nodes.get_mut(&r.name) {
                n.replica.cpus = r.cpus;
            }
        }
        let retire_at = Instant::now() + RETIRE_DELAY;
        let mut start_now: Vec<Replica> = plan.start.clone();
        for r in &plan.stop {
            // A node still waiting for its predecessor to let go of the port is not started.
            self.after_exit.retain(|(w, _)| w.name != r.name);
            if let Some(proc) = self.nodes.remove(&r.name).and_then(|old| old.slot.proc) {
                self.retiring.push((r.name.clone(), proc, retire_at));
            }
        }
        for r in &plan.restart {
            // Still waiting for its predecessor to let go of the port: wait on, with this edit.
            if let Some(waiting) = self.after_exit.iter_mut().find(|(w, _)| w.name == r.name) {
                waiting.0 = r.clone();
                continue;
            }
            let old = self.nodes.remove(&r.name);
            let same_port = old.as_ref().is_some_and(|o| o.replica.listen == r.listen);
            match old.and_then(|o| o.slot.proc) {
                // The same port (a new distribution): the old node must let go of it first.
                Some(mut proc) if same_port => {
                    proc.terminate();
                    self.after_exit.push((r.clone(), proc.pid()));
                    self.stopping.push((r.name.clone(), proc));
                }
                Some(proc) => {
                    self.retiring.push((r.name.clone(), proc, retire_at));
                    start_now.push(r.clone());
                }
                // Not running (it failed to start, or is between respawns): start it now.
                None => start_now.push(r.clone()),
            }
        }
        for r in &start_now {
            match self.spawn_node(r) {
                Ok(p) => {
                    self.nodes
                        .insert(r.name.clone(), NodeSlot { replica: r.clone(), slot: Slot::running(p) });
                }
                Err(e) => tracing::error!("cannot start node {}: {e:#}", r.name),
            }
        }
        if let Some(sockets) = sockets {
            self.hand_over(sockets);
        }
        Ok(plan)
    }

    /// Starts a balancer with the new settings beside the running one; the loop promotes it
    /// once it reports ready.
    fn hand_over(&mut self, sockets: Sockets) {
        if let Some(mut old) = self.successor.take().and_then(|s| s.balancer.slot.proc) {
            old.terminate();
            self.stopping.push(("a superseded balancer".into(), old));
        }
        match self.start_balancer(&sockets) {
            Ok((proc, ready)) => {
                self.successor = Some(Successor {
                    balancer: BalancerProc {
                        slot: Slot::running(proc),
                        ready: Some(ready),
                        has_reported: false,
                    },
                    sockets,
                    since: Instant::now(),
                });
            }
            Err(e) => tracing::error!("cannot start the new balancer; the running one stays: {e:#}"),
        }
    }

    /// SIGTERM to everything: balancers first, so no new request reaches a draining node.
    fn stop_all(&mut self) {
        let mut procs: Vec<(String, Proc)> = Vec::new();
        procs.extend(self.balancer.slot.proc.take().map(|p| ("balancer".to_string(), p)));
        procs.extend(
            self.successor.take().and_then(|s| s.balancer.slot.proc).map(|p| ("balancer".to_string(), p)),
        );
        for (name, node) in std::mem::take(&mut self.nodes) {
            procs.extend(node.slot.proc.map(|p| (name, p)));
        }
        procs.extend(self.retiring.drain(..).map(|(n, p, _)| (n, p)));
        for (_, p) in &mut procs {
            p.terminate();
        }
        self.stopping.extend(procs);
    }

    fn view(&self) -> View {
        View {
            topology: self.topology.clone(),
            nodes: self
                .nodes
                .values()
                .map(|n| NodeView { replica: n.replica.clone(), pid: n.slot.proc.as_ref().map(Proc::pid) })
                .collect(),
            balancer_pid: self.balancer.slot.proc.as_ref().map(Proc::pid),
            successor_pid: self.successor.as_ref().and_then(|s| s.balancer.slot.proc.as_ref()).map(Proc::pid),
            caps: self.caps.as_ref().map(|c| c.version()).map_err(Clone::clone),
            published: self.snapshot.path().to_path_buf(),
        }
    }
}

/// Waits for the next arrival of `sig`, or forever when it could not be watched.
async fn recv_signal(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl Drop for Supervisor {
    /// A lab dropped without a completed shutdown (its owner panicked, or was cancelled while
    /// starting) takes its children with it: SIGKILL to every process group, then reap.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let procs = self
            .balancer
            .slot
            .proc
            .iter_mut()
            .chain(self.successor.iter_mut().filter_map(|s| s.balancer.slot.proc.as_mut()))
            .chain(self.nodes.values_mut().filter_map(|n| n.slot.proc.as_mut()))
            .chain(self.retiring.iter_mut().map(|(_, p, _)| p))
            .chain(self.stopping.iter_mut().map(|(_, p)| p));
        for p in procs {
            p.kill_group();
            p.wait();
        }
        if let Ok(caps) = &self.caps {
            caps.cleanup();
        }
    }
}
