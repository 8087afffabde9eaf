//! Turns a [`Report`] into what the user reads: a text summary (the default) or JSON
//! (`--json`). The text ends with the "served by" table, the point of the lab: it shows how
//! the balancer spread requests over nodes and how each node spread them over its workers.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::{Mode, Report, Spread};
use crate::stages::StageTarget;

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The readable summary.
    Text,
    /// The report as one pretty-printed JSON object.
    Json,
}

impl Output {
    /// The report rendered for this output, ending with a newline.
    pub fn render(self, report: &Report) -> String {
        match self {
            Output::Text => text(report),
            Output::Json => json(report),
        }
    }
}

/// The report as pretty JSON (the fields of [`Report`]).
pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("a report always serializes");
    s.push('\n');
    s
}

/// The load model in words: `closed loop`, `open loop at 200 req/s`, `open loop ramping
/// 0 → 30 → 140 req/s over 1m`.
pub fn describe_load(r: &Report) -> String {
    match (&r.stages, r.mode) {
        (Some(s), _) if s.of == StageTarget::Rate => format!("open loop ramping {}", s.describe()),
        (Some(s), _) => format!("closed loop ramping {}", s.describe()),
        (None, Mode::Closed) => "closed loop".to_string(),
        (None, Mode::Open) => format!("open loop at {} req/s", fmt_num(r.rate.unwrap_or(0.0))),
    }
}

/// The readable summary.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let o = &mut out;
    let model = describe_load(r);
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(o, "Target      {}", r.url);
    let _ = writeln!(
        o,
        "Load        {}, {}, {}, {:.2} s",
        model,
        plural(r.connections.into(), "connection"),
        plural(r.threads as u64, "thread"),
        r.duration_s
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Requests    {} ({} ok, {} errors)", r.requests, r.ok, r.errors);
    let _ = writeln!(o, "Throughput  {:.1} req/s", r.rps);
    if r.retried > 0 {
        let _ = writeln!(
            o,
            "Resent      {} on a new connection (a kept-alive one closed before answering)",
            r.retried
        );
    }
    if r.in_flight_at_end > 0 {
        let _ =
            writeln!(o, "Cut off     {} in flight when the duration ended (not counted)", r.in_flight_at_end);
    }

    if r.responses > 0 {
        let l = &r.latency_ms;
        let _ = writeln!(o, "\nLatency (ms)");
        let _ = writeln!(
            o,
            "  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "min", "mean", "p50", "p90", "p99", "p99.9", "max", "stdev"
        );
        let _ = writeln!(
            o,
            "  {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max, l.stdev
        );
        if r.mode == Mode::Open {
            let _ = writeln!(o, "  (open loop: measured from each request's intended send time)");
        }
    }

    if let Some(s) = &r.schedule {
        let _ = writeln!(
            o,
            "\nSchedule    {} planned, {} sent, {} missed, {} late (>10 ms), max lag {:.1} ms",
            s.planned, s.sent, s.missed, s.late, s.max_lag_ms
        );
        let rate = match r.rate {
            Some(rate) => format!("--rate {}", fmt_num(rate)),
            None => "the --stages rates".to_string(),
        };
        let held_back = s.waited + s.missed;
        if held_back > 0 {
            let _ = writeln!(
                o,
                "  warning: fell behind {rate}: {held_back} requests found all {c} connections busy when \
                 they were due\n  ({} sent late, {} never sent). Either the server is saturated (the \
                 latencies show its queue)\n  or {c} connections cannot hold the requests in flight: \
                 raise --connections",
                s.waited,
                s.missed,
                c = r.connections,
            );
        } else if s.late * 100 > s.sent {
            let _ = writeln!(
                o,
                "  note: {} requests left more than 10 ms late although a connection was free: the load\n  \
                 generator itself woke late (a busy CPU); their latencies include the delay",
                s.late
            );
        }
    }

    if !r.status.is_empty() {
        let _ = writeln!(o, "\nStatus");
        for (status, n) in &r.status {
            let _ = writeln!(o, "  {:<20} {:>10} {:>7}", status, n, pct(*n, r.responses));
        }
    }

    if r.errors > 0 {
        let e = &r.error_kinds;
        let _ = writeln!(o, "\nErrors");
        for (kind, n) in [
            ("connect", e.connect),
            ("timeout", e.timeout),
            ("io", e.io),
            ("http", e.http),
            ("status (non-2xx)", e.status),
        ] {
            if n > 0 {
                let _ = writeln!(o, "  {:<20} {:>10} {:>7}", kind, n, pct(n, r.requests));
            }
        }
    }

    if r.by_path.len() > 1 {
        let _ = writeln!(
            o,
            "\nPaths{:>29} {:>7} {:>9} {:>9} {:>9}",
            "requests", "share", "p50 ms", "p99 ms", "p99.9 ms"
        );
        for (path, n) in sorted(&r.by_path) {
            let l = r.latency_by_path_ms.get(path).copied().unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:<20} {:>10} {:>7} {:>9.3} {:>9.3} {:>9.3}",
                path,
                n,
                pct(n, r.requests),
                l.p50,
                l.p99,
                l.p999
            );
        }
    }

    stages(o, r);
    served_by(o, r);
    thresholds(o, r);
    out
}

