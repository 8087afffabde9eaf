//! `timeline.html` as a person sees it, in Debian's headless Chromium: every chart's `<svg>`
//! must be in the DOM with its marks drawn. Once for a fixture timeline with an autoscaler
//! (replica steps and decision markers, which no lab here makes yet), once for the page a
//! real `scalelab load --timeline --admin` writes against a lab started with `scalelab up`;
//! and without admin data the page says so instead of drawing empty charts. Screenshots are
//! kept in `target/test-artifacts/`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::browser::{artifacts_dir, chromium, container, require_chromium, screenshot};
use common::*;
use scalelab_balancer::status::{Decision, StateReport};
use scalelab_experiment::timeline::{
    self, AdminSecond, AdminSummary, AutoscaleReading, NodeCpu, Second, TimedDecision, Timeline,
    TIMELINE_JSON,
};
use scalelab_loadgen::{SecondRow, Threshold};
use scalelab_topology::AutoscaleMetric;

/// The marks each chart must hold at least: (id, mark, count).
fn check_charts(dom: &str, expected: &[(&str, &str, usize)]) {
    for &(id, mark, at_least) in expected {
        let chart = container(dom, id);
        assert!(chart.contains("<svg"), "#{id} holds no <svg> in the DOM Chromium built");
        let drawn = chart.matches(mark).count();
        assert!(drawn >= at_least, "#{id} has {drawn} {mark}> elements, expected at least {at_least}");
        assert!(chart.matches("<text").count() >= 8, "#{id} has almost no text: no axes or labels");
        assert!(chart.contains("time since the start of the run, s"), "#{id}: the x axis is unnamed");
    }
}

#[test]
fn chromium_renders_every_chart_of_a_timeline_with_an_autoscaler() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let page = timeline::write(dir.path(), &fixture()).unwrap();
    let url = format!("file://{}", page.display());
    let dom = chromium(dir.path(), "dom", &["--dump-dom", &url]);
    check_charts(
        &dom,
        &[
            ("chart-rate", "<polyline", 3),
            ("chart-latency", "<polyline", 3),
            ("chart-replicas", "<polyline", 2),
            ("chart-replicas", "<polygon", 2),
            ("chart-cpu", "<polyline", 6),
        ],
    );
    let replicas = container(&dom, "chart-replicas");
    assert!(replicas.contains("1→2") && replicas.contains("2→3"), "the decisions are labelled");
    assert!(container(&dom, "chart-latency").contains("SLO p99&lt;150ms"), "the SLO line is named");
    assert!(
        dom.contains("id=\"table-decisions\"") && dom.contains("cpu 0.82 of 0.50"),
        "the decisions table"
    );
    assert!(dom.contains("✗ FAIL") && dom.contains("✓ pass"), "the thresholds table");
    screenshot(dir.path(), &url, "timeline-autoscale.png", 1280, 2700);
    std::fs::copy(&page, artifacts_dir().join("timeline-autoscale.html")).unwrap();

    // Without --admin the page says so where the replicas and CPU charts would be.
    let mut bare = fixture();
    bare.admin = None;
    bare.seconds.iter_mut().for_each(|s| s.admin = None);
    let page = timeline::write(&dir.path().join("bare"), &bare).unwrap();
    let dom = chromium(dir.path(), "bare", &["--dump-dom", &format!("file://{}", page.display())]);
    check_charts(&dom, &[("chart-rate", "<polyline", 3), ("chart-latency", "<polyline", 2)]);
    for id in ["chart-replicas", "chart-cpu"] {
        assert!(
            dom.contains(&format!("id=\"{id}\">No balancer admin data")),
            "#{id} should say why it is empty"
        );
    }
    assert_eq!(dom.matches("<svg").count(), 2, "no empty admin charts");
}

