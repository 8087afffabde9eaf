//! `scalelab up`: the whole lab on one machine. Starts every node and then the balancer as
//! child processes (see `ready` for the order), caps each node's CPU with a cgroup, watches the
//! topology file and applies edits live, respawns what crashes, and on Ctrl-C/SIGTERM stops
//! everything it started.
//!
//! Who applies what on an edit: node primaries watch the file for their own worker count; the
//! balancer watches it for the backend set; `up` starts and stops nodes, re-caps CPU, and
//! restarts the balancer when its own section changes.

mod cgroup;
mod plan;
mod process;
mod ready;
mod table;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use scalelab_topology::{Replica, Topology, TopologyWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::UpArgs;
use cgroup::CpuCaps;
use process::Proc;

/// How long a stopping child may drain before its process group is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// A removed node keeps serving this long, so the balancer (which re-reads the file about
/// every second) drops it before it stops accepting.
const RETIRE_DELAY: Duration = Duration::from_millis(2500);
/// How long start-up waits for the nodes to listen, then for the balancer to see them healthy.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Respawn backoff for a child that keeps crashing: 0.5 s doubling up to 30 s.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before dying is not in a crash loop; its backoff resets.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Runs the lab until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let file = std::path::absolute(&args.topology)
        .with_context(|| format!("bad topology path {}", args.topology.display()))?;
    let topology = Topology::load(&file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the supervisor runtime")?;
    runtime.block_on(supervise(file, topology))?;
    Ok(ExitCode::SUCCESS)
}

async fn supervise(file: PathBuf, topology: Topology) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut lab = Lab::start(file, topology)?;
    let started = tokio::select! {
        r = lab.wait_ready() => Some(r),
        _ = sigint.recv() => None,
        _ = sigterm.recv() => None,
    };
    let result = match started {
        Some(Ok(())) => {
            println!("{}", table::render(&lab.view()));
            run_lab(&mut lab, &mut sigint, &mut sigterm).await;
            Ok(())
        }
        Some(Err(e)) => Err(e),
        None => Ok(()), // stopped while starting
    };
    println!("scalelab up: stopping");
    lab.shutdown();
    result
}

/// Supervises the started lab until a signal: reaps and respawns children, applies edits.
async fn run_lab(
    lab: &mut Lab,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) {
    let mut watch = TopologyWatch::new(&lab.file);
    let _ = watch.poll(); // the content just loaded
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = sigint.recv() => return,
            _ = sigterm.recv() => return,
            _ = tick.tick() => {
                lab.reap_children();
                lab.manage_children();
                match watch.poll() {
                    Some(Ok(t)) => lab.apply(t),
                    Some(Err(e)) => eprintln!("scalelab up: {e}\nscalelab up: keeping the running topology"),
                    None => {}
                }
            }
        }
    }
}

/// A supervised child and its respawn state.
#[derive(Debug)]
struct Slot {
    proc: Option<Proc>,
    started: Instant,
    /// Consecutive quick crashes, for the backoff.
    crashes: u32,
    /// When a crashed child is due to start again.
    respawn_at: Option<Instant>,
}

impl Slot {
    fn running(proc: Proc) -> Slot {
        Slot { proc: Some(proc), started: Instant::now(), crashes: 0, respawn_at: None }
    }

    /// A slot whose child is not started yet (and is not due to be).
    fn idle() -> Slot {
        Slot { proc: None, started: Instant::now(), crashes: 0, respawn_at: None }
    }

    /// Notices an exit and schedules the respawn; returns the exit description.
    fn reap(&mut self) -> Option<String> {
        let status = self.proc.as_mut()?.try_wait()?;
        self.proc = None;
        self.crashes = if self.started.elapsed() > STABLE_AFTER { 1 } else { self.crashes + 1 };
        let delay =
            BACKOFF_START.saturating_mul(1 << self.crashes.min(16).saturating_sub(1)).min(BACKOFF_MAX);
        self.respawn_at = Some(Instant::now() + delay);
        Some(format!("{status}; restarting in {delay:.1?}"))
    }

    fn due(&self) -> bool {
        self.proc.is_none() && self.respawn_at.is_some_and(|t| Instant::now() >= t)
    }
}

