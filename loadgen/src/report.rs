//! What a run measured: the per-connection [`Aggregate`] (pure: `push` one outcome, `merge`
//! another aggregate) and the finished [`Report`] it turns into.
//!
//! Every connection owns one aggregate and pushes into it without locks or allocation (a new
//! status code or node/worker name allocates once, the first time it is seen). The runner
//! merges them when the connections are done. (oha sends every result over a channel to one
//! aggregator; at around 100k requests per second that hand-off would cost about as much CPU
//! as the request itself.) Errors are data: a failed request is pushed as
//! `Err(ErrorKind)` and counted, never logged or propagated.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::slo::Threshold;
use crate::stages::{StageTarget, Stages};

/// The largest latency the histogram tells apart, in microseconds (60 s); longer ones are
/// recorded as 60 s. Fixed bounds keep every aggregate the same size (about 140 KiB) however
/// long the run, and make merging infallible.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// Open-loop requests sent more than this long after their intended instant count as late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The TCP connection (or the HTTP/1 handshake on it) could not be opened.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection broke: reset, closed mid-response, other socket errors.
    Io,
    /// The response could not be parsed as HTTP/1.
    Http,
}

/// One response, as the aggregate needs it. Borrowed header values: pushing allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// The HTTP status code.
    pub status: u16,
    /// From the send (closed loop) or the intended send (open loop) to the end of the body.
    pub latency: Duration,
    /// The `x-node` response header, if any.
    pub node: Option<&'a str>,
    /// The `x-worker` response header, if any.
    pub worker: Option<&'a str>,
}

/// Responses served by one node worker.
#[derive(Debug, Clone)]
struct Served {
    node: String,
    /// `None` when the response named a node but no worker.
    worker: Option<String>,
    count: u64,
}

/// Running totals of one connection (or of many, once merged).
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Latency of every response (any status), in microseconds.
    latency: Histogram<u64>,
    /// The same per mix path, at 2 significant digits (a tenth of the memory), only when the
    /// mix has more than one path.
    latency_by_path: Vec<Histogram<u64>>,
    requests: u64,
    ok: u64,
    errors: ErrorCounts,
    /// `(status, count)`, in order of first appearance; a handful of entries at most.
    status: Vec<(u16, u64)>,
    /// Finished requests per mix path index.
    by_path: Vec<u64>,
    served: Vec<Served>,
    /// Responses without an `x-node` header.
    unattributed: u64,
    /// Requests cut off by the end of the run, neither counted as answered nor as failed.
    in_flight_at_end: u64,
    /// Open loop: sends later than [`LATE_AFTER`], and the largest delay seen, in µs.
    late: u64,
    max_lag_us: u64,
    /// Open loop: requests handed to a connection later than [`LATE_AFTER`] after they were
    /// due, because every connection was busy.
    waited: u64,
    /// Requests resent once on a new connection (see `Report::retried`).
    retried: u64,
}

impl Aggregate {
    /// An empty aggregate for a mix of `paths` paths.
    pub fn new(paths: usize) -> Aggregate {
        Aggregate {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static histogram bounds are valid"),
            latency_by_path: if paths > 1 {
                (0..paths)
                    .map(|_| {
                        Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                            .expect("static histogram bounds are valid")
                    })
                    .collect()
            } else {
                Vec::new()
            },
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            status: Vec::new(),
            by_path: vec![0; paths],
            served: Vec::new(),
            unattributed: 0,
            in_flight_at_end: 0,
            late: 0,
            max_lag_us: 0,
            waited: 0,
            retried: 0,
        }
    }

