//! What the balancer measured lately: its live samples (one a second), cut down to each
//! node's health, start and metrics, kept for the longest sync period in force, and sorted at
//! a sync into one [`Observation`] per group, node by node, as the controller's `groupPods`
//! sorts pods:
//!
//! - a node the group runs but the balancer does not list yet has not started (a `Pending`
//!   pod): set aside, for every metric;
//! - a listed node is a running pod, counted; *missing* when it reported no value over the
//!   sync period (the controller looks for a value before it looks at readiness);
//! - for `cpu` only, a listed node with values is also sorted by readiness, with its start
//!   being when the balancer first listed it:
//!   - within `cpu_initialization_period_ms` of its start, its samples taken while it is not
//!     ready, or within one sample's window (1 s) of its last readiness change, are set aside;
//!   - after that period, it is set aside only while it is not ready and has never been ready
//!     (its last health change came within the same period of its start: Kubernetes'
//!     `--horizontal-pod-autoscaler-initial-readiness-delay`, 30 s there, is this one period
//!     here);
//!   - a node left with no sample is set aside (*unready*);
//! - `in_flight` and `rps` count every listed node, ready or not, as the controller counts
//!   pods for a Pods metric.
//!
//! Times of health and start are the balancer's (Unix seconds in the sample) and are only
//! compared with each other; the window's own ages are `tokio::time` instants.

use std::collections::VecDeque;
use std::time::Duration;

use scalelab_balancer::live::{Sample, SAMPLE_EVERY};
use scalelab_topology::{Autoscale, AutoscaleMetric, NodeGroup};
use tokio::time::Instant;

use super::hpa::{Node, Observation, Reading};

/// One node in one sample.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    /// Its address: one node's identity (with DNS discovery its name may be its group's).
    addr: String,
    group: String,
    healthy: bool,
    /// Unix times (the balancer's clock) of its last health change and of when the balancer
    /// found it.
    healthy_since: f64,
    found_at: f64,
    /// Cores used over the second before the sample, and the node's cap.
    cpu: Option<f64>,
    cpu_cap: Option<f64>,
    in_flight: f64,
    rps: f64,
}

/// One sample, as taken.
#[derive(Debug)]
struct Taken {
    /// When the autoscaler took it.
    at: Instant,
    /// When the balancer made it (Unix seconds, its clock).
    t: f64,
    points: Vec<Point>,
}

/// The recent samples.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<Taken>,
}

impl Window {
    /// Adds the sample taken at `at`, and forgets samples older than `keep`.
    pub fn push(&mut self, at: Instant, sample: &Sample, keep: Duration) {
        let points = sample
            .nodes
            .iter()
            .map(|n| Point {
                addr: n.addr.clone(),
                group: n.group.clone(),
                healthy: n.healthy,
                healthy_since: n.healthy_since,
                found_at: n.found_at,
                cpu: n.cpu,
                cpu_cap: n.cpu_cap,
                in_flight: n.in_flight as f64,
                rps: n.rps,
            })
            .collect();
        self.samples.push_back(Taken { at, t: sample.t, points });
        while self.samples.front().is_some_and(|s| at.duration_since(s.at) > keep) {
            self.samples.pop_front();
        }
    }

    /// Group `g`'s nodes at `now`, sorted by the rules above over the samples of the last
    /// `span`. With no sample within `span` there is no node to count, so no recommendation.
    pub fn observe(&self, now: Instant, g: &NodeGroup, a: &Autoscale, span: Duration) -> Observation {
        let recent: Vec<&Taken> = self.samples.iter().filter(|s| now.duration_since(s.at) <= span).collect();
        let Some(newest) = recent.last() else {
            return Observation::default();
        };
        let init = Duration::from_millis(a.cpu_initialization_period_ms).as_secs_f64();
        let listed: Vec<&Point> = newest.points.iter().filter(|p| p.group == g.name).collect();
        let mut nodes: Vec<Node> = listed
            .iter()
            .map(|node| {
                let history: Vec<(f64, &Point)> = recent
                    .iter()
                    .filter_map(|s| {
                        s.points.iter().find(|p| p.group == g.name && p.addr == node.addr).map(|p| (s.t, p))
                    })
                    .collect();
                let reading = match a.metric {
                    AutoscaleMetric::Cpu => cpu_reading(node, newest.t, &history, init),
                    AutoscaleMetric::InFlight => mean(history.iter().map(|(_, p)| p.in_flight)),
                    AutoscaleMetric::Rps => mean(history.iter().map(|(_, p)| p.rps)),
                };
                Node { reading, request: node.cpu_cap.filter(|c| *c > 0.0).or(g.cpus).unwrap_or(0.0) }
            })
            .collect();
        let starting = Node { reading: Reading::Unready, request: g.cpus.unwrap_or(0.0) };
        nodes.extend(std::iter::repeat_n(starting, g.replicas.saturating_sub(listed.len())));
        Observation { nodes }
    }
}

