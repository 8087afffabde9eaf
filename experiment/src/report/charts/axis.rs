//! An axis whose ticks the chart chooses: the HDR percentiles of the latency chart, one tick
//! per bar in the share chart, 1–2–5 ticks on a log latency axis, and round ticks from 0 on a
//! linear one. Plotters' own
//! `with_key_points` cannot be labelled on an f64 axis (its wrapper implements no value
//! formatter), and its log axis leaves the lower decades unlabelled on short ranges.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};

/// Most ticks a log axis gets before it keeps only the powers of ten.
const MAX_LOG_TICKS: usize = 12;

/// A linear or logarithmic f64 axis with ticks (and grid lines) exactly at `ticks`.
pub struct TickedAxis {
    range: Range<f64>,
    log: bool,
    ticks: Vec<f64>,
}

impl TickedAxis {
    /// A linear axis over `range` with ticks at `ticks`.
    pub fn linear(range: Range<f64>, ticks: Vec<f64>) -> Self {
        TickedAxis { range, log: false, ticks }
    }

    /// A linear axis from 0 to `top` with about `about` round ticks: multiples of 1, 2 or 5
    /// times a power of ten.
    pub fn linear_from_zero(top: f64, about: usize) -> Self {
        TickedAxis::linear(0.0..top, round_ticks(top, about))
    }

    /// A log axis over `range` (both ends > 0) with ticks at 1, 2 and 5 of each decade.
    pub fn log(range: Range<f64>) -> Self {
        let ticks = log_ticks(range.start, range.end);
        TickedAxis { range, log: true, ticks }
    }

    fn scale(&self, v: f64) -> f64 {
        if self.log {
            v.ln()
        } else {
            v
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.scale(self.range.start), self.scale(self.range.end));
        if a == b {
            return (limit.0 + limit.1) / 2;
        }
        let t = (self.scale(*value) - a) / (b - a);
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Only bold lines: the light ones would add grid lines between the ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for TickedAxis {
    fn format(value: &f64) -> String {
        super::super::format::tick(*value)
    }
}

/// Ticks from 0 to `top`, about `about` of them: the step is the smallest 1, 2 or 5 times a
/// power of ten that is at least `top / about`. Just 0 when `top` is not positive.
fn round_ticks(top: f64, about: usize) -> Vec<f64> {
    if !(top > 0.0 && top.is_finite() && about > 0) {
        return vec![0.0];
    }
    let raw = top / about as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(power * 10.0);
    (0..).map(|i| i as f64 * step).take_while(|v| *v <= top).collect()
}

/// Ticks for a log axis from `lo` to `hi`: 1, 2 and 5 of each decade; every integer multiple
/// when that gives fewer than three; only the powers of ten when it gives too many.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let decades = (first..=last).map(|d| 10f64.powi(d));
        let all = decades.flat_map(|p| mantissas.iter().map(move |m| m * p));
        all.filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9)).collect()
    };
    let ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() < 3 {
        within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    } else if ticks.len() > MAX_LOG_TICKS {
        within(&[1.0])
    } else {
        ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ticks_start_at_zero_and_stay_within_the_axis() {
        assert_eq!(round_ticks(440.0, 6), [0.0, 100.0, 200.0, 300.0, 400.0]);
        let small = round_ticks(1.0, 6);
        assert_eq!((small.len(), small[1]), (6, 0.2));
        assert_eq!(round_ticks(57.5, 5), [0.0, 20.0, 40.0]);
        assert_eq!(round_ticks(1.2, 5), [0.0, 0.5, 1.0]);
        assert_eq!(round_ticks(0.0, 5), [0.0]);
        assert_eq!(round_ticks(f64::NAN, 5), [0.0]);
    }

    #[test]
    fn log_ticks_label_every_decade_in_range() {
        assert_eq!(log_ticks(15.0, 600.0), [20.0, 50.0, 100.0, 200.0, 500.0]);
        let short: Vec<String> = log_ticks(0.3, 0.9).iter().map(|v| format!("{v:.1}")).collect();
        assert_eq!(short, ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]);
        assert_eq!(log_ticks(0.001, 1e6).len(), 10);
        assert!(log_ticks(0.0, 1.0).is_empty());
    }

    #[test]
    fn maps_linear_and_log() {
        let lin = TickedAxis::linear(0.0..10.0, vec![]);
        assert_eq!(lin.map(&5.0, (0, 100)), 50);
        let log = TickedAxis::log(1.0..100.0);
        assert_eq!(log.map(&10.0, (100, 0)), 50);
        assert_eq!(log.map(&100.0, (100, 0)), 0);
    }
}
