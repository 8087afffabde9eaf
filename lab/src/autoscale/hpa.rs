//! Kubernetes' HorizontalPodAutoscaler algorithm as its controller computes it
//! (`pkg/controller/podautoscaler`: `replica_calculator.go`, `horizontal.go`,
//! `metrics/utilization.go`), which is what counts where it and the prose docs
//! (`tasks/run-application/horizontal-pod-autoscale`) differ: pure functions of what was
//! measured and a clock the caller passes in, so every rule is tested with exact instants.
//!
//! One sync, for one group:
//!
//! ```text
//!   first sync of the group? ──► remember the count it runs as a recommendation
//!   count outside [min, max]? ──► bring it within, read no metric
//!   nodes: ready (a value) │ missing (ready, no value) │ unready (set aside)
//!        ▼
//!   ratio = cpu: ⌊Σused × 100 / Σcap⌋ % / target %      (whole percent, as the API has it)
//!           in_flight, rps: ⌊Σvalue / nodes⌋ / target     (in milli-units)
//!   (1 − tolerance) ≤ ratio ≤ (1 + tolerance)? keep
//!        │ missing: scale-down → cpu at max(100%, target) of its cap, others at the target;
//!        │          scale-up → 0; ratio exactly 1 → left out
//!        │ unready: scale-up → 0, otherwise left out      (recompute; a reversal keeps)
//!        ▼
//!   raw = ⌈ratio × nodes counted⌉ ──► stabilize: up = min of the up window,
//!                                               down = max of the down window
//!                                 ──► rate limits: up ≤ max(100%, 4 nodes) per 15 s,
//!                                                  down ≤ 100% per 15 s
//!                                 ──► clamp [min_replicas, max_replicas]
//! ```
//!
//! A sync where no node reported a value records nothing and changes nothing (the
//! controller's "did not receive metrics for any ready pods").

use std::collections::VecDeque;
use std::time::Duration;

use scalelab_topology::{Autoscale, AutoscaleMetric};
use tokio::time::Instant;

/// How the controller counts one node at a sync (`groupPods`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// Counted with what it measured over the sync period: cores used (`cpu`), requests in
    /// flight (`in_flight`) or per second (`rps`).
    Value(f64),
    /// Counted, but it reported nothing over the period.
    Missing,
    /// Set aside: not started yet; for `cpu` also not ready, or still initializing.
    Unready,
}

/// One node of a group at a sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub reading: Reading,
    /// Its CPU cap in cores: the request its CPU utilization is taken against (`cpu` only).
    pub request: f64,
}

/// What was measured of one group's nodes at a sync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub nodes: Vec<Node>,
}

impl Observation {
    /// Nodes counted but without a value.
    pub fn missing(&self) -> usize {
        self.nodes.iter().filter(|n| n.reading == Reading::Missing).count()
    }

    /// Nodes set aside.
    pub fn unready(&self) -> usize {
        self.nodes.iter().filter(|n| n.reading == Reading::Unready).count()
    }
}

/// What the metric alone recommends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// Replicas the metric asks for (before stabilization and rate limits).
    pub replicas: usize,
    /// The metric over the ready nodes: for `cpu` the utilization of their caps in whole
    /// percent, as a fraction (0.81 for 81%); for `in_flight` and `rps` the mean per node.
    pub value: f64,
}

/// A measured value in the API's milli-units, as the controller's metrics client reads it:
/// the value to the nano-unit (metrics-server reports CPU in nanocores), then
/// `Quantity.MilliValue()`, which rounds up.
pub fn measured_milli(x: f64) -> u64 {
    let nanos = (x.max(0.0) * 1e9).round() as u64;
    nanos.div_ceil(1_000_000)
}

/// A value of the spec (a cap, an `averageValue` target) in milli-units, as scalelab renders
/// it for Kubernetes: rounded to the milli (`cpus: 0.5` is `500m`).
pub fn spec_milli(x: f64) -> u64 {
    (x.max(0.0) * 1000.0).round() as u64
}

/// The `cpu` target as the API's whole percent, as scalelab renders it (`averageUtilization`).
pub fn target_percent(target: f64) -> u64 {
    (target.max(0.0) * 100.0).round() as u64
}

