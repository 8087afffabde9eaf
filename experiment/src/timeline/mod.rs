//! `scalelab load --timeline DIR`: the run second by second, as `timeline.json` (the serde
//! [`Timeline`]), `timeline.csv` (one row a second) and `timeline.html` (one self-contained
//! page drawn like `report.html`: plotters SVG in an askama template, no script).
//!
//! Each second has the load generator's own counts ([`SecondRow`]: offered, sent, served,
//! errors, 503s, p50 and p99) and, when `--admin URL` names the balancer's admin listener,
//! what the balancer said in that second ([`AdminSecond`]: replicas per group, each
//! autoscaler's metric, CPU used and cap per node), with the autoscalers' decisions placed
//! at their time.
//!
//! # Layout
//! - [`admin`]: the balancer's `/state` and `/live`, asked once a second while the load runs.
//! - `csv`: `timeline.csv`.
//! - `charts`: the page's four charts.
//! - `page`: the template's data; the template is `templates/timeline.html`.

pub mod admin;
pub(crate) mod charts;
mod csv;
mod page;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use askama::Template;
use scalelab_balancer::status::Decision;
use scalelab_loadgen::{Report, Run, SecondRow, Threshold};
use scalelab_topology::AutoscaleMetric;
use serde::{Deserialize, Serialize};

use crate::report::write_atomically;
use admin::{AdminRecord, AdminSample};

/// The JSON file `--timeline` writes.
pub const TIMELINE_JSON: &str = "timeline.json";
/// The CSV file, one row a second.
pub const TIMELINE_CSV: &str = "timeline.csv";
/// The page.
pub const TIMELINE_HTML: &str = "timeline.html";

/// The whole `timeline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The scalelab version that measured it.
    pub scalelab_version: String,
    /// When the run started (RFC 3339, UTC, to the millisecond).
    pub started: String,
    /// The target base URL.
    pub url: String,
    /// The load model in words, e.g. `open loop ramping 0 → 140 req/s over 1m, 16 connections`.
    pub load: String,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// The run's totals: requests, 2xx responses, errors.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// The latency of the whole run, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The `--slo` thresholds, judged.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// One entry per second of the run, from its start.
    pub seconds: Vec<Second>,
    /// What was asked of the balancer's admin listener; `None` without `--admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSummary>,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// What the load generator counted in it.
    #[serde(flatten)]
    pub load: SecondRow,
    /// What the balancer said in it; `None` without `--admin`, or when no ask succeeded in
    /// this second (a gap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSecond>,
}

/// The balancer's view of one second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminSecond {
    /// Replicas per node group: `/state`'s groups when it names them, otherwise the nodes
    /// `/live` lists per group.
    pub replicas: BTreeMap<String, usize>,
    /// Each autoscaled group's controller: its metric, value and target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub autoscale: BTreeMap<String, AutoscaleReading>,
    /// CPU per node, from `/live`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu: BTreeMap<String, NodeCpu>,
}

/// What a group's autoscaler read at its last sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleReading {
    pub metric: AutoscaleMetric,
    /// The metric's mean over the group's ready nodes (`None`: no node reported).
    pub value: Option<f64>,
    /// The per-node value it aims for.
    pub target: f64,
    /// Replicas it runs and wants.
    pub current: usize,
    pub desired: usize,
}

/// One node's CPU in one second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCpu {
    /// Its node group.
    pub group: String,
    /// Cores used over the balancer's last sample second (`None`: the node could not say).
    pub used: Option<f64>,
    /// Its cap in cores (`None`: uncapped).
    pub cap: Option<f64>,
}

/// The admin listener's part of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminSummary {
    /// The URL asked.
    pub url: String,
    /// Asks made (one a second) and asks that got neither `/state` nor `/live`.
    pub polls: u64,
    pub failed: u64,
    /// Every group and node seen, in natural order.
    pub groups: Vec<String>,
    pub nodes: Vec<String>,
    /// The autoscalers' replica changes during the run, in time order.
    pub decisions: Vec<TimedDecision>,
}

/// An autoscaler's decision placed on the run's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedDecision {
    /// Seconds from the start of the run.
    pub t: f64,
    /// The group it scaled.
    pub group: String,
    /// The decision as the balancer reports it (its own `at` is Unix time).
    #[serde(flatten)]
    pub decision: Decision,
}