    /// Counts one finished request to mix path `path`: a response or the reason there was none.
    pub fn push(&mut self, path: usize, outcome: Result<Sample<'_>, ErrorKind>) {
        self.requests += 1;
        self.by_path[path] += 1;
        let sample = match outcome {
            Ok(s) => s,
            Err(kind) => {
                self.errors.add(kind);
                return;
            }
        };
        let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        if let Some(h) = self.latency_by_path.get_mut(path) {
            h.saturating_record(micros);
        }
        if (200..300).contains(&sample.status) {
            self.ok += 1;
        } else {
            self.errors.status += 1;
            self.errors.total += 1;
        }
        match self.status.iter_mut().find(|(s, _)| *s == sample.status) {
            Some((_, n)) => *n += 1,
            None => self.status.push((sample.status, 1)),
        }
        let Some(node) = sample.node else {
            self.unattributed += 1;
            return;
        };
        match self.served.iter_mut().find(|s| s.node == node && s.worker.as_deref() == sample.worker) {
            Some(s) => s.count += 1,
            None => self.served.push(Served {
                node: node.to_string(),
                worker: sample.worker.map(str::to_string),
                count: 1,
            }),
        }
    }

    /// Counts an open-loop send that left `lag` after its intended instant.
    pub fn push_lag(&mut self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.max_lag_us = self.max_lag_us.max(micros);
        if lag > LATE_AFTER {
            self.late += 1;
        }
    }

    /// Counts an open-loop request that found every connection busy when it was due: it was
    /// handed to one more than [`LATE_AFTER`] late. (A free connection takes the next request
    /// as soon as it is free and waits for its instant, so a request is handed out late only
    /// when none was free.)
    pub fn push_wait(&mut self) {
        self.waited += 1;
    }

    /// Counts a request that was resent on a new connection (its outcome is pushed as usual).
    pub fn push_retry(&mut self) {
        self.retried += 1;
    }

    /// Counts a request abandoned because the run ended while it was in flight.
    pub fn push_cut_off(&mut self) {
        self.in_flight_at_end += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Aggregate) {
        self.latency.add(&other.latency).expect("aggregates share the same histogram bounds");
        for (mine, theirs) in self.latency_by_path.iter_mut().zip(&other.latency_by_path) {
            mine.add(theirs).expect("aggregates share the same histogram bounds");
        }
        self.requests += other.requests;
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        for &(status, n) in &other.status {
            match self.status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, m)) => *m += n,
                None => self.status.push((status, n)),
            }
        }
        for (mine, theirs) in self.by_path.iter_mut().zip(&other.by_path) {
            *mine += theirs;
        }
        for s in &other.served {
            match self.served.iter_mut().find(|m| m.node == s.node && m.worker == s.worker) {
                Some(m) => m.count += s.count,
                None => self.served.push(s.clone()),
            }
        }
        self.unattributed += other.unattributed;
        self.in_flight_at_end += other.in_flight_at_end;
        self.late += other.late;
        self.max_lag_us = self.max_lag_us.max(other.max_lag_us);
        self.waited += other.waited;
        self.retried += other.retried;
    }

    /// Finished requests so far (responses and errors).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The latency of every response so far, in microseconds (1 µs to 60 s, 3 significant
    /// digits): what `--hdr` writes.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// The report of a run that these totals describe.
    pub fn report(&self, run: &RunInfo) -> Report {
        let responses = self.requests - (self.errors.total - self.errors.status);
        let secs = run.elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut by_node: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_worker: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.served {
            *by_node.entry(s.node.clone()).or_default() += s.count;
            let key = format!("{}/{}", s.node, s.worker.as_deref().unwrap_or("?"));
            *by_worker.entry(key).or_default() += s.count;
        }
        let mode = run.mode();
        let schedule = (mode == Mode::Open).then(|| {
            let sent = self.requests + self.in_flight_at_end;
            ScheduleReport {
                planned: run.planned.unwrap_or(sent),
                sent,
                missed: run.planned.unwrap_or(sent).saturating_sub(sent),
                late: self.late,
                max_lag_ms: self.max_lag_us as f64 / 1000.0,
                waited: self.waited,
            }
        });
        let fairness =
            Fairness { nodes: Spread::of(by_node.values()), workers: Spread::of(by_worker.values()) };
        Report {
            url: run.url.clone(),
            mode,
            connections: run.connections,
            threads: run.threads,
            rate: run.rate,
            duration_s: secs,
            requests: self.requests,
            responses,
            ok: self.ok,
            rps: per_sec(responses),
            ok_rps: per_sec(self.ok),
            errors: self.errors.total,
            error_kinds: self.errors,
            status: self.status.iter().copied().collect(),
            latency_ms: Latency::of(&self.latency),
            latency_by_path_ms: run
                .paths
                .iter()
                .cloned()
                .zip(self.latency_by_path.iter().map(Latency::of))
                .collect(),
            by_path: run.paths.iter().cloned().zip(self.by_path.iter().copied()).collect(),
            by_node,
            by_worker,
            unattributed: self.unattributed,
            in_flight_at_end: self.in_flight_at_end,
            retried: self.retried,
            fairness,
            schedule,
            stages: run.stages.clone(),
            by_stage: Vec::new(),
            thresholds: Vec::new(),
        }
    }
}