#[test]
fn a_real_run_with_admin_charts_replicas_and_cpu() {
    require_chromium();
    let p = free_ports(2);
    let port = free_port_run(2);
    let t = TopologyFile::new(&format!(
        "balancer:\n  listen: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\n  health_check: {{ interval_ms: 200 }}\n\
         workload:\n  op2_cpu_ms: 5\nnodes:\n  - name: node\n    replicas: 2\n    workers: 1\n    cpus: 0.5\n    port: {port}\n",
        p[0], p[1]
    ));
    let up = Proc::spawn_capturing(&["up", "--topology", t.path_str()]);
    up.wait_output("Ctrl-C stops everything", Duration::from_secs(30));
    wait_for("both nodes healthy", Duration::from_secs(20), || {
        let body = get(format!("127.0.0.1:{}", p[1]), "/state").ok()?.body;
        let state: StateReport = serde_json::from_str(&body).ok()?;
        (state.healthy_backends == 2).then_some(())
    });

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("timeline");
    let (url, admin) = (format!("http://127.0.0.1:{}", p[0]), format!("http://127.0.0.1:{}", p[1]));
    let args = ["load", "--url", &url, "--path", "/op2", "--stages", "2s:60,4s:60", "--connections", "16"];
    let args =
        [&args[..], &["--slo", "p99<2s", "--timeline", dir.to_str().unwrap(), "--admin", &admin]].concat();
    let (code, stdout, stderr) = run_scalelab(&args, Duration::from_secs(60));
    assert!(code == 0 || code == 3, "{stdout}\n{stderr}");
    assert!(stderr.contains("timeline: "), "{stderr}");

    let tl: Timeline =
        serde_json::from_str(&std::fs::read_to_string(dir.join(TIMELINE_JSON)).unwrap()).unwrap();
    let a = tl.admin.as_ref().expect("--admin was given");
    assert!(a.polls >= 5 && a.failed == 0, "{} asks, {} failed", a.polls, a.failed);
    assert_eq!(a.groups, ["node"]);
    assert_eq!(a.nodes, ["node-1", "node-2"]);
    let seen: Vec<&AdminSecond> = tl.seconds.iter().filter_map(|s| s.admin.as_ref()).collect();
    assert!(seen.len() >= 4, "admin data in {} of {} seconds", seen.len(), tl.seconds.len());
    for s in &seen {
        assert_eq!(s.replicas, BTreeMap::from([("node".to_string(), 2)]), "{s:?}");
        assert!(s.cpu.values().all(|c| c.cap == Some(0.5) && c.group == "node"), "{s:?}");
    }
    let busy = seen.iter().filter(|s| s.cpu.values().any(|c| c.used.is_some_and(|u| u > 0.05))).count();
    assert!(busy >= 2, "the nodes burned /op2 CPU in {busy} seconds: {seen:?}");

    let url = format!("file://{}", dir.join(timeline::TIMELINE_HTML).display());
    let dom = chromium(out.path(), "dom", &["--dump-dom", &url]);
    check_charts(
        &dom,
        &[
            ("chart-rate", "<polyline", 3),
            ("chart-latency", "<polyline", 2),
            ("chart-replicas", "<polyline", 1),
            ("chart-cpu", "<polyline", 4),
        ],
    );
    assert!(container(&dom, "chart-cpu").contains("node-2 cap"));
    screenshot(out.path(), &url, "timeline-lab.png", 1280, 2600);
}

/// A made-up 20 s run: the offered rate ramps 0 → 190 req/s against 40 req/s per replica, so
/// served falls behind, the rest is shed with 503s and p99 climbs past its 150 ms SLO, until
/// the autoscaler adds a replica at 6.3 s and another at 12.8 s; CPU per node against a 0.5
/// core cap; no answer from the balancer at 9 s.
fn fixture() -> Timeline {
    let replicas = |t: f64| {
        if t < 6.3 {
            1
        } else if t < 12.8 {
            2
        } else {
            3
        }
    };
    let seconds: Vec<Second> = (0..20u32)
        .map(|t| {
            let n = replicas(f64::from(t) + 0.5);
            let offered = 10 * u64::from(t);
            let capacity = 40 * n as u64;
            let ok = offered.min(capacity);
            let over = offered.saturating_sub(capacity);
            let load = SecondRow {
                t,
                offered,
                sent: offered,
                responses: offered,
                ok,
                errors: over,
                unavailable: over,
                p50_ms: (t > 0).then_some(4.0 + 3.0 * over as f64),
                p99_ms: (t > 0).then(|| 12.0 + 9.0 * over as f64 + f64::from(t)),
            };
            let admin = (t != 9).then(|| AdminSecond {
                replicas: BTreeMap::from([("node".to_string(), n)]),
                autoscale: BTreeMap::from([(
                    "node".to_string(),
                    AutoscaleReading {
                        metric: AutoscaleMetric::Cpu,
                        value: Some(0.8),
                        target: 0.6,
                        current: n,
                        desired: n,
                    },
                )]),
                cpu: (1..=n)
                    .map(|i| {
                        let used = (0.05 * f64::from(t) / n as f64 * (1.0 - 0.1 * (i - 1) as f64)).min(0.5);
                        (
                            format!("node-{i}"),
                            NodeCpu { group: "node".into(), used: Some(used), cap: Some(0.5) },
                        )
                    })
                    .collect(),
            });
            Second { load, admin }
        })
        .collect();
    let decision = |t: f64, from, to| TimedDecision {
        t,
        group: "node".into(),
        decision: Decision {
            at: 1_750_000_000.0 + t,
            from,
            to,
            reason: format!("cpu 0.82 of 0.50 cap over target 0.60: {from} → {to}"),
        },
    };
    Timeline {
        scalelab_version: "0.1.0".into(),
        started: "2025-06-15T15:06:40.000Z".into(),
        url: "http://127.0.0.1:8080".into(),
        load: "open loop ramping 0 → 190 req/s over 20s, 64 connections".into(),
        duration_s: 20.0,
        requests: 1900,
        ok: 1700,
        errors: 200,
        p50_ms: 9.0,
        p99_ms: 480.0,
        thresholds: vec![
            threshold("p99<150ms", "p99", 150.0, 480.0, "ms", false),
            threshold("errors<20%", "errors", 20.0, 10.5, "%", true),
        ],
        seconds,
        admin: Some(AdminSummary {
            url: "http://127.0.0.1:9090".into(),
            polls: 20,
            failed: 1,
            groups: vec!["node".into()],
            nodes: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            decisions: vec![decision(6.3, 1, 2), decision(12.8, 2, 3)],
        }),
    }
}

fn threshold(slo: &str, metric: &str, limit: f64, measured: f64, unit: &str, passed: bool) -> Threshold {
    Threshold {
        slo: slo.into(),
        metric: metric.into(),
        op: "<".into(),
        limit,
        measured: Some(measured),
        unit: unit.into(),
        passed,
    }
}
