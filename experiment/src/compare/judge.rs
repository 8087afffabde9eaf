//! How a difference between two runs is judged: the metrics compared, whether B is better,
//! worse, within the noise, or measured too few times to tell, and the `--fail-if` thresholds
//! a CI job sets.
//!
//! The rule is benchstat's: a metric's rounds in A and in B are two samples, and a Mann–Whitney
//! U test ([`mann_whitney`]) asks whether they differ. B is better or worse only when p ≤ α =
//! 0.05; otherwise the difference is within the noise. With too few rounds no difference can
//! reach α however far apart they are (2 a side can do no better than p = 1/3, 3 a side than
//! 0.1), and the verdict says so instead, with the rounds to run.

use std::fmt;
use std::str::FromStr;

use super::mann_whitney::{self, UTest, ALPHA};
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

    /// Its value in every round of `p` that measured it (a latency needs a request that
    /// finished); the point's own value when it recorded no rounds; empty when nothing did.
    pub fn samples(self, p: &Point) -> Vec<f64> {
        let measured = |r: &&Round| self == Metric::Rps || r.completed != Some(0);
        let rounds: Vec<f64> = p.rounds.iter().filter(measured).map(|r| self.in_round(r)).collect();
        match rounds.is_empty() && p.rounds.is_empty() {
            true => self.at(p).into_iter().collect(),
            false => rounds,
        }
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
    /// A significant difference (p ≤ α), in the good direction.
    Better,
    /// A significant difference, in the bad direction.
    Worse,
    /// No significant difference (p > α).
    Noise,
    /// So few rounds that no difference could be significant.
    TooFewRounds,
}

impl Verdict {
    /// `better`, `worse`, `within noise`, `too few rounds to tell`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Noise => "within noise",
            Verdict::TooFewRounds => "too few rounds to tell",
        }
    }
}

/// One metric judged: the test, its verdict, and which way B moved when significant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub test: UTest,
    pub verdict: Verdict,
    /// `Some(true)` when B is significantly higher, `Some(false)` lower, `None` otherwise.
    pub moved: Option<bool>,
}

/// Judges `metric` from A's rounds `a` against B's rounds `b`; `None` when either has none.
pub fn judge(metric: Metric, a: &[f64], b: &[f64]) -> Option<Judgement> {
    let test = mann_whitney::test(a, b)?;
    let significant = test.p <= ALPHA;
    let moved = significant.then_some(test.second_higher);
    let verdict = match moved {
        _ if mann_whitney::min_p(test.n1, test.n2) > ALPHA => Verdict::TooFewRounds,
        None => Verdict::Noise,
        Some(up) if up == metric.higher_is_better() => Verdict::Better,
        Some(_) => Verdict::Worse,
    };
    Some(Judgement { test, verdict, moved })
}

/// `--fail-if 'p99>+10%'`: fail when a metric rises (or, with `<-N%`, falls) significantly and
/// by more than N%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    /// `>` (a rise) or `<` (a fall).
    pub rise: bool,
    /// N, in percent (0 < N ≤ [`MAX_PERCENT`]).
    pub percent: f64,
}

impl Threshold {
    /// Whether B's `change` (B/A − 1), significant in direction `moved`, crosses it.
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

    fn verdict(metric: Metric, a: &[f64], b: &[f64]) -> Verdict {
        judge(metric, a, b).unwrap().verdict
    }

    #[test]
    fn two_rounds_a_side_are_too_few_to_tell_however_far_apart() {
        // The regression: p50 10.0/10.1 ms in A, 10.6/10.7 in B, a 6% rise whose spans miss
        // each other. The spans' rule called it worse; with 2 rounds a side the smallest
        // possible p is 1/3.
        let j = judge(Metric::P50, &[10.0, 10.1], &[10.6, 10.7]).unwrap();
        assert_eq!(j.verdict, Verdict::TooFewRounds);
        assert!((j.test.p - 1.0 / 3.0).abs() < 1e-12 && j.moved.is_none(), "{j:?}");
        assert_eq!(
            verdict(Metric::Rps, &[100.0, 101.0, 102.0], &[200.0, 201.0, 202.0]),
            Verdict::TooFewRounds
        );
        // 3 against 5 can reach p = 0.036.
        assert_eq!(
            verdict(Metric::Rps, &[100.0, 101.0, 102.0], &[110.0, 111.0, 112.0, 113.0, 114.0]),
            Verdict::Better
        );
    }

    #[test]
    fn four_rounds_a_side_apart_are_significant_and_overlapping_ones_are_noise() {
        let (a, b) = ([100.0, 101.0, 103.0, 104.0], [105.0, 106.0, 108.0, 110.0]);
        // p = 2/70: B's every round above A's.
        let j = judge(Metric::Rps, &a, &b).unwrap();
        assert_eq!((j.verdict, j.moved), (Verdict::Better, Some(true)));
        assert!((j.test.p - 0.02857142857142857).abs() < 1e-12);
        assert_eq!(verdict(Metric::P99, &a, &b), Verdict::Worse, "higher latency is worse");
        assert_eq!(verdict(Metric::P99, &b, &a), Verdict::Better);
        // Interleaved: p = 0.49.
        assert_eq!(
            verdict(Metric::Rps, &[100.0, 102.0, 104.0, 106.0], &[101.0, 103.0, 105.0, 107.0]),
            Verdict::Noise
        );
        assert_eq!(judge(Metric::Rps, &[], &[1.0]), None);
    }

    #[test]
    fn a_threshold_is_crossed_only_when_significant_and_in_its_direction() {
        let p99: Threshold = "p99>+10%".parse().unwrap();
        assert!(p99.crossed(0.15, Some(true)));
        assert!(!p99.crossed(0.15, None), "a difference that is not significant never fails");
        assert!(!p99.crossed(0.05, Some(true)), "under the threshold");
        assert!(!p99.crossed(-0.5, Some(false)), "a fall is not a rise");
        let rps: Threshold = "rps<-5%".parse().unwrap();
        assert!(rps.crossed(-0.06, Some(false)) && !rps.crossed(-0.04, Some(false)));
    }
}