/// Everything `up` runs.
struct Lab {
    file: PathBuf,
    topology: Topology,
    /// CPU caps, or why they are not enforced.
    caps: Result<CpuCaps, String>,
    balancer: Slot,
    nodes: BTreeMap<String, (Replica, Slot)>,
    /// Nodes removed from the topology, with the time their SIGTERM is due.
    retiring: Vec<(String, Proc, Instant)>,
}

impl Lab {
    /// Starts every node; the balancer follows in `wait_ready`, once the nodes listen.
    fn start(file: PathBuf, topology: Topology) -> anyhow::Result<Lab> {
        let caps = CpuCaps::detect().map_err(|e| format!("{e:#}"));
        let balancer = Slot::idle();
        let mut lab = Lab { file, topology, caps, balancer, nodes: BTreeMap::new(), retiring: Vec::new() };
        for r in lab.topology.replicas() {
            lab.spawn_node(r)?;
        }
        Ok(lab)
    }

    fn spawn_node(&mut self, r: Replica) -> anyhow::Result<()> {
        let proc = spawn_node(&self.file, &self.topology, &r, self.cgroup_for(&r))?;
        self.nodes.insert(r.name.clone(), (r, Slot::running(proc)));
        Ok(())
    }

    /// The replica's cgroup, when caps are enforced; a failure is reported and the node runs
    /// uncapped.
    fn cgroup_for(&self, r: &Replica) -> Option<PathBuf> {
        let caps = self.caps.as_ref().ok()?;
        caps.replica(&r.name, r.cpus)
            .map_err(|e| eprintln!("scalelab up: {}: CPU cap not enforced: {e:#}", r.name))
            .ok()
    }

