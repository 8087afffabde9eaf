//! The report as a person sees it: a fixture `results.json` is rendered with `write_report`,
//! then opened from file:// in Debian's headless Chromium, once to dump the DOM (every chart's
//! `<svg>` must be there with drawn marks in it) and once to take a screenshot, kept as
//! `target/test-artifacts/report.png` with the page beside it.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::browser::{artifacts_dir, chromium, container, require_chromium, screenshot};
use scalelab_experiment::report::write_report;
use scalelab_experiment::results::{LoadSpec, Percentiles, Point, Results, Round, Series, UslFit};

#[test]
fn chromium_renders_every_chart_of_the_report() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::to_string_pretty(&fixture()).unwrap();
    fs::write(dir.path().join("results.json"), json).unwrap();
    let report = write_report(dir.path()).unwrap();
    let url = format!("file://{}", report.display());

    let dom = chromium(dir.path(), "dom", &["--dump-dom", &url]);
    // (id, mark that must appear, how many at least): the throughput chart has a circle per
    // measured point and a polyline per curve, the latency chart a polyline per point, the
    // share chart a rectangle per worker segment.
    let expected = [
        ("chart-throughput", "<circle", 11),
        ("chart-throughput", "<polyline", 4),
        ("chart-latency", "<polyline", 10),
        ("chart-latency", "<circle", 40),
        ("chart-share", "<rect", 40),
    ];
    for (id, mark, at_least) in expected {
        let chart = container(&dom, id);
        assert!(chart.contains("<svg"), "#{id} holds no <svg> in the DOM Chromium built");
        let drawn = chart.matches(mark).count();
        assert!(drawn >= at_least, "#{id} has {drawn} {mark}> elements, expected at least {at_least}");
        assert!(chart.matches("<text").count() >= 8, "#{id} has almost no text: no axes or labels");
    }
    assert!(dom.contains("coherency-bound") && dom.contains("contention-bound"), "the fit text is missing");
    // The noisy point: a warning under the facts, its cell marked, the fit's verdict qualified.
    let warning = container(&dom, "noise");
    assert!(warning.contains("1 of 10 points were noisy (workers=16)"), "{warning}");
    assert!(dom.contains("<td class=\"noisy\">0.74 noisy</td>"));
    assert!(dom.contains("fitted over 1 noisy point(s)"));

    screenshot(dir.path(), &url, "report.png", 1280, 2400);
    fs::copy(&report, artifacts_dir().join("report.html")).unwrap();
}

/// A load sweep's report: a latency-against-load chart per distribution, each with its
/// measured markers, both models' lines and the knee, all drawn by Chromium.
#[test]
fn chromium_renders_the_latency_against_load_charts() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::to_string_pretty(&load_fixture()).unwrap();
    fs::write(dir.path().join("results.json"), json).unwrap();
    let report = write_report(dir.path()).unwrap();
    let url = format!("file://{}", report.display());
    let dom = chromium(dir.path(), "dom", &["--dump-dom", &url]);
    for (i, name) in ["shared", "reuseport", "round_robin"].iter().enumerate() {
        let chart = container(&dom, &format!("chart-load-{}", i + 1));
        assert!(chart.contains("<svg"), "#chart-load-{} holds no <svg>", i + 1);
        // 4 percentiles x 6 points, each a marker on its bar; 4 pooled lines, 4 dashed
        // partitioned ones (each dash its own segment); the knee lines and their names.
        assert!(chart.matches("<circle").count() >= 24, "{name}: markers");
        assert!(chart.matches("<polyline").count() >= 4, "{name}: model lines");
        for words in [
            "pooled, M/D/2",
            "partitioned, 2 × M/D/1",
            "10 × S = 5.00 ms",
            "measured 0.",
            "pooled 0.",
            "partitioned 0.",
        ] {
            assert!(chart.contains(words), "{name}: no {words:?} in its chart");
        }
        assert!(dom.contains(&format!("Latency against offered load: load at distribution={name}")));
    }
    for id in ["chart-latency", "chart-share"] {
        assert!(container(&dom, id).contains("<svg"), "#{id}");
    }
    assert!(dom.contains("What the lab followed"));
    screenshot(dir.path(), &url, "report-load.png", 1280, 3000);
    fs::copy(&report, artifacts_dir().join("report-load.html")).unwrap();
}

