//! The supervisor's decisions, with fake processes and a paused clock. A fake node that is
//! started on a port another live fake holds exits at once, as a real one does with
//! `EADDRINUSE`; every test checks that it never happened.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use scalelab_node::NodeArgs;
use tokio::time::advance;

use super::*;
use crate::launch::{Probe as Serving, Process};

/// What one fake process did.
#[derive(Debug, Clone, Default)]
struct Record {
    pid: u32,
    /// `balancer`, or the node's name.
    name: String,
    listen: Option<SocketAddr>,
    distribution: Option<scalelab_topology::Distribution>,
    exit: Option<ExitStatus>,
    reaped: bool,
    terminated: bool,
    killed: bool,
    /// It will report ready at the next look (balancers).
    ready: bool,
    reported: bool,
    /// It could not bind its port (another live process held it).
    clashed: bool,
}

/// Every fake process started, and how the fakes behave.
#[derive(Default)]
struct World {
    procs: Vec<Record>,
    /// Balancers report ready as soon as they start.
    balancers_report: bool,
    /// Processes exit as soon as they get SIGTERM.
    exit_on_term: bool,
}

type Shared = Arc<Mutex<World>>;

impl World {
    fn live_holder(&self, addr: SocketAddr) -> bool {
        self.procs.iter().any(|p| p.listen == Some(addr) && p.exit.is_none())
    }
}

struct FakeProc {
    world: Shared,
    i: usize,
}

impl FakeProc {
    fn with<T>(&self, f: impl FnOnce(&mut Record, bool) -> T) -> T {
        let mut w = self.world.lock().unwrap();
        let exit_on_term = w.exit_on_term;
        f(&mut w.procs[self.i], exit_on_term)
    }
}

impl Process for FakeProc {
    fn pid(&self) -> u32 {
        self.with(|p, _| p.pid)
    }
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.with(|p, _| {
            let exit = p.exit.filter(|_| !p.reaped);
            p.reaped |= exit.is_some();
            exit
        })
    }
    fn reported_ready(&mut self) -> bool {
        self.with(|p, _| {
            let now = p.ready && !p.reported && p.exit.is_none();
            p.reported |= now;
            now
        })
    }
    fn terminate(&mut self) {
        self.with(|p, exit_on_term| {
            p.terminated = true;
            if exit_on_term && p.exit.is_none() {
                p.exit = Some(ExitStatus::from_raw(0));
            }
        })
    }
    fn kill_group(&mut self) {
        self.with(|p, _| {
            p.killed = true;
            p.exit.get_or_insert(ExitStatus::from_raw(9));
        })
    }
    fn wait(&mut self) {}
}

struct Fakes(Shared);

impl Fakes {
    fn start(&mut self, mut record: Record) -> Box<dyn Process> {
        let mut w = self.0.lock().unwrap();
        record.pid = 1000 + w.procs.len() as u32;
        if record.listen.is_some_and(|a| w.live_holder(a)) {
            record.clashed = true;
            record.exit = Some(ExitStatus::from_raw(1 << 8));
        }
        record.ready = record.name == BALANCER && w.balancers_report;
        w.procs.push(record);
        Box::new(FakeProc { world: self.0.clone(), i: w.procs.len() - 1 })
    }
}

impl Launcher for Fakes {
    fn node(&mut self, args: &NodeArgs) -> anyhow::Result<Box<dyn Process>> {
        Ok(self.start(Record {
            name: args.name.clone(),
            listen: Some(args.listen),
            distribution: Some(args.distribution),
            ..Record::default()
        }))
    }
    fn balancer(&mut self, _: &BalancerArgs, _: &Sockets) -> anyhow::Result<Box<dyn Process>> {
        Ok(self.start(Record { name: BALANCER.into(), ..Record::default() }))
    }
    fn port_free(&self, addr: SocketAddr) -> bool {
        !self.0.lock().unwrap().live_holder(addr)
    }
    fn serving(&self, _: &str, _: SocketAddr, _: SocketAddr) -> Serving {
        Box::pin(async { true })
    }
}

/// A topology of `replicas` nodes (and `extra` YAML for the group), its balancer on ports
/// the kernel picks.
fn topo(replicas: usize, extra: &str) -> Topology {
    let mut t = Topology::from_yaml(&format!(
        "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
         nodes: [{{ name: node, replicas: {replicas}, workers: 1, cpus: 0.5, port: 8081 {extra} }}]\n"
    ))
    .unwrap();
    t.balancer.listen = "127.0.0.1:0".parse().unwrap();
    t.balancer.admin = "127.0.0.2:0".parse().unwrap(); // another loopback address: the two must differ
    t
}

