//! `--stages`: a load that changes over time, as data. Each stage moves a target linearly from
//! the previous stage's target to its own over its duration (k6's `ramping-arrival-rate` for
//! rates, `ramping-vus` for connections); the first stage starts from 0, so `0s:50,...` starts
//! at 50 at once. [`Curve`] is that piecewise-linear function of time and the math the
//! schedule needs from it: its area (how many requests a rate has called for by a time), the
//! inverse of the area (when the k-th request is due), and when the curve next reaches a level
//! (when a connection's turn comes).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most stages one `--stages` may have.
pub const MAX_STAGES: usize = 100;
/// The longest a staged run may last, all stages together.
pub const MAX_STAGED_DURATION: Duration = Duration::from_secs(3600);

/// What the stages' targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StageTarget {
    /// Requests per second, in open loop (the default).
    #[default]
    Rate,
    /// Active connections, in closed loop.
    Connections,
}

impl fmt::Display for StageTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StageTarget::Rate => "rate",
            StageTarget::Connections => "connections",
        })
    }
}

/// One stage: reach `target` linearly over `duration_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// How long the stage lasts, seconds (0: a step to `target`).
    pub duration_s: f64,
    /// Requests per second or connections at the end of the stage.
    pub target: f64,
}

/// The stages of `--stages`, as parsed (what the targets mean comes from `--stages-of`).
#[derive(Debug, Clone, PartialEq)]
pub struct StageList(pub Vec<Stage>);

impl StageList {
    /// The whole run: the stages' durations added up ([`Duration::MAX`] for stages no run
    /// could last, which parsing refuses).
    pub fn duration(&self) -> Duration {
        total_duration(&self.0)
    }

    /// The largest target.
    pub fn peak(&self) -> f64 {
        self.0.iter().map(|s| s.target).fold(0.0, f64::max)
    }
}

impl FromStr for StageList {
    type Err = String;

    /// `20s:30,40s:140,60s:30`: durations in humantime's syntax, targets numbers >= 0.
    fn from_str(s: &str) -> Result<StageList, String> {
        let mut stages = Vec::new();
        for (i, part) in s.split(',').map(str::trim).enumerate() {
            let bad = |why: String| format!("stage {} `{part}`: {why}", i + 1);
            let (duration, target) =
                part.split_once(':').ok_or_else(|| bad("expected DURATION:TARGET, e.g. 30s:100".into()))?;
            let duration = humantime::parse_duration(duration.trim())
                .map_err(|e| bad(format!("`{duration}` is not a duration ({e}), e.g. 30s or 1m30s")))?;
            if duration > MAX_STAGED_DURATION {
                return Err(bad(format!(
                    "lasts {}; the stages may last at most {} in all",
                    humantime::format_duration(duration),
                    humantime::format_duration(MAX_STAGED_DURATION)
                )));
            }
            let target: f64 = target
                .trim()
                .parse()
                .ok()
                .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| bad(format!("`{target}` is not a target (a number, 0 or more)")))?;
            stages.push(Stage { duration_s: duration.as_secs_f64(), target });
        }
        if stages.len() > MAX_STAGES {
            return Err(format!("at most {MAX_STAGES} stages, found {}", stages.len()));
        }
        let list = StageList(stages);
        let total = list.duration();
        if total.is_zero() {
            return Err("the stages last 0 s in total; give at least one a duration".into());
        }
        if total > MAX_STAGED_DURATION {
            return Err(format!(
                "the stages last {} in total; at most {}",
                humantime::format_duration(total),
                humantime::format_duration(MAX_STAGED_DURATION)
            ));
        }
        if list.peak() == 0.0 {
            return Err("every target is 0: nothing would be sent".into());
        }
        Ok(list)
    }
}

/// A staged load: what ramps and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stages {
    /// Rates (open loop) or connections (closed loop).
    pub of: StageTarget,
    /// In order; the first starts from 0.
    pub stages: Vec<Stage>,
}

impl Stages {
    /// `0 → 30 → 140 → 30 req/s over 2m`.
    pub fn describe(&self) -> String {
        let mut targets = vec!["0".to_string()];
        targets.extend(self.stages.iter().map(|s| fmt_target(s.target)));
        let unit = match self.of {
            StageTarget::Rate => "req/s",
            StageTarget::Connections => "connections",
        };
        let total = humantime::format_duration(total_duration(&self.stages));
        format!("{} {unit} over {total}", targets.join(" → "))
    }
}

/// The stages' durations added up; [`Duration::MAX`] when that is no duration at all (a
/// negative or not finite `duration_s`, or a sum past what a `Duration` holds).
pub fn total_duration(stages: &[Stage]) -> Duration {
    let total: f64 = stages.iter().map(|s| s.duration_s).sum();
    match stages.iter().all(|s| s.duration_s >= 0.0) {
        true => Duration::try_from_secs_f64(total).unwrap_or(Duration::MAX),
        false => Duration::MAX,
    }
}

