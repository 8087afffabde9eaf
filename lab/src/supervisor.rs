//! The task that owns a lab's children, in the manner of gunicorn's arbiter one level up: one
//! loop, woken by commands from the [`Lab`](crate::Lab) handle, by SIGCHLD and by a tick, that
//! reaps (`reap_children`), respawns and starts (`manage_children`), retires and stops nodes,
//! restarts nodes one at a time, and hands the balancer over to a successor. Every child is
//! one entry of one map, name → [`Child`], whose [`State`] says where its life is. Nothing in
//! the loop blocks: a stopping child is a deadline the loop checks, so a command (or Ctrl-C in
//! the program around the lab) is answered at once.
//!
//! Processes are started through a [`Launcher`]: real ones in a lab, fakes in the unit tests
//! (`supervisor/tests.rs`), which drive every decision under a paused clock.
//!
//! - this file: the loop, the commands, reaping and respawning, shutdown;
//! - `edits`: what an edit or an autoscaler's count does to the children;
//! - `reap`: what an exit, a readiness byte or a deadline means for one child.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use scalelab_balancer::BalancerArgs;
use scalelab_topology::{Replica, Topology};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::cgroup::CpuCaps;
use crate::child::{Child, Role, Stage, State, BALANCER};
use crate::launch::Launcher;
use crate::plan::Plan;
use crate::snapshot::Snapshot;
use crate::sockets::Sockets;
use crate::{NodeView, View};

/// How long a stopping child may drain before its process group is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// A removed node keeps serving this long, so the balancer (which re-reads the topology about
/// every second) drops it before it stops accepting.
const RETIRE_DELAY: Duration = Duration::from_millis(2500);
/// How long a successor balancer may take to report ready before the handover is abandoned.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);
/// How often the loop looks at its children without being woken.
const TICK: Duration = Duration::from_millis(100);
/// How often it looks while a node waits for its port: the most a restart on the same port
/// adds to the time the old process takes to let go.
const PORT_TICK: Duration = Duration::from_millis(10);

/// What the [`Lab`](crate::Lab) handle asks of the supervisor.
pub enum Command {
    /// A topology from the user: applied with autoscaled groups kept at their current count.
    Apply(Box<Topology>, oneshot::Sender<anyhow::Result<Plan>>),
    /// An autoscaler's decision: run `replicas` nodes of `group` (clamped to its bounds).
    Scale {
        group: String,
        replicas: usize,
        reply: oneshot::Sender<anyhow::Result<Plan>>,
    },
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
    /// The node names the balancer should list: every node of the topology in force.
    pub names: Vec<String>,
    /// The balancer reported ready.
    pub balancer_ready: bool,
    /// No node waits to restart (a distribution change is done).
    pub settled: bool,
    /// Where the running nodes listen.
    pub node_addrs: Vec<SocketAddr>,
}

/// What the supervisor's side tasks tell it.
#[derive(Debug)]
enum Note {
    /// The node of the rolling restart serves again (`false`: it did not within its wait).
    Serving(String, bool),
}

/// A restart of nodes on their own ports (a `distribution` edit), one node at a time, each
/// serving again before the next one stops.
#[derive(Default)]
struct Rolling {
    queue: VecDeque<Replica>,
    /// The node restarting now, and whether its serving probe runs.
    now: Option<(String, bool)>,
}

/// Everything a lab runs.
pub struct Supervisor {
    launcher: Box<dyn Launcher>,
    snapshot: Snapshot,
    /// The topology the user gave last (an autoscaled group's `replicas` is only its start).
    declared: Topology,
    /// The topology in force: `declared` with autoscaled groups at their current count. It is
    /// what the children read, and what the autoscaler watches.
    topology: Topology,
    topology_tx: watch::Sender<Topology>,
    /// CPU caps, or why they are not enforced.
    caps: Result<CpuCaps, String>,
    sockets: Sockets,
    /// Every child by name: the balancer and each node replica.
    children: BTreeMap<String, Child>,
    rolling: Rolling,
    notes_tx: mpsc::UnboundedSender<Note>,
    notes_rx: Option<mpsc::UnboundedReceiver<Note>>,
    /// Set once a shutdown completed and cleaned up.
    done: bool,
}

impl Supervisor {
    /// Binds the balancer's sockets and publishes `topology`; starts nothing yet.
    pub fn new(
        topology: Topology,
        launcher: Box<dyn Launcher>,
        caps: Result<CpuCaps, String>,
    ) -> anyhow::Result<Supervisor> {
        let sockets = Sockets::bind(&topology)?;
        let snapshot = Snapshot::create()?;
        snapshot.publish(&topology)?;
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        Ok(Supervisor {
            launcher,
            snapshot,
            declared: topology.clone(),
            topology_tx: watch::channel(topology.clone()).0,
            topology,
            caps,
            sockets,
            children: BTreeMap::new(),
            rolling: Rolling::default(),
            notes_tx,
            notes_rx: Some(notes_rx),
            done: false,
        })
    }