/// A staged load, stage by stage: each one's load and latency apart.
fn stages(o: &mut String, r: &Report) {
    if r.by_stage.is_empty() {
        return;
    }
    let unit = match &r.stages {
        Some(s) if s.of == StageTarget::Connections => "conns",
        _ => "req/s",
    };
    let _ = writeln!(
        o,
        "\nStages       seconds  {unit:>13} {:>8} {:>8} {:>7} {:>6} {:>9} {:>9}",
        "sent", "ok", "errors", "503", "p50 ms", "p99 ms"
    );
    let ms = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for s in &r.by_stage {
        let _ = writeln!(
            o,
            "  {:<10} {:>3}-{:<3}  {:>13} {:>8} {:>8} {:>7} {:>6} {:>9} {:>9}",
            format!("stage {}", s.stage),
            s.from_s,
            s.to_s,
            format!("{}->{}", fmt_num(s.from_target), fmt_num(s.to_target)),
            s.sent,
            s.ok,
            s.errors,
            s.unavailable,
            ms(s.p50_ms),
            ms(s.p99_ms)
        );
    }
    let _ = writeln!(o, "  (a stage counts the requests it sent, and their outcomes whenever they came)");
}

/// The `--slo` verdicts, last so that a CI log ends with them.
fn thresholds(o: &mut String, r: &Report) {
    if r.thresholds.is_empty() {
        return;
    }
    let failed = r.thresholds.iter().filter(|t| !t.passed).count();
    let verdict = match failed {
        0 => "all passed".to_string(),
        n => format!("{n} of {} failed (exit status 3)", r.thresholds.len()),
    };
    let _ = writeln!(o, "\nThresholds  {verdict}");
    for t in &r.thresholds {
        let mark = if t.passed { "✓ pass" } else { "✗ FAIL" };
        let measured = match t.measured {
            Some(m) if t.unit == "%" => format!("{m:.3}%"),
            Some(m) if t.unit == "ms" => format!("{m:.3} ms"),
            Some(m) => format!("{m:.1} {}", t.unit),
            None => "nothing to measure".to_string(),
        };
        let _ = writeln!(o, "  {mark}  {:<18} measured {measured}", t.slo);
    }
}

/// The per-node table with each node's workers indented under it.
fn served_by(o: &mut String, r: &Report) {
    if r.by_node.is_empty() {
        if r.responses > 0 {
            let _ = writeln!(o, "\nServed by   (no x-node headers in the responses)");
        }
        return;
    }
    let _ = writeln!(o, "\n{:<22} {:>10} {:>7}", "Served by", "responses", "share");
    for (node, n) in sorted(&r.by_node) {
        let _ = writeln!(o, "  {:<20} {:>10} {:>7}", node, n, pct(n, r.responses));
        let prefix = format!("{node}/");
        for (worker, n) in sorted(&r.by_worker).into_iter().filter(|(w, _)| w.starts_with(&prefix)) {
            let _ = writeln!(o, "    {:<18} {:>10} {:>7}", worker, n, pct(n, r.responses));
        }
    }
    if r.unattributed > 0 {
        let _ = writeln!(
            o,
            "  {:<20} {:>10} {:>7}",
            "(no x-node)",
            r.unattributed,
            pct(r.unattributed, r.responses)
        );
    }
    let spread = |s: Option<Spread>| {
        s.map_or_else(
            || "-".to_string(),
            |s| format!("J {:.3}, busiest {:.2}x the mean", s.jain, s.max_over_mean),
        )
    };
    let _ = writeln!(
        o,
        "\nFairness    nodes: {}; workers: {}",
        spread(r.fairness.nodes),
        spread(r.fairness.workers)
    );
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Map entries in natural order: `node-2` before `node-10`.
fn sorted(m: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = m.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    v.sort_by(|a, b| natural_cmp(a.0, b.0));
    v
}

/// Compares strings chunk by chunk, runs of digits by their numeric value: `node-2` before
/// `node-10`. The load report and the sweep report order nodes and workers with it.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (ca, ra) = chunk(a);
        let (cb, rb) = chunk(b);
        let ord = match (ca.parse::<u64>(), cb.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y).then(ca.len().cmp(&cb.len())),
            _ => ca.cmp(cb),
        };
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (ra, rb);
    }
}

