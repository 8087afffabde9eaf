//! The documented HPA examples and edge cases, each with exact instants.

use super::*;

fn block(min: usize, max: usize, target: f64, down_ms: u64) -> Autoscale {
    Autoscale {
        min_replicas: min,
        max_replicas: max,
        metric: scalelab_topology::AutoscaleMetric::Cpu,
        target,
        sync_ms: 15_000,
        tolerance: 0.1,
        scale_down_stabilization_ms: down_ms,
        scale_up_stabilization_ms: 0,
        cpu_initialization_period_ms: 10_000,
    }
}

fn ready(values: &[f64]) -> Observation {
    Observation { values: values.to_vec(), missing: 0, unready: 0 }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_ratio_doubles_or_halves_the_replicas() {
    // The docs: current 200m against a desired 100m doubles; 50m halves.
    assert_eq!(recommend(4, &ready(&[0.2; 4]), 0.1, 0.1).replicas, 8);
    assert_eq!(recommend(4, &ready(&[0.05; 4]), 0.1, 0.1).replicas, 2);
    // ceil(current × metric / target): 3 nodes at 0.9 against 0.6 → 4.5 → 5.
    assert_eq!(recommend(3, &ready(&[0.9; 3]), 0.6, 0.1).replicas, 5);
    // Exact products are not pushed up by floating-point dust: 2 × 0.9/0.6 = 3.
    assert_eq!(recommend(2, &ready(&[0.9, 0.9]), 0.6, 0.1).replicas, 3);
}

#[test]
fn nothing_changes_within_the_tolerance() {
    assert_eq!(recommend(2, &ready(&[0.65, 0.65]), 0.6, 0.1).replicas, 2); // ratio 1.083
    assert_eq!(recommend(2, &ready(&[0.55, 0.55]), 0.6, 0.1).replicas, 2); // ratio 0.917
    assert_eq!(recommend(2, &ready(&[0.7, 0.7]), 0.6, 0.1).replicas, 3); // ratio 1.167
                                                                         // A zero tolerance acts on any difference.
    assert_eq!(recommend(2, &ready(&[0.65, 0.65]), 0.6, 0.0).replicas, 3);
}

#[test]
fn without_any_metric_nothing_changes() {
    let o = Observation { values: vec![], missing: 2, unready: 1 };
    assert_eq!(recommend(3, &o, 0.6, 0.1), Recommendation { replicas: 3, mean: None });
}

#[test]
fn missing_metrics_count_as_the_target_on_a_scale_down() {
    // Two ready nodes at 0.3 against 0.6 would halve (→ 1); a third reporting nothing counts
    // at 100% of target: (0.3 + 0.3 + 0.6) / 3 / 0.6 = 0.667 → ceil(0.667 × 3) = 2.
    let o = Observation { values: vec![0.3, 0.3], missing: 1, unready: 0 };
    assert_eq!(recommend(3, &o, 0.6, 0.1).replicas, 2);
}

#[test]
fn missing_metrics_count_as_zero_on_a_scale_up() {
    // (1.2 + 1.2 + 0) / 3 / 0.6 = 1.333 → ceil(1.333 × 3) = 4.
    let o = Observation { values: vec![1.2, 1.2], missing: 1, unready: 0 };
    assert_eq!(recommend(3, &o, 0.6, 0.1).replicas, 4);
}

#[test]
fn a_recomputed_ratio_that_reverses_or_lands_within_tolerance_keeps_the_count() {
    // 0.7 against 0.6 scales up (1.167), but with two missing at 0% the ratio is 0.389: a
    // reversal, so nothing happens.
    let o = Observation { values: vec![0.7], missing: 2, unready: 0 };
    assert_eq!(recommend(3, &o, 0.6, 0.1).replicas, 3);
    // 0.5 against 0.6 scales down (0.833); one missing at 100%: (0.5 + 0.6) / 2 / 0.6 = 0.917,
    // within tolerance.
    let o = Observation { values: vec![0.5], missing: 1, unready: 0 };
    assert_eq!(recommend(2, &o, 0.6, 0.1).replicas, 2);
}

#[test]
fn unready_nodes_are_set_aside_on_a_scale_down_and_count_zero_on_a_scale_up() {
    // Scale-down: the unready node is ignored; 2 ready at 0.15 against 0.6 → ceil(0.5) = 1.
    let o = Observation { values: vec![0.15, 0.15], missing: 0, unready: 1 };
    assert_eq!(recommend(3, &o, 0.6, 0.1).replicas, 1);
    // Scale-up: it counts at 0%: (1.2 + 1.2 + 0) / 3 / 0.6 = 1.333 → 4 (not 4 from 2 × 2).
    let o = Observation { values: vec![1.2, 1.2], missing: 0, unready: 1 };
    assert_eq!(recommend(3, &o, 0.6, 0.1).replicas, 4);
    // A node starting up does not trigger a second scale-up for the load it will take.
    let o = Observation { values: vec![0.9], missing: 0, unready: 1 };
    assert_eq!(recommend(2, &o, 0.6, 0.1).replicas, 2, "0.9/2 = 0.45 of target: a reversal");
}

#[test]
fn scale_down_takes_the_highest_recommendation_of_the_window() {
    // The docs' rolling maximum: a dip inside the window does not remove nodes.
    let a = block(1, 10, 0.6, 60_000);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    assert_eq!(hpa.sync(t0, 4, &ready(&[0.6; 4]), &a).desired, 4);
    let dip = hpa.sync(t0 + secs(15), 4, &ready(&[0.15; 4]), &a);
    assert_eq!(dip.recommendation.replicas, 1);
    assert_eq!(dip.desired, 4, "4 was recommended 15 s ago");
    assert_eq!(dip.limits, [Limit::Stabilized { window: secs(60), to: 4 }]);
    assert_eq!(hpa.sync(t0 + secs(30), 4, &ready(&[0.3; 4]), &a).desired, 4);
    // Past the window the highest left is the 2 from t0 + 30 s, then 1.
    assert_eq!(hpa.sync(t0 + secs(61), 4, &ready(&[0.15; 4]), &a).desired, 2);
    assert_eq!(hpa.sync(t0 + secs(91), 2, &ready(&[0.3; 2]), &a).desired, 1);
}

#[test]
fn scale_up_has_no_window_by_default_but_follows_one_when_set() {
    let mut a = block(1, 10, 0.6, 0);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    assert_eq!(hpa.sync(t0, 2, &ready(&[1.2, 1.2]), &a).desired, 4, "at once");
    a.scale_up_stabilization_ms = 30_000;
    let mut hpa = Hpa::default();
    assert_eq!(hpa.sync(t0, 2, &ready(&[0.6, 0.6]), &a).desired, 2);
    let spike = hpa.sync(t0 + secs(15), 2, &ready(&[1.2, 1.2]), &a);
    assert_eq!(spike.desired, 2, "the lowest recommendation of the last 30 s is 2");
    assert_eq!(hpa.sync(t0 + secs(31), 2, &ready(&[1.2, 1.2]), &a).desired, 4);
}

#[test]
fn scale_up_is_limited_to_double_or_four_nodes_per_period() {
    let a = block(1, 20, 0.6, 0);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    // From 1, asked for 10: max(100% → 2, 4 pods → 5) = 5.
    let s = hpa.sync(t0, 1, &ready(&[6.0]), &a);
    assert_eq!((s.recommendation.replicas, s.desired), (10, 5));
    assert_eq!(s.limits, [Limit::Rate { to: 5 }]);
    hpa.scaled(t0, 1, 5);
    // Within the same 15 s the period started at 1: no further step.
    assert_eq!(hpa.sync(t0 + secs(5), 5, &ready(&[1.2; 5]), &a).desired, 5);
    // The next period starts at 5: max(10, 9) = 10.
    assert_eq!(hpa.sync(t0 + secs(16), 5, &ready(&[1.2; 5]), &a).desired, 10);
}

#[test]
fn scale_down_by_up_to_all_per_period_and_never_below_min() {
    let a = block(2, 10, 0.6, 0);
    let mut hpa = Hpa::default();
    let s = hpa.sync(Instant::now(), 8, &ready(&[0.01; 8]), &a);
    assert_eq!((s.recommendation.replicas, s.desired), (1, 2));
    assert_eq!(s.limits, [Limit::Bound { to: 2 }]);
}

#[test]
fn max_replicas_caps_the_step() {
    let a = block(1, 4, 0.6, 0);
    let s = Hpa::default().sync(Instant::now(), 3, &ready(&[1.2; 3]), &a);
    assert_eq!((s.recommendation.replicas, s.desired), (6, 4));
    assert_eq!(s.limits, [Limit::Bound { to: 4 }]);
}

#[test]
fn the_documented_scale_down_policies_example() {
    // The docs' `behavior.scaleDown.policies`: Pods 4 per 60 s and Percent 10 per 60 s,
    // selectPolicy Max. From 80 to 10: the first step removes 8 (10% of 80, more than 4),
    // the next 8 again (10% of 72 is 7.2, and the count left is rounded down: 64).
    let a = block(1, 100, 0.6, 0);
    let b = Behavior {
        up: Behavior::of(&a).up,
        down: Rules {
            stabilization: Duration::ZERO,
            policies: vec![
                Policy::Pods { value: 4, period: secs(60) },
                Policy::Percent { value: 10, period: secs(60) },
            ],
        },
    };
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    let mut limits = Vec::new();
    assert_eq!(hpa.rate_limit(t0, 80, 10, &a, &b, &mut limits), 72);
    hpa.scaled(t0, 80, 72);
    assert_eq!(hpa.rate_limit(t0 + secs(30), 72, 10, &a, &b, &mut limits), 72, "same period");
    assert_eq!(hpa.rate_limit(t0 + secs(61), 72, 10, &a, &b, &mut limits), 64);
    // With only the Pods policy (the 40-replica boundary the docs mention): at most 4.
    let pods = Behavior { down: Rules { policies: vec![b.down.policies[0]], ..b.down.clone() }, ..b };
    assert_eq!(Hpa::default().rate_limit(t0, 40, 10, &a, &pods, &mut limits), 36);
}