    /// Follows the topology in force (for an autoscaler).
    pub fn topology_rx(&self) -> watch::Receiver<Topology> {
        self.topology_tx.subscribe()
    }

    /// Where the balancer's admin listener is bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.sockets.admin_local_addr()
    }

    /// The lab's private directory (the published topology, notes for the balancer).
    pub fn lab_dir(&self) -> PathBuf {
        self.snapshot.dir().to_path_buf()
    }

    /// Starts every node of the topology.
    pub fn spawn_nodes(&mut self) {
        let now = Instant::now();
        for r in self.topology.replicas() {
            self.add_node(&r, now);
        }
    }

    /// The addresses the nodes listen on.
    pub fn node_addrs(&self) -> Vec<SocketAddr> {
        self.nodes().filter(|c| c.proc().is_some()).filter_map(|c| c.replica()).map(|r| r.listen).collect()
    }

    /// Starts the balancer on the lab's sockets.
    pub fn spawn_balancer(&mut self) {
        let now = Instant::now();
        self.children.insert(BALANCER.to_string(), Child::new(Role::Balancer, State::WaitingForPort));
        self.spawn_child(BALANCER, now);
    }

    /// The node children still in the topology.
    fn nodes(&self) -> impl Iterator<Item = &Child> {
        self.children.values().filter(|c| c.wanted() && c.replica().is_some())
    }

    /// Serves commands until a shutdown completes (or the handle is dropped).
    pub async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>) {
        let mut sigchld = signal(SignalKind::child()).ok();
        let mut notes_rx = self.notes_rx.take().expect("run is called once");
        let mut commands_open = true;
        // While shutting down: who to tell when it is done.
        let mut shutdown: Option<Vec<oneshot::Sender<()>>> = None;
        loop {
            let tick = if self.waiting_for_port() { PORT_TICK } else { TICK };
            tokio::select! {
                cmd = cmd_rx.recv(), if commands_open => match (cmd, shutdown.as_mut()) {
                    (Some(Command::Shutdown(reply)), None) => {
                        self.stop_all(Instant::now());
                        shutdown = Some(vec![reply]);
                    }
                    (Some(Command::Shutdown(reply)), Some(waiting)) => waiting.push(reply),
                    (None, None) => {
                        commands_open = false;
                        self.stop_all(Instant::now());
                        shutdown = Some(Vec::new());
                    }
                    (None, Some(_)) | (Some(Command::Kill), Some(_)) => {
                        commands_open = !cmd_rx.is_closed();
                        self.kill_all();
                    }
                    // Nothing else is done once stopping; dropping the reply tells the caller.
                    (Some(_), Some(_)) => {}
                    (Some(cmd), None) => self.answer(cmd),
                },
                Some(note) = notes_rx.recv() => self.on_note(note),
                _ = recv_signal(&mut sigchld) => {}
                _ = tokio::time::sleep(tick) => {}
            }
            let now = Instant::now();
            self.reap_children(now);
            if let Some(waiting) = &mut shutdown {
                if self.children.is_empty() {
                    for reply in waiting.drain(..) {
                        let _ = reply.send(());
                    }
                    break;
                }
                continue;
            }
            self.manage_children(now);
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
            Command::Scale { group, replicas, reply } => {
                let _ = reply.send(self.scale(&group, replicas));
            }
            Command::View(reply) => {
                let _ = reply.send(self.view());
            }
            Command::Probe(reply) => {
                let _ = reply.send(self.probe());
            }
            Command::CpuUsage(reply) => {
                let usage = match &self.caps {
                    Ok(caps) => self
                        .nodes()
                        .filter_map(|c| c.replica())
                        .filter_map(|r| Some((r.name.clone(), caps.usage(&r.name)?)))
                        .collect(),
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

    fn on_note(&mut self, note: Note) {
        match note {
            Note::Serving(name, ok) => {
                if self.rolling.now.as_ref().is_some_and(|(n, _)| *n == name) {
                    if !ok {
                        tracing::warn!(
                            "{name} is not serving after its restart; restarting the next node anyway"
                        );
                    }
                    self.rolling.now = None;
                }
            }
        }
    }

    fn probe(&self) -> Probe {
        let balancer_ready = self
            .children
            .get(BALANCER)
            .is_some_and(|b| matches!(b.state, State::Running { .. } | State::HandingOver { .. }));
        Probe {
            admin: self.admin_addr(),
            names: self.nodes().filter_map(|c| c.replica()).map(|r| r.name.clone()).collect(),
            balancer_ready,
            settled: !self.waiting_for_port() && self.rolling.queue.is_empty() && self.rolling.now.is_none(),
            node_addrs: self.node_addrs(),
        }
    }

    fn waiting_for_port(&self) -> bool {
        self.children.values().any(|c| matches!(c.state, State::WaitingForPort))
    }

    /// Notices children that exited: schedules respawns, completes stops and handovers, and
    /// forgets removed children whose last process is gone.
    fn reap_children(&mut self, now: Instant) {
        let mut promoted = None;
        for (name, child) in self.children.iter_mut() {
            if let Some(sockets) = reap::reap_current(name, child, now) {
                promoted = Some(sockets);
            }
            child.leaving.retain_mut(|l| !reap::reap_leaving(name, l, now));
        }
        if let Some(sockets) = promoted {
            self.sockets = sockets;
        }
        let gone: Vec<String> = self
            .children
            .iter()
            .filter(|(_, c)| !c.wanted() && c.leaving.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.children.remove(&name);
            if let (Ok(caps), false) = (&self.caps, name == BALANCER) {
                caps.remove_replica(&name);
            }
        }
    }

    /// Starts children whose backoff has passed and nodes whose port is free again, and moves
    /// the rolling restart along.
    fn manage_children(&mut self, now: Instant) {
        let due: Vec<String> = self
            .children
            .iter()
            .filter(|(_, c)| match &c.state {
                State::Crashed { at } => now >= *at,
                State::WaitingForPort => c.replica().is_none_or(|r| self.port_free_for(c, r.listen)),
                _ => false,
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.spawn_child(&name, now);
        }
        self.advance_rolling(now);
    }

    /// Whether `child` may bind `addr`: none of its own earlier processes holds it, or the
    /// ones that do have let go of it already.
    fn port_free_for(&self, child: &Child, addr: SocketAddr) -> bool {
        !child.holds(addr) || self.launcher.port_free(addr)
    }

    /// Starts child `name` as its role says; a failure backs it off like a quick crash.
    fn spawn_child(&mut self, name: &str, now: Instant) {
        let Some(role) = self.children.get(name).map(|c| c.role.clone()) else { return };
        let result = match &role {
            Role::Node(r) => {
                let mut args = crate::node_args(&self.topology, r, self.snapshot.path());
                args.cgroup = self.cgroups_for(r);
                self.launcher.node(&args)
            }
            Role::Balancer => self.launcher.balancer(&BalancerArgs::new(self.snapshot.path()), &self.sockets),
        };
        let child = self.children.get_mut(name).expect("looked up above");
        child.state = match (result, role) {
            (Ok(proc), Role::Balancer) => State::Starting { proc, since: now },
            (Ok(proc), Role::Node(_)) => State::Running { proc, since: now },
            (Err(e), _) => {
                let delay = child.backoff.record_death(Duration::ZERO, now.into_std());
                tracing::error!("cannot start {name}, retrying in {delay:.1?}: {e:#}");
                State::Crashed { at: now + delay }
            }
        };
    }

    /// The replica's cgroups with its quota set, when caps are enforced; a failure is
    /// reported and the node runs uncapped.
    fn cgroups_for(&self, r: &Replica) -> Vec<PathBuf> {
        let Ok(caps) = &self.caps else { return Vec::new() };
        caps.replica(&r.name, r.cpus)
            .map_err(|e| tracing::warn!("{}: CPU cap not enforced: {e:#}", r.name))
            .unwrap_or_default()
    }

    /// SIGTERM to everything: the balancer first, so no new request reaches a draining node.
    fn stop_all(&mut self, now: Instant) {
        self.rolling = Rolling::default();
        let mut names: Vec<String> = self.children.keys().cloned().collect();
        names.sort_by_key(|n| n != BALANCER);
        for name in names {
            let child = self.children.get_mut(&name).expect("listed above");
            child.send_off(State::Removed, None, now);
            for l in &mut child.leaving {
                if let Stage::Retiring { .. } = l.stage {
                    l.proc.terminate();
                    l.stage = Stage::Stopping { since: now };
                }
            }
        }
    }

    /// SIGKILL to every process group left.
    fn kill_all(&mut self) {
        for child in self.children.values_mut() {
            for p in child.all_procs() {
                p.kill_group();
            }
        }
    }

    fn view(&self) -> View {
        View {
            topology: self.topology.clone(),
            nodes: self
                .nodes()
                .map(|c| NodeView { replica: c.replica().expect("a node").clone(), pid: c.pid() })
                .collect(),
            balancer_pid: self.children.get(BALANCER).and_then(Child::pid),
            successor_pid: self.children.get(BALANCER).and_then(|b| match &b.state {
                State::HandingOver { next, .. } => Some(next.pid()),
                _ => None,
            }),
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
        for child in self.children.values_mut() {
            for p in child.all_procs() {
                p.kill_group();
                p.wait();
            }
        }
        if let Ok(caps) = &self.caps {
            caps.cleanup();
        }
    }
}

mod edits;
mod reap;
#[cfg(test)]
mod tests;