/// The mean of `values`; missing when there are none.
fn mean(values: impl Iterator<Item = f64>) -> Reading {
    let values: Vec<f64> = values.collect();
    if values.is_empty() {
        return Reading::Missing;
    }
    Reading::Value(values.iter().sum::<f64>() / values.len() as f64)
}

/// `groupPods` for `cpu`: the node's CPU over the samples of `history` (sample time, point)
/// that the controller would count, judged by its state in the newest sample (`node`, taken
/// at `now`) and the initialization period `init` (seconds).
fn cpu_reading(node: &Point, now: f64, history: &[(f64, &Point)], init: f64) -> Reading {
    let measured: Vec<(f64, f64)> = history.iter().filter_map(|&(t, p)| Some((t, p.cpu?))).collect();
    if measured.is_empty() {
        return Reading::Missing;
    }
    let (start, since) = (node.found_at, node.healthy_since);
    let counted: Vec<f64> = if now < start + init {
        // Still initializing: only what was measured wholly after it became ready.
        let window = SAMPLE_EVERY.as_secs_f64();
        measured.iter().filter(|&&(t, _)| node.healthy && t >= since + window).map(|&(_, v)| v).collect()
    } else if !node.healthy && since < start + init {
        Vec::new() // never ready
    } else {
        measured.iter().map(|&(_, v)| v).collect()
    };
    match mean(counted.into_iter()) {
        Reading::Missing => Reading::Unready,
        reading => reading,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node in a sample: name, healthy, healthy since and found at (seconds), CPU used.
    #[derive(Clone)]
    struct At<'a>(&'a str, bool, f64, f64, Option<f64>);

    fn sample(t: f64, nodes: &[At]) -> Sample {
        let nodes = nodes
            .iter()
            .map(|At(name, healthy, since, found, cpu)| {
                let port = 8080 + name.trim_start_matches("node-").parse::<u16>().unwrap();
                serde_json::json!({
                    "name": name, "addr": format!("127.0.0.1:{port}"), "group": "node",
                    "healthy": healthy, "healthy_since": since, "found_at": found, "rps": 10.0,
                    "op2_rps": 0.0, "in_flight": 2, "p50_ms": 1.0, "p99_ms": 2.0, "errors_per_s": 0.0,
                    "retries_per_s": 0.0, "cpu": cpu, "cpu_cap": 0.5, "workers_configured": 1,
                    "workers": []
                })
            })
            .collect::<Vec<_>>();
        serde_json::from_value(serde_json::json!({
            "t": t, "algorithm": "round_robin", "cores": 2, "op2_cpu_ms": 20, "theory_rps": 25.0,
            "rps": 0.0, "op2_rps": 0.0, "nodes": nodes, "changes": [], "last_error": null
        }))
        .unwrap()
    }

    fn group(replicas: usize, metric: &str) -> (NodeGroup, Autoscale) {
        let t = scalelab_topology::Topology::from_yaml(&format!(
            "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
             nodes: [{{ name: node, replicas: {replicas}, workers: 1, cpus: 0.5, port: 8081, \
             autoscale: {{ max_replicas: 8, metric: {metric}, target: 0.6, \
             cpu_initialization_period_ms: 10000 }} }}]\n"
        ))
        .unwrap();
        let g = t.nodes[0].clone();
        let a = g.autoscale.clone().unwrap();
        (g, a)
    }

    fn value(v: f64) -> Node {
        Node { reading: Reading::Value(v), request: 0.5 }
    }

    const MISSING: Node = Node { reading: Reading::Missing, request: 0.5 };
    const UNREADY: Node = Node { reading: Reading::Unready, request: 0.5 };

    /// Samples one a second, at Unix times `t0`, `t0 + 1`, ..., pushed at matching instants;
    /// observed at the last one over a 5 s span.
    fn observe(t0: f64, samples: &[Vec<At>], replicas: usize, metric: &str) -> Observation {
        let start = Instant::now();
        let mut w = Window::default();
        for (i, nodes) in samples.iter().enumerate() {
            let at = start + Duration::from_secs(i as u64);
            w.push(at, &sample(t0 + i as f64, nodes), Duration::from_secs(10));
        }
        let (g, a) = group(replicas, metric);
        let now = start + Duration::from_secs(samples.len() as u64 - 1);
        w.observe(now, &g, &a, Duration::from_secs(5))
    }

    #[test]
    fn cpu_is_the_mean_of_the_span_in_cores_against_the_cap() {
        let o = observe(
            1000.0,
            &[vec![At("node-1", true, 0.0, 0.0, Some(0.1))], vec![At("node-1", true, 0.0, 0.0, Some(0.3))]],
            1,
            "cpu",
        );
        assert_eq!(o.nodes, [value(0.2)], "(0.1 + 0.3) / 2 cores, against its 0.5-core cap");
        let o = observe(1000.0, &[vec![At("node-1", true, 0.0, 0.0, Some(0.1))]], 1, "in_flight");
        assert_eq!(o.nodes, [value(2.0)]);
    }

    #[test]
    fn nodes_are_sorted_as_group_pods_sorts_pods() {
        // TestGroupPods, a long-started group (found at 0, now 1000 s; the period is 10 s):
        // node-1 ready; node-2 not ready since 900 s, after having been ready ("count in an
        // unready pod that was ready after initialization period"); node-3 not ready since
        // 5 s after its start ("unready pod that has never been ready after initialization
        // period"); node-4 says nothing ("a missing pod"); node-5 not listed yet ("pending
        // pods are unreadied").
        let nodes = vec![
            At("node-1", true, 0.0, 0.0, Some(0.2)),
            At("node-2", false, 900.0, 0.0, Some(0.4)),
            At("node-3", false, 5.0, 0.0, Some(0.1)),
            At("node-4", true, 0.0, 0.0, None),
        ];
        let o = observe(1000.0, &[nodes.clone()], 5, "cpu");
        assert_eq!(o.nodes, [value(0.2), value(0.4), UNREADY, MISSING, UNREADY]);
        // in_flight and rps set aside only the node that has not started
        // (TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale: unready pods count).
        let o = observe(1000.0, &[nodes.clone()], 5, "in_flight");
        assert_eq!(o.nodes, [value(2.0), value(2.0), value(2.0), value(2.0), UNREADY]);
        let o = observe(1000.0, &[nodes], 5, "rps");
        assert_eq!(o.nodes, [value(10.0), value(10.0), value(10.0), value(10.0), UNREADY]);
    }

    #[test]
    fn a_starting_nodes_cpu_counts_only_once_it_is_ready_and_measured_after() {
        // Found at 1000 s, the period is 10 s. Samples at 1003..=1007 s.
        // node-1: ready since 1004.5 s: the samples of 1003 and 1004 (not ready then, but the
        // rule reads its state now), and 1005 (its second began before 1004.5 + 1) are set
        // aside; 1006 and 1007 count ("count in a ready pod with fresh metrics during
        // initialization period").
        // node-2: ready since 1006.5 s: nothing measured after 1007.5 ("unready a ready pod
        // without fresh metrics during initialization period").
        // node-3: not ready now ("unready an unready pod during initialization period").
        // node-4: found long ago, ready since 900 s: every sample counts.
        let at = |t: f64| {
            vec![
                At("node-1", t >= 1004.5, 1004.5, 1000.0, Some(if t >= 1006.0 { 0.3 } else { 0.5 })),
                At("node-2", t >= 1006.5, 1006.5, 1000.0, Some(0.5)),
                At("node-3", false, 1002.0, 1000.0, Some(0.5)),
                At("node-4", true, 900.0, 0.0, Some(0.1)),
            ]
        };
        let samples: Vec<Vec<At>> = (3..=7).map(|s| at(1000.0 + s as f64)).collect();
        let o = observe(1003.0, &samples, 4, "cpu");
        assert_eq!(o.nodes, [value(0.3), UNREADY, UNREADY, value(0.1)]);
        // Past the period the same samples all count, and the not-ready node-3 became
        // unready 2 s after its start: never ready, still set aside.
        let later: Vec<Vec<At>> = (13..=17).map(|s| at(1000.0 + s as f64)).collect();
        let o = observe(1013.0, &later, 4, "cpu");
        assert_eq!(o.nodes, [value(0.3), value(0.5), UNREADY, value(0.1)]);
    }

    #[test]
    fn a_zero_period_sets_nothing_aside() {
        let nodes = vec![At("node-1", false, 1000.5, 1000.0, Some(0.4))];
        let start = Instant::now();
        let mut w = Window::default();
        w.push(start, &sample(1001.0, &nodes), Duration::from_secs(10));
        let (g, mut a) = group(1, "cpu");
        assert_eq!(w.observe(start, &g, &a, Duration::from_secs(5)).nodes, [UNREADY]);
        a.cpu_initialization_period_ms = 0;
        assert_eq!(w.observe(start, &g, &a, Duration::from_secs(5)).nodes, [value(0.4)]);
    }

    #[test]
    fn old_samples_are_forgotten() {
        let t0 = Instant::now();
        let mut w = Window::default();
        let nodes = [At("node-1", true, 0.0, 0.0, Some(0.5))];
        w.push(t0, &sample(1000.0, &nodes), Duration::from_secs(2));
        w.push(t0 + Duration::from_secs(3), &sample(1003.0, &nodes), Duration::from_secs(2));
        assert_eq!(w.samples.len(), 1);
        let (g, a) = group(1, "cpu");
        let o = w.observe(t0 + Duration::from_secs(10), &g, &a, Duration::from_secs(5));
        assert_eq!(o, Observation::default(), "nothing recent: nothing to count");
    }
}