// ---- the fixture: a made-up sweep on a 4-core machine, /op2 costing 1 ms of CPU ----

/// A USL fit with its peak worked out the way the fit reports it.
fn usl(sigma: f64, kappa: f64, lambda: f64, r_squared: f64, points: usize) -> UslFit {
    let mut fit = UslFit { sigma, kappa, lambda, peak_n: None, peak_rps: None, r_squared, points };
    if kappa > 0.0 {
        let n = ((1.0 - sigma) / kappa).sqrt();
        fit.peak_n = Some(n);
        fit.peak_rps = Some(fit.throughput(n));
    } else if sigma > 0.0 {
        fit.peak_rps = Some(lambda / sigma);
    }
    fit
}

/// A point measured at `rps` (zero: every request failed) with its responses split over
/// `weights` (`node/worker`, relative weight).
fn point(value: f64, n: f64, rps: f64, weights: &[(String, f64)]) -> Point {
    let theory = 1000.0 * n.min(4.0);
    let ms = |x: f64| if rps > 0.0 { x * 64.0 / rps * 1000.0 } else { 0.0 };
    let latency =
        Percentiles { p50: ms(0.9), p90: ms(1.6), p99: ms(3.1), p999: ms(6.5), max: ms(9.0), stdev: ms(1.2) };
    let total = rps * 30.0;
    let sum: f64 = weights.iter().map(|(_, w)| w).sum();
    let by_worker: BTreeMap<String, u64> =
        weights.iter().map(|(k, w)| (k.clone(), (total * w / sum).round() as u64)).collect();
    let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
    for (k, c) in &by_worker {
        *by_node.entry(k.split('/').next().unwrap().to_string()).or_default() += c;
    }
    let errors = if rps > 0.0 { 0 } else { 1800 };
    let round = |f: f64| Round {
        rps: rps * f,
        errors: errors / 3,
        latency_ms: latency,
        latency_by_path_ms: Default::default(),
        by_worker: by_worker.clone(),
        completed: None,
        in_flight: 0,
    };
    Point {
        value,
        label: None,
        n,
        rps,
        theory_rps: theory,
        ratio: rps / theory,
        rounds: vec![round(0.96), round(1.0), round(1.03)],
        latency_ms: latency,
        latency_by_path_ms: Default::default(),
        errors,
        cpu_used: by_node.keys().map(|k| (k.clone(), n.min(4.0) / by_node.len() as f64)).collect(),
        by_node,
        by_worker,
        topology: format!("# fixture\nnodes: {n}\n"),
        offered: None,
        outside_cpu_cores: Some(0.03),
        noisy: false,
    }
}

/// `count` workers on one node, nearly even.
fn one_node(count: usize) -> Vec<(String, f64)> {
    (1..=count).map(|w| (format!("node-1/{w}"), 1.0 + 0.04 * ((w * 7) % 5) as f64)).collect()
}

/// One worker on each of `count` nodes, with the first node taking `first` of the weight.
fn one_per_node(count: usize, first: f64) -> Vec<(String, f64)> {
    let rest = (1.0 - first) / (count as f64 - 1.0).max(1.0);
    (1..=count).map(|n| (format!("node-{n}/1"), if n == 1 { first } else { rest })).collect()
}

