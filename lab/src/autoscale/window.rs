//! What the autoscaler measured lately: the balancer's live samples (one a second, from its
//! admin `GET /live`), cut down to each node's health and metrics, kept for the longest sync
//! period in force, and turned into one [`Observation`] per group at a sync.

use std::collections::VecDeque;
use std::time::Duration;

use scalelab_balancer::live::Sample;
use scalelab_topology::{AutoscaleMetric, NodeGroup};
use tokio::time::Instant;

use super::hpa::Observation;

/// One node in one sample.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    node: String,
    group: String,
    healthy: bool,
    /// Cores used over the second before the sample, and the node's cap.
    cpu: Option<f64>,
    cpu_cap: Option<f64>,
    in_flight: f64,
    rps: f64,
}

/// The recent samples.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<(Instant, Vec<Point>)>,
}

impl Window {
    /// Adds the sample taken at `at`, and forgets samples older than `keep`.
    pub fn push(&mut self, at: Instant, sample: &Sample, keep: Duration) {
        let points = sample
            .nodes
            .iter()
            .map(|n| Point {
                node: n.name.clone(),
                group: n.group.clone(),
                healthy: n.healthy,
                cpu: n.cpu,
                cpu_cap: n.cpu_cap,
                in_flight: n.in_flight as f64,
                rps: n.rps,
            })
            .collect();
        self.samples.push_back((at, points));
        while self.samples.front().is_some_and(|(t, _)| at.duration_since(*t) > keep) {
            self.samples.pop_front();
        }
    }

    /// The group's nodes at `now`: ready ones are those healthy in the newest sample, each
    /// with the mean of `metric` over the last `span` (missing when it reported none); the
    /// rest of the group's `current` replicas are not ready. With no sample within `span`,
    /// every node counts as not ready, so nothing changes.
    pub fn observe(
        &self,
        now: Instant,
        g: &NodeGroup,
        metric: AutoscaleMetric,
        span: Duration,
    ) -> Observation {
        let recent: Vec<&(Instant, Vec<Point>)> =
            self.samples.iter().filter(|(t, _)| now.duration_since(*t) <= span).collect();
        let Some((_, newest)) = recent.last() else {
            return Observation { values: Vec::new(), missing: 0, unready: g.replicas };
        };
        let ready: Vec<&Point> = newest.iter().filter(|p| p.group == g.name && p.healthy).collect();
        let mut o =
            Observation { values: Vec::new(), missing: 0, unready: g.replicas.saturating_sub(ready.len()) };
        for node in ready {
            let values: Vec<f64> = recent
                .iter()
                .flat_map(|(_, points)| points.iter().filter(|p| p.node == node.node && p.group == g.name))
                .filter_map(|p| value(p, metric, g.cpus))
                .collect();
            if values.is_empty() {
                o.missing += 1;
            } else {
                o.values.push(values.iter().sum::<f64>() / values.len() as f64);
            }
        }
        o
    }
}

/// A node's value of `metric`: CPU as a fraction of its cap (the node's own, or the group's).
fn value(p: &Point, metric: AutoscaleMetric, group_cap: Option<f64>) -> Option<f64> {
    match metric {
        AutoscaleMetric::Cpu => {
            let cap = p.cpu_cap.or(group_cap).filter(|c| *c > 0.0)?;
            Some(p.cpu? / cap)
        }
        AutoscaleMetric::InFlight => Some(p.in_flight),
        AutoscaleMetric::Rps => Some(p.rps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(nodes: &[(&str, bool, Option<f64>)]) -> Sample {
        let nodes = nodes
            .iter()
            .map(|(name, healthy, cpu)| {
                serde_json::json!({
                    "name": name, "addr": "127.0.0.1:1", "group": "node", "healthy": healthy,
                    "healthy_since": 0.0, "rps": 10.0, "op2_rps": 0.0, "in_flight": 2, "p50_ms": 1.0,
                    "p99_ms": 2.0, "errors_per_s": 0.0, "retries_per_s": 0.0, "cpu": cpu,
                    "cpu_cap": 0.5, "workers_configured": 1, "workers": []
                })
            })
            .collect::<Vec<_>>();
        serde_json::from_value(serde_json::json!({
            "t": 0.0, "algorithm": "round_robin", "cores": 2, "op2_cpu_ms": 20, "theory_rps": 25.0,
            "rps": 0.0, "op2_rps": 0.0, "nodes": nodes, "changes": [], "last_error": null
        }))
        .unwrap()
    }

    fn group(replicas: usize) -> NodeGroup {
        let t = scalelab_topology::Topology::from_yaml(&format!(
            "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
             nodes: [{{ name: node, replicas: {replicas}, workers: 1, cpus: 0.5, port: 8081 }}]\n"
        ))
        .unwrap();
        t.nodes[0].clone()
    }

    #[test]
    fn cpu_is_averaged_over_the_span_against_the_cap() {
        let t0 = Instant::now();
        let mut w = Window::default();
        let keep = Duration::from_secs(10);
        w.push(t0, &sample(&[("node-1", true, Some(0.1))]), keep);
        w.push(t0 + Duration::from_secs(1), &sample(&[("node-1", true, Some(0.3))]), keep);
        let o =
            w.observe(t0 + Duration::from_secs(1), &group(1), AutoscaleMetric::Cpu, Duration::from_secs(5));
        assert_eq!(o, Observation { values: vec![0.4], missing: 0, unready: 0 }, "(0.1+0.3)/2 of 0.5");
        let o = w.observe(
            t0 + Duration::from_secs(1),
            &group(1),
            AutoscaleMetric::InFlight,
            Duration::from_secs(5),
        );
        assert_eq!(o.values, [2.0]);
    }

    #[test]
    fn unhealthy_absent_and_silent_nodes_are_told_apart() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.push(
            t0,
            &sample(&[("node-1", true, Some(0.2)), ("node-2", false, Some(0.5)), ("node-3", true, None)]),
            Duration::from_secs(10),
        );
        let o = w.observe(t0, &group(4), AutoscaleMetric::Cpu, Duration::from_secs(5));
        // node-2 unhealthy and node-4 not discovered yet: not ready; node-3 said nothing: missing.
        assert_eq!(o, Observation { values: vec![0.4], missing: 1, unready: 2 });
    }

    #[test]
    fn old_samples_are_forgotten() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.push(t0, &sample(&[("node-1", true, Some(0.5))]), Duration::from_secs(2));
        w.push(t0 + Duration::from_secs(3), &sample(&[("node-1", true, Some(0.1))]), Duration::from_secs(2));
        assert_eq!(w.samples.len(), 1);
        let o =
            w.observe(t0 + Duration::from_secs(10), &group(1), AutoscaleMetric::Cpu, Duration::from_secs(5));
        assert_eq!(o, Observation { values: vec![], missing: 0, unready: 1 }, "nothing recent");
    }
}
