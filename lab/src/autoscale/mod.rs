//! The lab's autoscaler: Kubernetes' HorizontalPodAutoscaler, run against a lab. Once a
//! second it reads a live sample from its [`Source`] (the balancer's `GET /live` on the admin
//! listener: each node's health, start, CPU against its cap, requests in flight and per
//! second); every `sync_ms` of each autoscaled group it computes the HPA's answer ([`hpa`])
//! over the samples of that period and, when the answer differs from what runs, asks a
//! [`Scaler`] for it. The same controller drives a native lab (through the supervisor) and a
//! Compose project (`scalelab apply --watch`).
//!
//! A group's controller lives as long as its `autoscale` block: edits of the metric, the
//! target or the bounds keep its memory (past recommendations and scale events, decisions),
//! as Kubernetes keeps an HPA's across edits of its spec; removing the block forgets it.
//!
//! What it saw and decided is written as `autoscale.json` beside the lab's published topology,
//! where the balancer reads it for `/state` and the dashboard, and each decision is broadcast
//! once, with its reason, for `scalelab up` to print.
//!
//! # Layout
//! - this file: [`Autoscaler`], its loop and its state per group, behind two seams: the
//!   [`Source`] of samples and the [`Scaler`] that carries out decisions.
//! - [`hpa`]: the HPA algorithm, pure.
//! - `window`: the recent samples, sorted into one observation per group.

pub mod hpa;
mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use scalelab_balancer::fetch::get_json;
use scalelab_balancer::live::Sample;
use scalelab_balancer::status::{AutoscaleState, Decision, MAX_DECISIONS};
use scalelab_topology::{Autoscale, AutoscaleMetric, NodeGroup, Topology};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use hpa::{Hpa, Limit, Observation};
use window::Window;

/// How often a live sample is read (the balancer makes one a second).
const POLL: Duration = Duration::from_secs(1);
/// How long one read of `/live` may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// Carries out a decision: runs `replicas` nodes of `group`.
pub trait Scaler: Send {
    fn scale(&mut self, group: &str, replicas: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Where the autoscaler's samples come from.
pub trait Source: Send {
    /// The balancer's latest live sample.
    fn sample(&mut self) -> impl Future<Output = anyhow::Result<Sample>> + Send;
}

/// The balancer's live sample, read from `GET /live` on its admin listener.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    pub admin: SocketAddr,
}

impl Source for Live {
    async fn sample(&mut self) -> anyhow::Result<Sample> {
        match tokio::time::timeout(POLL_TIMEOUT, get_json::<Sample>(self.admin, "/live")).await {
            Ok(Ok(sample)) => Ok(sample),
            Ok(Err(e)) => Err(anyhow!("{}/live: {e}", self.admin)),
            Err(_) => Err(anyhow!("{}/live: no answer within {POLL_TIMEOUT:?}", self.admin)),
        }
    }
}

/// One change of replicas, for whoever prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDecision {
    pub group: String,
    pub decision: Decision,
}

impl fmt::Display for GroupDecision {
    /// `node: replicas 1 -> 3 (cpu 93% of the 0.50-core cap (target 60%))`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        write!(f, "{}: replicas {} -> {} ({})", self.group, d.from, d.to, d.reason)
    }
}

/// Unix time on the loop's clock: the wall clock when the autoscaler was made, advanced by
/// `tokio::time` since (so that a paused clock pauses its timestamps too).
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    unix: f64,
}

impl Clock {
    fn now() -> Clock {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        Clock { start: Instant::now(), unix }
    }

    /// `at` in Unix seconds.
    fn unix(&self, at: Instant) -> f64 {
        self.unix + at.saturating_duration_since(self.start).as_secs_f64()
    }
}

/// One autoscaled group's controller.
struct Control {
    /// Its memory: kept across edits of the block, as long as the block is there.
    hpa: Hpa,
    next_sync: Instant,
    state: AutoscaleState,
}

/// The controller of every autoscaled group of a lab.
pub struct Autoscaler<S = Live> {
    source: S,
    /// The topology in force: each group's current count, and its `autoscale` block.
    topology_rx: watch::Receiver<Topology>,
    controls: BTreeMap<String, Control>,
    window: Window,
    /// Where the state is written for the balancer (`None`: nowhere).
    status_file: Option<PathBuf>,
    decisions_tx: broadcast::Sender<GroupDecision>,
    clock: Clock,
}

impl Autoscaler<Live> {
    /// A controller of the groups of `topology_rx` that have an `autoscale` block, reading the
    /// balancer at `admin`.
    pub fn new(
        admin: SocketAddr,
        topology_rx: watch::Receiver<Topology>,
        status_file: Option<PathBuf>,
    ) -> Autoscaler<Live> {
        Autoscaler::with_source(Live { admin }, topology_rx, status_file)
    }
}