fn fixture() -> Results {
    let workers = usl(0.015, 0.02, 980.0, 0.987, 15);
    let replicas = usl(0.12, 0.002, 990.0, 0.962, 9);
    let measured = |fit: &UslFit, n: f64, wobble: f64| fit.throughput(n) * wobble;
    // workers=16 was measured while something outside the lab used three quarters of a core.
    let noisy = |mut p: Point| {
        if p.value == 16.0 {
            p.outside_cpu_cores = Some(0.74);
            p.noisy = true;
        }
        p
    };
    Results {
        scalelab_version: "0.1.0".into(),
        started: "2025-06-01T12:00:00Z".into(),
        cores: 4,
        runner: "native".into(),
        machine: None,
        base: "topology.yaml".into(),
        load: LoadSpec {
            target: "/op2".into(),
            connections: 64,
            rate: None,
            duration_s: 10.0,
            warmup_s: 2.0,
            rounds: 3,
            arrivals: None,
        },
        series: vec![
            Series {
                vary: "workers".into(),
                points: [(1.0, 1.01), (2.0, 0.98), (4.0, 1.02), (8.0, 0.99), (16.0, 1.01)]
                    .iter()
                    .map(|&(n, w)| noisy(point(n, n, measured(&workers, n, w), &one_node(n as usize))))
                    .collect(),
                fit: Some(workers),
                fit_note: None,
                at: None,
                knee: None,
            },
            Series {
                vary: "replicas".into(),
                points: vec![
                    point(1.0, 1.0, measured(&replicas, 1.0, 0.99), &one_per_node(1, 1.0)),
                    point(2.0, 2.0, measured(&replicas, 2.0, 1.01), &one_per_node(2, 0.52)),
                    point(4.0, 4.0, measured(&replicas, 4.0, 1.0), &one_per_node(4, 0.7)),
                ],
                fit: Some(replicas),
                fit_note: None,
                at: None,
                knee: None,
            },
            Series {
                vary: "cpus".into(),
                points: vec![point(0.25, 0.25, 0.0, &[]), point(2.0, 2.0, 1880.0, &one_node(2))],
                fit: None,
                fit_note: Some("2 distinct N are too few to fit σ, κ and λ".into()),
                at: None,
                knee: None,
            },
        ],
    }
}

/// A made-up load sweep: one node of 4 workers on 2 cores, /op2 costing 0.5 ms, three
/// distributions each at six loads. Measured p99 sits near the partitioned model for
/// `reuseport`, near the pooled one for `round_robin`, between for `shared`.
fn load_fixture() -> Results {
    use scalelab_experiment::queueing::{Model, Queue};
    use scalelab_experiment::results::Offered;
    let q = Queue { servers: 2, service_ms: 0.5 };
    let loads = [0.2, 0.4, 0.6, 0.8, 0.9, 0.95];
    let series = [("shared", 0.5), ("reuseport", 1.0), ("round_robin", 0.0)]
        .into_iter()
        .map(|(name, towards_partitioned)| {
            let points: Vec<Point> = loads
                .iter()
                .map(|&rho| {
                    let (pool, part) =
                        (q.predict(Model::Pooled, rho).unwrap(), q.predict(Model::Partitioned, rho).unwrap());
                    let mix = |a: f64, b: f64| {
                        (a.ln() * (1.0 - towards_partitioned) + b.ln() * towards_partitioned).exp() + 0.3
                    };
                    let latency = Percentiles {
                        p50: mix(pool.p50, part.p50),
                        p90: mix(pool.p90, part.p90),
                        p99: mix(pool.p99, part.p99),
                        p999: mix(pool.p999, part.p999) * 1.1,
                        max: part.p999 * 2.0,
                        stdev: part.mean,
                    };
                    let mut p = point(rho, rho, 4000.0 * rho, &one_node(4));
                    p.latency_ms = latency;
                    for (r, f) in p.rounds.iter_mut().zip([0.93, 1.0, 1.08]) {
                        r.latency_ms = Percentiles {
                            p50: latency.p50 * f,
                            p90: latency.p90 * f,
                            p99: latency.p99 * f,
                            p999: latency.p999 * f,
                            ..latency
                        };
                    }
                    p.offered = Some(Offered {
                        rate_rps: 4000.0 * rho,
                        capacity_rps: Some(4000.0),
                        utilization: Some(rho),
                        servers: Some(2),
                        service_ms: Some(0.5),
                        pooled: Some(pool),
                        partitioned: Some(part),
                        model_note: None,
                    });
                    p
                })
                .collect();
            let predicted = Some((5.0, q.knee(Model::Pooled), q.knee(Model::Partitioned)));
            Series {
                vary: "load".into(),
                at: Some(format!("distribution={name}")),
                knee: scalelab_experiment::sweep::load::knee(&points, predicted),
                points,
                fit: None,
                fit_note: Some("load is the offered load, not a scale: see the knee".into()),
            }
        })
        .collect();
    Results { series, ..fixture() }
}
