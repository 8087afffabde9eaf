//! Chart 2: latency percentiles of every point on an HDR axis, the way HdrHistogram's plotter
//! draws them: x is log10(1/(1−p)), so 50%, 90%, 99% and 99.9% are evenly spaced and the tail
//! gets as much room as the body. One line per point: a scale series' lines share its colour,
//! darker for larger N; each choice has a colour of its own. The max is not drawn: it is one request, not a percentile, and the table has the rest.

use plotters::prelude::*;

use super::axis::TickedAxis;
use super::{
    canvas, draw_legend, font, legend_height, point_label, series_colour, tint, LegendEntry, Swatch,
};
use super::{GRID, LEGEND_WIDTH, MUTED, WIDTH};
use crate::report::format;
use crate::results::{Percentiles, Results};

/// Plot height when the legend is short.
const HEIGHT: u32 = 480;
/// Vertical space above the legend's first entry.
const LEGEND_TOP: i32 = 30;
/// How much lighter the first point of a series is than its last.
const LIGHTEST: f64 = 0.6;

/// Where percentile `p` (0–1) sits on the HDR axis: log10(1/(1−p)).
pub fn hdr_position(p: f64) -> f64 {
    (1.0 / (1.0 - p)).log10()
}

/// The tick label of HDR position `x`: `50%`, `90%`, `99%`, `99.9%`.
pub fn hdr_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i64 - 2).max(0) as usize;
    format!("{percent:.decimals$}%")
}

/// The drawn percentiles of `l` as (HDR position, milliseconds).
fn line(l: &Percentiles) -> [(f64, f64); 4] {
    [(0.5, l.p50), (0.9, l.p90), (0.99, l.p99), (0.999, l.p999)].map(|(p, ms)| (hdr_position(p), ms))
}

/// A line that can be drawn on a log axis: positive, finite values only.
fn drawable(l: &Percentiles) -> Vec<(f64, f64)> {
    line(l).into_iter().filter(|(_, ms)| ms.is_finite() && *ms > 0.0).collect()
}

/// One line of the chart: a point's label, colour and values.
struct Trace {
    label: String,
    colour: RGBColor,
    values: Vec<(f64, f64)>,
}

/// Draws the latency chart as SVG.
pub fn draw(results: &Results) -> anyhow::Result<String> {
    let traces = traces(results);
    let entries: Vec<LegendEntry> = traces
        .iter()
        .map(|t| match t.values.is_empty() {
            false => LegendEntry::new(t.label.clone(), t.colour, Swatch::LineMarker),
            true => LegendEntry::new(format!("{}: no latency", t.label), MUTED, Swatch::None),
        })
        .collect();
    let height = HEIGHT.max(legend_height(entries.len(), LEGEND_TOP));
    let (lo, hi) = y_bounds(&traces);
    canvas(height, |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let ticks = vec![hdr_position(0.5), hdr_position(0.9), hdr_position(0.99), hdr_position(0.999)];
        let x_range = TickedAxis::linear(hdr_position(0.5) - 0.12..hdr_position(0.999) + 0.12, ticks);
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .margin_top(24)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .build_cartesian_2d(x_range, TickedAxis::log(lo..hi))?;
        chart
            .configure_mesh()
            .x_desc("percentile (HDR axis: log of 1/(1−p))")
            .y_desc("latency, ms (log scale)")
            .x_label_formatter(&|x| hdr_label(*x))
            .y_label_formatter(&|v| format::tick(*v))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        for t in traces.iter().filter(|t| !t.values.is_empty()) {
            let style = ShapeStyle { color: t.colour.to_rgba(), filled: true, stroke_width: 2 };
            chart.draw_series(LineSeries::new(t.values.clone(), style).point_size(4))?;
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

/// One trace per point, in series order. A scale series' points share a colour, going from
/// light to dark as N grows; a choice's points (algorithm, distribution) have no order, so
/// each gets a colour of its own.
fn traces(results: &Results) -> Vec<Trace> {
    let mut out = Vec::new();
    let mut colour = 0;
    for s in &results.series {
        let choice = s.is_choice();
        let last = s.points.len().saturating_sub(1).max(1) as f64;
        for (j, p) in s.points.iter().enumerate() {
            let t = if choice || s.points.len() == 1 { 0.0 } else { LIGHTEST * (1.0 - j as f64 / last) };
            out.push(Trace {
                label: point_label(s, p),
                colour: tint(series_colour(colour), t),
                values: drawable(&p.latency_ms),
            });
            colour += usize::from(choice);
        }
        colour += usize::from(!choice);
    }
    out
}

/// The latency axis: from a little under the lowest value to a little over the highest; 0.1–10
/// ms when there is nothing to draw.
fn y_bounds(traces: &[Trace]) -> (f64, f64) {
    let all = traces.iter().flat_map(|t| t.values.iter().map(|(_, ms)| *ms));
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        (0.1, 10.0)
    } else {
        (lo / 1.5, hi * 1.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdr_axis_spaces_nines_evenly() {
        assert!((hdr_position(0.9) - 1.0).abs() < 1e-12);
        assert!((hdr_position(0.99) - 2.0).abs() < 1e-9);
        assert!((hdr_position(0.999) - 3.0).abs() < 1e-9);
        let labels: Vec<String> = [0.5, 0.9, 0.99, 0.999].map(|p| hdr_label(hdr_position(p))).into();
        assert_eq!(labels, ["50%", "90%", "99%", "99.9%"]);
    }

    #[test]
    fn zero_latencies_are_not_drawn() {
        let zero = Percentiles::default();
        assert!(drawable(&zero).is_empty());
        let some = Percentiles { p50: 1.0, p90: 2.0, p99: 0.0, p999: 8.0, max: 9.0, stdev: 1.0 };
        assert_eq!(drawable(&some).len(), 3);
    }
}