const AUTOSCALE: &str = ", autoscale: { min_replicas: 1, max_replicas: 4, target: 0.6 }";

/// A started lab of fakes whose balancer reported ready.
fn lab(t: Topology) -> (Supervisor, Shared) {
    let world: Shared = Arc::new(Mutex::new(World { balancers_report: true, ..World::default() }));
    let mut sup = Supervisor::new(t, Box::new(Fakes(world.clone())), Err("tests".into())).unwrap();
    sup.spawn_nodes();
    sup.spawn_balancer();
    step(&mut sup);
    (sup, world)
}

/// One pass of the loop: notes from side tasks, reap, manage.
fn step(sup: &mut Supervisor) {
    while let Some(note) = sup.notes_rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
        sup.on_note(note);
    }
    let now = Instant::now();
    sup.reap_children(now);
    sup.manage_children(now);
}

/// Advances the paused clock by `ms` in ticks, stepping the loop after each.
async fn pass(sup: &mut Supervisor, ms: u64) {
    for _ in 0..ms.div_ceil(10) {
        advance(Duration::from_millis(10)).await;
        tokio::task::yield_now().await; // let side tasks (serving probes) run
        step(sup);
    }
}

fn pids(world: &Shared, name: &str) -> Vec<u32> {
    world.lock().unwrap().procs.iter().filter(|p| p.name == name).map(|p| p.pid).collect()
}

fn record(world: &Shared, pid: u32) -> Record {
    world.lock().unwrap().procs.iter().find(|p| p.pid == pid).unwrap().clone()
}

fn exit(world: &Shared, pid: u32) {
    world.lock().unwrap().procs.iter_mut().find(|p| p.pid == pid).unwrap().exit =
        Some(ExitStatus::from_raw(0));
}

fn no_clash(world: &Shared) {
    let w = world.lock().unwrap();
    let clashed: Vec<_> = w.procs.iter().filter(|p| p.clashed).map(|p| (&p.name, p.pid)).collect();
    assert!(clashed.is_empty(), "started on a port still held (EADDRINUSE): {clashed:?}");
}

fn running(sup: &Supervisor) -> Vec<(String, Option<u32>)> {
    sup.view().nodes.into_iter().map(|n| (n.replica.name, n.pid)).collect()
}