impl<S: Source> Autoscaler<S> {
    /// A controller of the groups of `topology_rx` that have an `autoscale` block, reading
    /// samples from `source`.
    pub fn with_source(
        source: S,
        topology_rx: watch::Receiver<Topology>,
        status_file: Option<PathBuf>,
    ) -> Autoscaler<S> {
        Autoscaler {
            source,
            topology_rx,
            controls: BTreeMap::new(),
            window: Window::default(),
            status_file,
            decisions_tx: broadcast::channel(64).0,
            clock: Clock::now(),
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
        match self.source.sample().await {
            Ok(sample) => self.window.push(now, &sample, self.keep()),
            Err(e) => tracing::debug!("autoscaler: {e:#}"),
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

    /// Sets up a controller per autoscaled group and forgets groups that no longer are; edits
    /// of a block (its metric, target, bounds) apply to its controller at the next sync.
    fn follow(&mut self, t: &Topology, now: Instant) {
        self.controls.retain(|name, _| t.group(name).is_some_and(|g| g.autoscale.is_some()));
        for g in &t.nodes {
            let Some(a) = &g.autoscale else { continue };
            let c = self.controls.entry(g.name.clone()).or_insert_with(|| Control {
                hpa: Hpa::default(),
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
                    synced_at: self.clock.unix(now),
                    last_decision: None,
                    decisions_total: 0,
                    decisions: Vec::new(),
                },
            });
            if c.state.metric != a.metric {
                c.state.value = None; // a value of the other metric until the next sync
            }
            c.state.current = g.replicas;
            c.state.min_replicas = a.min_replicas;
            c.state.max_replicas = a.max_replicas;
            c.state.metric = a.metric;
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
        let o = self.window.observe(now, g, a, span);
        let c = self.controls.get_mut(&g.name).expect("followed above");
        let sync = c.hpa.sync(now, g.replicas, &o, a);
        c.next_sync = now + Duration::from_millis(a.sync_ms);
        c.state.current = g.replicas;
        c.state.recommended = sync.recommendation.map_or(sync.desired, |r| r.replicas);
        c.state.desired = sync.desired;
        c.state.value = sync.recommendation.map(|r| r.value);
        c.state.synced_at = self.clock.unix(now);
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
        let at = self.clock.unix(Instant::now());
        let decision = Decision { at, from: g.replicas, to: sync.desired, reason };
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

/// What the metric measured, in words: `cpu 81% of the 0.50-core cap (target 60%)`,
/// `in_flight 3.2 per node (target 2)`.
fn measured(g: &NodeGroup, a: &Autoscale, value: f64) -> String {
    match a.metric {
        AutoscaleMetric::Cpu => format!(
            "cpu {:.0}% of the {:.2}-core cap (target {}%)",
            value * 100.0,
            g.cpus.unwrap_or(0.0),
            hpa::target_percent(a.target)
        ),
        AutoscaleMetric::InFlight => format!("in_flight {value:.1} per node (target {})", a.target),
        AutoscaleMetric::Rps => format!("rps {value:.1} per node (target {})", a.target),
    }
}

/// Why a sync changed the count, in the words `scalelab up`, `/state`, the dashboard, the
/// timeline and the tour show:
/// `cpu 93% of the 0.50-core cap (target 60%), 1 not ready, step limited to 5 per 15s`.
fn reason(g: &NodeGroup, a: &Autoscale, o: &Observation, sync: &hpa::Sync) -> String {
    let mut s = match sync.recommendation {
        Some(r) => measured(g, a, r.value),
        None => format!(
            "{} replicas, outside min_replicas..max_replicas ({}..{})",
            g.replicas, a.min_replicas, a.max_replicas
        ),
    };
    if sync.recommendation.is_some() {
        if o.unready() > 0 {
            s.push_str(&format!(", {} not ready", o.unready()));
        }
        if o.missing() > 0 {
            s.push_str(&format!(", {} without a value", o.missing()));
        }
    }
    for limit in &sync.limits {
        s.push_str(&match limit {
            Limit::OutOfBounds { .. } => continue,
            Limit::Stabilized { window, to } => format!(", held at {to} by the {:.0?} window", window),
            Limit::Rate { to } => format!(", step limited to {to} per {:.0?}", hpa::PERIOD),
            Limit::Bound { to } if *to == a.max_replicas => {
                let wanted = sync.recommendation.map_or(*to, |r| r.replicas);
                format!(", wants {wanted} but max_replicas is {to}")
            }
            Limit::Bound { to } => format!(", min_replicas is {to}"),
        });
    }
    s
}

#[cfg(test)]
mod tests;