/// What the runner knows about a run that the aggregates do not.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The target base URL.
    pub url: String,
    /// Open connections.
    pub connections: u32,
    /// Runtime threads.
    pub threads: usize,
    /// Open loop: the intended rate in requests per second; `None` for a closed loop.
    pub rate: Option<f64>,
    /// A staged load's stages.
    pub stages: Option<Stages>,
    /// Wall time from the first ticket until the last connection finished.
    pub elapsed: Duration,
    /// Tickets planned in advance, if known (see `Schedule::planned`).
    pub planned: Option<u64>,
    /// The mix paths, by index.
    pub paths: Vec<String>,
}

impl RunInfo {
    /// Open loop when a rate (fixed or staged) paces the run.
    pub fn mode(&self) -> Mode {
        let staged_rate = self.stages.as_ref().is_some_and(|s| s.of == StageTarget::Rate);
        if self.rate.is_some() || staged_rate {
            Mode::Open
        } else {
            Mode::Closed
        }
    }
}

/// The load model of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each connection sends back-to-back.
    Closed,
    /// Requests at a fixed rate, latency from the intended send time.
    Open,
}

/// Requests without a successful (2xx) response, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// All of the below (the same number as `Report::errors`).
    pub total: u64,
    /// TCP connect or HTTP handshake failed.
    pub connect: u64,
    /// No complete response within the per-request timeout.
    pub timeout: u64,
    /// The connection broke (reset, closed early).
    pub io: u64,
    /// The response was not valid HTTP/1.
    pub http: u64,
    /// A response arrived with a status outside 200-299 (see `Report::status`).
    pub status: u64,
}

impl ErrorCounts {
    fn add(&mut self, kind: ErrorKind) {
        self.total += 1;
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Io => self.io += 1,
            ErrorKind::Http => self.http += 1,
        }
    }

    fn merge(&mut self, o: &ErrorCounts) {
        self.total += o.total;
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.io += o.io;
        self.http += o.http;
        self.status += o.status;
    }
}

/// Latency percentiles over all responses (any status), in milliseconds, 3 significant digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Fastest response, ms.
    pub min: f64,
    /// Arithmetic mean, ms.
    pub mean: f64,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Slowest response, ms (capped at 60 000).
    pub max: f64,
    /// Standard deviation, ms: how far responses stray from the mean.
    #[serde(default)]
    pub stdev: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            stdev: h.stdev() / 1000.0,
        }
    }
}

/// How evenly responses were spread, over the nodes and over the workers that answered. A
/// worker that answered nothing is not counted (the load tool cannot know it exists):
/// `count` says how many were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    /// Over `by_node`; `None` without attributed responses.
    pub nodes: Option<Spread>,
    /// Over `by_worker`.
    pub workers: Option<Spread>,
}

/// The spread of counts over `count` servers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Jain's fairness index (Σx)² / (n·Σx²): 1 when every server got the same, 1/n when one
    /// got everything.
    pub jain: f64,
    /// The busiest server's count over the mean: 1 when even, n when one got everything.
    pub max_over_mean: f64,
    /// Servers counted.
    pub count: usize,
}

