//! A group's `autoscale` block as an `autoscaling/v2` HorizontalPodAutoscaler, field by field:
//!
//! | topology | HorizontalPodAutoscaler |
//! |---|---|
//! | `min_replicas`, `max_replicas` | `minReplicas`, `maxReplicas` |
//! | `metric: cpu`, `target` (fraction of `cpus`) | `Resource` metric `cpu`, `averageUtilization` = target × 100 (percent of the request, which equals `cpus`) |
//! | `metric: in_flight` / `rps`, `target` | `Pods` metric `scalelab_balancer_in_flight` / `scalelab_balancer_requests_per_second`, `averageValue` = target: needs a custom-metrics adapter |
//! | `scale_down_stabilization_ms`, `scale_up_stabilization_ms` | `behavior.scaleDown` / `scaleUp.stabilizationWindowSeconds`, rounded up to whole seconds |
//! | `tolerance` | Kubernetes' default, 0.1, when it is 0.1; otherwise `behavior.*.tolerance` (Kubernetes 1.33+) |
//! | `sync_ms` | none: the cluster's `--horizontal-pod-autoscaler-sync-period` (15 s) |
//! | `cpu_initialization_period_ms` | none: the cluster's `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min) and `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s), flags of the controller manager |
//!
//! Why a metric Kubernetes does not measure is rendered, not refused: the topology is valid
//! and the other files render from it; refusing would take `compose.yaml` away from a user who
//! autoscales on `in_flight` natively. The HPA object is valid Kubernetes; what it needs (an
//! adapter serving the metric per pod) is said above it, in `scalelab compose`'s output and in
//! the README. Without an adapter Kubernetes reports `FailedGetPodsMetric` on the HPA and
//! leaves the replica count alone: nothing scales wrongly.

use scalelab_topology::{Autoscale, AutoscaleMetric, NodeGroup};

use super::objects::*;
use super::{meta, quantity};

/// The HPA tolerance Kubernetes applies when an object sets none
/// (`--horizontal-pod-autoscaler-tolerance`); the topology's default too.
const KUBERNETES_TOLERANCE: f64 = 0.1;

/// The Pods metric an adapter must serve for a metric Kubernetes does not measure. Named after
/// what the balancer exports on its admin `/metrics`: the gauge itself for `in_flight`, and for
/// `rps` the name prometheus-adapter's default rule gives the rate of a `_total` counter.
pub fn pods_metric_name(metric: AutoscaleMetric) -> &'static str {
    match metric {
        AutoscaleMetric::Cpu => "cpu",
        AutoscaleMetric::InFlight => "scalelab_balancer_in_flight",
        AutoscaleMetric::Rps => "scalelab_balancer_requests_per_second",
    }
}

/// A window in ms as the whole seconds the API takes, rounded up (never shorter than asked;
/// the topology's bound, 3,600,000 ms, is the API's 3,600 s).
pub fn window_seconds(ms: u64) -> u32 {
    ms.div_ceil(1000) as u32
}

/// The CPU target as the API's whole percent of the request.
pub fn utilization_percent(target: f64) -> u32 {
    (target * 100.0).round() as u32
}

/// The HPA of group `g`.
pub fn autoscaler(g: &NodeGroup, a: &Autoscale) -> HorizontalPodAutoscaler {
    let metric = match a.metric {
        AutoscaleMetric::Cpu => MetricSpec {
            kind: "Resource".into(),
            resource: Some(ResourceMetric {
                name: "cpu".into(),
                target: MetricTarget {
                    kind: "Utilization".into(),
                    average_utilization: Some(utilization_percent(a.target)),
                    average_value: None,
                },
            }),
            pods: None,
        },
        other => MetricSpec {
            kind: "Pods".into(),
            resource: None,
            pods: Some(PodsMetric {
                metric: MetricIdentifier { name: pods_metric_name(other).into() },
                target: MetricTarget {
                    kind: "AverageValue".into(),
                    average_utilization: None,
                    average_value: Some(quantity(a.target)),
                },
            }),
        },
    };
    // Written only when it differs from Kubernetes' own: clusters before 1.33 reject the
    // field, and with the default there is nothing to say.
    let tolerance = ((a.tolerance - KUBERNETES_TOLERANCE).abs() > 1e-9).then(|| quantity(a.tolerance));
    let rules =
        |ms| ScalingRules { stabilization_window_seconds: window_seconds(ms), tolerance: tolerance.clone() };
    HorizontalPodAutoscaler {
        api_version: "autoscaling/v2".into(),
        kind: "HorizontalPodAutoscaler".into(),
        metadata: meta(&g.name, "node"),
        spec: HpaSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: g.name.clone(),
            },
            min_replicas: a.min_replicas as u32,
            max_replicas: a.max_replicas as u32,
            metrics: vec![metric],
            behavior: Behavior {
                scale_up: rules(a.scale_up_stabilization_ms),
                scale_down: rules(a.scale_down_stabilization_ms),
            },
        },
    }
}

