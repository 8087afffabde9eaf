//! How a difference between two runs is judged: the metrics compared, whether B is better,
//! worse or within the noise of the rounds, and the `--fail-if` thresholds a CI job sets.
//!
//! The noise rule: a point's rounds span [lowest, highest] in each run. B differs beyond the
//! noise only when the two spans do not overlap (every round of B above every round of A, or
//! below). With one round per point a run has no spread, so any difference counts.

use std::fmt;
use std::str::FromStr;

use crate::results::{Percentiles, Point, Round};

/// The largest threshold a `--fail-if` may set, in percent.
pub const MAX_PERCENT: f64 = 1000.0;
/// `--fail-if` thresholds at most.
pub const MAX_THRESHOLDS: usize = 16;

/// A number compared between the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// 2xx responses per second: higher is better.
    Rps,
    /// Latency percentiles, ms: lower is better.
    P50,
    P90,
    P99,
    P999,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 5] = [Metric::Rps, Metric::P50, Metric::P90, Metric::P99, Metric::P999];

    /// The name in `--fail-if` and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rps => "rps",
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
        }
    }

    /// What it is, with its unit, for tables and axes.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Rps => "throughput, req/s",
            Metric::P50 => "p50 latency, ms",
            Metric::P90 => "p90 latency, ms",
            Metric::P99 => "p99 latency, ms",
            Metric::P999 => "p99.9 latency, ms",
        }
    }

    /// Whether a larger value is an improvement.
    pub fn higher_is_better(self) -> bool {
        self == Metric::Rps
    }

    fn of(self, rps: f64, l: &Percentiles) -> f64 {
        match self {
            Metric::Rps => rps,
            Metric::P50 => l.p50,
            Metric::P90 => l.p90,
            Metric::P99 => l.p99,
            Metric::P999 => l.p999,
        }
    }

    /// Its value at `p` (the median round's); `None` for a latency when nothing completed.
    pub fn at(self, p: &Point) -> Option<f64> {
        (self == Metric::Rps || !p.nothing_completed()).then(|| self.of(p.rps, &p.latency_ms))
    }

    /// Its value in one round.
    pub fn in_round(self, r: &Round) -> f64 {
        self.of(r.rps, &r.latency_ms)
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Metric, String> {
        match s {
            "p999" => Ok(Metric::P999),
            _ => Metric::ALL
                .into_iter()
                .find(|m| m.name() == s)
                .ok_or_else(|| format!("unknown metric {s:?}; expected rps, p50, p90, p99 or p99.9")),
        }
    }
}

/// What B's value is against A's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Beyond the noise, in the good direction.
    Better,
    /// Beyond the noise, in the bad direction.
    Worse,
    /// The rounds' spans overlap.
    Noise,
}

impl Verdict {
    /// `better`, `worse`, `within noise`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Noise => "within noise",
        }
    }
}

/// Which way B moved beyond the noise: `Some(true)` up, `Some(false)` down, `None` within.
pub fn beyond_noise(a: (f64, f64), b: (f64, f64)) -> Option<bool> {
    if b.0 > a.1 {
        Some(true)
    } else if b.1 < a.0 {
        Some(false)
    } else {
        None
    }
}

/// The verdict on `metric` moving from span `a` to span `b`.
pub fn verdict(metric: Metric, a: (f64, f64), b: (f64, f64)) -> Verdict {
    match beyond_noise(a, b) {
        None => Verdict::Noise,
        Some(up) if up == metric.higher_is_better() => Verdict::Better,
        Some(_) => Verdict::Worse,
    }
}

/// `--fail-if 'p99>+10%'`: fail when a metric rises (or, with `<-N%`, falls) by more than N%
/// beyond the noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    /// `>` (a rise) or `<` (a fall).
    pub rise: bool,
    /// N, in percent (0 < N ≤ [`MAX_PERCENT`]).
    pub percent: f64,
}