/// Splits off the leading run of digits, or of non-digits.
fn chunk(s: &str) -> (&str, &str) {
    let digits = s.as_bytes()[0].is_ascii_digit();
    let end = s.bytes().position(|c| c.is_ascii_digit() != digits).unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ErrorCounts, Latency, ScheduleReport};

    /// A closed-loop report fixture: 300 responses from two nodes of two workers each.
    fn report() -> Report {
        Report {
            url: "http://127.0.0.1:8080".into(),
            mode: Mode::Closed,
            connections: 4,
            threads: 1,
            rate: None,
            duration_s: 2.0,
            requests: 301,
            responses: 300,
            ok: 300,
            rps: 150.0,
            ok_rps: 150.0,
            errors: 1,
            error_kinds: ErrorCounts { total: 1, connect: 1, ..Default::default() },
            status: BTreeMap::from([(200, 300)]),
            latency_ms: Latency {
                min: 0.1,
                mean: 0.5,
                p50: 0.4,
                p90: 0.8,
                p99: 1.5,
                p999: 3.0,
                max: 9.0,
                stdev: 0.3,
            },
            by_path: BTreeMap::from([("/op1".into(), 226), ("/op2".into(), 75)]),
            by_node: BTreeMap::from([("node-10".into(), 150), ("node-2".into(), 150)]),
            by_worker: BTreeMap::from([
                ("node-10/1".into(), 75),
                ("node-10/2".into(), 75),
                ("node-2/1".into(), 75),
                ("node-2/2".into(), 75),
            ]),
            unattributed: 0,
            in_flight_at_end: 0,
            latency_by_path_ms: Default::default(),
            retried: 0,
            fairness: Default::default(),
            schedule: None,
            stages: None,
            by_stage: Vec::new(),
            thresholds: Vec::new(),
        }
    }

    #[test]
    fn text_has_the_served_by_table_in_natural_order() {
        let t = text(&report());
        let node2 = t.find("  node-2 ").unwrap();
        let node2w1 = t.find("    node-2/1").unwrap();
        let node10 = t.find("  node-10 ").unwrap();
        assert!(node2 < node2w1 && node2w1 < node10, "{t}");
        assert!(t.contains("50.0%") && t.contains("25.0%"), "{t}");
        assert!(t.contains("150.0 req/s"), "{t}");
        assert!(t.contains("connect"), "{t}");
        assert!(t.contains("/op2"), "{t}");
        assert!(t.contains("p99.9"), "{t}");
    }

    fn open_loop(schedule: ScheduleReport) -> Report {
        Report { mode: Mode::Open, rate: Some(1000.0), schedule: Some(schedule), ..report() }
    }

    #[test]
    fn open_loop_warns_when_behind_and_counts_what_the_connections_held_back() {
        let schedule =
            ScheduleReport { planned: 2000, sent: 1500, missed: 500, late: 40, max_lag_ms: 40.0, waited: 30 };
        let t = text(&open_loop(schedule));
        assert!(t.contains("open loop at 1000 req/s"), "{t}");
        assert!(
            t.contains("warning: fell behind --rate 1000: 530 requests found all 4 connections busy"),
            "{t}"
        );
        assert!(t.contains("(30 sent late, 500 never sent)"), "{t}");
    }

    #[test]
    fn late_sends_with_a_free_connection_do_not_blame_the_connections() {
        // 2 of 100 left late, none for want of a connection: the load generator woke late.
        let schedule =
            ScheduleReport { planned: 100, sent: 100, missed: 0, late: 2, max_lag_ms: 27.8, waited: 0 };
        let t = text(&open_loop(schedule));
        assert!(!t.contains("--connections") && !t.contains("warning"), "{t}");
        assert!(
            t.contains("note: 2 requests left more than 10 ms late although a connection was free"),
            "{t}"
        );
        let on_time = ScheduleReport { late: 1, ..schedule };
        assert!(!text(&open_loop(on_time)).contains("note:"), "1% late or less is no news");
    }

    #[test]
    fn text_ends_with_the_thresholds() {
        let r = Report {
            thresholds: vec![
                crate::slo::Threshold {
                    slo: "p99<1ms".into(),
                    metric: "p99".into(),
                    op: "<".into(),
                    limit: 1.0,
                    measured: Some(1.5),
                    unit: "ms".into(),
                    passed: false,
                },
                crate::slo::Threshold {
                    slo: "errors<1%".into(),
                    metric: "errors".into(),
                    op: "<".into(),
                    limit: 1.0,
                    measured: Some(0.332),
                    unit: "%".into(),
                    passed: true,
                },
            ],
            ..report()
        };
        let t = text(&r);
        let block = &t[t.find("Thresholds").expect(&t)..];
        assert!(block.starts_with("Thresholds  1 of 2 failed (exit status 3)"), "{block}");
        assert!(block.contains("✗ FAIL  p99<1ms            measured 1.500 ms"), "{block}");
        assert!(block.contains("✓ pass  errors<1%          measured 0.332%"), "{block}");
        assert!(!text(&report()).contains("Thresholds"), "no --slo, no block");
    }

    #[test]
    fn a_staged_load_describes_its_ramp() {
        let stages = crate::stages::Stages {
            of: StageTarget::Connections,
            stages: "10s:4,20s:64".parse::<crate::stages::StageList>().unwrap().0,
        };
        let t = text(&Report { stages: Some(stages), ..report() });
        assert!(t.contains("closed loop ramping 0 → 4 → 64 connections over 30s"), "{t}");
    }

    #[test]
    fn json_round_trips() {
        let r = report();
        let back: Report = serde_json::from_str(&Output::Json.render(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["node-10", "node-2", "node-1/2", "node-1/10", "a", "node-1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a", "node-1", "node-1/2", "node-1/10", "node-2", "node-10"]);
    }
}