#[tokio::test(start_paused = true)]
async fn start_runs_every_node_then_the_balancer_which_must_report() {
    let world: Shared = Arc::new(Mutex::new(World::default()));
    let mut sup = Supervisor::new(topo(2, ""), Box::new(Fakes(world.clone())), Err("tests".into())).unwrap();
    sup.spawn_nodes();
    sup.spawn_balancer();
    step(&mut sup);
    assert_eq!(running(&sup).len(), 2);
    assert!(!sup.probe().balancer_ready, "not before its readiness byte");
    world.lock().unwrap().procs.iter_mut().find(|p| p.name == BALANCER).unwrap().ready = true;
    step(&mut sup);
    let probe = sup.probe();
    assert!(probe.balancer_ready && probe.settled);
    assert_eq!(probe.names, ["node-1", "node-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_node_is_respawned_at_once_then_backs_off() {
    let (mut sup, world) = lab(topo(1, ""));
    // Crash 1: young, but the first: at once.
    pass(&mut sup, 1000).await;
    exit(&world, pids(&world, "node-1")[0]);
    step(&mut sup);
    assert_eq!(pids(&world, "node-1").len(), 2, "respawned at once");
    // Crash 2, quick again: 0.5 s of backoff.
    pass(&mut sup, 100).await;
    exit(&world, pids(&world, "node-1")[1]);
    step(&mut sup);
    pass(&mut sup, 480).await;
    assert_eq!(pids(&world, "node-1").len(), 2, "not before the backoff");
    assert_eq!(running(&sup), [("node-1".to_string(), None)]);
    pass(&mut sup, 30).await;
    assert_eq!(pids(&world, "node-1").len(), 3, "after 0.5 s");
    // A long life resets the loop.
    pass(&mut sup, 11_000).await;
    exit(&world, pids(&world, "node-1")[2]);
    step(&mut sup);
    assert_eq!(pids(&world, "node-1").len(), 4);
    no_clash(&world);
}

#[tokio::test(start_paused = true)]
async fn a_removed_node_serves_until_the_balancer_dropped_it_then_drains() {
    let (mut sup, world) = lab(topo(2, ""));
    let node2 = pids(&world, "node-2")[0];
    sup.apply(topo(1, "")).unwrap();
    assert_eq!(running(&sup).len(), 1, "gone from the topology at once");
    pass(&mut sup, 2400).await;
    assert!(!record(&world, node2).terminated, "still serving while the balancer drops it");
    pass(&mut sup, 200).await;
    assert!(record(&world, node2).terminated);
    assert!(sup.children.contains_key("node-2"), "kept while it drains");
    exit(&world, node2);
    step(&mut sup);
    assert!(!sup.children.contains_key("node-2"));
}

#[tokio::test(start_paused = true)]
async fn a_node_re_added_before_its_stop_is_kept() {
    // 2 → 1 → 2 within a second: the same process serves on, nothing new starts.
    let (mut sup, world) = lab(topo(2, ""));
    let node2 = pids(&world, "node-2")[0];
    sup.apply(topo(1, "")).unwrap();
    pass(&mut sup, 800).await;
    sup.apply(topo(2, "")).unwrap();
    pass(&mut sup, 5000).await;
    assert_eq!(pids(&world, "node-2"), [node2]);
    assert!(!record(&world, node2).terminated);
    assert_eq!(
        running(&sup),
        [("node-1".to_string(), Some(pids(&world, "node-1")[0])), ("node-2".to_string(), Some(node2))]
    );
    no_clash(&world);
}

#[tokio::test(start_paused = true)]
async fn a_node_re_added_while_it_drains_waits_for_its_port() {
    let (mut sup, world) = lab(topo(2, ""));
    let old = pids(&world, "node-2")[0];
    sup.apply(topo(1, "")).unwrap();
    pass(&mut sup, 3000).await;
    assert!(record(&world, old).terminated);
    sup.apply(topo(2, "")).unwrap();
    pass(&mut sup, 1000).await;
    assert_eq!(pids(&world, "node-2"), [old], "nothing starts while the old one holds the port");
    assert!(!sup.probe().settled);
    exit(&world, old);
    pass(&mut sup, 10).await;
    let both = pids(&world, "node-2");
    assert_eq!(both.len(), 2, "started once the port is free");
    assert_eq!(running(&sup)[1], ("node-2".to_string(), Some(both[1])));
    assert!(sup.probe().settled);
    no_clash(&world);
}

#[tokio::test(start_paused = true)]
async fn a_drain_past_the_grace_is_killed() {
    let (mut sup, world) = lab(topo(2, ""));
    let node2 = pids(&world, "node-2")[0];
    sup.apply(topo(1, "")).unwrap();
    pass(&mut sup, 2500 + 7900).await;
    assert!(!record(&world, node2).killed);
    pass(&mut sup, 200).await;
    assert!(record(&world, node2).killed);
    assert!(!sup.children.contains_key("node-2"));
}

#[tokio::test(start_paused = true)]
async fn a_distribution_edit_restarts_one_node_at_a_time() {
    let (mut sup, world) = lab(topo(2, ""));
    let (old1, old2) = (pids(&world, "node-1")[0], pids(&world, "node-2")[0]);
    sup.apply(topo(2, ", distribution: reuseport")).unwrap();
    step(&mut sup);
    assert!(record(&world, old1).terminated, "the first node restarts");
    assert!(!record(&world, old2).terminated, "the second serves meanwhile");
    assert!(!sup.probe().settled);
    pass(&mut sup, 500).await;
    assert_eq!(pids(&world, "node-1").len(), 1, "waits for the old one to let go of the port");
    exit(&world, old1);
    pass(&mut sup, 10).await;
    let new1 = pids(&world, "node-1")[1];
    assert_eq!(record(&world, new1).distribution, Some(scalelab_topology::Distribution::Reuseport));
    // It serves (the probe said so): now the second one goes.
    pass(&mut sup, 30).await;
    assert!(record(&world, old2).terminated);
    exit(&world, old2);
    pass(&mut sup, 30).await;
    assert_eq!(pids(&world, "node-2").len(), 2);
    assert!(sup.probe().settled);
    no_clash(&world);
}

#[tokio::test(start_paused = true)]
async fn a_port_edit_starts_the_new_node_at_once_and_retires_the_old() {
    let (mut sup, world) = lab(topo(1, ""));
    let old = pids(&world, "node-1")[0];
    let mut moved = topo(1, "");
    moved.nodes[0].port = 8181;
    sup.apply(moved).unwrap();
    let now = pids(&world, "node-1");
    assert_eq!(now.len(), 2);
    assert_eq!(record(&world, now[1]).listen, Some("127.0.0.1:8181".parse().unwrap()));
    assert!(!record(&world, old).terminated);
    pass(&mut sup, 2600).await;
    assert!(record(&world, old).terminated);
}

#[tokio::test(start_paused = true)]
async fn a_balancer_edit_hands_over_once_the_successor_reports() {
    let (mut sup, world) = lab(topo(1, ""));
    world.lock().unwrap().balancers_report = false;
    let old = pids(&world, BALANCER)[0];
    let mut edited = topo(1, "");
    edited.balancer.health_check.interval_ms = 250;
    assert!(sup.apply(edited).unwrap().restart_balancer);
    let next = pids(&world, BALANCER)[1];
    pass(&mut sup, 1000).await;
    assert_eq!(sup.view().balancer_pid, Some(old), "the old one serves until the new one reports");
    assert_eq!(sup.view().successor_pid, Some(next));
    world.lock().unwrap().procs.iter_mut().find(|p| p.pid == next).unwrap().ready = true;
    step(&mut sup);
    assert_eq!(sup.view().balancer_pid, Some(next));
    assert!(record(&world, old).terminated);
}

#[tokio::test(start_paused = true)]
async fn a_successor_that_never_reports_is_abandoned() {
    let (mut sup, world) = lab(topo(1, ""));
    world.lock().unwrap().balancers_report = false;
    let old = pids(&world, BALANCER)[0];
    let mut edited = topo(1, "");
    edited.balancer.health_check.interval_ms = 250;
    sup.apply(edited).unwrap();
    let next = pids(&world, BALANCER)[1];
    pass(&mut sup, 10_100).await;
    assert!(record(&world, next).killed);
    assert_eq!(sup.view().balancer_pid, Some(old));
    assert_eq!(sup.view().successor_pid, None);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_balancer_is_restarted_and_must_report_again() {
    let (mut sup, world) = lab(topo(1, ""));
    world.lock().unwrap().balancers_report = false;
    exit(&world, pids(&world, BALANCER)[0]);
    step(&mut sup);
    assert_eq!(pids(&world, BALANCER).len(), 2);
    assert!(!sup.probe().balancer_ready);
}

#[tokio::test(start_paused = true)]
async fn scale_moves_within_bounds_and_file_edits_keep_the_count() {
    let (mut sup, world) = lab(topo(1, AUTOSCALE));
    sup.scale("node", 3).unwrap();
    assert_eq!(running(&sup).len(), 3);
    assert_eq!(sup.topology_rx().borrow().nodes[0].replicas, 3, "the autoscaler sees the count in force");
    sup.scale("node", 99).unwrap();
    assert_eq!(running(&sup).len(), 4, "clamped to max_replicas");
    // An edit of the target keeps the count; replicas in the file is only the start.
    sup.apply(topo(1, &AUTOSCALE.replace("0.6", "0.5"))).unwrap();
    assert_eq!(running(&sup).len(), 4);
    // A lower max_replicas retires the excess.
    sup.apply(topo(1, &AUTOSCALE.replace("max_replicas: 4", "max_replicas: 2"))).unwrap();
    assert_eq!(running(&sup).len(), 2);
    // Without the block, replicas is the file's again.
    sup.apply(topo(1, "")).unwrap();
    assert_eq!(running(&sup).len(), 1);
    assert!(sup.scale("node", 3).is_err(), "a group that does not autoscale cannot be scaled");
    pass(&mut sup, 3000).await;
    no_clash(&world);
}

#[tokio::test(start_paused = true)]
async fn a_scale_in_then_out_takes_the_retiring_nodes_back() {
    let (mut sup, world) = lab(topo(1, AUTOSCALE));
    sup.scale("node", 4).unwrap();
    let before: Vec<u32> = ["node-2", "node-3", "node-4"].iter().map(|n| pids(&world, n)[0]).collect();
    sup.scale("node", 1).unwrap();
    pass(&mut sup, 1000).await;
    sup.scale("node", 4).unwrap();
    pass(&mut sup, 5000).await;
    let after: Vec<u32> = ["node-2", "node-3", "node-4"].iter().map(|n| pids(&world, n)[0]).collect();
    assert_eq!(before, after);
    assert!(after.iter().all(|&p| !record(&world, p).terminated));
    no_clash(&world);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_balancer_first_and_ends_when_all_exited() {
    let (mut sup, world) = lab(topo(2, ""));
    sup.stop_all(Instant::now());
    let w = world.lock().unwrap().procs.clone();
    assert!(w.iter().all(|p| p.terminated), "{w:?}");
    assert!(!sup.children.is_empty());
    for p in &w {
        exit(&world, p.pid);
    }
    step(&mut sup);
    assert!(sup.children.is_empty());
}
