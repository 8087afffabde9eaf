//! The controller's arithmetic, case by case: the documented examples, the cases of
//! Kubernetes' own tests (`replica_calculator_test.go`, `horizontal_test.go`; each cited by
//! name) in scalelab's terms, and the places where the controller and the prose docs differ.
//!
//! Kubernetes' CPU cases give each pod two containers at the same level and request; the
//! utilization is the same with one, so here a node is one container: `levels 300, 500, 700`
//! with `requests 1.0` is `cpu(&[0.3, 0.5, 0.7], 1.0)`.

use super::*;
use scalelab_topology::AutoscaleMetric::{self, Cpu, InFlight, Rps};

fn block(min: usize, max: usize, target: f64, down_ms: u64) -> Autoscale {
    Autoscale {
        min_replicas: min,
        max_replicas: max,
        metric: Cpu,
        target,
        sync_ms: 15_000,
        tolerance: 0.1,
        scale_down_stabilization_ms: down_ms,
        scale_up_stabilization_ms: 0,
        cpu_initialization_period_ms: 10_000,
    }
}

fn value(v: f64, request: f64) -> Node {
    Node { reading: Reading::Value(v), request }
}

fn missing(request: f64) -> Node {
    Node { reading: Reading::Missing, request }
}

fn unready(request: f64) -> Node {
    Node { reading: Reading::Unready, request }
}

/// Ready nodes on `cap`-core caps, each using the given cores.
fn cpu(used: &[f64], cap: f64) -> Observation {
    Observation { nodes: used.iter().map(|&u| value(u, cap)).collect() }
}

/// Ready nodes reporting the given values of a per-node metric (`in_flight`, `rps`).
fn per_node(values: &[f64]) -> Observation {
    Observation { nodes: values.iter().map(|&v| value(v, 0.0)).collect() }
}

fn nodes(nodes: &[Node]) -> Observation {
    Observation { nodes: nodes.to_vec() }
}

