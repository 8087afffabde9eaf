//! The primary process: it owns the node's front door (see `front`) and supervises the workers,
//! in the manner of gunicorn's arbiter. Its verbs are the architecture:
//! - `spawn_worker`: re-exec this binary as `scalelab worker` with its door at fd 3;
//! - `reap_workers`: collect exited workers (`try_wait`) and decide whether they are missed;
//! - `kill_worker`: signal one worker (SIGTERM to drain it, SIGKILL past its deadline);
//! - `manage_workers`: reconcile the wanted worker count against the live workers.
//!
//! One select loop drives them: signals only enqueue (see `signals`), a tick reaps, polls the
//! topology and reconciles. Stopping is SIGTERM to all, then SIGKILL at the grace deadline.
//! Whenever the set of running workers changes the front is told (`sync_front`), before any
//! signal goes out: a worker told to stop is given no new connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use command_fds::CommandFdExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::backoff::{Backoff, Policy};
use crate::config::{WorkerConfig, EXIT_BOOT_FAILED};
use crate::front::{Front, Member};
use crate::lifeline::{self, Lifeline, LIFELINE_FD};
use crate::signals::{self, Sig};
use crate::watch::NodeWatch;
use scalelab_topology::Workload;

/// How often the loop reaps, reconciles and checks deadlines without being woken by a signal.
const TICK: Duration = Duration::from_millis(100);
/// How often the topology file is read.
const TOPOLOGY_POLL: Duration = Duration::from_millis(250);
/// SIGTTIN stops adding workers here: a held-down key must not fork-bomb the machine.
const MAX_WORKERS: usize = 128;
/// How long to wait for SIGKILLed workers to be reaped before giving up on them.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Everything the primary starts with.
#[derive(Debug)]
pub struct Settings {
    /// This binary, re-executed for each worker.
    pub exe: PathBuf,
    pub name: String,
    /// Initial worker count (the topology, if given, overrides it).
    pub workers: usize,
    /// What workers start with (the topology, if given, overrides it).
    pub workload: Workload,
    /// Drain deadline of a stopping worker.
    pub grace: Duration,
    pub topology: Option<NodeWatch>,
    /// How connections reach the workers: bound, not yet started.
    pub front: Front,
    pub lifeline: Lifeline,
    /// Where the node's CPU is accounted, for the workers' `/stats`.
    pub cgroups: Vec<PathBuf>,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Serving; counts towards the wanted number.
    Running,
    /// Sent SIGTERM; draining until the deadline.
    Stopping { deadline: Instant },
    /// Sent SIGKILL; waiting to be reaped.
    Killed,
}

/// A worker process the primary started and has not reaped yet.
#[derive(Debug)]
struct Worker {
    /// Slot 1..=W; a replacement takes the slot of the worker it replaces.
    id: usize,
    pid: u32,
    child: Child,
    started: Instant,
    /// Settings generation it runs with; older ones are replaced one at a time.
    generation: u64,
    state: State,
}

/// Why the loop ended.
enum Exit {
    Signal(Sig),
    Halt(String),
}

/// The supervisor's state.
#[derive(Debug)]
pub struct Arbiter {
    exe: PathBuf,
    name: String,
    addr: SocketAddr,
    /// Held for the node's whole life, even while no worker runs, so connections wait in the
    /// backlog during a respawn instead of being refused.
    front: Front,
    lifeline: Lifeline,
    grace: Duration,
    /// What workers are started with; an edit bumps `generation` and rolls them.
    workload: Workload,
    /// Bumped by SIGHUP and by workload edits: workers of older generations are replaced.
    generation: u64,
    /// The worker count wanted; `manage_workers` makes it so.
    desired: usize,
    workers: Vec<Worker>,
    backoff: HashMap<usize, Backoff>,
    topology: Option<NodeWatch>,
    next_topology_poll: Instant,
    /// Set when a worker failed to boot: respawning it would only fail again.
    halt: Option<String>,
    /// Where the node's CPU is accounted, passed to each worker for `/stats`.
    cgroups: Vec<PathBuf>,
}