    /// Waits for the nodes to listen, starts the balancer, and waits until it listens and sees
    /// every node healthy, so the first request the user sends is balanced over all of them.
    /// A wait that runs out is reported and start-up goes on; only a failed spawn is an error.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let nodes: Vec<SocketAddr> = self.nodes.values().map(|(r, _)| r.listen).collect();
        for addr in ready::listening(&nodes, READY_WAIT).await {
            eprintln!("scalelab up: node {addr} is not accepting connections after {READY_WAIT:?}");
        }
        restart_slot(&mut self.balancer, spawn_balancer(&self.file)?);
        let b = &self.topology.balancer;
        // The admin listener needs no wait of its own: `balancer_sees` retries until it answers.
        for addr in ready::listening(&[b.listen], READY_WAIT).await {
            eprintln!("scalelab up: balancer {addr} is not accepting connections after {READY_WAIT:?}");
        }
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        if let Err(e) = ready::balancer_sees(b.admin, &names, READY_WAIT).await {
            eprintln!("scalelab up: the balancer does not see every node healthy yet: {e}");
        }
        Ok(())
    }

    /// Notices children that exited and schedules their respawn.
    fn reap_children(&mut self) {
        if let Some(why) = self.balancer.reap() {
            eprintln!("scalelab up: balancer exited ({why})");
        }
        for (name, (_, slot)) in self.nodes.iter_mut() {
            if let Some(why) = slot.reap() {
                eprintln!("scalelab up: node {name} exited ({why})");
            }
        }
        let caps = self.caps.as_ref().ok();
        self.retiring.retain_mut(|(name, proc, due)| {
            if Instant::now() >= *due {
                proc.terminate();
            }
            if proc.overdue(STOP_GRACE) {
                proc.kill_group();
            }
            let exited = proc.try_wait().is_some();
            if exited {
                println!("scalelab up: node {name} stopped");
                if let Some(c) = caps {
                    c.remove_replica(name);
                }
            }
            !exited
        });
    }

    /// Respawns children whose backoff has passed.
    fn manage_children(&mut self) {
        if self.balancer.due() {
            match spawn_balancer(&self.file) {
                Ok(p) => restart_slot(&mut self.balancer, p),
                Err(e) => eprintln!("scalelab up: {e:#}"),
            }
        }
        let due: Vec<Replica> =
            self.nodes.values().filter(|(_, s)| s.due()).map(|(r, _)| r.clone()).collect();
        for r in due {
            let cgroup = self.cgroup_for(&r);
            match spawn_node(&self.file, &self.topology, &r, cgroup) {
                Ok(p) => restart_slot(&mut self.nodes.get_mut(&r.name).expect("listed above").1, p),
                Err(e) => eprintln!("scalelab up: {e:#}"),
            }
        }
    }

    /// Applies a valid edit.
    fn apply(&mut self, new: Topology) {
        let plan = plan::plan(&self.topology, &new);
        self.topology = new;
        if plan.is_empty() {
            return;
        }
        for (r, old) in &plan.resize {
            println!("scalelab up: {}: workers {old} -> {}", r.name, r.workers);
            self.nodes.entry(r.name.clone()).and_modify(|(have, _)| have.workers = r.workers);
        }
        for r in &plan.recap {
            println!("scalelab up: {}: cpus -> {}", r.name, table::cpus(r.cpus));
            let _ = self.cgroup_for(r);
            self.nodes.entry(r.name.clone()).and_modify(|(have, _)| have.cpus = r.cpus);
        }
        for r in &plan.stop {
            if let Some((_, slot)) = self.nodes.remove(&r.name) {
                println!("scalelab up: {}: removed; stopping after the balancer drops it", r.name);
                if let Some(p) = slot.proc {
                    self.retiring.push((r.name.clone(), p, Instant::now() + RETIRE_DELAY));
                }
            }
        }
        for r in &plan.restart {
            println!("scalelab up: {}: restarting ({})", r.name, r.listen);
            if let Some((_, mut slot)) = self.nodes.remove(&r.name) {
                if let Some(p) = slot.proc.as_mut() {
                    p.stop(STOP_GRACE);
                }
            }
        }
        for r in plan.start.iter().chain(&plan.restart) {
            if let Err(e) = self.spawn_node(r.clone()) {
                eprintln!("scalelab up: {e:#}");
            }
        }
        if plan.restart_balancer {
            println!("scalelab up: balancer settings changed; restarting it");
            if let Some(p) = self.balancer.proc.as_mut() {
                p.stop(STOP_GRACE);
            }
            match spawn_balancer(&self.file) {
                Ok(p) => restart_slot(&mut self.balancer, p),
                Err(e) => eprintln!("scalelab up: {e:#}"),
            }
        }
        println!("{}", table::render(&self.view()));
    }

    /// Stops every child (balancer first, so no new request reaches a draining node), waits for
    /// them, removes the cgroups.
    fn shutdown(&mut self) {
        let mut all: Vec<&mut Proc> = Vec::new();
        all.extend(self.balancer.proc.as_mut());
        all.extend(self.nodes.values_mut().filter_map(|(_, s)| s.proc.as_mut()));
        all.extend(self.retiring.iter_mut().map(|(_, p, _)| p));
        for p in all.iter_mut() {
            p.terminate();
        }
        for p in all {
            p.stop(STOP_GRACE);
        }
        if let Ok(caps) = &self.caps {
            caps.cleanup();
        }
        println!("scalelab up: stopped");
    }

    fn view(&self) -> table::View<'_> {
        table::View {
            file: &self.file,
            topology: &self.topology,
            nodes: self.nodes.values().map(|(r, s)| (r, s.proc.as_ref().map(Proc::pid))).collect(),
            balancer_pid: self.balancer.proc.as_ref().map(Proc::pid),
            caps: self.caps.as_ref().map(|c| c.version()).map_err(String::as_str),
        }
    }
}

fn restart_slot(slot: &mut Slot, proc: Proc) {
    slot.proc = Some(proc);
    slot.started = Instant::now();
    slot.respawn_at = None;
}

fn spawn_balancer(file: &Path) -> anyhow::Result<Proc> {
    Proc::spawn(&["balancer".into(), "--topology".into(), file.display().to_string()])
}

fn spawn_node(file: &Path, t: &Topology, r: &Replica, cgroup: Option<PathBuf>) -> anyhow::Result<Proc> {
    let mut args: Vec<String> = vec![
        "node".into(),
        "--name".into(),
        r.name.clone(),
        "--listen".into(),
        r.listen.to_string(),
        "--workers".into(),
        r.workers.to_string(),
        "--op2-cpu-ms".into(),
        t.workload.op2_cpu_ms.to_string(),
        "--max-cpu-ms".into(),
        t.workload.max_cpu_ms.to_string(),
        "--topology".into(),
        file.display().to_string(),
        "--group".into(),
        r.group.clone(),
    ];
    if let Some(dir) = cgroup {
        args.extend(["--cgroup".into(), dir.display().to_string()]);
    }
    Proc::spawn(&args)
}
