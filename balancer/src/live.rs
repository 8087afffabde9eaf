//! The live view behind the dashboard: once a second a sampler turns the roster's counters
//! into rates and percentiles per node and per worker, adds each node's CPU (read from the
//! node itself), the theoretical capacity of the topology in force, the recent topology
//! changes and the last rejected edit, and publishes the result as one JSON document.
//! `/events` streams it (server-sent events), starting with the last [`HISTORY`] samples so a
//! page opened late shows what happened before it; `/live` answers the latest one; `/metrics`
//! keeps the same counts for Prometheus.
//!
//! One sampler serves any number of open dashboards: watching costs the proxy nothing beyond
//! the counters it keeps anyway. The sample types are `Deserialize` too: `scalelab load
//! --timeline --admin` reads `/live` back into them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::LoadBalancer;
use scalelab_topology::{limits, Algorithm, Topology};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::node_stats::{self, NodeStats};
use crate::state::Roster;
use crate::status::{AutoscaleState, GroupState};
use crate::traffic::Faults;

/// How often the view is sampled and published.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Topology changes kept for the markers.
const MAX_CHANGES: usize = 50;
/// Samples kept for a dashboard that opens late: 5 minutes at one a second, the span the page
/// draws (`HISTORY_SECONDS` in dashboard.js). A sample is a few KB per node.
pub const HISTORY: usize = 300;

/// One published sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time of the sample, seconds.
    pub t: f64,
    /// The balancing algorithm in force.
    pub algorithm: Algorithm,
    /// Cores of the machine the balancer runs on.
    pub cores: usize,
    /// CPU milliseconds of one plain `/op2`.
    pub op2_cpu_ms: u64,
    /// The lab's `/op2` capacity: min(Σ over nodes of min(workers, cpus), cores) × 1000 /
    /// op2_cpu_ms, req/s.
    pub theory_rps: f64,
    /// Requests per second over all nodes.
    pub rps: f64,
    /// `/op2` requests per second over all nodes: what the theory is a ceiling for.
    pub op2_rps: f64,
    /// Requests per second whose client went away before its answer (nginx logs them as
    /// 499): the end of a load run, a closed tab. Not a node's failure, so not in any node's
    /// errors. (Absent from samples of older balancers: 0.)
    #[serde(default)]
    pub client_aborts_per_s: f64,
    pub nodes: Vec<NodeSample>,
    /// Recent topology changes, oldest first.
    pub changes: Vec<Change>,
    /// The last edit that was rejected, if it is newer than the last accepted one.
    pub last_error: Option<Change>,
    /// Every node group, with its replicas and its autoscaler's state.
    #[serde(default)]
    pub groups: Vec<GroupState>,
}

/// One node (natively a replica; with DNS discovery, one container address).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSample {
    pub name: String,
    pub addr: String,
    /// Its group in the topology.
    pub group: String,
    pub healthy: bool,
    /// Unix time its health last changed (or it was found).
    pub healthy_since: f64,
    /// Unix time the balancer first listed it: its start, as far as the balancer can tell.
    /// (Absent from older samples: 0.)
    #[serde(default)]
    pub found_at: f64,
    /// Responses per second over the last second.
    pub rps: f64,
    /// `/op2` responses per second over the last second.
    pub op2_rps: f64,
    /// Attempts in flight now.
    pub in_flight: usize,
    /// Latency through the balancer over the last 10 s, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Errors and retries per second over the last second.
    pub errors_per_s: f64,
    pub retries_per_s: f64,
    /// Attempts per second given up because the node did not answer within
    /// `read_timeout_ms` (each is also one of its errors). (Absent from older samples: 0.)
    #[serde(default)]
    pub timeouts_per_s: f64,
    /// CPU the node used over the last second, in cores (`None` when the node cannot say).
    pub cpu: Option<f64>,
    /// Its CPU cap in cores (`None`: uncapped).
    pub cpu_cap: Option<f64>,
    /// Workers the topology gives it.
    pub workers_configured: usize,
    /// Every worker that answered or is configured, by id.
    pub workers: Vec<WorkerSample>,
}

/// One worker of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSample {
    pub id: usize,
    /// Responses per second over the last second.
    pub rps: f64,
    /// Its share of the node's responses over the last second (0..1).
    pub share: f64,
}

/// A topology change, or a rejected edit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// Unix time, seconds.
    pub t: f64,
    pub what: String,
}