/// What a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// `cpu`: utilization of the requests in whole percent against this percent.
    Percent(u64),
    /// `in_flight`, `rps`: the mean per node in milli-units against this many milli-units.
    Milli(u64),
}

impl Target {
    fn of(metric: AutoscaleMetric, target: f64) -> Target {
        match metric {
            AutoscaleMetric::Cpu => Target::Percent(target_percent(target).max(1)),
            AutoscaleMetric::InFlight | AutoscaleMetric::Rps => Target::Milli(spec_milli(target).max(1)),
        }
    }

    /// The ratio of what `counted` (value, request; milli-units) measured to the target, and
    /// the value itself (see [`Recommendation::value`]): `GetResourceUtilizationRatio`
    /// (`Σused × 100 / Σrequest`, integer) or `GetMetricUsageRatio` (`Σvalue / n`, integer).
    /// `None` when nothing is counted, or the requests add up to nothing.
    fn ratio(self, counted: &[(u64, u64)]) -> Option<(f64, f64)> {
        let n = counted.len() as u64;
        if n == 0 {
            return None;
        }
        let sum: u64 = counted.iter().map(|&(v, _)| v).sum();
        match self {
            Target::Percent(t) => {
                let requested: u64 = counted.iter().map(|&(_, r)| r).sum();
                if requested == 0 {
                    return None;
                }
                let percent = sum.saturating_mul(100) / requested;
                Some((percent as f64 / t as f64, percent as f64 / 100.0))
            }
            Target::Milli(t) => {
                let mean = sum / n;
                Some((mean as f64 / t as f64, mean as f64 / 1000.0))
            }
        }
    }

    /// What a missing node counts as on a scale-down: 100% of its request, or the target when
    /// that is higher (`cpu`); the target itself (the others).
    fn fallback(self, request: u64) -> u64 {
        match self {
            Target::Percent(t) => request * t.max(100) / 100,
            Target::Milli(t) => t,
        }
    }
}

/// The controller's tolerance test, as it writes it: `(1 − tolerance) ≤ ratio ≤ (1 + tolerance)`.
fn within(ratio: f64, tolerance: f64) -> bool {
    (1.0 - tolerance) <= ratio && ratio <= (1.0 + tolerance)
}

/// `⌈ratio × nodes⌉`, a plain ceiling as the controller takes it (no allowance for
/// floating-point dust: 7 × 29/7 is 29.000000000000004, so 30).
fn replicas(ratio: f64, nodes: usize) -> usize {
    (ratio * nodes as f64).ceil() as usize
}

/// HPA's replica calculation (`GetResourceReplicas` for `cpu`, `GetMetricReplicas` for
/// `in_flight` and `rps`): `⌈nodes × ratio⌉`, nothing within the tolerance, missing and
/// unready nodes as the controller counts them. `None` when no node reported a value.
pub fn recommend(
    current: usize,
    o: &Observation,
    metric: AutoscaleMetric,
    target: f64,
    tolerance: f64,
) -> Option<Recommendation> {
    let target = Target::of(metric, target);
    let ready: Vec<(u64, u64)> = o
        .nodes
        .iter()
        .filter_map(|n| match n.reading {
            Reading::Value(v) => Some((measured_milli(v), spec_milli(n.request))),
            _ => None,
        })
        .collect();
    let requests = |reading: Reading| {
        o.nodes.iter().filter(move |n| n.reading == reading).map(|n| spec_milli(n.request))
    };
    let (ratio, value) = target.ratio(&ready)?;
    let keep = Some(Recommendation { replicas: current, value });
    let scale_up_with_unready = o.unready() > 0 && ratio > 1.0;
    if !scale_up_with_unready && o.missing() == 0 {
        if within(ratio, tolerance) {
            return keep;
        }
        return Some(Recommendation { replicas: replicas(ratio, ready.len()), value });
    }
    // Fill in the gaps and recompute over every node counted.
    let mut counted = ready;
    if ratio < 1.0 {
        counted.extend(requests(Reading::Missing).map(|r| (target.fallback(r), r)));
    } else if ratio > 1.0 {
        counted.extend(requests(Reading::Missing).map(|r| (0, r)));
    }
    if scale_up_with_unready {
        counted.extend(requests(Reading::Unready).map(|r| (0, r)));
    }
    let (new_ratio, _) = target.ratio(&counted)?;
    let reversed = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within(new_ratio, tolerance) || reversed {
        return keep;
    }
    let new = replicas(new_ratio, counted.len());
    if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
        return keep;
    }
    Some(Recommendation { replicas: new, value })
}