/// What the HPA of group `g` means against its `autoscale` block, and what it cannot say.
pub fn comment(g: &NodeGroup, a: &Autoscale) -> Vec<String> {
    let mut lines = vec![format!(
        "`{}` autoscale: {} to {} replicas on {} (target {}).",
        g.name,
        a.min_replicas,
        a.max_replicas,
        a.metric.as_str(),
        a.target
    )];
    lines.push(match a.metric {
        AutoscaleMetric::Cpu => format!(
            "Target {} of cpus -> averageUtilization {}: utilization is against the CPU request, which is \
             cpus ({}) here.",
            a.target,
            utilization_percent(a.target),
            g.cpus.map_or_else(|| "unset".to_string(), |c| c.to_string())
        ),
        metric => format!(
            "NEEDS A METRICS ADAPTER. Kubernetes measures CPU and memory itself, not {}: scalelab's \
             balancer does ({} per backend pod on its admin /metrics). This HPA reads the Pods metric {} \
             (average {} per pod), which only a custom-metrics adapter serves (e.g. prometheus-adapter, \
             mapping each backend address to its pod). Without one the HPA reports FailedGetPodsMetric \
             and leaves the replica count alone.",
            metric.as_str(),
            match metric {
                AutoscaleMetric::Rps => "scalelab_balancer_requests_total",
                _ => "scalelab_balancer_in_flight",
            },
            pods_metric_name(metric),
            quantity(a.target)
        ),
    });
    lines.push(format!(
        "Windows: scale_down_stabilization_ms {} -> {} s, scale_up_stabilization_ms {} -> {} s; the rate \
         policies are Kubernetes' defaults.",
        a.scale_down_stabilization_ms,
        window_seconds(a.scale_down_stabilization_ms),
        a.scale_up_stabilization_ms,
        window_seconds(a.scale_up_stabilization_ms)
    ));
    lines.push(if (a.tolerance - KUBERNETES_TOLERANCE).abs() > 1e-9 {
        format!(
            "tolerance {} -> behavior.*.tolerance: needs Kubernetes 1.33 or later (KEP-4951, feature gate \
             HPAConfigurableTolerance); older API servers reject the field.",
            a.tolerance
        )
    } else {
        "tolerance 0.1: Kubernetes' own default (--horizontal-pod-autoscaler-tolerance).".into()
    });
    lines.push(format!(
        "sync_ms {}: no per-object setting; the cluster decides every --horizontal-pod-autoscaler-sync-period \
         of its controller manager (15 s by default).",
        a.sync_ms
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_up_to_whole_seconds() {
        assert_eq!(window_seconds(0), 0);
        assert_eq!(window_seconds(1), 1);
        assert_eq!(window_seconds(60_000), 60);
        assert_eq!(window_seconds(60_001), 61);
        assert_eq!(window_seconds(3_600_000), 3600);
    }

    #[test]
    fn cpu_targets_become_whole_percent() {
        assert_eq!(utilization_percent(0.6), 60);
        assert_eq!(utilization_percent(0.05), 5);
        assert_eq!(utilization_percent(1.0), 100);
        assert_eq!(utilization_percent(0.666), 67);
    }
}
