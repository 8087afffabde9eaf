//! Chart 1: throughput against N, every series on one plot. Per series: each point's median
//! as a marker on a bar spanning its rounds' min–max, the theoretical capacity as a dashed
//! line, and the fitted USL curve, sampled over the measured N range, as a solid line.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{canvas, draw_legend, font, legend_height, series_colour, LegendEntry, Swatch, GRID, WIDTH};
use crate::report::{format, text};
use crate::results::{Point, Results, Series};

/// Plot height when the legend is short.
const HEIGHT: u32 = 500;
/// Samples of the USL curve across a series' N range: smooth at this width.
const CURVE_SAMPLES: usize = 200;
/// Most labels on the N axis: one per unit while they fit.
const MAX_X_LABELS: usize = 17;
/// Vertical space above the legend's first entry.
const LEGEND_TOP: i32 = 30;

/// Draws the throughput chart as SVG.
pub fn draw(results: &Results) -> anyhow::Result<String> {
    let entries = legend(results);
    let height = HEIGHT.max(legend_height(entries.len(), LEGEND_TOP));
    canvas(height, |root| {
        let (plot, side) = root.split_horizontally(WIDTH - super::LEGEND_WIDTH);
        let (x_max, y_max) = bounds(results);
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .margin_top(24)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_desc(results))
            .y_desc("throughput, req/s (2xx responses)")
            .x_labels((x_max.ceil() as usize + 1).min(MAX_X_LABELS))
            .y_labels(8)
            .x_label_formatter(&|v| format::n(*v))
            .y_label_formatter(&|v| format::rps_tick(*v))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        let dodge = x_max / 160.0;
        let count = results.series.len();
        for (i, series) in results.series.iter().enumerate() {
            let offset = (i as f64 - (count as f64 - 1.0) / 2.0) * dodge;
            draw_series(&mut chart, series, series_colour(i), offset)?;
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one series: theory, USL curve, then the measured points on top. `offset` shifts the
/// markers sideways (in N) so series measured at the same N do not hide each other.
fn draw_series(chart: &mut Chart, series: &Series, colour: RGBColor, offset: f64) -> anyhow::Result<()> {
    let y_max = chart.y_range().end;
    let mut points: Vec<&Point> = series.points.iter().filter(|p| p.n.is_finite()).collect();
    points.sort_by(|a, b| a.n.total_cmp(&b.n));

    let theory: Vec<(f64, f64)> = points.iter().map(|p| (p.n, p.theory_rps)).collect();
    chart.draw_series(DashedLineSeries::new(theory.clone(), 7, 5, colour.stroke_width(2)))?;
    let tick = colour.stroke_width(2);
    chart.draw_series(
        theory.iter().map(|&xy| EmptyElement::at(xy) + PathElement::new(vec![(-9, 0), (9, 0)], tick)),
    )?;

    let curve: Vec<(f64, f64)> = usl_curve(series).into_iter().filter(|(_, x)| *x <= y_max).collect();
    chart.draw_series(LineSeries::new(curve, colour.stroke_width(2)))?;

    let style = colour.filled().stroke_width(2);
    chart.draw_series(points.iter().map(|p| {
        let (lo, hi) = spread(p);
        ErrorBar::new_vertical(p.n + offset, lo, p.rps, hi, style, 12)
    }))?;
    Ok(())
}

/// The lowest and highest round of `point`, req/s; its median when it has no rounds.
fn spread(point: &Point) -> (f64, f64) {
    let rounds = point.rounds.iter().map(|r| r.rps).filter(|x| x.is_finite());
    let (lo, hi) = rounds.fold((point.rps, point.rps), |(lo, hi), x| (lo.min(x), hi.max(x)));
    (lo, hi)
}

/// The fitted USL curve of `series` over its measured N range (empty without a fit or with a
/// single N), finite values only.
fn usl_curve(series: &Series) -> Vec<(f64, f64)> {
    let (Some(fit), (lo, hi)) = (&series.fit, text::measured_range(series)) else { return Vec::new() };
    if hi <= lo {
        return Vec::new();
    }
    let step = (hi - lo) / CURVE_SAMPLES as f64;
    let samples = (0..=CURVE_SAMPLES).map(|i| lo + step * i as f64).map(|n| (n, fit.throughput(n)));
    samples.filter(|(_, x)| x.is_finite() && *x >= 0.0).collect()
}

/// The axes' upper ends: a little past the largest N and the largest value drawn. A curve
/// that overshoots the measurements may raise the top by half again, no more, so that a wild
/// fit cannot squash the data it was fitted to.
fn bounds(results: &Results) -> (f64, f64) {
    let mut n_max: f64 = 1.0;
    let mut data_max: f64 = 0.0;
    for p in results.series.iter().flat_map(|s| &s.points) {
        n_max = n_max.max(p.n);
        data_max = data_max.max(spread(p).1).max(p.theory_rps);
    }
    let curve_max = results.series.iter().flat_map(usl_curve).map(|(_, x)| x).fold(0.0, f64::max);
    let y_max = if data_max > 0.0 { data_max.max(curve_max.min(data_max * 1.5)) } else { curve_max };
    let y_max = if y_max.is_finite() && y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    (n_max * 1.08, y_max)
}

/// What N counts, for the series drawn.
fn x_desc(results: &Results) -> &'static str {
    let cpus = results.series.iter().filter(|s| s.vary == "cpus").count();
    if cpus == 0 {
        "N, total workers"
    } else if cpus == results.series.len() {
        "N, cores the nodes may use"
    } else {
        "N: total workers (cores, for a cpus series)"
    }
}

/// Three entries per series: measured, theory, fit.
fn legend(results: &Results) -> Vec<LegendEntry> {
    let mut entries = Vec::new();
    for (i, s) in results.series.iter().enumerate() {
        let c = series_colour(i);
        entries.push(LegendEntry::new(format!("{}: measured", s.vary), c, Swatch::Marker));
        entries.push(LegendEntry::new(format!("{}: theory", s.vary), c, Swatch::Dashed));
        match s.fit {
            Some(_) => entries.push(LegendEntry::new(format!("{}: USL fit", s.vary), c, Swatch::Line)),
            None => entries.push(LegendEntry::new(format!("{}: no fit", s.vary), c, Swatch::None)),
        }
    }
    entries
}