impl Arbiter {
    /// A primary that will supervise workers behind `settings.front`.
    pub fn new(settings: Settings) -> anyhow::Result<Arbiter> {
        let addr = settings.front.local_addr().context("reading the bound address")?;
        Ok(Arbiter {
            exe: settings.exe,
            name: settings.name,
            addr,
            front: settings.front,
            lifeline: settings.lifeline,
            cgroups: settings.cgroups,
            grace: settings.grace,
            workload: settings.workload,
            generation: 0,
            desired: settings.workers.clamp(1, MAX_WORKERS),
            workers: Vec::new(),
            backoff: HashMap::new(),
            topology: settings.topology,
            next_topology_poll: Instant::now(),
            halt: None,
        })
    }

    /// Supervises until SIGTERM/SIGINT (then stops the workers and returns `Ok`) or until a
    /// worker fails to boot (then stops the others and returns the reason).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut sig_rx = signals::install()?;
        self.front.start().context("starting the round-robin dispatcher")?;
        self.poll_topology();
        self.manage_workers();
        tracing::info!(
            "node {} listening on {} with {} workers ({} distribution)",
            self.name,
            self.addr,
            self.desired,
            self.front.distribution().as_str()
        );

        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            let first = tokio::select! {
                Some(sig) = sig_rx.recv() => Some(sig),
                _ = tick.tick() => None,
            };
            // Handle everything queued before reaping, so a worker that exited because the
            // whole process group got SIGTERM is not mistaken for a crash.
            let queued = first.into_iter().chain(std::iter::from_fn(|| sig_rx.try_recv().ok()));
            if let Some(stop) = queued.fold(None, |stop, sig| self.on_signal(sig).or(stop)) {
                break Exit::Signal(stop);
            }
            self.poll_topology();
            self.reap_workers();
            if let Some(why) = self.halt.take() {
                break Exit::Halt(why);
            }
            self.manage_workers();
        };

        match exit {
            Exit::Signal(sig) => {
                tracing::info!(
                    "node {} stopping ({}): draining {} workers",
                    self.name,
                    sig.name(),
                    self.workers.len()
                );
                self.stop(&mut sig_rx).await;
                tracing::info!("node {} stopped", self.name);
                Ok(())
            }
            Exit::Halt(why) => {
                tracing::error!("node {} halting: {why}", self.name);
                self.stop(&mut sig_rx).await;
                anyhow::bail!("node {} halted: {why}", self.name)
            }
        }
    }

    /// Applies one queued signal; returns it if it means "stop".
    fn on_signal(&mut self, sig: Sig) -> Option<Sig> {
        match sig {
            Sig::Term | Sig::Int => return Some(sig),
            Sig::Ttin => self.set_desired(self.desired + 1, sig.name()),
            Sig::Ttou => self.set_desired(self.desired.saturating_sub(1), sig.name()),
            Sig::Hup => {
                self.generation += 1;
                tracing::info!("SIGHUP: replacing every worker, one at a time");
            }
            Sig::Chld => {}
        }
        None
    }

    fn set_desired(&mut self, wanted: usize, why: &str) {
        let wanted = wanted.clamp(1, MAX_WORKERS);
        if wanted == self.desired {
            tracing::info!("{why}: keeping {} workers (allowed: 1 to {MAX_WORKERS})", self.desired);
        } else {
            tracing::info!("{why}: workers {} -> {wanted}", self.desired);
            self.desired = wanted;
        }
    }

    /// Reads the topology file when due and applies what changed for this node's group.
    fn poll_topology(&mut self) {
        let now = Instant::now();
        if now < self.next_topology_poll {
            return;
        }
        self.next_topology_poll = now + TOPOLOGY_POLL;
        let Some(watch) = self.topology.as_mut() else { return };
        let Some(change) = watch.poll() else { return };
        let why = format!("topology group {}", watch.group());
        if let Some(workers) = change.workers {
            self.set_desired(workers, &why);
        }
        if let Some(workload) = change.workload.filter(|w| *w != self.workload) {
            tracing::info!(
                "topology workload: {:?} -> {:?}; replacing workers one at a time",
                self.workload,
                workload
            );
            self.workload = workload;
            self.generation += 1;
        }
    }

    /// Starts worker `id`: this binary again, as `scalelab worker`, with its door (listening
    /// socket or handoff) at fd 3, the lifeline at fd 4 and its settings in the environment.
    fn spawn_worker(&mut self, id: usize) -> anyhow::Result<()> {
        let config = WorkerConfig {
            id,
            node: self.name.clone(),
            workload: self.workload,
            grace: self.grace,
            lifeline_fd: LIFELINE_FD,
            distribution: self.front.distribution(),
            cgroups: self.cgroups.clone(),
        };
        let mut cmd = Command::new(&self.exe);
        cmd.arg("worker").envs(config.to_env()).stdin(Stdio::null());
        let (door, handoff) = self.front.door(id, &mut cmd).context("preparing the worker's fd 3")?;
        let fds = vec![door, self.lifeline.pass_to_child().context("duplicating the lifeline")?];
        cmd.fd_mappings(fds).context("mapping the worker's descriptors")?;
        lifeline::arm_parent_death_signal(&mut cmd);
        let child = cmd.spawn().with_context(|| format!("starting {} worker", self.exe.display()))?;
        drop(cmd); // closes the primary's duplicates of the worker's descriptors
        let pid = child.id();
        tracing::info!(pid, "spawned worker {id}");
        self.front.opened(id, pid, handoff);
        self.workers.push(Worker {
            id,
            pid,
            child,
            started: Instant::now(),
            generation: self.generation,
            state: State::Running,
        });
        self.sync_front();
        Ok(())
    }

    /// Tells the front which workers run now (see `front::Front::sync`).
    fn sync_front(&mut self) {
        let members: Vec<Member> = self
            .workers
            .iter()
            .map(|w| Member { id: w.id, pid: w.pid, running: w.state == State::Running })
            .collect();
        self.front.sync(&members, self.desired);
    }

    /// Spawns worker `id`; a failure is logged and backs the slot off like a quick crash.
    fn spawn_or_back_off(&mut self, id: usize) -> bool {
        match self.spawn_worker(id) {
            Ok(()) => true,
            Err(e) => {
                let delay = self
                    .backoff
                    .entry(id)
                    .or_insert_with(|| Backoff::new(Policy::WORKER))
                    .record_death(Duration::ZERO, Instant::now());
                tracing::error!("cannot spawn worker {id}, retrying in {delay:?}: {e:#}");
                false
            }
        }
    }

    /// Collects every exited worker. A running worker that exited is missed: its slot is
    /// respawned by `manage_workers` after its backoff, unless it failed to boot.
    fn reap_workers(&mut self) {
        let now = Instant::now();
        let mut reaped = false;
        let mut i = 0;
        while i < self.workers.len() {
            match self.workers[i].child.try_wait() {
                Ok(None) => i += 1,
                Ok(Some(status)) => {
                    let worker = self.workers.remove(i);
                    self.on_exit(worker, status, now);
                    reaped = true;
                }
                Err(e) => {
                    tracing::warn!(
                        worker = self.workers[i].id,
                        pid = self.workers[i].pid,
                        "cannot poll worker: {e}"
                    );
                    i += 1;
                }
            }
        }
        if reaped {
            self.sync_front();
        }
    }

    fn on_exit(&mut self, w: Worker, status: ExitStatus, now: Instant) {
        let uptime = now.saturating_duration_since(w.started);
        let how = describe(status);
        if w.state != State::Running {
            tracing::info!(worker = w.id, pid = w.pid, "worker {} stopped ({how})", w.id);
            return;
        }
        if status.code() == Some(EXIT_BOOT_FAILED) {
            self.halt = Some(format!("worker {} (pid {}) failed to boot; not respawning it", w.id, w.pid));
            return;
        }
        let backoff = self.backoff.entry(w.id).or_insert_with(|| Backoff::new(Policy::WORKER));
        let delay = backoff.record_death(uptime, now);
        let when = if delay.is_zero() { "now".to_string() } else { format!("in {delay:?}") };
        let crash_loop = match backoff.quick_deaths() {
            n if n > 1 => format!(" (crash loop: {n} quick deaths in a row)"),
            _ => String::new(),
        };
        tracing::warn!(
            worker = w.id,
            pid = w.pid,
            "worker {} died ({how}) after {:.1}s; respawning {when}{crash_loop}",
            w.id,
            uptime.as_secs_f64()
        );
    }

    /// Sends `sig` to the worker at `index`; SIGTERM starts its grace period, SIGKILL ends it.
    /// The front stops giving it connections first.
    fn kill_worker(&mut self, index: usize, sig: Signal) {
        self.workers[index].state = match sig {
            Signal::SIGKILL => State::Killed,
            _ => State::Stopping { deadline: Instant::now() + self.grace },
        };
        self.sync_front();
        let w = &self.workers[index];
        if let Err(e) = kill(Pid::from_raw(w.pid as i32), sig) {
            tracing::warn!(worker = w.id, pid = w.pid, "cannot send {sig} to worker: {e}");
        }
    }

    /// Reconciles the live workers with the wanted count, replaces outdated workers one at a
    /// time, and SIGKILLs workers whose grace period is over.
    fn manage_workers(&mut self) {
        let now = Instant::now();
        // Too many: drain the highest slots.
        let surplus: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].state == State::Running && self.workers[i].id > self.desired)
            .collect();
        for i in surplus {
            tracing::info!(
                worker = self.workers[i].id,
                pid = self.workers[i].pid,
                "stopping worker {}",
                self.workers[i].id
            );
            self.kill_worker(i, Signal::SIGTERM);
        }
        // Too few: fill every empty slot whose backoff allows it.
        for id in 1..=self.desired {
            let live = self.workers.iter().any(|w| w.id == id && w.state == State::Running);
            let ready = self.backoff.get(&id).is_none_or(|b| b.ready(now));
            if !live && ready {
                self.spawn_or_back_off(id);
            }
        }
        // Outdated: start the replacement first, then drain the old worker; one per pass.
        if let Some(i) =
            self.workers.iter().position(|w| w.state == State::Running && w.generation < self.generation)
        {
            let (id, pid) = (self.workers[i].id, self.workers[i].pid);
            if self.spawn_or_back_off(id) {
                tracing::info!(worker = id, pid, "replacing worker {id} (outdated settings)");
                self.kill_worker(i, Signal::SIGTERM);
            }
        }
        // Overdue: the grace period is over (gunicorn's murder_workers).
        let overdue: Vec<usize> = (0..self.workers.len())
            .filter(|&i| matches!(self.workers[i].state, State::Stopping { deadline } if now >= deadline))
            .collect();
        for i in overdue {
            tracing::warn!(
                worker = self.workers[i].id,
                pid = self.workers[i].pid,
                "grace period over; SIGKILL"
            );
            self.kill_worker(i, Signal::SIGKILL);
        }
    }

    /// Stops every worker: SIGTERM, wait for them to drain until the grace deadline (a second
    /// SIGTERM/SIGINT cuts it short), then SIGKILL what is left.
    async fn stop(&mut self, sig_rx: &mut UnboundedReceiver<Sig>) {
        let running: Vec<usize> =
            (0..self.workers.len()).filter(|&i| self.workers[i].state == State::Running).collect();
        for i in running {
            self.kill_worker(i, Signal::SIGTERM);
        }
        let mut deadline = Instant::now() + self.grace;
        let mut give_up = None;
        loop {
            self.reap_workers();
            if self.workers.is_empty() {
                return;
            }
            let now = Instant::now();
            if now >= deadline && give_up.is_none() {
                tracing::warn!("{} workers still draining at the deadline; SIGKILL", self.workers.len());
                for i in 0..self.workers.len() {
                    if self.workers[i].state != State::Killed {
                        self.kill_worker(i, Signal::SIGKILL);
                    }
                }
                give_up = Some(now + KILL_WAIT);
            }
            if give_up.is_some_and(|t| now >= t) {
                let pids: Vec<u32> = self.workers.iter().map(|w| w.pid).collect();
                tracing::error!("workers {pids:?} survived SIGKILL for {KILL_WAIT:?}; leaving them");
                return;
            }
            tokio::select! {
                Some(sig) = sig_rx.recv() => {
                    if matches!(sig, Sig::Term | Sig::Int) && give_up.is_none() {
                        tracing::warn!("{} again: not waiting for the drain", sig.name());
                        deadline = now;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }
}

/// `exit code 0`, `signal 9 (SIGKILL)`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(name) => format!("signal {sig} ({name})"),
            Err(_) => format!("signal {sig}"),
        },
        (None, None) => status.to_string(),
    }
}
