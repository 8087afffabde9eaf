//! The timeline page's data: what `templates/timeline.html` shows, with every number already
//! formatted, built from a [`Timeline`] and its drawn charts.

use askama::Template;

use super::charts::Charts;
use super::Timeline;
use crate::report::format;

/// The whole page, rendered by askama from `templates/timeline.html`.
#[derive(Template)]
#[template(path = "timeline.html")]
pub(super) struct Page {
    title: String,
    load: String,
    started: String,
    version: String,
    /// Requests, errors and latency of the whole run, in a line.
    totals: String,
    /// Where the admin data came from, or why there is none, in a line.
    admin: String,
    /// Shown in place of the replicas and CPU charts when there is nothing to draw.
    no_admin: String,
    charts: Charts,
    thresholds: Vec<ThresholdRow>,
    decisions: Vec<DecisionRow>,
}

/// One `--slo` verdict, formatted.
struct ThresholdRow {
    slo: String,
    measured: String,
    passed: bool,
}

/// One autoscaler decision, formatted.
struct DecisionRow {
    t: String,
    group: String,
    change: String,
    reason: String,
}

impl Page {
    pub(super) fn new(t: &Timeline, charts: Charts) -> Page {
        let admin = match &t.admin {
            None => {
                "not asked (run with --admin URL; the default lab's is http://127.0.0.1:9090)".to_string()
            }
            Some(a) => format!(
                "{}: {} asks, one a second; {} got no answer (gaps in the charts)",
                a.url, a.polls, a.failed
            ),
        };
        let no_admin = match &t.admin {
            None => "No balancer admin data: run scalelab load with --admin URL to chart replicas and CPU."
                .to_string(),
            Some(a) if !t.has_admin_data() => {
                format!("No balancer admin data: every ask of {} failed.", a.url)
            }
            Some(_) => {
                "No balancer admin data of this kind (the balancer reported no CPU readings).".to_string()
            }
        };
        Page {
            title: format!("scalelab load: {}", t.url),
            load: t.load.clone(),
            started: t.started.clone(),
            version: t.scalelab_version.clone(),
            totals: format!(
                "{} requests over {} s: {} 2xx, {} errors; p50 {} ms, p99 {} ms",
                t.requests,
                format::n(t.duration_s),
                t.ok,
                t.errors,
                format::ms(t.p50_ms),
                format::ms(t.p99_ms)
            ),
            admin,
            no_admin,
            charts,
            thresholds: t
                .thresholds
                .iter()
                .map(|th| ThresholdRow {
                    slo: th.slo.clone(),
                    measured: match th.measured {
                        Some(m) if th.unit == "%" => format!("{}%", format::sig3(m)),
                        Some(m) => format!("{} {}", format::sig3(m), th.unit),
                        None => "nothing to measure".into(),
                    },
                    passed: th.passed,
                })
                .collect(),
            decisions: t
                .admin
                .iter()
                .flat_map(|a| &a.decisions)
                .map(|d| DecisionRow {
                    t: format!("{:.1} s", d.t),
                    group: d.group.clone(),
                    change: format!("{} → {}", d.decision.from, d.decision.to),
                    reason: d.decision.reason.clone(),
                })
                .collect(),
        }
    }
}
