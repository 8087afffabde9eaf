//! The lab's autoscaler: Kubernetes' HorizontalPodAutoscaler, run against a lab. Once a
//! second it reads the balancer's live sample (`GET /live` on the admin listener: each node's
//! health, CPU against its cap, requests in flight and per second); every `sync_ms` of each
//! autoscaled group it computes the HPA's answer ([`hpa`]) over the samples of that period and,
//! when the answer differs from what runs, asks a [`Scaler`] for it. The same controller drives
//! a native lab (through the supervisor) and a Compose project (`scalelab apply --watch`).
//!
//! What it saw and decided is written as `autoscale.json` beside the lab's published topology,
//! where the balancer reads it for `/state` and the dashboard, and each decision is broadcast
//! once, with its reason, for `scalelab up` to print.
//!
//! # Layout
//! - this file: [`Autoscaler`], its loop and its state per group.
//! - [`hpa`]: the HPA algorithm, pure.
//! - `window`: the recent samples, turned into one observation per group.

pub mod hpa;
mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scalelab_balancer::fetch::get_json;
use scalelab_balancer::live::Sample;
use scalelab_balancer::status::{AutoscaleState, Decision, MAX_DECISIONS};
use scalelab_topology::{Autoscale, AutoscaleMetric, NodeGroup, Topology};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use hpa::{Hpa, Limit, Observation};
use window::Window;

/// How often the balancer's live sample is read (it samples once a second).
const POLL: Duration = Duration::from_secs(1);
/// How long one read of `/live` may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// Carries out a decision: runs `replicas` nodes of `group`.
pub trait Scaler: Send {
    fn scale(&mut self, group: &str, replicas: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// One change of replicas, for whoever prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDecision {
    pub group: String,
    pub decision: Decision,
}

impl fmt::Display for GroupDecision {
    /// `node: replicas 1 -> 3 (cpu 0.93 of 0.50 cap, target 0.60)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        write!(f, "{}: replicas {} -> {} ({})", self.group, d.from, d.to, d.reason)
    }
}

/// One autoscaled group's controller.
struct Control {
    hpa: Hpa,
    /// The block it was set up with (a changed metric starts afresh).
    metric: AutoscaleMetric,
    next_sync: Instant,
    state: AutoscaleState,
}

/// The controller of every autoscaled group of a lab.
pub struct Autoscaler {
    /// The balancer's admin listener.
    admin: SocketAddr,
    /// The topology in force: each group's current count, and its `autoscale` block.
    topology_rx: watch::Receiver<Topology>,
    controls: BTreeMap<String, Control>,
    window: Window,
    /// Where the state is written for the balancer (`None`: nowhere).
    status_file: Option<PathBuf>,
    decisions_tx: broadcast::Sender<GroupDecision>,
}

impl Autoscaler {
    /// A controller of the groups of `topology_rx` that have an `autoscale` block, reading the
    /// balancer at `admin`.
    pub fn new(
        admin: SocketAddr,
        topology_rx: watch::Receiver<Topology>,
        status_file: Option<PathBuf>,
    ) -> Autoscaler {
        Autoscaler {
            admin,
            topology_rx,
            controls: BTreeMap::new(),
            window: Window::default(),
            status_file,
            decisions_tx: broadcast::channel(64).0,
        }
    }

    /// Where decisions are sent.
    pub fn decisions(&self) -> broadcast::Sender<GroupDecision> {
        self.decisions_tx.clone()
    }