impl Timeline {
    /// The timeline of `run`, with what the admin listener said during it.
    pub fn new(run: &Run, admin: Option<AdminRecord>) -> Timeline {
        let r = &run.report;
        let start = unix(run.started);
        let mut seconds: Vec<Second> =
            run.seconds.iter().map(|load| Second { load: load.clone(), admin: None }).collect();
        let admin = admin.map(|record| {
            place(&mut seconds, &record.samples, start);
            summary(&record, start, seconds.len() as f64)
        });
        Timeline {
            scalelab_version: env!("CARGO_PKG_VERSION").to_string(),
            started: humantime::format_rfc3339_millis(run.started).to_string(),
            url: r.url.clone(),
            load: load_line(r),
            duration_s: r.duration_s,
            requests: r.requests,
            ok: r.ok,
            errors: r.errors,
            p50_ms: r.latency_ms.p50,
            p99_ms: r.latency_ms.p99,
            thresholds: r.thresholds.clone(),
            seconds,
            admin,
        }
    }

    /// Whether any second has admin data.
    pub fn has_admin_data(&self) -> bool {
        self.seconds.iter().any(|s| s.admin.is_some())
    }
}

/// `open loop ramping 0 → 140 req/s over 1m, 16 connections`.
fn load_line(r: &Report) -> String {
    let connections = match r.connections {
        1 => "1 connection".to_string(),
        n => format!("{n} connections"),
    };
    format!("{}, {connections}", scalelab_loadgen::describe_load(r))
}

/// Puts each admin sample into the second it was taken in (the latest wins). The first ask
/// goes out just before the load starts: within a second before, it counts as second 0.
fn place(seconds: &mut [Second], samples: &[AdminSample], start: f64) {
    for s in samples {
        let t = s.at - start;
        if t > -1.0 {
            if let Some(second) = seconds.get_mut(t.max(0.0) as usize) {
                second.admin = Some(s.second.clone());
            }
        }
    }
}

/// The groups, nodes and decisions seen, the decisions within the run's `span` seconds.
fn summary(record: &AdminRecord, start: f64, span: f64) -> AdminSummary {
    let mut groups: Vec<String> = Vec::new();
    let mut nodes: Vec<String> = Vec::new();
    for s in &record.samples {
        groups.extend(s.second.replicas.keys().cloned());
        nodes.extend(s.second.cpu.keys().cloned());
    }
    for v in [&mut groups, &mut nodes] {
        v.sort_by(|a, b| scalelab_loadgen::natural_cmp(a, b));
        v.dedup();
    }
    let mut decisions: Vec<TimedDecision> = record
        .decisions
        .iter()
        .map(|(group, d)| TimedDecision { t: d.at - start, group: group.clone(), decision: d.clone() })
        .filter(|d| (0.0..=span).contains(&d.t))
        .collect();
    decisions.sort_by(|a, b| a.t.total_cmp(&b.t));
    AdminSummary {
        url: record.url.clone(),
        polls: record.polls,
        failed: record.failed,
        groups,
        nodes,
        decisions,
    }
}

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// The page for `timeline`.
pub fn render(timeline: &Timeline) -> anyhow::Result<String> {
    let charts = charts::draw(timeline)?;
    page::Page::new(timeline, charts).render().context("filling templates/timeline.html")
}

