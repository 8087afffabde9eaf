//! What the balancer says while a load runs: [`AdminPoller`] asks its admin listener for
//! `/state` ([`StateReport`]: groups, replicas, autoscalers) and `/live` (the live sample:
//! each node's group and CPU) once a second, and keeps each answer as an [`AdminSample`]. An
//! ask that fails is a gap in the timeline, never an error of the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use scalelab_balancer::fetch::get_json;
use scalelab_balancer::live::Sample as LiveSample;
use scalelab_balancer::status::{Decision, StateReport};
use scalelab_loadgen::BaseUrl;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{unix, AdminSecond, AutoscaleReading, NodeCpu};

/// How often the balancer is asked.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long one ask may take: under a second, so asks never pile up.
const ASK_TIMEOUT: Duration = Duration::from_millis(800);

/// One ask's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSample {
    /// When it was asked, Unix seconds.
    pub at: f64,
    /// What it said.
    pub second: AdminSecond,
}

/// Everything asked during a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdminRecord {
    /// The admin URL.
    pub url: String,
    /// Asks made, and asks that got neither document.
    pub polls: u64,
    pub failed: u64,
    /// The answers, in order.
    pub samples: Vec<AdminSample>,
    /// Every autoscaler decision seen, with its group, once each.
    pub decisions: Vec<(String, Decision)>,
}

impl AdminRecord {
    /// Adds one ask's answers (either may be missing).
    pub fn push(&mut self, at: f64, state: Option<&StateReport>, live: Option<&LiveSample>) {
        self.polls += 1;
        if state.is_none() && live.is_none() {
            self.failed += 1;
            return;
        }
        for g in state.iter().flat_map(|s| &s.groups) {
            for d in g.autoscale.iter().flat_map(|a| &a.decisions) {
                let seen = self.decisions.iter().any(|(group, e)| group == &g.name && e == d);
                if !seen {
                    self.decisions.push((g.name.clone(), d.clone()));
                }
            }
        }
        let second = distill(state, live);
        // The balancer's first second has no live sample yet (`/live` answers `{}`): with
        // no groups on `/state` either, there is nothing to chart, and the second stays a gap.
        if !(second.replicas.is_empty() && second.cpu.is_empty()) {
            self.samples.push(AdminSample { at, second });
        }
    }
}

/// One second's view from `/state` and `/live`. Replicas come from `/state`'s groups when it
/// names any, otherwise from the nodes `/live` lists per group (the same count for a lab
/// without autoscalers).
pub fn distill(state: Option<&StateReport>, live: Option<&LiveSample>) -> AdminSecond {
    let groups = state.map(|s| s.groups.as_slice()).unwrap_or_default();
    let mut replicas: BTreeMap<String, usize> = groups.iter().map(|g| (g.name.clone(), g.replicas)).collect();
    if replicas.is_empty() {
        for n in live.iter().flat_map(|l| &l.nodes) {
            *replicas.entry(n.group.clone()).or_default() += 1;
        }
    }
    let autoscale = groups
        .iter()
        .filter_map(|g| g.autoscale.as_ref().map(|a| (g.name.clone(), a)))
        .map(|(name, a)| {
            let reading = AutoscaleReading {
                metric: a.metric,
                value: a.value,
                target: a.target,
                current: a.current,
                desired: a.desired,
            };
            (name, reading)
        })
        .collect();
    let cpu = live
        .iter()
        .flat_map(|l| &l.nodes)
        .map(|n| (n.name.clone(), NodeCpu { group: n.group.clone(), used: n.cpu, cap: n.cpu_cap }))
        .collect();
    AdminSecond { replicas, autoscale, cpu }
}