impl Spread {
    /// The spread of `counts`; `None` for no counts or all zero.
    pub fn of<'a>(counts: impl IntoIterator<Item = &'a u64>) -> Option<Spread> {
        let x: Vec<f64> = counts.into_iter().map(|&c| c as f64).collect();
        let (n, sum) = (x.len() as f64, x.iter().sum::<f64>());
        let squares: f64 = x.iter().map(|v| v * v).sum();
        if x.is_empty() || sum == 0.0 {
            return None;
        }
        let max = x.iter().cloned().fold(0.0, f64::max);
        Some(Spread { jain: sum * sum / (n * squares), max_over_mean: max / (sum / n), count: x.len() })
    }
}

/// Open loop only: how well the run kept to its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// Requests the rate and duration (or `--requests`) called for.
    pub planned: u64,
    /// Requests actually sent (finished or cut off at the end).
    pub sent: u64,
    /// Planned requests never sent because every connection was busy until the run ended.
    pub missed: u64,
    /// Requests sent more than 10 ms after their intended instant (for want of a free
    /// connection, or because the load generator itself woke late).
    pub late: u64,
    /// The largest delay between an intended and an actual send, ms.
    pub max_lag_ms: f64,
    /// Requests that found every connection busy when they were due, and were sent more than
    /// 10 ms late for it (with `missed`, the requests `--connections` held back).
    #[serde(default)]
    pub waited: u64,
}

/// The result of a run: what `--json` prints, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The target base URL.
    pub url: String,
    /// `closed` (back-to-back per connection) or `open` (fixed `rate`).
    pub mode: Mode,
    /// Concurrent connections.
    pub connections: u32,
    /// Load generator runtime threads.
    pub threads: usize,
    /// Open loop: intended requests per second; `null` for a closed loop.
    pub rate: Option<f64>,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Finished requests: responses plus requests that failed without one.
    pub requests: u64,
    /// Requests that got a response, any status.
    pub responses: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Throughput: responses (any status) per second.
    pub rps: f64,
    /// 2xx responses per second.
    pub ok_rps: f64,
    /// Requests without a 2xx response (the sum of `error_kinds`).
    pub errors: u64,
    /// The same requests by reason.
    pub error_kinds: ErrorCounts,
    /// Responses by HTTP status code.
    pub status: BTreeMap<u16, u64>,
    /// Latency percentiles, milliseconds.
    pub latency_ms: Latency,
    /// The same per path of a mix of several (2 significant digits); empty for one path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_by_path_ms: BTreeMap<String, Latency>,
    /// Finished requests by path (the `--mix` entries).
    pub by_path: BTreeMap<String, u64>,
    /// Responses by `x-node` header.
    pub by_node: BTreeMap<String, u64>,
    /// Responses by `x-node` + "/" + `x-worker` headers, e.g. `node-1/2` (`?` if no worker).
    pub by_worker: BTreeMap<String, u64>,
    /// Responses that carried no `x-node` header.
    pub unattributed: u64,
    /// Requests still in flight when the duration ended; not counted anywhere else.
    pub in_flight_at_end: u64,
    /// Requests resent once on a new connection because the kept-alive connection they were
    /// written to closed before any response (as browsers and Go's HTTP client do); each is
    /// also counted once in `requests`, by its final outcome.
    #[serde(default)]
    pub retried: u64,
    /// How evenly the responses were spread over nodes and over workers.
    #[serde(default)]
    pub fairness: Fairness,
    /// Open loop only: schedule keeping.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub schedule: Option<ScheduleReport>,
    /// A staged load (`--stages`): what ramped and through which stages.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stages: Option<Stages>,
    /// A staged load: each stage's counts and latency (see [`StageSummary`]).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub by_stage: Vec<crate::StageSummary>,
    /// The `--slo` thresholds, judged; empty without `--slo`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub thresholds: Vec<Threshold>,
}

