//! The task that owns a lab's children, in the manner of gunicorn's arbiter one level up: one
//! loop, woken by commands from the [`Lab`](crate::Lab) handle, by SIGCHLD and by a tick, that
//! reaps (`reap_children`), respawns and starts (`manage_children`), retires and stops nodes,
//! restarts nodes one at a time, and hands the balancer over to a successor. Every child is
//! one entry of one map, name → [`Child`], whose [`State`] says where its life is. Nothing in
//! the loop blocks: a stopping child is a deadline the loop checks, so a command (or Ctrl-C in
//! the program around the lab) is answered at once.
//!
//! Processes are started through a [`Launcher`]: real ones in a lab, fakes in the unit tests
//! at the bottom of this file, which drive every decision under a paused clock.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use scalelab_balancer::BalancerArgs;
use scalelab_topology::{Replica, Topology};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::cgroup::CpuCaps;
use crate::child::{Child, Leaving, Role, Stage, State, BALANCER};
use crate::launch::Launcher;
use crate::plan::{self, Plan};
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
            if let Some(sockets) = reap_current(name, child, now) {
                promoted = Some(sockets);
            }
            child.leaving.retain_mut(|l| !reap_leaving(name, l, now));
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

    /// Applies a valid topology from the user. Autoscaled groups keep their current count
    /// (within the new bounds); the others take `replicas` from the file.
    pub fn apply(&mut self, declared: Topology) -> anyhow::Result<Plan> {
        let in_force = crate::autoscale::in_force(&declared, &self.topology);
        let plan = self.apply_in_force(in_force)?;
        self.declared = declared;
        Ok(plan)
    }

    /// An autoscaler's decision: `group` at `replicas` (clamped to its bounds).
    pub fn scale(&mut self, group: &str, replicas: usize) -> anyhow::Result<Plan> {
        let g = self.declared.group(group).with_context(|| format!("no node group {group:?}"))?;
        let a = g.autoscale.as_ref().with_context(|| format!("node group {group:?} does not autoscale"))?;
        let replicas = replicas.clamp(a.min_replicas, a.max_replicas);
        self.apply_in_force(self.topology.with_replicas(group, replicas))
    }

    /// Makes `new` the topology in force: what can fail (the children's own checks, binding
    /// new balancer addresses, publishing) is done before anything changes.
    fn apply_in_force(&mut self, new: Topology) -> anyhow::Result<Plan> {
        crate::preflight(&new)?;
        let plan = plan::plan(&self.topology, &new);
        let sockets = if plan.restart_balancer { Some(self.sockets.rebind(&new)?) } else { None };
        if new != self.topology {
            self.snapshot.publish(&new)?;
            self.topology = new.clone();
            self.topology_tx.send_replace(new);
        }
        let now = Instant::now();
        for (r, _) in &plan.resize {
            self.set_replica(r);
        }
        for r in &plan.recap {
            let _ = self.cgroups_for(r);
            self.set_replica(r);
        }
        for r in &plan.stop {
            self.remove_node(&r.name, now);
        }
        for r in &plan.start {
            self.add_node(r, now);
        }
        for r in &plan.restart {
            self.restart_node(r, now);
        }
        if let Some(sockets) = sockets {
            self.hand_over(sockets, now);
        }
        Ok(plan)
    }

    /// Records a node's new settings (its primary applies workers and caps itself).
    fn set_replica(&mut self, r: &Replica) {
        if let Some(child) = self.children.get_mut(&r.name) {
            child.role = Role::Node(r.clone());
        }
    }

    /// Starts node `r`. A process of the same name still draining on the same port is taken
    /// back when it has not been told to stop yet; when it has, the new one waits for it to
    /// let go of the port.
    fn add_node(&mut self, r: &Replica, now: Instant) {
        let child = self
            .children
            .entry(r.name.clone())
            .or_insert_with(|| Child::new(Role::Node(r.clone()), State::Removed));
        child.role = Role::Node(r.clone());
        if let Some(proc) = child.reclaim(r) {
            tracing::info!("{}: still serving; kept instead of starting another", r.name);
            child.state = State::Running { proc, since: now };
            let _ = self.cgroups_for(r);
            return;
        }
        child.state = State::WaitingForPort;
        if self.port_free_for(&self.children[&r.name], r.listen) {
            self.spawn_child(&r.name, now);
        }
    }

    /// Retires node `name`: it serves on until the balancer has dropped it, then drains.
    fn remove_node(&mut self, name: &str, now: Instant) {
        self.rolling.queue.retain(|r| r.name != name);
        if self.rolling.now.as_ref().is_some_and(|(n, _)| n == name) {
            self.rolling.now = None;
        }
        if let Some(child) = self.children.get_mut(name) {
            child.send_off(State::Removed, Some(now + RETIRE_DELAY), now);
        }
    }

    /// A node's address or distribution changed. On a new port the new process starts at once
    /// and the old one retires like a removed node; on the same port nodes restart one at a
    /// time (see [`Rolling`]).
    fn restart_node(&mut self, r: &Replica, now: Instant) {
        let Some(child) = self.children.get_mut(&r.name) else { return self.add_node(r, now) };
        let same_port = child.replica().is_some_and(|o| o.listen == r.listen);
        if same_port {
            self.rolling.queue.retain(|q| q.name != r.name);
            if matches!(child.state, State::WaitingForPort) {
                child.role = Role::Node(r.clone()); // not started yet: it starts with this edit
            } else {
                self.rolling.queue.push_back(r.clone());
            }
            return;
        }
        child.send_off(State::WaitingForPort, Some(now + RETIRE_DELAY), now);
        child.role = Role::Node(r.clone());
        if self.port_free_for(&self.children[&r.name], r.listen) {
            self.spawn_child(&r.name, now);
        }
    }

    /// Moves the rolling restart along: once the node restarting now serves again, the next
    /// one stops and waits for its port.
    fn advance_rolling(&mut self, now: Instant) {
        if let Some((name, probing)) = self.rolling.now.clone() {
            let child = self.children.get(&name).filter(|c| c.wanted());
            match child.map(|c| (matches!(c.state, State::Running { .. }), c.replica().map(|r| r.listen))) {
                None => self.rolling.now = None, // removed meanwhile
                Some((true, Some(addr))) if !probing => {
                    let probe = self.launcher.serving(&name, addr, self.sockets.admin_local_addr());
                    let tx = self.notes_tx.clone();
                    self.rolling.now = Some((name.clone(), true));
                    tokio::spawn(async move {
                        let ok = probe.await;
                        let _ = tx.send(Note::Serving(name, ok));
                    });
                }
                Some(_) => {}
            }
            if self.rolling.now.is_some() {
                return;
            }
        }
        while let Some(r) = self.rolling.queue.pop_front() {
            let Some(child) = self.children.get_mut(&r.name).filter(|c| c.wanted()) else { continue };
            child.send_off(State::WaitingForPort, None, now);
            child.role = Role::Node(r.clone());
            self.rolling.now = Some((r.name.clone(), false));
            if self.port_free_for(&self.children[&r.name], r.listen) {
                self.spawn_child(&r.name, now);
            }
            return;
        }
    }

    /// Starts a balancer with the new settings beside the running one; it takes over once it
    /// reports ready.
    fn hand_over(&mut self, sockets: Sockets, now: Instant) {
        let Some(child) = self.children.get_mut(BALANCER) else { return };
        let current = match std::mem::replace(&mut child.state, State::WaitingForPort) {
            State::HandingOver { proc, mut next, .. } => {
                next.terminate();
                child.leaving.push(Leaving {
                    proc: next,
                    replica: None,
                    stage: Stage::Stopping { since: now },
                });
                Some(proc)
            }
            State::Starting { proc, .. } | State::Running { proc, .. } => Some(proc),
            other => {
                // Not running: it starts on the new sockets when its backoff is over.
                child.state = other;
                None
            }
        };
        let Some(proc) = current else {
            self.sockets = sockets;
            return;
        };
        match self.launcher.balancer(&BalancerArgs::new(self.snapshot.path()), &sockets) {
            Ok(next) => child.state = State::HandingOver { proc, next, sockets, since: now },
            Err(e) => {
                tracing::error!("cannot start the new balancer; the running one stays: {e:#}");
                child.state = State::Running { proc, since: now };
            }
        }
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

/// Looks at `child`'s serving process (and a successor balancer): a crash schedules the
/// respawn, a readiness byte completes a start or a handover. Returns the sockets of a
/// successor balancer that took over.
fn reap_current(name: &str, child: &mut Child, now: Instant) -> Option<Sockets> {
    let (state, mut promoted) = match std::mem::replace(&mut child.state, State::Removed) {
        State::Starting { mut proc, since } => match proc.try_wait() {
            Some(status) => (crashed(name, child, since, status, now), None),
            None if proc.reported_ready() => (State::Running { proc, since }, None),
            None => (State::Starting { proc, since }, None),
        },
        State::Running { mut proc, since } => match proc.try_wait() {
            Some(status) => (crashed(name, child, since, status, now), None),
            None => (State::Running { proc, since }, None),
        },
        State::HandingOver { mut proc, mut next, sockets, since } => {
            if let Some(status) = next.try_wait() {
                tracing::error!("the new balancer exited before serving ({status}); the running one stays");
                (State::Running { proc, since }, None)
            } else if next.reported_ready() {
                proc.terminate();
                child.leaving.push(Leaving { proc, replica: None, stage: Stage::Stopping { since: now } });
                tracing::info!("the new balancer took over");
                (State::Running { proc: next, since: now }, Some(sockets))
            } else if now.duration_since(since) > HANDOVER_WAIT {
                tracing::error!(
                    "the new balancer did not become ready within {HANDOVER_WAIT:?}; the running one stays"
                );
                next.kill_group();
                child.leaving.push(Leaving {
                    proc: next,
                    replica: None,
                    stage: Stage::Stopping { since: now },
                });
                (State::Running { proc, since }, None)
            } else if let Some(status) = proc.try_wait() {
                tracing::warn!(
                    "the balancer exited ({status}) while a new one starts; the new one takes over"
                );
                (State::Starting { proc: next, since: now }, Some(sockets))
            } else {
                (State::HandingOver { proc, next, sockets, since }, None)
            }
        }
        other => (other, None),
    };
    child.state = state;
    promoted.take()
}

/// The state after a serving child exited: a respawn after its backoff.
fn crashed(
    name: &str,
    child: &mut Child,
    since: Instant,
    status: std::process::ExitStatus,
    now: Instant,
) -> State {
    let delay = child.backoff.record_death(now.duration_since(since), now.into_std());
    let when = if delay.is_zero() { "now".to_string() } else { format!("in {delay:.1?}") };
    tracing::warn!("{name} exited ({status}); restarting {when}");
    State::Crashed { at: now + delay }
}

/// Moves a leaving process along (retiring → stopping → SIGKILL past the grace); true once
/// it has exited.
fn reap_leaving(name: &str, l: &mut Leaving, now: Instant) -> bool {
    match l.stage {
        Stage::Retiring { until } if now >= until => {
            l.proc.terminate();
            l.stage = Stage::Stopping { since: now };
        }
        Stage::Stopping { since } if now.duration_since(since) > STOP_GRACE => {
            tracing::warn!("{name} (pid {}) still draining after {STOP_GRACE:?}; SIGKILL", l.proc.pid());
            l.proc.kill_group();
            l.stage = Stage::Killed;
        }
        _ => {}
    }
    match l.proc.try_wait() {
        Some(status) => {
            tracing::info!("{name} (pid {}) stopped ({status})", l.proc.pid());
            true
        }
        None => false,
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

#[cfg(test)]
mod tests;