fn fmt_target(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// The piecewise-linear function of time the stages describe, from 0 at t = 0. Times are
/// seconds from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// (time, value) at the start and at the end of every stage: (0, 0) first. A stage of
    /// 0 s gives two knots at the same time, a step.
    knots: Vec<(f64, f64)>,
    /// The area under the curve from 0 to each knot (for a rate: requests due by then).
    area: Vec<f64>,
}

impl Curve {
    /// The curve of `stages`.
    pub fn new(stages: &[Stage]) -> Curve {
        let mut knots = vec![(0.0, 0.0)];
        let mut area = vec![0.0];
        for s in stages {
            let (t0, v0) = *knots.last().expect("starts with a knot");
            knots.push((t0 + s.duration_s, s.target));
            area.push(area.last().expect("starts with 0") + (v0 + s.target) / 2.0 * s.duration_s);
        }
        Curve { knots, area }
    }

    /// When the last stage ends, seconds.
    pub fn duration(&self) -> f64 {
        self.knots.last().map_or(0.0, |k| k.0)
    }

    /// The area under the whole curve.
    pub fn total_area(&self) -> f64 {
        *self.area.last().expect("starts with 0")
    }

    /// The value at `t` (after the step, at a step); the last target past the end.
    pub fn value_at(&self, t: f64) -> f64 {
        let i = self.knots.partition_point(|k| k.0 <= t);
        match (i, self.knots.get(i)) {
            (0, _) => 0.0,
            (_, None) => self.knots[i - 1].1,
            (_, Some(&(t1, v1))) => {
                let (t0, v0) = self.knots[i - 1];
                v0 + (v1 - v0) * (t - t0) / (t1 - t0)
            }
        }
    }