impl Threshold {
    /// Whether B's `change` (B/A − 1), beyond the noise in direction `moved`, crosses it.
    pub fn crossed(&self, change: f64, moved: Option<bool>) -> bool {
        match (self.rise, moved) {
            (true, Some(true)) => change > self.percent / 100.0,
            (false, Some(false)) => change < -self.percent / 100.0,
            _ => false,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, sign) = if self.rise { ('>', '+') } else { ('<', '-') };
        write!(f, "{}{op}{sign}{}%", self.metric.name(), self.percent)
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Threshold, String> {
        let bad = |why: String| format!("--fail-if {text:?}: {why}");
        let shape = || bad("expected METRIC>+N% or METRIC<-N% (e.g. 'p99>+10%', 'rps<-5%')".into());
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (at, rise) = match (compact.find('>'), compact.find('<')) {
            (Some(i), None) => (i, true),
            (None, Some(i)) => (i, false),
            _ => return Err(shape()),
        };
        let metric: Metric = compact[..at].parse().map_err(bad)?;
        let rest = &compact[at + 1..];
        let number = rest.strip_suffix('%').ok_or_else(shape)?;
        let (sign, digits) =
            number.split_at(number.find(|c: char| c != '+' && c != '-').unwrap_or(number.len()));
        match (rise, sign) {
            (true, "+") | (false, "-") => {}
            (true, _) => return Err(bad("a rise is written >+N%".into())),
            (false, _) => return Err(bad("a fall is written <-N%".into())),
        }
        let percent: f64 = digits.parse().map_err(|_| shape())?;
        if !(percent.is_finite() && percent > 0.0 && percent <= MAX_PERCENT) {
            return Err(bad(format!("N must be above 0 and at most {MAX_PERCENT}, found {digits}")));
        }
        Ok(Threshold { metric, rise, percent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_name_their_fault() {
        assert_eq!("p99>+10%".parse(), Ok(Threshold { metric: Metric::P99, rise: true, percent: 10.0 }));
        assert_eq!("rps<-5%".parse(), Ok(Threshold { metric: Metric::Rps, rise: false, percent: 5.0 }));
        assert_eq!("p99.9 > +2.5%".parse::<Threshold>().unwrap().metric, Metric::P999);
        assert_eq!("p999>+1%".parse::<Threshold>().unwrap().to_string(), "p99.9>+1%");
        for (text, words) in [
            ("p99", "expected METRIC>+N%"),
            ("p99>+10", "expected METRIC>+N%"),
            ("p98>+10%", "unknown metric \"p98\""),
            ("p99>-10%", "a rise is written >+N%"),
            ("rps<5%", "a fall is written <-N%"),
            ("p99>+0%", "N must be above 0 and at most 1000"),
            ("p99>+5000%", "at most 1000"),
            ("p99>+abc%", "expected METRIC>+N%"),
            ("p99<>+1%", "expected METRIC>+N%"),
        ] {
            let err = text.parse::<Threshold>().unwrap_err();
            assert!(err.contains(words) && err.contains("--fail-if"), "{text}: {err}");
        }
    }

    #[test]
    fn the_noise_is_the_overlap_of_the_rounds() {
        // A's rounds 100–110 req/s; B's 112–118 is above them all: better, beyond the noise.
        assert_eq!(verdict(Metric::Rps, (100.0, 110.0), (112.0, 118.0)), Verdict::Better);
        assert_eq!(verdict(Metric::P99, (100.0, 110.0), (112.0, 118.0)), Verdict::Worse);
        assert_eq!(verdict(Metric::P99, (100.0, 110.0), (80.0, 99.0)), Verdict::Better);
        assert_eq!(verdict(Metric::Rps, (100.0, 110.0), (105.0, 130.0)), Verdict::Noise);
        // One round each: no spread, any difference counts.
        assert_eq!(verdict(Metric::Rps, (100.0, 100.0), (100.5, 100.5)), Verdict::Better);
        assert_eq!(verdict(Metric::Rps, (100.0, 100.0), (100.0, 100.0)), Verdict::Noise);
    }

    #[test]
    fn a_threshold_is_crossed_only_beyond_the_noise_and_in_its_direction() {
        let p99: Threshold = "p99>+10%".parse().unwrap();
        assert!(p99.crossed(0.15, Some(true)));
        assert!(!p99.crossed(0.15, None), "within noise never fails");
        assert!(!p99.crossed(0.05, Some(true)), "under the threshold");
        assert!(!p99.crossed(-0.5, Some(false)), "a fall is not a rise");
        let rps: Threshold = "rps<-5%".parse().unwrap();
        assert!(rps.crossed(-0.06, Some(false)) && !rps.crossed(-0.04, Some(false)));
    }
}