/// Writes `timeline.json`, `timeline.csv` and `timeline.html` into `dir` (created if
/// missing); returns the page's path.
pub fn write(dir: &Path, timeline: &Timeline) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(timeline).context("encoding timeline.json")?;
    write_atomically(&dir.join(TIMELINE_JSON), &json)?;
    write_atomically(&dir.join(TIMELINE_CSV), &csv::write(timeline))?;
    let page = dir.join(TIMELINE_HTML);
    write_atomically(&page, &render(timeline).context("drawing timeline.html")?)?;
    Ok(page)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::admin::AdminSample;
    use super::*;

    /// A fixture run: `secs` seconds ramping from 10 to 10·secs req/s offered, served all
    /// but the last third (where 503s come), p99 growing; the balancer scales `node` from 1
    /// to 3 replicas (decisions at 4.2 s and 7.6 s) and reports its nodes' CPU against a 0.5
    /// core cap. A poll is missing at second 5.
    pub(crate) fn fixture(secs: u32) -> Timeline {
        let start = 1_750_000_000.0;
        let rows: Vec<SecondRow> = (0..secs)
            .map(|t| {
                let offered = 10 * (t as u64 + 1);
                let shed = if t >= secs * 2 / 3 { offered / 4 } else { 0 };
                SecondRow {
                    t,
                    offered,
                    sent: offered,
                    responses: offered,
                    ok: offered - shed,
                    errors: shed,
                    unavailable: shed,
                    p50_ms: Some(2.0 + t as f64),
                    p99_ms: Some(8.0 + 4.0 * t as f64 * t as f64 / secs as f64),
                }
            })
            .collect();
        let replicas_at = |t: f64| {
            if t < 4.2 {
                1
            } else if t < 7.6 {
                2
            } else {
                3
            }
        };
        let samples: Vec<AdminSample> = (0..secs)
            .filter(|&t| t != 5)
            .map(|t| {
                let n = replicas_at(t as f64 + 0.5);
                let cpu = (1..=n)
                    .map(|i| {
                        // Whole hundredths: serde_json's default float parsing is not
                        // exact to the last bit, and the fixture must round-trip.
                        let used = ((15.0 * (t as f64 + 1.0) / n as f64).round() / 100.0).min(0.5);
                        (
                            format!("node-{i}"),
                            NodeCpu { group: "node".into(), used: Some(used), cap: Some(0.5) },
                        )
                    })
                    .collect();
                let autoscale = BTreeMap::from([(
                    "node".to_string(),
                    AutoscaleReading {
                        metric: AutoscaleMetric::Cpu,
                        value: Some(0.8),
                        target: 0.6,
                        current: n,
                        desired: n,
                    },
                )]);
                AdminSample {
                    at: start + t as f64 + 0.4,
                    second: AdminSecond {
                        replicas: BTreeMap::from([("node".to_string(), n)]),
                        autoscale,
                        cpu,
                    },
                }
            })
            .collect();
        let decision = |at: f64, from, to| {
            (
                "node".to_string(),
                Decision { at: start + at, from, to, reason: format!("cpu over target, {from} → {to}") },
            )
        };
        let record = AdminRecord {
            url: "http://127.0.0.1:9090".into(),
            polls: secs as u64,
            failed: 1,
            samples,
            decisions: vec![decision(4.2, 1, 2), decision(7.6, 2, 3), decision(-30.0, 1, 1)],
        };
        let mut seconds: Vec<Second> = rows.into_iter().map(|load| Second { load, admin: None }).collect();
        place(&mut seconds, &record.samples, start);
        Timeline {
            scalelab_version: "0.1.0".into(),
            started: "2025-06-15T15:06:40.000Z".into(),
            url: "http://127.0.0.1:8080".into(),
            load: "open loop ramping 0 → 100 req/s over 10s, 16 connections".into(),
            duration_s: secs as f64,
            requests: 550,
            ok: 500,
            errors: 50,
            p50_ms: 6.0,
            p99_ms: 40.0,
            thresholds: vec![Threshold {
                slo: "p99<25ms".into(),
                metric: "p99".into(),
                op: "<".into(),
                limit: 25.0,
                measured: Some(40.0),
                unit: "ms".into(),
                passed: false,
            }],
            admin: Some(summary(&record, start, secs as f64)),
            seconds,
        }
    }

    #[test]
    fn admin_samples_land_in_their_second_and_decisions_on_the_run_clock() {
        let t = fixture(10);
        assert!(t.seconds[4].admin.is_some() && t.seconds[5].admin.is_none(), "second 5 is a gap");
        assert_eq!(t.seconds[9].admin.as_ref().unwrap().replicas["node"], 3);
        let a = t.admin.as_ref().unwrap();
        assert_eq!(a.groups, ["node"]);
        assert_eq!(a.nodes, ["node-1", "node-2", "node-3"]);
        let times: Vec<f64> = a.decisions.iter().map(|d| (d.t * 10.0).round() / 10.0).collect();
        assert_eq!(times, [4.2, 7.6], "the decision before the run is left out");
        let back: Timeline = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t, "timeline.json round-trips");
    }

    #[test]
    fn write_puts_three_files_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new");
        let page = write(&out, &fixture(10)).unwrap();
        assert_eq!(page, out.join(TIMELINE_HTML));
        for f in [TIMELINE_JSON, TIMELINE_CSV, TIMELINE_HTML] {
            assert!(out.join(f).exists(), "{f}");
        }
        let json: Timeline =
            serde_json::from_str(&std::fs::read_to_string(out.join(TIMELINE_JSON)).unwrap()).unwrap();
        assert_eq!(json.seconds.len(), 10);
    }
}