    /// Controls until cancelled.
    pub async fn run(mut self, mut scaler: impl Scaler) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.step(&mut scaler).await;
        }
    }

    /// One pass: follow edits of the blocks, read a sample, sync the groups that are due.
    async fn step(&mut self, scaler: &mut impl Scaler) {
        let now = Instant::now();
        let topology = self.topology_rx.borrow_and_update().clone();
        self.follow(&topology, now);
        if self.controls.is_empty() {
            return;
        }
        match tokio::time::timeout(POLL_TIMEOUT, get_json::<Sample>(self.admin, "/live")).await {
            Ok(Ok(sample)) => self.window.push(now, &sample, self.keep()),
            Ok(Err(e)) => tracing::debug!("autoscaler: {}/live: {e}", self.admin),
            Err(_) => tracing::debug!("autoscaler: {}/live: no answer within {POLL_TIMEOUT:?}", self.admin),
        }
        let due: Vec<String> =
            self.controls.iter().filter(|(_, c)| now >= c.next_sync).map(|(n, _)| n.clone()).collect();
        for name in &due {
            let Some((g, a)) = topology.group(name).and_then(|g| Some((g, g.autoscale.as_ref()?))) else {
                continue;
            };
            self.sync(g, a, now, scaler).await;
        }
        if !due.is_empty() {
            self.write_status();
        }
    }

    /// Sets up a controller per autoscaled group and forgets groups that no longer are; a
    /// changed metric starts its group afresh.
    fn follow(&mut self, t: &Topology, now: Instant) {
        self.controls.retain(|name, c| {
            t.group(name).and_then(|g| g.autoscale.as_ref()).is_some_and(|a| a.metric == c.metric)
        });
        for g in &t.nodes {
            let Some(a) = &g.autoscale else { continue };
            let c = self.controls.entry(g.name.clone()).or_insert_with(|| Control {
                hpa: Hpa::default(),
                metric: a.metric,
                next_sync: now + Duration::from_millis(a.sync_ms),
                state: AutoscaleState {
                    group: g.name.clone(),
                    current: g.replicas,
                    recommended: g.replicas,
                    desired: g.replicas,
                    min_replicas: a.min_replicas,
                    max_replicas: a.max_replicas,
                    metric: a.metric,
                    value: None,
                    target: a.target,
                    synced_at: unix_now(),
                    last_decision: None,
                    decisions_total: 0,
                    decisions: Vec::new(),
                },
            });
            // Live edits of the bounds and the target apply at the next sync.
            c.state.current = g.replicas;
            c.state.min_replicas = a.min_replicas;
            c.state.max_replicas = a.max_replicas;
            c.state.target = a.target;
            let next = now + Duration::from_millis(a.sync_ms);
            c.next_sync = c.next_sync.min(next);
        }
    }

    /// How long samples are kept: the longest sync period in force.
    fn keep(&self) -> Duration {
        let t = self.topology_rx.borrow();
        let longest = t.nodes.iter().filter_map(|g| g.autoscale.as_ref()).map(|a| a.sync_ms).max();
        Duration::from_millis(longest.unwrap_or(0)).max(POLL * 2)
    }

    /// One HPA sync of group `g`, and the decision it leads to.
    async fn sync(&mut self, g: &NodeGroup, a: &Autoscale, now: Instant, scaler: &mut impl Scaler) {
        let span = Duration::from_millis(a.sync_ms).max(POLL);
        let o = self.window.observe(now, g, a.metric, span);
        let c = self.controls.get_mut(&g.name).expect("followed above");
        let sync = c.hpa.sync(now, g.replicas, &o, a);
        c.next_sync = now + Duration::from_millis(a.sync_ms);
        c.state.current = g.replicas;
        c.state.recommended = sync.recommendation.replicas;
        c.state.desired = sync.desired;
        c.state.value = sync.recommendation.mean;
        c.state.synced_at = unix_now();
        if sync.desired == g.replicas {
            return;
        }
        let reason = reason(g, a, &o, &sync);
        if let Err(e) = scaler.scale(&g.name, sync.desired).await {
            tracing::warn!("autoscaler: {}: cannot scale to {}: {e:#}", g.name, sync.desired);
            return;
        }
        let c = self.controls.get_mut(&g.name).expect("followed above");
        c.hpa.scaled(now, g.replicas, sync.desired);
        let decision = Decision { at: unix_now(), from: g.replicas, to: sync.desired, reason };
        c.state.current = sync.desired;
        c.state.last_decision = Some(decision.clone());
        c.state.decisions_total += 1;
        c.state.decisions.push(decision.clone());
        if c.state.decisions.len() > MAX_DECISIONS {
            c.state.decisions.remove(0);
        }
        let decided = GroupDecision { group: g.name.clone(), decision };
        tracing::info!("autoscaler: {decided}");
        let _ = self.decisions_tx.send(decided);
    }

    /// Writes every group's state for the balancer (atomically: a sibling, then a rename).
    fn write_status(&self) {
        let Some(path) = &self.status_file else { return };
        let states: Vec<&AutoscaleState> = self.controls.values().map(|c| &c.state).collect();
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&states)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!("autoscaler: cannot write {}: {e}", path.display());
        }
    }
}

/// The topology to run for `declared` while `running` runs: every autoscaled group keeps the
/// count it runs now (its `replicas` in the file is only where it starts), clamped to its
/// possibly edited bounds; every other group takes `replicas` from `declared`.
pub fn in_force(declared: &Topology, running: &Topology) -> Topology {
    let mut t = declared.clone();
    for g in &mut t.nodes {
        if let Some(a) = &g.autoscale {
            let current = running.group(&g.name).map_or(g.replicas, |r| r.replicas);
            g.replicas = current.clamp(a.min_replicas, a.max_replicas);
        }
    }
    t
}

/// Why a sync changed the count, in the words `scalelab up` prints:
/// `cpu 0.93 of 0.50 cap, target 0.60, 1 not ready, scale-up limited to 5 per 15 s`.
fn reason(g: &NodeGroup, a: &Autoscale, o: &Observation, sync: &hpa::Sync) -> String {
    let mean = sync.recommendation.mean.unwrap_or(0.0);
    let mut s = match a.metric {
        AutoscaleMetric::Cpu => {
            format!("cpu {mean:.2} of {:.2} cap, target {:.2}", g.cpus.unwrap_or(0.0), a.target)
        }
        AutoscaleMetric::InFlight => format!("in_flight {mean:.1} per node, target {}", a.target),
        AutoscaleMetric::Rps => format!("rps {mean:.1} per node, target {}", a.target),
    };
    if o.unready > 0 {
        s.push_str(&format!(", {} not ready", o.unready));
    }
    if o.missing > 0 {
        s.push_str(&format!(", {} without a value", o.missing));
    }
    for limit in &sync.limits {
        s.push_str(&match limit {
            Limit::Stabilized { window, to } => format!(", held at {to} by the {:.0?} window", window),
            Limit::Rate { to } => format!(", step limited to {to} per {:.0?}", hpa::PERIOD),
            Limit::Bound { to } if *to == a.max_replicas => {
                format!(", wants {} but max_replicas is {to}", sync.recommendation.replicas)
            }
            Limit::Bound { to } => format!(", min_replicas is {to}"),
        });
    }
    s
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}