/// What the sampler and the topology watcher share: changes, the last rejection, the recent
/// samples and the published one.
pub struct Live {
    changes: Mutex<VecDeque<Change>>,
    last_error: Mutex<Option<Change>>,
    /// What the lab's autoscaler last wrote (`autoscale.json` beside the topology).
    autoscale: Mutex<Vec<AutoscaleState>>,
    /// The groups as of the last sample (for `/state`).
    groups: Mutex<Vec<GroupState>>,
    history: Mutex<VecDeque<Arc<str>>>,
    sample_tx: watch::Sender<Arc<str>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            changes: Mutex::new(VecDeque::new()),
            last_error: Mutex::new(None),
            autoscale: Mutex::new(Vec::new()),
            groups: Mutex::new(Vec::new()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            sample_tx: watch::channel(Arc::from("{}")).0,
        }
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

impl Live {
    /// Records accepted topology changes (and clears the last rejection: it is history now).
    pub fn changed(&self, what: Vec<String>) {
        if what.is_empty() {
            return;
        }
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        changes.push_back(Change { t: now(), what: what.join(", ") });
        while changes.len() > MAX_CHANGES {
            changes.pop_front();
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a rejected edit.
    pub fn rejected(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(Change { t: now(), what: message });
    }

    /// Records the autoscaler's state, as the lab wrote it.
    pub fn autoscaled(&self, states: Vec<AutoscaleState>) {
        *self.autoscale.lock().unwrap_or_else(|p| p.into_inner()) = states;
    }

    /// Every group of `t`, with its autoscaler's state when one runs; remembered for
    /// [`Live::groups`].
    fn sample_groups(&self, t: &Topology) -> Vec<GroupState> {
        let states = self.autoscale.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let groups: Vec<GroupState> = t
            .nodes
            .iter()
            .map(|g| {
                let autoscale = g.autoscale.as_ref().and(states.iter().find(|s| s.group == g.name).cloned());
                // Under Compose the file keeps the starting count; the autoscaler knows what runs.
                let replicas = autoscale.as_ref().map_or(g.replicas, |a| a.current);
                GroupState { name: g.name.clone(), replicas, autoscale }
            })
            .collect();
        *self.groups.lock().unwrap_or_else(|p| p.into_inner()) = groups.clone();
        groups
    }

    /// The groups as of the last sample.
    pub fn groups(&self) -> Vec<GroupState> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Publishes `sample` (JSON): kept in the history, then sent to every subscriber.
    pub fn publish(&self, sample: Arc<str>) {
        {
            let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(sample.clone());
        }
        self.sample_tx.send_replace(sample);
    }

    /// The recent samples, oldest first, and a receiver of the ones published after them. A
    /// sample published between the two may come in both: a reader skips a sample whose time
    /// it has seen (the dashboard does).
    pub fn follow(&self) -> (Vec<Arc<str>>, watch::Receiver<Arc<str>>) {
        let mut rx = self.sample_tx.subscribe();
        rx.borrow_and_update();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        (history.iter().cloned().collect(), rx)
    }

    /// The latest sample (JSON).
    pub fn latest(&self) -> Arc<str> {
        self.sample_tx.borrow().clone()
    }
}

/// The counters of one backend at the previous sample.
#[derive(Debug, Default, Clone)]
struct Previous {
    requests: u64,
    op2: u64,
    faults: Faults,
    workers: HashMap<usize, u64>,
    cpu: Option<(Duration, Instant)>,
    /// The name the node gave on `/stats` (with DNS discovery, where every container of a
    /// group shares the group's name, `node@<hostname>` tells them apart).
    own_name: Option<String>,
}

/// The background service that samples once a second.
pub struct Sampler<S: BackendSelection> {
    lb: Arc<LoadBalancer<S>>,
    roster: Arc<Roster>,
    topology: Arc<ArcSwap<Topology>>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    algorithm: Algorithm,
}

impl<S: BackendSelection> Sampler<S> {
    /// A sampler over the balancer's state.
    pub fn new(
        lb: Arc<LoadBalancer<S>>,
        roster: Arc<Roster>,
        topology: Arc<ArcSwap<Topology>>,
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        algorithm: Algorithm,
    ) -> Self {
        Sampler { lb, roster, topology, live, metrics, algorithm }
    }
}

#[async_trait]
impl<S> BackgroundService for Sampler<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut previous: HashMap<SocketAddr, Previous> = HashMap::new();
        let mut aborts_before = self.metrics.client_aborts.get();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let elapsed = last.elapsed().as_secs_f64().max(1e-3);
            last = Instant::now();
            let mut sample = self.sample(&mut previous, elapsed).await;
            let aborts = self.metrics.client_aborts.get();
            sample.client_aborts_per_s = aborts.saturating_sub(aborts_before) as f64 / elapsed;
            aborts_before = aborts;
            match serde_json::to_string(&sample) {
                Ok(json) => self.live.publish(Arc::from(json)),
                Err(e) => tracing::error!("encoding the live sample: {e}"),
            }
        }
    }
}