/// `GET path` as a `T`, or `None` (logged at debug) when it fails or takes over
/// [`ASK_TIMEOUT`].
async fn ask<T: serde::de::DeserializeOwned>(addr: SocketAddr, path: &str) -> Option<T> {
    match tokio::time::timeout(ASK_TIMEOUT, get_json(addr, path)).await {
        Ok(Ok(doc)) => Some(doc),
        Ok(Err(e)) => {
            tracing::debug!("admin {path}: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("admin {path}: no answer within {ASK_TIMEOUT:?}");
            None
        }
    }
}

/// Asks the balancer once a second until [`AdminPoller::finish`].
pub struct AdminPoller {
    stop_tx: oneshot::Sender<()>,
    task: JoinHandle<AdminRecord>,
}

impl AdminPoller {
    /// Resolves `url` (the error names `--admin`) and starts asking, at once and then every
    /// [`POLL_EVERY`]. Must be called on a Tokio runtime.
    pub async fn start(url: &BaseUrl) -> anyhow::Result<AdminPoller> {
        let addr: SocketAddr = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("--admin {url}: cannot resolve `{}`", url.host))?;
        let (state_path, live_path) = (url.target("/state"), url.target("/live"));
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let mut record = AdminRecord { url: url.url.clone(), ..AdminRecord::default() };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tick.tick() => {}
                }
                let at = unix(SystemTime::now());
                let (state, live): (Option<StateReport>, Option<LiveSample>) =
                    tokio::join!(ask(addr, &state_path), ask(addr, &live_path));
                record.push(at, state.as_ref(), live.as_ref());
            }
            record
        });
        Ok(AdminPoller { stop_tx, task })
    }

    /// Stops asking and returns what was said.
    pub async fn finish(self) -> AdminRecord {
        let _ = self.stop_tx.send(());
        self.task.await.unwrap_or_else(|e| {
            tracing::error!("the admin poller failed: {e}");
            AdminRecord::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalelab_balancer::status::{AutoscaleState, GroupState};

    /// `/state` as the balancer writes it, with `groups` (possibly empty).
    fn state(groups: &str) -> StateReport {
        serde_json::from_str(&format!(
            r#"{{"backends": [{{"name": "node-1", "addr": "127.0.0.1:9001", "healthy": true, "requests": 5}}],
                "healthy_backends": 1, "retries": 0, "algorithm": "round_robin", "discovery": "local",
                "listen": "127.0.0.1:8080", "admin": "127.0.0.1:9090", "threads": 1, "health_path": "/health",
                "health_interval_ms": 1000, "header_timeout_ms": 5000, "keepalive_timeout_ms": 60000,
                "max_connections": 1000, "groups": {groups}}}"#
        ))
        .unwrap()
    }

    /// `/live` with two nodes of group `node` and one of `slow`.
    fn live() -> LiveSample {
        let node = |name: &str, group: &str, cpu: Option<f64>, cap: Option<f64>| {
            serde_json::json!({"name": name, "addr": "127.0.0.1:1", "group": group, "healthy": true,
                "healthy_since": 0.0, "rps": 10.0, "op2_rps": 1.0, "in_flight": 1, "p50_ms": 1.0, "p99_ms": 2.0,
                "errors_per_s": 0.0, "retries_per_s": 0.0, "cpu": cpu, "cpu_cap": cap,
                "workers_configured": 1, "workers": [{"id": 1, "rps": 10.0, "share": 1.0}]})
        };
        serde_json::from_value(serde_json::json!({
            "t": 1.0, "algorithm": "round_robin", "cores": 2, "op2_cpu_ms": 20, "theory_rps": 100.0,
            "rps": 30.0, "op2_rps": 3.0, "changes": [], "last_error": null,
            "nodes": [node("node-1", "node", Some(0.4), Some(0.5)), node("node-2", "node", None, Some(0.5)),
                      node("slow-1", "slow", Some(0.1), None)]
        }))
        .unwrap()
    }

    #[test]
    fn without_groups_on_state_replicas_count_live_nodes() {
        let s = distill(Some(&state("[]")), Some(&live()));
        assert_eq!(s.replicas, BTreeMap::from([("node".into(), 2), ("slow".into(), 1)]));
        assert!(s.autoscale.is_empty());
        assert_eq!(s.cpu["node-1"], NodeCpu { group: "node".into(), used: Some(0.4), cap: Some(0.5) });
        assert_eq!(s.cpu["slow-1"].cap, None);
    }

    #[test]
    fn groups_on_state_give_replicas_and_the_autoscaler() {
        let decision =
            Decision { at: 100.0, from: 1, to: 2, reason: "cpu 0.9 of 0.5 cap, target 0.6".into() };
        let groups = vec![
            GroupState {
                name: "node".into(),
                replicas: 2,
                autoscale: Some(AutoscaleState {
                    group: "node".into(),
                    current: 2,
                    recommended: 3,
                    desired: 3,
                    min_replicas: 1,
                    max_replicas: 4,
                    metric: scalelab_topology::AutoscaleMetric::Cpu,
                    value: Some(0.9),
                    target: 0.6,
                    synced_at: 100.0,
                    last_decision: Some(decision.clone()),
                    decisions_total: 1,
                    decisions: vec![decision.clone()],
                }),
            },
            GroupState { name: "slow".into(), replicas: 1, autoscale: None },
        ];
        let st = state(&serde_json::to_string(&groups).unwrap());
        let s = distill(Some(&st), None);
        assert_eq!(s.replicas, BTreeMap::from([("node".into(), 2), ("slow".into(), 1)]));
        let a = &s.autoscale["node"];
        assert_eq!((a.value, a.target, a.current, a.desired), (Some(0.9), 0.6, 2, 3));
        assert!(s.cpu.is_empty(), "no /live, no CPU");

        // A decision reported by every ask is kept once.
        let mut record = AdminRecord::default();
        record.push(101.0, Some(&st), None);
        record.push(102.0, Some(&st), Some(&live()));
        record.push(103.0, None, None);
        assert_eq!(record.decisions, vec![("node".to_string(), decision)]);
        assert_eq!((record.polls, record.failed, record.samples.len()), (3, 1, 2));
        // An answer with nothing to chart (no groups, no live sample yet) is a gap too.
        record.push(104.0, Some(&state("[]")), None);
        assert_eq!((record.polls, record.failed, record.samples.len()), (4, 1, 2));
    }
}