/// A scaling policy: at most `value` nodes (`Pods`) or `value` percent (`Percent`) per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Pods { value: usize, period: Duration },
    Percent { value: u32, period: Duration },
}

impl Policy {
    fn period(&self) -> Duration {
        match *self {
            Policy::Pods { period, .. } | Policy::Percent { period, .. } => period,
        }
    }
}

/// HPA's default policy period (`periodSeconds: 15`).
pub const PERIOD: Duration = Duration::from_secs(15);

/// One direction of `behavior`: its stabilization window and policies (combined with
/// `selectPolicy: Max`, the default: the policy that allows the biggest change wins).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization: Duration,
    pub policies: Vec<Policy>,
}

/// `behavior` for both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Behavior {
    /// HPA's default policies with the block's stabilization windows: up by at most
    /// max(100%, 4 nodes) per 15 s, down by at most 100% per 15 s.
    pub fn of(a: &Autoscale) -> Behavior {
        Behavior {
            up: Rules {
                stabilization: Duration::from_millis(a.scale_up_stabilization_ms),
                policies: vec![
                    Policy::Percent { value: 100, period: PERIOD },
                    Policy::Pods { value: 4, period: PERIOD },
                ],
            },
            down: Rules {
                stabilization: Duration::from_millis(a.scale_down_stabilization_ms),
                policies: vec![Policy::Percent { value: 100, period: PERIOD }],
            },
        }
    }
}

/// What bounded a decision, in words for its reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// The count in force was outside [min, max]: brought within, no metric read.
    OutOfBounds { to: usize },
    /// A stabilization window held the recommendation back.
    Stabilized { window: Duration, to: usize },
    /// A rate policy capped the step.
    Rate { to: usize },
    /// `max_replicas` or `min_replicas`.
    Bound { to: usize },
}

/// The outcome of one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    /// What the metric alone recommends (`None`: no metric was read, because the count was
    /// out of bounds, or none was there).
    pub recommendation: Option<Recommendation>,
    /// Replicas to run now.
    pub desired: usize,
    /// What kept `desired` from the raw recommendation, if anything.
    pub limits: Vec<Limit>,
}

/// One group's controller memory: past recommendations (for stabilization) and past scale
/// events (for the rate policies). It outlives edits of the group's metric and target, as
/// the controller's memory of an HPA outlives edits of its spec.
#[derive(Debug, Default)]
pub struct Hpa {
    /// Whether the count found at the first sync is recorded (`recordInitialRecommendation`).
    started: bool,
    recommendations: VecDeque<(Instant, usize)>,
    ups: VecDeque<(Instant, usize)>,
    downs: VecDeque<(Instant, usize)>,
}

impl Hpa {
    /// A sync at `now` (`reconcileAutoscaler`): record the first count, bring an out-of-range
    /// count within bounds, else recommend, stabilize, rate-limit, clamp.
    pub fn sync(&mut self, now: Instant, current: usize, o: &Observation, a: &Autoscale) -> Sync {
        if !self.started {
            // The count the group runs when the controller takes it is a recommendation like
            // any other: a scale-down window holds it.
            self.recommendations.push_back((now, current));
            self.started = true;
        }
        let bounded = current.clamp(a.min_replicas, a.max_replicas.max(a.min_replicas));
        if bounded != current {
            let limits = vec![Limit::OutOfBounds { to: bounded }];
            return Sync { recommendation: None, desired: bounded, limits };
        }
        let Some(recommendation) = recommend(current, o, a.metric, a.target, a.tolerance) else {
            return Sync { recommendation: None, desired: current, limits: Vec::new() };
        };
        let behavior = Behavior::of(a);
        let mut limits = Vec::new();
        let stabilized = self.stabilize(now, current, recommendation.replicas, &behavior);
        if stabilized != recommendation.replicas {
            let window = if recommendation.replicas > current {
                behavior.up.stabilization
            } else {
                behavior.down.stabilization
            };
            limits.push(Limit::Stabilized { window, to: stabilized });
        }
        let desired = self.rate_limit(now, current, stabilized, a, &behavior, &mut limits);
        Sync { recommendation: Some(recommendation), desired, limits }
    }