impl Report {
    /// Whether at least one request got a 2xx response.
    pub fn any_ok(&self) -> bool {
        self.ok > 0
    }

    /// Whether every `--slo` threshold passed (true without any).
    pub fn thresholds_passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response fixture: `status`, `ms` milliseconds, served by `node`/`worker`.
    fn resp(
        status: u16,
        ms: u64,
        node: Option<&'static str>,
        worker: Option<&'static str>,
    ) -> Result<Sample<'static>, ErrorKind> {
        Ok(Sample { status, latency: Duration::from_millis(ms), node, worker })
    }

    fn ok_from(node: &'static str, worker: &'static str, ms: u64) -> Result<Sample<'static>, ErrorKind> {
        resp(200, ms, Some(node), Some(worker))
    }

    fn run_info(paths: &[&str]) -> RunInfo {
        RunInfo {
            url: "http://127.0.0.1:8080".into(),
            connections: 2,
            threads: 1,
            rate: None,
            stages: None,
            elapsed: Duration::from_secs(2),
            planned: None,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn counts_requests_status_errors_and_servers() {
        let mut a = Aggregate::new(2);
        a.push(0, ok_from("node-1", "1", 1));
        a.push(0, ok_from("node-1", "2", 2));
        a.push(1, ok_from("node-2", "1", 3));
        a.push(0, resp(503, 4, None, None));
        a.push(1, Err(ErrorKind::Connect));
        a.push(1, Err(ErrorKind::Timeout));
        let r = a.report(&run_info(&["/op1", "/op2"]));

        assert_eq!((r.requests, r.responses, r.ok), (6, 4, 3));
        assert_eq!(
            r.error_kinds,
            ErrorCounts { total: 3, connect: 1, timeout: 1, io: 0, http: 0, status: 1 }
        );
        assert_eq!(r.status, BTreeMap::from([(200, 3), (503, 1)]));
        assert_eq!(r.by_path, BTreeMap::from([("/op1".into(), 3), ("/op2".into(), 3)]));
        assert_eq!(r.by_node, BTreeMap::from([("node-1".into(), 2), ("node-2".into(), 1)]));
        assert_eq!(
            r.by_worker,
            BTreeMap::from([("node-1/1".into(), 1), ("node-1/2".into(), 1), ("node-2/1".into(), 1)])
        );
        assert_eq!(r.unattributed, 1);
        assert_eq!(r.rps, 2.0); // 4 responses in 2 s
        assert_eq!(r.ok_rps, 1.5);
        assert_eq!(r.mode, Mode::Closed);
        assert!(r.schedule.is_none());
        assert!(r.any_ok());
    }

    #[test]
    fn percentiles_are_ordered_and_in_milliseconds() {
        let mut a = Aggregate::new(1);
        for ms in 1..=1000 {
            a.push(0, ok_from("n", "1", ms));
        }
        let l = a.report(&run_info(&["/"])).latency_ms;
        // 3 significant digits: within 0.1 %.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(near(l.min, 1.0) && near(l.p50, 500.0) && near(l.p90, 900.0), "{l:?}");
        assert!(near(l.p99, 990.0) && near(l.p999, 999.0) && near(l.max, 1000.0), "{l:?}");
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
    }

    #[test]
    fn a_mix_reports_latency_per_path() {
        let mut a = Aggregate::new(2);
        for _ in 0..9 {
            a.push(0, ok_from("n", "1", 1));
        }
        a.push(1, ok_from("n", "1", 20));
        let r = a.report(&run_info(&["/op1", "/op2"]));
        assert!((r.latency_by_path_ms["/op1"].p99 - 1.0).abs() < 0.02, "{:?}", r.latency_by_path_ms);
        assert!((r.latency_by_path_ms["/op2"].p50 - 20.0).abs() < 0.3, "{:?}", r.latency_by_path_ms);
        assert!(Aggregate::new(1).report(&run_info(&["/"])).latency_by_path_ms.is_empty());
    }

    #[test]
    fn latency_beyond_the_bound_is_capped() {
        let mut a = Aggregate::new(1);
        a.push(0, ok_from("n", "1", 120_000));
        assert!((a.report(&run_info(&["/"])).latency_ms.max - 60_000.0).abs() < 60.0);
    }

    #[test]
    fn merge_equals_pushing_everything_into_one() {
        //   conn A: node-1/1 x2, 404        conn B: node-1/1, node-2/1, io error
        //   merged: node-1/1 x3, node-2/1, 404, io error
        let outcomes = [
            (0, ok_from("node-1", "1", 1)),
            (0, ok_from("node-1", "1", 5)),
            (0, resp(404, 2, Some("node-1"), Some("1"))),
            (0, ok_from("node-1", "1", 7)),
            (0, ok_from("node-2", "1", 9)),
            (0, Err(ErrorKind::Io)),
        ];
        let mut a = Aggregate::new(1);
        let mut b = Aggregate::new(1);
        let mut all = Aggregate::new(1);
        for (i, (path, o)) in outcomes.iter().enumerate() {
            if i < 3 { &mut a } else { &mut b }.push(*path, *o);
            all.push(*path, *o);
        }
        a.push_cut_off();
        all.push_cut_off();
        a.merge(&b);
        let info = run_info(&["/op1"]);
        assert_eq!(a.report(&info), all.report(&info));
        assert_eq!(a.report(&info).by_worker["node-1/1"], 4);
        assert_eq!(a.report(&info).in_flight_at_end, 1);
    }

    #[test]
    fn open_loop_reports_schedule_keeping() {
        let mut a = Aggregate::new(1);
        for _ in 0..90 {
            a.push(0, ok_from("n", "1", 1));
            a.push_lag(Duration::from_millis(1));
        }
        a.push_lag(Duration::from_millis(30));
        a.push_wait();
        a.push_cut_off();
        let info = RunInfo { rate: Some(50.0), planned: Some(100), ..run_info(&["/"]) };
        let r = a.report(&info);
        assert_eq!(r.mode, Mode::Open);
        assert_eq!(
            r.schedule,
            Some(ScheduleReport { planned: 100, sent: 91, missed: 9, late: 1, max_lag_ms: 30.0, waited: 1 })
        );
    }

    #[test]
    fn a_worker_less_response_is_keyed_with_a_question_mark() {
        let mut a = Aggregate::new(1);
        a.push(0, resp(200, 1, Some("node-1"), None));
        assert_eq!(a.report(&run_info(&["/"])).by_worker, BTreeMap::from([("node-1/?".into(), 1)]));
    }

    #[test]
    fn fairness_is_jains_index_and_max_over_mean() {
        let even = Spread::of(&[10, 10, 10, 10]).unwrap();
        assert_eq!((even.jain, even.max_over_mean, even.count), (1.0, 1.0, 4));
        let one = Spread::of(&[40, 0, 0, 0]).unwrap();
        assert_eq!((one.jain, one.max_over_mean), (0.25, 4.0));
        // 70/10/10/10: J = 100² / (4 × 5200) ≈ 0.48.
        let skew = Spread::of(&[70, 10, 10, 10]).unwrap();
        assert!((skew.jain - 10000.0 / 20800.0).abs() < 1e-12 && skew.max_over_mean == 2.8, "{skew:?}");
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[0, 0]), None);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut a = Aggregate::new(1);
        a.push(0, ok_from("node-1", "2", 3));
        let v = serde_json::to_value(a.report(&run_info(&["/op1"]))).unwrap();
        for key in ["requests", "errors", "rps", "latency_ms", "by_node", "by_worker", "by_path", "status"] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["errors"], 0);
        assert_eq!(v["status"]["200"], 1);
        assert_eq!(v["by_worker"]["node-1/2"], 1);
        assert_eq!(v["mode"], "closed");
        assert_eq!(v["fairness"]["workers"]["jain"], 1.0);
        assert!(v.get("schedule").is_none());
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.requests, 1);
    }
}
