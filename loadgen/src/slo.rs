//! `--slo`: thresholds a run must meet, as k6's thresholds. Each is parsed up front ([`Slo`])
//! and judged against the finished [`Report`] ([`judge`]) into a [`Threshold`]: passed or
//! failed, with the measured value. Any failed threshold makes `scalelab load` exit with
//! [`EXIT_THRESHOLD_FAILED`].
//!
//! Grammar (spaces allowed around the operator):
//!
//! - `p50|p90|p99|p99.9 < N(us|ms|s)`: that latency percentile of the run, below N;
//! - `errors < N%`: requests without a 2xx response, as a share of finished requests;
//! - `rps > N`: 2xx responses per second over the run, above N;
//! - `rps > N%`: 2xx responses as a share of the requests the load offered (open loop: the
//!   requests the schedule called for; closed loop: the requests sent).
//!
//! `<=` and `>=` are accepted too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::MAX_RATE;
use crate::report::{Report, MAX_LATENCY_US};

/// The exit status of `scalelab load` when a run completed but a threshold failed.
pub const EXIT_THRESHOLD_FAILED: u8 = 3;
/// Most `--slo` flags one run may have.
pub const MAX_SLOS: usize = 16;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A latency percentile (50, 90, 99 or 99.9), ms.
    Latency(Percentile),
    /// Requests without a 2xx response, % of finished requests.
    Errors,
    /// 2xx responses per second.
    Rps,
    /// 2xx responses, % of the offered requests.
    RpsShare,
}

/// A latency percentile a threshold can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    P50,
    P90,
    P99,
    P999,
}

impl Percentile {
    fn name(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P99 => "p99",
            Percentile::P999 => "p99.9",
        }
    }
}

/// How the measured value must compare with the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Below,
    AtMost,
    Above,
    AtLeast,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Below => "<",
            Op::AtMost => "<=",
            Op::Above => ">",
            Op::AtLeast => ">=",
        }
    }

    fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Op::Below => measured < limit,
            Op::AtMost => measured <= limit,
            Op::Above => measured > limit,
            Op::AtLeast => measured >= limit,
        }
    }
}

/// One `--slo` threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub metric: Metric,
    pub op: Op,
    /// The limit in the metric's unit: ms, %, or req/s.
    pub limit: f64,
}

impl Slo {
    /// The unit of the metric's values.
    pub fn unit(&self) -> &'static str {
        match self.metric {
            Metric::Latency(_) => "ms",
            Metric::Errors | Metric::RpsShare => "%",
            Metric::Rps => "req/s",
        }
    }

    /// The metric's name as written: `p99`, `errors`, `rps`.
    pub fn metric_name(&self) -> &'static str {
        match self.metric {
            Metric::Latency(p) => p.name(),
            Metric::Errors => "errors",
            Metric::Rps | Metric::RpsShare => "rps",
        }
    }
}

impl fmt::Display for Slo {
    /// The threshold in its canonical spelling: `p99<250ms`, `errors<0.1%`, `rps>=95%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.metric {
            Metric::Rps => "",
            _ => self.unit(),
        };
        write!(f, "{}{}{}{unit}", self.metric_name(), self.op.symbol(), number(self.limit))
    }
}

