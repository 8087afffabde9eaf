//! Kubernetes' HorizontalPodAutoscaler algorithm, as documented
//! (`tasks/run-application/horizontal-pod-autoscale`) and as its controller computes it
//! (`pkg/controller/podautoscaler`): pure functions of what was measured and a clock the
//! caller passes in, so every rule is tested with exact instants.
//!
//! One sync, for one group:
//!
//! ```text
//!   metrics of ready nodes ──► ratio = mean / target ──► within tolerance? keep
//!        │ missing (ready, no value): 100% of target on a scale-down, 0% on a scale-up
//!        │ not ready: set aside; 0% on a scale-up          (recompute; a reversal keeps)
//!        ▼
//!   raw = ceil(ratio × nodes) ──► stabilize: up = min of the up window,
//!                                            down = max of the down window
//!                             ──► rate limits: up ≤ max(100%, 4 nodes) per 15 s,
//!                                              down ≤ 100% per 15 s
//!                             ──► clamp [min_replicas, max_replicas]
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use scalelab_topology::Autoscale;
use tokio::time::Instant;

/// What was measured of one group's nodes at a sync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The metric of each ready node that reported one.
    pub values: Vec<f64>,
    /// Ready nodes that reported nothing.
    pub missing: usize,
    /// Nodes that are not ready (starting, or failing their health checks).
    pub unready: usize,
}

/// What the metric alone recommends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// Replicas the metric asks for (before stabilization and rate limits).
    pub replicas: usize,
    /// Mean of the ready nodes' values (`None`: none reported).
    pub mean: Option<f64>,
}

/// HPA's replica calculation (`GetResourceReplicas` / `GetMetricReplicas`): `ceil(nodes ×
/// mean / target)`, nothing within the tolerance, missing and unready nodes as the docs say.
pub fn recommend(current: usize, o: &Observation, target: f64, tolerance: f64) -> Recommendation {
    let n = o.values.len();
    if n == 0 {
        // No metrics at all: the HPA errors out and changes nothing.
        return Recommendation { replicas: current, mean: None };
    }
    let mean = o.values.iter().sum::<f64>() / n as f64;
    let ratio = mean / target;
    let within = |r: f64| (1.0 - r).abs() <= tolerance;
    let scale_up_with_unready = o.unready > 0 && ratio > 1.0;
    let found = Some(mean);
    if !scale_up_with_unready && o.missing == 0 {
        let replicas = if within(ratio) { current } else { (ratio * n as f64 - 1e-9).ceil() as usize };
        return Recommendation { replicas, mean: found };
    }
    // Fill in the gaps and recompute over every node counted.
    let mut sum = mean * n as f64;
    let mut count = n;
    if o.missing > 0 {
        if ratio < 1.0 {
            sum += target * o.missing as f64; // a scale-down: missing nodes at 100% of target
        }
        count += o.missing; // a scale-up: at 0%
    }
    if scale_up_with_unready {
        count += o.unready; // at 0%
    }
    let new_ratio = sum / count as f64 / target;
    let reversed = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within(new_ratio) || reversed {
        return Recommendation { replicas: current, mean: found };
    }
    let replicas = (new_ratio * count as f64 - 1e-9).ceil() as usize;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Recommendation { replicas: current, mean: found };
    }
    Recommendation { replicas, mean: found }
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
    pub recommendation: Recommendation,
    /// Replicas to run now.
    pub desired: usize,
    /// What kept `desired` from the raw recommendation, if anything.
    pub limits: Vec<Limit>,
}

/// One group's controller memory: past recommendations (for stabilization) and past scale
/// events (for the rate policies).
#[derive(Debug, Default)]
pub struct Hpa {
    recommendations: VecDeque<(Instant, usize)>,
    ups: VecDeque<(Instant, usize)>,
    downs: VecDeque<(Instant, usize)>,
}

impl Hpa {
    /// A sync at `now`: recommend, stabilize, rate-limit, clamp.
    pub fn sync(&mut self, now: Instant, current: usize, o: &Observation, a: &Autoscale) -> Sync {
        let behavior = Behavior::of(a);
        let recommendation = recommend(current, o, a.target, a.tolerance);
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
        Sync { recommendation, desired, limits }
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