    /// The area under the curve from 0 to `t` (clamped to the curve's span).
    pub fn area_to(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration());
        let i = self.knots.partition_point(|k| k.0 <= t);
        if i == self.knots.len() {
            return self.total_area();
        }
        let (t0, v0) = self.knots[i - 1];
        (self.area[i - 1]) + (v0 + self.value_at(t)) / 2.0 * (t - t0)
    }

    /// When the area under the curve reaches `n`: the k-th request of a rate is due when the
    /// area reaches k. `None` when the whole curve holds less than `n`.
    ///
    /// Within a stage from `v0` with slope `s`, the area after τ is v0·τ + s·τ²/2; solved for
    /// τ as 2n / (v0 + √(v0² + 2sn)), which also holds for a flat stage (s = 0) and a ramp
    /// from 0 (v0 = 0), and never subtracts two close numbers.
    pub fn time_of_area(&self, n: f64) -> Option<f64> {
        if !(n >= 0.0 && n < self.total_area()) {
            return None;
        }
        // The stage whose area range [area[i], area[i + 1]) holds n: it has a duration.
        let i = self.area.partition_point(|&a| a <= n) - 1;
        let ((t0, v0), (t1, v1)) = (self.knots[i], self.knots[i + 1]);
        let dn = n - self.area[i];
        let slope = (v1 - v0) / (t1 - t0);
        let denominator = v0 + (v0 * v0 + 2.0 * slope * dn).max(0.0).sqrt();
        let tau = if denominator > 0.0 { 2.0 * dn / denominator } else { 0.0 };
        Some(t0 + tau.clamp(0.0, t1 - t0))
    }

    /// The first time at or after `from` when the curve is at `level` or above, before its
    /// end; `None` if it never is again.
    pub fn first_at_least(&self, level: f64, from: f64) -> Option<f64> {
        let end = self.duration();
        if from >= end {
            return None;
        }
        if self.value_at(from) >= level {
            return Some(from.max(0.0));
        }
        for w in self.knots.windows(2) {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            if t1 < from || v1 < level {
                continue;
            }
            // Below `level` at the segment's start (or at `from`), at or above at its end.
            let t = if t1 > t0 && v1 > v0 { t0 + (level - v0) / (v1 - v0) * (t1 - t0) } else { t1 };
            let t = t.max(from);
            return (t < end).then_some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(s: &str) -> Curve {
        Curve::new(&s.parse::<StageList>().unwrap().0)
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn parses_stages_and_names_the_bad_one() {
        let l: StageList = "20s:30, 40s:140,1m:30".parse().unwrap();
        assert_eq!(
            l.0,
            [
                Stage { duration_s: 20.0, target: 30.0 },
                Stage { duration_s: 40.0, target: 140.0 },
                Stage { duration_s: 60.0, target: 30.0 }
            ]
        );
        assert_eq!(l.duration(), Duration::from_secs(120));
        assert_eq!(l.peak(), 140.0);
        for (bad, want) in [
            ("20s:30,40s", "stage 2 `40s`: expected DURATION:TARGET"),
            ("20x:30", "stage 1 `20x:30`: `20x` is not a duration"),
            ("20s:-1", "`-1` is not a target"),
            ("20s:abc", "`abc` is not a target"),
            ("0s:10", "0 s in total"),
            ("30m:10,31m:10", "at most 1h"),
            // Each stage is bounded before they are added up: no overflow, no panic.
            ("18446744073709551615s:1", "stage 1 `18446744073709551615s:1`: lasts "),
            ("18446744073709551615s:1", "at most 1h in all"),
            ("1s:1,18446744073709551615s:1,18446744073709551615s:1", "stage 2"),
            ("10s:0,5s:0", "every target is 0"),
        ] {
            let err = bad.parse::<StageList>().unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        let many = vec!["1s:1"; MAX_STAGES + 1].join(",");
        assert!(many.parse::<StageList>().unwrap_err().contains("at most 100 stages"));
    }

    #[test]
    fn values_and_areas_follow_the_ramps() {
        //   value
        //   100 |      ______
        //       |    /       \
        //     0 |__/          \___
        //        0   10   20   30 s   (0→100 over 10 s, hold 10 s, 100→0 over 10 s)
        let c = curve("10s:100,10s:100,10s:0");
        assert_eq!(c.duration(), 30.0);
        assert!(near(c.value_at(5.0), 50.0) && near(c.value_at(15.0), 100.0) && near(c.value_at(25.0), 50.0));
        assert_eq!(c.value_at(40.0), 0.0);
        assert!(
            near(c.area_to(10.0), 500.0) && near(c.area_to(20.0), 1500.0) && near(c.total_area(), 2000.0)
        );
        assert!(near(c.area_to(5.0), 125.0)); // 100/10 · 5² / 2
    }

    #[test]
    fn arrival_times_solve_the_area_of_a_linear_ramp() {
        // 0 → 100 req/s over 10 s: N(t) = 5t², so request k is due at √(k/5).
        let c = curve("10s:100");
        for k in [0u32, 1, 5, 20, 125, 320, 499] {
            let t = c.time_of_area(k as f64).unwrap();
            assert!(near(t, (k as f64 / 5.0).sqrt()), "k {k}: {t}");
        }
        assert_eq!(c.time_of_area(500.0), None, "the ramp holds 500 requests");
        // Requests in each second: 5((s+1)² − s²) = 5(2s + 1).
        let in_second = |s: f64| (c.area_to(s + 1.0) - c.area_to(s)).round() as u64;
        assert_eq!(
            (0..10).map(|s| in_second(s as f64)).collect::<Vec<_>>(),
            [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
        );
    }

    #[test]
    fn arrival_times_on_flat_falling_and_stepped_stages() {
        // A step to 50, 2 s flat, then 50 → 0 over 10 s (N = 100 + 50τ − 2.5τ²).
        let c = curve("0s:50,2s:50,10s:0");
        assert!(near(c.time_of_area(0.0).unwrap(), 0.0));
        assert!(near(c.time_of_area(25.0).unwrap(), 0.5));
        assert!(near(c.time_of_area(100.0).unwrap(), 2.0));
        // 100 + 50τ − 2.5τ² = 260 at τ = 4.
        assert!(near(c.time_of_area(260.0).unwrap(), 6.0));
        assert_eq!(c.time_of_area(350.0), None);
        // A pause (target 0 for a while) holds no request: the next one is due after it.
        let p = curve("0s:10,1s:10,0s:0,5s:0,0s:10,1s:10");
        assert!(near(p.time_of_area(10.0).unwrap(), 6.0), "{:?}", p.time_of_area(10.0));
    }

    #[test]
    fn a_connection_s_turn_comes_when_the_curve_reaches_its_level() {
        // 0 → 4 connections over 4 s: connection j (from 0) is active from value j + 0.5.
        let c = curve("4s:4,4s:0");
        assert!(near(c.first_at_least(0.5, 0.0).unwrap(), 0.5));
        assert!(near(c.first_at_least(3.5, 0.0).unwrap(), 3.5));
        assert!(near(c.first_at_least(0.5, 2.0).unwrap(), 2.0), "already active at 2 s");
        // On the way down, connection 3 is never active again after 4.5 s.
        assert_eq!(c.first_at_least(3.5, 4.6), None);
        assert_eq!(c.first_at_least(5.0, 0.0), None, "never 5 connections");
        assert_eq!(c.first_at_least(0.5, 8.0), None, "over at the end");
        // A step reaches its level at once.
        let s = curve("2s:1,0s:3,2s:3");
        assert!(near(s.first_at_least(2.5, 0.0).unwrap(), 2.0));
    }

    #[test]
    fn describes_itself() {
        let s =
            Stages { of: StageTarget::Rate, stages: "20s:30,40s:140,60s:30".parse::<StageList>().unwrap().0 };
        assert_eq!(s.describe(), "0 → 30 → 140 → 30 req/s over 2m");
    }
}