fn number(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl FromStr for Slo {
    type Err = String;

    fn from_str(text: &str) -> Result<Slo, String> {
        let s: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
        let at = s.find(['<', '>']).ok_or_else(|| {
            format!("`{text}`: expected METRIC<VALUE or METRIC>VALUE, e.g. p99<250ms, errors<0.1%, rps>95%")
        })?;
        let (name, rest) = s.split_at(at);
        let (op, value) = match rest.as_bytes() {
            [b'<', b'=', ..] => (Op::AtMost, &rest[2..]),
            [b'>', b'=', ..] => (Op::AtLeast, &rest[2..]),
            [b'<', ..] => (Op::Below, &rest[1..]),
            _ => (Op::Above, &rest[1..]),
        };
        let below = matches!(op, Op::Below | Op::AtMost);
        let bad = |why: String| Err(format!("`{text}`: {why}"));
        let percentile = match name {
            "p50" => Some(Percentile::P50),
            "p90" => Some(Percentile::P90),
            "p99" => Some(Percentile::P99),
            "p99.9" | "p999" => Some(Percentile::P999),
            "errors" | "rps" => None,
            other => {
                return bad(format!("unknown metric `{other}`; use p50, p90, p99, p99.9, errors or rps"))
            }
        };
        if let Some(p) = percentile {
            if !below {
                return bad(format!("{} takes < or <= (a latency must stay below a limit)", p.name()));
            }
            let (n, scale) = if let Some(n) = value.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = value.strip_suffix("us").or_else(|| value.strip_suffix("µs")) {
                (n, 0.001)
            } else if let Some(n) = value.strip_suffix('s') {
                (n, 1000.0)
            } else {
                return bad(format!("`{value}` needs a unit: us, ms or s (e.g. {}<250ms)", p.name()));
            };
            let max_ms = MAX_LATENCY_US as f64 / 1000.0;
            let limit = parse_number(n).map(|x| x * scale).filter(|ms| *ms > 0.0 && *ms <= max_ms);
            return match limit {
                Some(limit) => Ok(Slo { metric: Metric::Latency(p), op, limit }),
                None => bad(format!("`{value}` is not a latency above 0 and at most 60s")),
            };
        }
        if name == "errors" {
            if !below {
                return bad("errors takes < or <= (a share of failed requests, e.g. errors<1%)".into());
            }
            let Some(n) = value.strip_suffix('%') else {
                return bad(format!("`{value}` must be a percentage, e.g. errors<0.1%"));
            };
            return match parse_number(n).filter(|p| (0.0..=100.0).contains(p)) {
                Some(limit) => Ok(Slo { metric: Metric::Errors, op, limit }),
                None => bad(format!("`{value}` is not a percentage from 0% to 100%")),
            };
        }
        if below {
            return bad("rps takes > or >= (a served rate must stay above a floor)".into());
        }
        if let Some(n) = value.strip_suffix('%') {
            return match parse_number(n).filter(|p| *p > 0.0 && *p <= 100.0) {
                Some(limit) => Ok(Slo { metric: Metric::RpsShare, op, limit }),
                None => {
                    bad(format!("`{value}` is not a share of the offered rate above 0% and at most 100%"))
                }
            };
        }
        match parse_number(value).filter(|r| *r >= 0.0 && *r <= MAX_RATE) {
            Some(limit) => Ok(Slo { metric: Metric::Rps, op, limit }),
            None => bad(format!("`{value}` is not a rate in req/s from 0 to {MAX_RATE}")),
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A threshold judged: what `--json` reports under `thresholds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The threshold as written canonically, e.g. `p99<250ms`.
    pub slo: String,
    /// `p50`, `p90`, `p99`, `p99.9`, `errors` or `rps`.
    pub metric: String,
    /// `<`, `<=`, `>` or `>=`.
    pub op: String,
    /// The limit, in `unit`.
    pub limit: f64,
    /// What the run measured, in `unit`; `None` when there was nothing to measure (no
    /// response for a latency, no request for a share), which fails the threshold.
    pub measured: Option<f64>,
    /// `ms`, `%` or `req/s`.
    pub unit: String,
    /// Whether the run met it.
    pub passed: bool,
}

/// Judges every threshold against the run's report.
pub fn judge(slos: &[Slo], report: &Report) -> Vec<Threshold> {
    slos.iter().map(|slo| judge_one(slo, report)).collect()
}

fn judge_one(slo: &Slo, r: &Report) -> Threshold {
    let share = |n: u64, of: u64| (of > 0).then(|| n as f64 * 100.0 / of as f64);
    let measured = match slo.metric {
        Metric::Latency(p) if r.responses > 0 => Some(match p {
            Percentile::P50 => r.latency_ms.p50,
            Percentile::P90 => r.latency_ms.p90,
            Percentile::P99 => r.latency_ms.p99,
            Percentile::P999 => r.latency_ms.p999,
        }),
        Metric::Latency(_) => None,
        Metric::Errors => share(r.errors, r.requests),
        Metric::Rps => Some(r.ok_rps),
        Metric::RpsShare => share(r.ok, offered(r)),
    };
    Threshold {
        slo: slo.to_string(),
        metric: slo.metric_name().to_string(),
        op: slo.op.symbol().to_string(),
        limit: slo.limit,
        measured,
        unit: slo.unit().to_string(),
        passed: measured.is_some_and(|m| slo.op.holds(m, slo.limit)),
    }
}

/// The requests the load offered: the schedule's plan in open loop, the requests sent
/// (finished or cut off at the end) in closed loop.
pub fn offered(r: &Report) -> u64 {
    match &r.schedule {
        Some(s) => s.planned,
        None => r.requests + r.in_flight_at_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Aggregate, ErrorKind, RunInfo, Sample};
    use std::time::Duration;

    fn slo(s: &str) -> Slo {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_grammar() {
        assert_eq!(
            slo("p99<250ms"),
            Slo { metric: Metric::Latency(Percentile::P99), op: Op::Below, limit: 250.0 }
        );
        assert_eq!(slo(" p99.9 <= 1.5s ").limit, 1500.0);
        assert_eq!(slo("p999<800us").limit, 0.8);
        assert_eq!(slo("P50 < 2ms").metric, Metric::Latency(Percentile::P50));
        assert_eq!(slo("errors<0.1%"), Slo { metric: Metric::Errors, op: Op::Below, limit: 0.1 });
        assert_eq!(slo("errors<=0%").op, Op::AtMost);
        assert_eq!(slo("rps>95%"), Slo { metric: Metric::RpsShare, op: Op::Above, limit: 95.0 });
        assert_eq!(slo("rps>=1200"), Slo { metric: Metric::Rps, op: Op::AtLeast, limit: 1200.0 });
        for (text, canonical) in
            [("p99 < 250ms", "p99<250ms"), ("p99.9<=1.5s", "p99.9<=1500ms"), ("rps>95%", "rps>95%")]
        {
            assert_eq!(slo(text).to_string(), canonical);
        }
        assert_eq!(slo("rps>=1200").to_string(), "rps>=1200");
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        for (bad, want) in [
            ("p99", "expected METRIC<VALUE"),
            ("p98<1ms", "unknown metric `p98`"),
            ("p99<250", "needs a unit"),
            ("p99>250ms", "takes < or <="),
            ("p99<0ms", "above 0 and at most 60s"),
            ("p99<2m", "needs a unit"),
            ("p99<61s", "at most 60s"),
            ("errors<1", "must be a percentage"),
            ("errors<101%", "from 0% to 100%"),
            ("errors>1%", "takes < or <="),
            ("rps<10", "takes > or >="),
            ("rps>0%", "above 0%"),
            ("rps>x", "not a rate"),
        ] {
            let err = bad.parse::<Slo>().unwrap_err();
            assert!(err.contains(want) && err.contains(bad), "{bad}: {err}");
        }
    }

    /// A report of 100 requests: 97 × 200 (1..97 ms), 2 × 503 (5 ms), 1 connect error, over
    /// 2 s, in open loop with 120 planned.
    fn report() -> Report {
        let mut a = Aggregate::new(1);
        let ok =
            |ms| Ok(Sample { status: 200, latency: Duration::from_millis(ms), node: None, worker: None });
        for ms in 1..=97 {
            a.push(0, ok(ms));
        }
        for _ in 0..2 {
            a.push(
                0,
                Ok(Sample { status: 503, latency: Duration::from_millis(5), node: None, worker: None }),
            );
        }
        a.push(0, Err(ErrorKind::Connect));
        a.report(&RunInfo {
            url: "http://127.0.0.1:1".into(),
            connections: 1,
            threads: 1,
            rate: Some(60.0),
            stages: None,
            elapsed: Duration::from_secs(2),
            planned: Some(120),
            paths: vec!["/".into()],
        })
    }

    #[test]
    fn judges_each_threshold_with_its_measured_value() {
        let r = report();
        let slos: Vec<Slo> =
            ["p50<60ms", "p99<10ms", "errors<5%", "errors<1%", "rps>40", "rps>=90%", "rps>80%"]
                .map(slo)
                .into();
        let t = judge(&slos, &r);
        let verdicts: Vec<(String, bool)> = t.iter().map(|t| (t.slo.clone(), t.passed)).collect();
        assert_eq!(
            verdicts,
            [
                ("p50<60ms".into(), true),
                ("p99<10ms".into(), false),
                ("errors<5%".into(), true),
                ("errors<1%".into(), false),
                ("rps>40".into(), true),
                ("rps>=90%".into(), false),
                ("rps>80%".into(), true),
            ]
        );
        assert_eq!(t[2].measured, Some(3.0), "3 of 100 requests failed");
        assert_eq!(t[4].measured, Some(48.5), "97 ok over 2 s");
        assert!((t[5].measured.unwrap() - 97.0 * 100.0 / 120.0).abs() < 1e-9, "97 ok of 120 offered");
        assert_eq!((t[1].unit.as_str(), t[2].unit.as_str(), t[4].unit.as_str()), ("ms", "%", "req/s"));
    }

    #[test]
    fn nothing_to_measure_fails() {
        let empty = Aggregate::new(1).report(&RunInfo {
            url: "http://127.0.0.1:1".into(),
            connections: 1,
            threads: 1,
            rate: None,
            stages: None,
            elapsed: Duration::from_secs(1),
            planned: None,
            paths: vec!["/".into()],
        });
        let t = judge(&[slo("p99<1s"), slo("errors<100%")], &empty);
        assert!(t.iter().all(|t| !t.passed && t.measured.is_none()), "{t:?}");
    }
}