/// The replicas `recommend` asks for (with the default tolerance, 0.1).
fn replicas(current: usize, o: &Observation, metric: AutoscaleMetric, target: f64) -> usize {
    recommend(current, o, metric, target, 0.1).expect("a recommendation").replicas
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_ratio_doubles_or_halves_the_replicas() {
    // The docs: current 200m against a desired 100m doubles; 50m halves.
    assert_eq!(replicas(4, &cpu(&[0.2; 4], 1.0), Cpu, 0.1), 8);
    assert_eq!(replicas(4, &cpu(&[0.05; 4], 1.0), Cpu, 0.1), 2);
    // ceil(current × metric / target): 3 nodes at 90% against 60% → 4.5 → 5.
    assert_eq!(replicas(3, &cpu(&[0.45; 3], 0.5), Cpu, 0.6), 5);
    // 90% against 60% is exactly 1.5 in whole percent: 2 × 1.5 = 3.
    assert_eq!(replicas(2, &cpu(&[0.45; 2], 0.5), Cpu, 0.6), 3);
}

#[test]
fn kubernetes_resource_scale_cases() {
    // TestReplicaCalcResourceScale "scale up": 50% against 30% → ⌈1.667 × 3⌉.
    let r = recommend(3, &cpu(&[0.3, 0.5, 0.7], 1.0), Cpu, 0.3, 0.1).unwrap();
    assert_eq!(r, Recommendation { replicas: 5, value: 0.5 });
    // "scale up: unready pod scales less": the unready one counts 0 on a scale-up.
    let o = nodes(&[unready(1.0), value(0.5, 1.0), value(0.7, 1.0)]);
    assert_eq!(recommend(3, &o, Cpu, 0.3, 0.1).unwrap(), Recommendation { replicas: 4, value: 0.6 });
    // "no scale: unready pods ignored": 40% against 30% is a scale-up, but with two nodes
    // at 0 it reverses.
    let o = nodes(&[value(0.4, 1.0), unready(1.0), unready(1.0)]);
    assert_eq!(replicas(3, &o, Cpu, 0.3), 3);
    // "scale up: failed pods ignored": failed nodes are not listed at all.
    assert_eq!(replicas(2, &cpu(&[0.5, 0.7], 1.0), Cpu, 0.3), 4);
    // "scale down": (100 + 300 + 500 + 250 + 250) / 5 = 28% against 50% → ⌈0.56 × 5⌉.
    let r = recommend(5, &cpu(&[0.1, 0.3, 0.5, 0.25, 0.25], 1.0), Cpu, 0.5, 0.1).unwrap();
    assert_eq!(r, Recommendation { replicas: 3, value: 0.28 });
    // "scale down: exclude unready pods": 30% over the three ready → ⌈0.6 × 3⌉.
    let o = nodes(&[value(0.1, 1.0), value(0.3, 1.0), value(0.5, 1.0), unready(1.0), unready(1.0)]);
    assert_eq!(replicas(5, &o, Cpu, 0.5), 2);
    // "scale down: exclude unscheduled pods": one ready at 10%, four not started.
    let o = nodes(&[value(0.1, 1.0), unready(1.0), unready(1.0), unready(1.0), unready(1.0)]);
    assert_eq!(replicas(5, &o, Cpu, 0.5), 1);
}

#[test]
fn kubernetes_pods_metric_cases() {
    // TestReplicaCalcScaleUpCM: a mean of 20 against 15 → ⌈1.333 × 3⌉.
    let r = recommend(3, &per_node(&[20.0, 10.0, 30.0]), Rps, 15.0, 0.1).unwrap();
    assert_eq!(r, Recommendation { replicas: 4, value: 20.0 });
    // TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown: the mean in milli-units is
    // truncated (31666), 31666 / 15000 × 3 = 6.33 → 7.
    let r = recommend(3, &per_node(&[50.0, 15.0, 30.0]), Rps, 15.0, 0.1).unwrap();
    assert_eq!(r, Recommendation { replicas: 7, value: 31.666 });
    // TestReplicaCalcScaleDownCM: 12 against 20 → ⌈0.6 × 5⌉.
    assert_eq!(replicas(5, &per_node(&[12.0; 5]), InFlight, 20.0), 3);
    // TestReplicaCalcToleranceCM: 20.666 against 20 is within 0.1.
    assert_eq!(replicas(3, &per_node(&[20.0, 21.0, 21.0]), Rps, 20.0), 3);
}

#[test]
fn cpu_utilization_is_whole_percent_of_the_summed_caps() {
    // TestReplicaCalcTolerance: unequal requests, (1010 + 1030 + 1020) × 100 / 3000 = 102%.
    let o = nodes(&[value(1.01, 0.9), value(1.03, 1.0), value(1.02, 1.1)]);
    assert_eq!(recommend(3, &o, Cpu, 1.0, 0.1).unwrap(), Recommendation { replicas: 3, value: 1.02 });
    // TestReplicaCalcConfigurableTolerance "Outside of a 0% tolerance": 101% → ⌈1.01 × 3⌉.
    let o = nodes(&[value(0.909, 0.9), value(1.01, 1.0), value(1.111, 1.1)]);
    assert_eq!(recommend(3, &o, Cpu, 1.0, 0.0).unwrap().replicas, 4);
    // Truncated, not rounded: 54.9% is 54%.
    let r = recommend(1, &cpu(&[0.549], 1.0), Cpu, 0.5, 0.1).unwrap();
    assert_eq!(r.value, 0.54);
    // TestReplicaCalcComputedToleranceAlgImplementation: 150m used of ~300m requested on each
    // of 10 nodes is 50%. Against 56% (0.893) that is outside the tolerance: ⌈8.93⌉ = 9;
    // against 55% (0.909) it is within.
    let requests = [0.4, 0.2, 0.31, 0.29, 0.302, 0.298, 0.301, 0.299, 0.3, 0.3];
    let o = Observation { nodes: requests.iter().map(|&r| value(0.15, r)).collect() };
    assert_eq!(replicas(10, &o, Cpu, 0.56), 9);
    assert_eq!(replicas(10, &o, Cpu, 0.55), 10);
}

#[test]
fn the_tolerance_test_is_the_controllers_own() {
    // (1 − 0.1) ≤ r ≤ (1 + 0.1): 55% against 50% is a ratio of exactly 1.1, within. Written
    // as |1 − r| ≤ 0.1 it is not (|1 − 1.1| is 0.10000000000000009 in floating point).
    assert_eq!(replicas(2, &cpu(&[0.55, 0.55], 1.0), Cpu, 0.5), 2);
    assert_eq!(replicas(2, &cpu(&[0.45, 0.45], 1.0), Cpu, 0.5), 2, "0.9, the other edge");
    assert_eq!(replicas(2, &cpu(&[0.56, 0.56], 1.0), Cpu, 0.5), 3, "1.12");
    // A zero tolerance acts on any difference.
    assert_eq!(recommend(2, &cpu(&[0.65, 0.65], 1.0), Cpu, 0.6, 0.0).unwrap().replicas, 3);
}

#[test]
fn the_ceiling_is_plain_as_the_controller_takes_it() {
    // 29% against 7% is 4.142857142857143; × 7 nodes that is 29.000000000000004 in floating
    // point, and the controller's math.Ceil makes it 30.
    assert_eq!(replicas(7, &cpu(&[0.29; 7], 1.0), Cpu, 0.07), 30);
}

#[test]
fn without_any_metric_there_is_no_recommendation() {
    // TestReplicaCalcEmptyMetrics: an error in the controller, so no change and no record.
    let o = nodes(&[missing(0.5), missing(0.5), unready(0.5)]);
    assert_eq!(recommend(3, &o, Cpu, 0.6, 0.1), None);
    assert_eq!(recommend(3, &Observation::default(), InFlight, 2.0, 0.1), None);
}

#[test]
fn a_missing_cpu_value_counts_at_100_percent_of_its_cap_on_a_scale_down() {
    // TestReplicaCalcMissingMetrics: 495m of 2000m is 24% against 100% → scale-down; the two
    // missing at 100%: (495 + 2000) × 100 / 4000 = 62% → ⌈0.62 × 4⌉ = 3.
    let o = nodes(&[value(0.4, 1.0), value(0.095, 1.0), missing(1.0), missing(1.0)]);
    assert_eq!(recommend(4, &o, Cpu, 1.0, 0.1).unwrap(), Recommendation { replicas: 3, value: 0.24 });
    // Against a 50% target: 10% → the missing one at 100% (not at the target's 50%):
    // (100 + 100 + 1000) / 3000 = 40% → ⌈0.8 × 3⌉ = 3. At 50% it would have been 2.
    let o = nodes(&[value(0.1, 1.0), value(0.1, 1.0), missing(1.0)]);
    assert_eq!(replicas(3, &o, Cpu, 0.5), 3);
    // TestReplicaCalcMissingMetricsScaleDownTargetOver100: a target above 100% fills at the
    // target: 6% against 300%, the missing 2-core node at 300% → 124% → ⌈0.413 × 3⌉ = 2.
    let o = nodes(&[unready(1.0), value(0.1, 1.0), value(0.1, 2.0), missing(2.0)]);
    assert_eq!(recommend(4, &o, Cpu, 3.0, 0.1).unwrap(), Recommendation { replicas: 2, value: 0.06 });
}

#[test]
fn a_missing_in_flight_or_rps_value_counts_at_the_target_on_a_scale_down() {
    // (1 + 1 + 5) / 3 = 2.333 against 5 → ⌈0.467 × 3⌉ = 2.
    let o = nodes(&[value(1.0, 0.0), value(1.0, 0.0), missing(0.0)]);
    assert_eq!(replicas(3, &o, InFlight, 5.0), 2);
    // TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM: (10 + 10 + 17) / 3 against 17 asks
    // for 3, more than the 2 running on a scale-down: keep 2.
    let o = nodes(&[value(10.0, 0.0), value(10.0, 0.0), missing(0.0)]);
    assert_eq!(replicas(2, &o, Rps, 17.0), 2);
}

#[test]
fn missing_values_count_as_zero_on_a_scale_up() {
    // TestReplicaCalcMissingMetricsNoChangeGt: 190% → a scale-up; the missing one at 0 makes
    // it 95%, within the tolerance.
    assert_eq!(replicas(2, &nodes(&[value(1.9, 1.0), missing(1.0)]), Cpu, 1.0), 2);
    // TestReplicaCalcMissingMetricsUnreadyScaleUp: missing and unready both at 0:
    // 2000 / 3000 = 66% against 50% → ⌈1.32 × 3⌉ = 4.
    let o = nodes(&[unready(1.0), value(2.0, 1.0), missing(1.0)]);
    assert_eq!(replicas(3, &o, Cpu, 0.5), 4);
}

#[test]
fn at_a_ratio_of_exactly_one_missing_nodes_are_filled_on_neither_side() {
    // TestReplicaCalcMissingMetricsNoChangeEq: 100% against 100%, one missing: keep 2 (filled
    // with 0 it would be 50% and a scale-down to 1).
    assert_eq!(replicas(2, &nodes(&[value(1.0, 1.0), missing(1.0)]), Cpu, 1.0), 2);
    // TestPlainMetricReplicaCalcMissingMetricsNoChangeEq: a mean of exactly 20 against 20 with
    // two of five missing: keep 5.
    let o = nodes(&[value(20.0, 0.0), value(19.0, 0.0), value(21.0, 0.0), missing(0.0), missing(0.0)]);
    assert_eq!(replicas(5, &o, Rps, 20.0), 5);
}

#[test]
fn a_recomputed_ratio_that_reverses_or_lands_within_tolerance_keeps_the_count() {
    // TestReplicaCalcMissingMetricsUnreadyChange: 45% against 50% (0.9) with one missing at
    // 100% is 72% (1.44): a reversal.
    let o = nodes(&[unready(1.0), value(0.45, 1.0), missing(1.0)]);
    assert_eq!(replicas(3, &o, Cpu, 0.5), 3);
    // TestReplicaCalcMissingMetricsNoChangeLt: 60% against 100%, the missing one at 100%:
    // 80% → ⌈0.8 × 2⌉ = 2, the count it runs.
    assert_eq!(replicas(2, &nodes(&[value(0.6, 1.0), missing(1.0)]), Cpu, 1.0), 2);
    // TestReplicaCalcDuringRollingUpdateWithMaxSurge: three nodes while two are wanted; the
    // missing one at 100% asks for ⌈0.8 × 3⌉ = 3 on a scale-down: keep 2.
    let o = nodes(&[value(0.1, 1.0), value(0.1, 1.0), missing(1.0)]);
    assert_eq!(replicas(2, &o, Cpu, 0.5), 2);
}

#[test]
fn unready_nodes_are_set_aside_on_a_scale_down_and_count_zero_on_a_scale_up() {
    // TestReplicaCalcMissingMetricsUnreadyScaleDown: the unready one is ignored, the missing
    // one at 100%: (100 + 100 + 1000) / 3000 = 40% → ⌈0.8 × 3⌉ = 3.
    let o = nodes(&[unready(1.0), value(0.1, 1.0), value(0.1, 1.0), missing(1.0)]);
    assert_eq!(replicas(4, &o, Cpu, 0.5), 3);
    // A node starting up does not trigger a second scale-up for the load it will take:
    // 90% over one ready node is 45% over two, a reversal.
    assert_eq!(replicas(2, &nodes(&[value(0.9, 1.0), unready(1.0)]), Cpu, 0.6), 2);
}

#[test]
fn the_count_found_at_the_first_sync_is_a_recommendation() {
    // A group of 3 idle nodes, taken with a 60 s scale-down window (horizontal.go's
    // recordInitialRecommendation): the 3 it runs holds for the window, then 1.
    let a = block(1, 10, 0.6, 60_000);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    let idle = cpu(&[0.01; 3], 0.5);
    let first = hpa.sync(t0, 3, &idle, &a);
    assert_eq!((first.recommendation.unwrap().replicas, first.desired), (1, 3));
    assert_eq!(first.limits, [Limit::Stabilized { window: secs(60), to: 3 }]);
    assert_eq!(hpa.sync(t0 + secs(59), 3, &idle, &a).desired, 3);
    assert_eq!(hpa.sync(t0 + secs(61), 3, &idle, &a).desired, 1);
}

#[test]
fn a_count_out_of_bounds_is_brought_within_before_any_metric_is_read() {
    // TestTooManyReplicas and TestTooFewReplicas: no metric at all, and still 5 and 3.
    let a = block(3, 5, 0.9, 0);
    let none = Observation::default();
    let s = Hpa::default().sync(Instant::now(), 10, &none, &a);
    assert_eq!(s, Sync { recommendation: None, desired: 5, limits: vec![Limit::OutOfBounds { to: 5 }] });
    let s = Hpa::default().sync(Instant::now(), 2, &none, &a);
    assert_eq!(s, Sync { recommendation: None, desired: 3, limits: vec![Limit::OutOfBounds { to: 3 }] });
    // Whatever the metric says: busy nodes above the bound still go down to it.
    assert_eq!(Hpa::default().sync(Instant::now(), 10, &cpu(&[1.0; 10], 1.0), &a).desired, 5);
}

#[test]
fn a_sync_without_metrics_records_nothing() {
    // Metrics out from 15 s to 75 s: those syncs change nothing and leave no recommendation,
    // so at 90 s the window holds only what was measured (the 4 from 0 s has expired).
    let a = block(1, 10, 0.6, 60_000);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    assert_eq!(hpa.sync(t0, 4, &cpu(&[0.3; 4], 0.5), &a).desired, 4);
    let out = nodes(&[missing(0.5); 4]);
    for s in [15, 30, 45, 60, 75] {
        let sync = hpa.sync(t0 + secs(s), 4, &out, &a);
        assert_eq!(sync, Sync { recommendation: None, desired: 4, limits: vec![] });
    }
    assert_eq!(hpa.sync(t0 + secs(90), 4, &cpu(&[0.075; 4], 0.5), &a).desired, 1);
}

#[test]
fn scale_down_takes_the_highest_recommendation_of_the_window() {
    // The docs' rolling maximum: a dip inside the window does not remove nodes.
    let a = block(1, 10, 0.6, 60_000);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    assert_eq!(hpa.sync(t0, 4, &cpu(&[0.3; 4], 0.5), &a).desired, 4);
    let dip = hpa.sync(t0 + secs(15), 4, &cpu(&[0.075; 4], 0.5), &a);
    assert_eq!(dip.recommendation.unwrap().replicas, 1);
    assert_eq!(dip.desired, 4, "4 was recommended 15 s ago");
    assert_eq!(dip.limits, [Limit::Stabilized { window: secs(60), to: 4 }]);
    assert_eq!(hpa.sync(t0 + secs(30), 4, &cpu(&[0.15; 4], 0.5), &a).desired, 4);
    // Past the window the highest left is the 2 from t0 + 30 s, then 1.
    assert_eq!(hpa.sync(t0 + secs(61), 4, &cpu(&[0.075; 4], 0.5), &a).desired, 2);
    assert_eq!(hpa.sync(t0 + secs(91), 2, &cpu(&[0.15; 2], 0.5), &a).desired, 1);
}

#[test]
fn scale_up_has_no_window_by_default_but_follows_one_when_set() {
    let mut a = block(1, 10, 0.6, 0);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    assert_eq!(hpa.sync(t0, 2, &cpu(&[0.6, 0.6], 0.5), &a).desired, 4, "at once");
    a.scale_up_stabilization_ms = 30_000;
    let mut hpa = Hpa::default();
    assert_eq!(hpa.sync(t0, 2, &cpu(&[0.3, 0.3], 0.5), &a).desired, 2);
    let spike = hpa.sync(t0 + secs(15), 2, &cpu(&[0.6, 0.6], 0.5), &a);
    assert_eq!(spike.desired, 2, "the lowest recommendation of the last 30 s is 2");
    assert_eq!(hpa.sync(t0 + secs(31), 2, &cpu(&[0.6, 0.6], 0.5), &a).desired, 4);
}

#[test]
fn scale_up_is_limited_to_double_or_four_nodes_per_period() {
    let a = block(1, 20, 0.6, 0);
    let mut hpa = Hpa::default();
    let t0 = Instant::now();
    // From 1, asked for 10 (600% against 60%): max(100% → 2, 4 pods → 5) = 5.
    let s = hpa.sync(t0, 1, &cpu(&[6.0], 1.0), &a);
    assert_eq!((s.recommendation.unwrap().replicas, s.desired), (10, 5));
    assert_eq!(s.limits, [Limit::Rate { to: 5 }]);
    hpa.scaled(t0, 1, 5);
    // Within the same 15 s the period started at 1: no further step.
    assert_eq!(hpa.sync(t0 + secs(5), 5, &cpu(&[1.2; 5], 1.0), &a).desired, 5);
    // The next period starts at 5: max(10, 9) = 10.
    assert_eq!(hpa.sync(t0 + secs(16), 5, &cpu(&[1.2; 5], 1.0), &a).desired, 10);
}

#[test]
fn scale_down_by_up_to_all_per_period_and_never_below_min() {
    let a = block(2, 10, 0.6, 0);
    let mut hpa = Hpa::default();
    let s = hpa.sync(Instant::now(), 8, &cpu(&[0.01; 8], 1.0), &a);
    assert_eq!((s.recommendation.unwrap().replicas, s.desired), (1, 2));
    assert_eq!(s.limits, [Limit::Bound { to: 2 }]);
}

#[test]
fn max_replicas_caps_the_step() {
    // TestMaxReplicas: 616% against 90% asks for 21; the maximum is 5.
    let a = block(2, 5, 0.9, 0);
    let o = nodes(&[value(8.0, 0.9), value(9.5, 1.0), value(1.0, 1.1)]);
    let s = Hpa::default().sync(Instant::now(), 3, &o, &a);
    assert_eq!((s.recommendation.unwrap().replicas, s.desired), (21, 5));
    assert_eq!(s.limits, [Limit::Bound { to: 5 }]);
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

#[test]
fn values_are_read_as_the_api_reads_them() {
    // Measured: to the nano-unit, then rounded up to the milli (Quantity.MilliValue).
    assert_eq!(measured_milli(0.3), 300, "no dust: 0.3 × 1000 is 300.00000000000006");
    assert_eq!(measured_milli(0.3000001), 301);
    assert_eq!(measured_milli(31.666_666_666), 31_667);
    assert_eq!(measured_milli(-1.0), 0);
    // Spec values: as scalelab renders them for Kubernetes.
    assert_eq!((spec_milli(0.5), spec_milli(0.333_3)), (500, 333));
    assert_eq!((target_percent(0.07), target_percent(0.6)), (7, 60));
}