impl<S> Sampler<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    async fn sample(&self, previous: &mut HashMap<SocketAddr, Previous>, elapsed: f64) -> Sample {
        let topology = self.topology.load_full();
        let cores = limits::cores();
        let backends = self.lb.backends();
        let current = backends.get_backend();
        let addrs: Vec<SocketAddr> = current.iter().filter_map(|b| b.addr.as_inet().copied()).collect();
        let stats = node_stats::fetch_all(&addrs).await;
        let mut nodes = Vec::new();
        for b in current.iter() {
            let Some(addr) = b.addr.as_inet().copied() else { continue };
            let Some(entry) = self.roster.get(&addr) else { continue };
            let prev = previous.entry(addr).or_default();
            let requests = entry.requests();
            let op2 = entry.traffic.op2();
            let faults = entry.traffic.faults();
            let per_s = |now: u64, before: u64| now.saturating_sub(before) as f64 / elapsed;
            let rps = per_s(requests, prev.requests);
            let counts: HashMap<usize, u64> = entry.traffic.worker_counts().into_iter().collect();
            let (group, configured, cap) = group_of(&topology, &entry.name);
            if let Some(name) = stats.get(&addr).and_then(|s| s.node.clone()) {
                prev.own_name = Some(name);
            }
            let mut ids: Vec<usize> = counts.keys().copied().filter(|&id| id > 0).collect();
            ids.extend((1..=configured).filter(|id| !counts.contains_key(id)));
            ids.sort_unstable();
            let rates: Vec<(usize, f64)> = ids
                .into_iter()
                .map(|id| {
                    (
                        id,
                        per_s(
                            counts.get(&id).copied().unwrap_or(0),
                            prev.workers.get(&id).copied().unwrap_or(0),
                        ),
                    )
                })
                .collect();
            let total: f64 = rates.iter().map(|(_, r)| r).sum();
            let cpu = cpu_rate(stats.get(&addr), &mut prev.cpu);
            let latency = entry.traffic.rotate();
            nodes.push(NodeSample {
                name: prev.own_name.clone().unwrap_or_else(|| entry.name.clone()),
                addr: entry.addr.clone(),
                group,
                healthy: backends.ready(b),
                healthy_since: unix(entry.traffic.health_since()),
                found_at: unix(entry.found),
                rps,
                op2_rps: per_s(op2, prev.op2),
                in_flight: entry.in_flight(),
                p50_ms: latency.p50_ms,
                p99_ms: latency.p99_ms,
                errors_per_s: per_s(faults.errors, prev.faults.errors),
                retries_per_s: per_s(faults.retries, prev.faults.retries),
                timeouts_per_s: per_s(faults.timeouts, prev.faults.timeouts),
                cpu,
                cpu_cap: stats.get(&addr).and_then(|s| s.cpu_cap).or(cap),
                workers_configured: configured,
                workers: rates
                    .into_iter()
                    .map(|(id, r)| WorkerSample {
                        id,
                        rps: r,
                        share: if total > 0.0 { r / total } else { 0.0 },
                    })
                    .collect(),
            });
            *prev = Previous {
                requests,
                op2,
                faults,
                workers: counts,
                cpu: prev.cpu,
                own_name: prev.own_name.take(),
            };
        }
        previous.retain(|a, _| addrs.contains(a));
        let changes = self.live.changes.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let last_error = self.live.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Sample {
            t: now(),
            algorithm: self.algorithm,
            cores,
            op2_cpu_ms: topology.workload.op2_cpu_ms,
            theory_rps: topology.op2_capacity(cores),
            rps: nodes.iter().map(|n| n.rps).sum(),
            op2_rps: nodes.iter().map(|n| n.op2_rps).sum(),
            client_aborts_per_s: 0.0,
            nodes,
            changes,
            last_error,
            groups: self.live.sample_groups(&topology),
        }
    }
}

/// The group of a node name (`node-2` natively, `node` with DNS discovery), its workers and
/// its CPU cap, from the topology.
fn group_of(t: &Topology, name: &str) -> (String, usize, Option<f64>) {
    let group = t
        .group(name)
        .or_else(|| name.rsplit_once('-').and_then(|(g, _)| t.group(g)))
        .map(|g| (g.name.clone(), g.workers, g.cpus));
    group.unwrap_or_else(|| (name.to_string(), 0, None))
}

/// CPU used since the previous reading, in cores; remembers this reading.
fn cpu_rate(stats: Option<&NodeStats>, previous: &mut Option<(Duration, Instant)>) -> Option<f64> {
    let used = stats?.cpu_used()?;
    let now = Instant::now();
    let rate = previous.and_then(|(before, at)| {
        let wall = now.saturating_duration_since(at).as_secs_f64();
        (wall > 0.0 && used >= before).then(|| (used - before).as_secs_f64() / wall)
    });
    *previous = Some((used, now));
    rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_reader_gets_the_last_samples_then_only_new_ones() {
        let live = Live::default();
        for i in 0..HISTORY + 5 {
            live.publish(Arc::from(format!("{{\"t\": {i}}}")));
        }
        let (history, mut rx) = live.follow();
        assert_eq!(history.len(), HISTORY, "bounded");
        assert_eq!(&*history[0], "{\"t\": 5}", "the oldest are dropped first");
        assert_eq!(&*history[HISTORY - 1], format!("{{\"t\": {}}}", HISTORY + 4));
        assert!(!rx.has_changed().unwrap(), "the latest came with the history");
        live.publish(Arc::from("{\"t\": 999}"));
        assert!(rx.has_changed().unwrap());
        assert_eq!(&**rx.borrow_and_update(), "{\"t\": 999}");
    }
}