    /// Records a change of replicas made at `now` (the controller acted on a sync).
    pub fn scaled(&mut self, now: Instant, from: usize, to: usize) {
        match to.cmp(&from) {
            std::cmp::Ordering::Greater => self.ups.push_back((now, to - from)),
            std::cmp::Ordering::Less => self.downs.push_back((now, from - to)),
            std::cmp::Ordering::Equal => {}
        }
    }

    /// `stabilizeRecommendationWithBehaviors`: the current count brought within [min of the
    /// up window, max of the down window], this recommendation included; then remembered.
    fn stabilize(&mut self, now: Instant, current: usize, recommended: usize, b: &Behavior) -> usize {
        let keep = b.up.stabilization.max(b.down.stabilization);
        while self.recommendations.front().is_some_and(|&(t, _)| now.duration_since(t) > keep) {
            self.recommendations.pop_front();
        }
        let (mut up, mut down) = (recommended, recommended);
        for &(t, r) in &self.recommendations {
            if now.duration_since(t) < b.up.stabilization {
                up = up.min(r);
            }
            if now.duration_since(t) < b.down.stabilization {
                down = down.max(r);
            }
        }
        self.recommendations.push_back((now, recommended));
        current.max(up).min(down)
    }

    /// `convertDesiredReplicasWithBehaviorRate`: a step no bigger than the policies allow
    /// since each period began, and within [min, max].
    fn rate_limit(
        &mut self,
        now: Instant,
        current: usize,
        desired: usize,
        a: &Autoscale,
        b: &Behavior,
        limits: &mut Vec<Limit>,
    ) -> usize {
        let longest =
            b.up.policies.iter().chain(&b.down.policies).map(Policy::period).max().unwrap_or(PERIOD);
        for events in [&mut self.ups, &mut self.downs] {
            while events.front().is_some_and(|&(t, _)| now.duration_since(t) > longest) {
                events.pop_front();
            }
        }
        let changed = |events: &VecDeque<(Instant, usize)>, period: Duration| -> usize {
            events.iter().filter(|&&(t, _)| now.duration_since(t) < period).map(|&(_, n)| n).sum()
        };
        let period_start = |p: &Policy| {
            (current + changed(&self.downs, p.period())).saturating_sub(changed(&self.ups, p.period()))
        };
        if desired > current {
            let allowed =
                b.up.policies
                    .iter()
                    .map(|p| {
                        let start = period_start(p);
                        match *p {
                            Policy::Pods { value, .. } => start + value,
                            Policy::Percent { value, .. } => {
                                (start as f64 * (1.0 + value as f64 / 100.0)).ceil() as usize
                            }
                        }
                    })
                    .max()
                    .unwrap_or(current)
                    .max(current);
            if allowed < a.max_replicas && desired > allowed {
                limits.push(Limit::Rate { to: allowed });
                return allowed;
            }
            if desired > a.max_replicas {
                limits.push(Limit::Bound { to: a.max_replicas });
                return a.max_replicas;
            }
        } else if desired < current {
            let allowed = b
                .down
                .policies
                .iter()
                .map(|p| {
                    let start = period_start(p);
                    match *p {
                        Policy::Pods { value, .. } => start.saturating_sub(value),
                        Policy::Percent { value, .. } => {
                            (start as f64 * (1.0 - value as f64 / 100.0)).max(0.0) as usize
                        }
                    }
                })
                .min()
                .unwrap_or(current)
                .min(current);
            if allowed > a.min_replicas && desired < allowed {
                limits.push(Limit::Rate { to: allowed });
                return allowed;
            }
            if desired < a.min_replicas {
                limits.push(Limit::Bound { to: a.min_replicas });
                return a.min_replicas;
            }
        }
        desired
    }
}

#[cfg(test)]
mod tests;
