//! Chart 4, one per load series: latency percentiles against utilization ρ. Each percentile
//! has a colour: the measured median round is a marker on a bar spanning the rounds, the
//! pooled model (M/D/c) a solid line, the partitioned model (c × M/D/1) a dashed line. A dotted
//! horizontal line marks 10 service times; vertical lines mark where p99 crosses it, measured
//! and in each model: the knee.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::TickedAxis;
use super::{canvas, draw_legend, font, legend_height, LegendEntry, Swatch, GRID, INK, LEGEND_WIDTH, WIDTH};
use crate::queueing::{Model, Prediction, Queue};
use crate::report::format;
use crate::results::{Percentiles, Point, Round, Series};

/// Plot height when the legend is short.
const HEIGHT: u32 = 500;
/// Vertical space above the legend's first entry.
const LEGEND_TOP: i32 = 30;
/// The percentiles drawn, with their colours (Okabe–Ito, as the other charts).
const PERCENTILES: [(&str, RGBColor); 4] = [
    ("p50", RGBColor(0x00, 0x72, 0xb2)),
    ("p90", RGBColor(0x00, 0x9e, 0x73)),
    ("p99", RGBColor(0xd5, 0x5e, 0x00)),
    ("p99.9", RGBColor(0xcc, 0x79, 0xa7)),
];
/// The knee's own colour: the measured knee is the lesson, so it is the darkest mark.
const KNEE: RGBColor = INK;

/// A percentile of measured latencies, by its index in [`PERCENTILES`].
fn measured(l: &Percentiles, i: usize) -> f64 {
    [l.p50, l.p90, l.p99, l.p999][i]
}

/// A percentile of a prediction, by its index in [`PERCENTILES`].
fn predicted(p: &Prediction, i: usize) -> f64 {
    [p.p50, p.p90, p.p99, p.p999][i]
}

/// Utilizations a model line is drawn at: every 0.02 to 0.9, then every 0.01 to 0.99, where
/// the lines turn up.
fn grid(x_max: f64) -> Vec<f64> {
    let coarse = (1..=45).map(|i| i as f64 * 0.02);
    let fine = (91..=99).map(|i| i as f64 * 0.01);
    coarse.chain(fine).filter(|x| *x < x_max).collect()
}

/// The points that have a utilization and a measurement, by utilization.
fn drawn_points(series: &Series) -> Vec<(f64, &Point)> {
    let mut out: Vec<(f64, &Point)> = series
        .points
        .iter()
        .filter(|p| !p.nothing_completed() && p.latency_ms.p50 > 0.0)
        .filter_map(|p| Some((p.offered.as_ref()?.utilization?, p)))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The queue the series' models describe (from its first point that has one).
pub fn queue(series: &Series) -> Option<Queue> {
    series.points.iter().find_map(|p| {
        let o = p.offered.as_ref()?;
        Some(Queue { servers: o.servers?, service_ms: o.service_ms? })
    })
}

/// One model's lines: per percentile, (ρ, ms) pairs over `rhos`.
fn model_lines(q: &Queue, model: Model, rhos: &[f64]) -> [Vec<(f64, f64)>; 4] {
    let predictions: Vec<(f64, Prediction)> =
        rhos.iter().filter_map(|&r| Some((r, q.predict_for_curve(model, r)?))).collect();
    std::array::from_fn(|i| predictions.iter().map(|(r, p)| (*r, predicted(p, i))).collect())
}

/// `line` cut where it leaves the plot at `y_max`, with the crossing point added (in log y).
fn clip(line: &[(f64, f64)], y_max: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for w in line.windows(2) {
        if out.is_empty() {
            out.push(w[0]);
        }
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if y1 > y_max {
            let t = (y_max.ln() - y0.ln()) / (y1.ln() - y0.ln());
            out.push((x0 + t.clamp(0.0, 1.0) * (x1 - x0), y_max));
            return out;
        }
        out.push(w[1]);
    }
    out
}

/// Draws the chart of one load series as SVG.
pub fn draw(series: &Series) -> anyhow::Result<String> {
    let points = drawn_points(series);
    let q = queue(series);
    let knee = series.knee.as_ref();
    let x_max = points.iter().map(|(r, _)| *r).fold(1.0f64, f64::max) + 0.04;
    let spreads: Vec<[(f64, f64); 4]> = points.iter().map(|(_, p)| spread4(p)).collect();
    let lows = spreads.iter().flat_map(|s| s.iter().map(|(lo, _)| *lo));
    let highs = spreads.iter().flat_map(|s| s.iter().map(|(_, hi)| *hi));
    let service = q.map_or(f64::INFINITY, |q| q.service_ms);
    let threshold = knee.map(|k| k.threshold_ms);
    let y_lo = lows.fold(service, f64::min).min(1e9) / 1.4;
    let y_hi = highs.fold(threshold.unwrap_or(0.0) * 2.0, f64::max) * 1.4;
    let (y_lo, y_hi) =
        if y_lo.is_finite() && y_hi > y_lo && y_lo > 0.0 { (y_lo, y_hi) } else { (0.1, 100.0) };
    let rhos = grid(x_max);
    let pooled = q.map(|q| model_lines(&q, Model::Pooled, &rhos));
    let partitioned = q.map(|q| model_lines(&q, Model::Partitioned, &rhos));
    let entries = legend(series, q, pooled.is_some());
    let height = HEIGHT.max(legend_height(entries.len(), LEGEND_TOP));
    canvas(height, |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let x_ticks: Vec<f64> = (0..=((x_max * 10.0).floor() as usize)).map(|i| i as f64 / 10.0).collect();
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .margin_top(24)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .build_cartesian_2d(TickedAxis::linear(0.0..x_max, x_ticks), TickedAxis::log(y_lo..y_hi))?;
        chart
            .configure_mesh()
            .x_desc("utilization ρ = offered rate / theoretical capacity")
            .y_desc("latency, ms (log scale)")
            .x_label_formatter(&|x| format!("{x:.1}"))
            .y_label_formatter(&|v| format::tick(*v))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        if let Some(t) = threshold {
            draw_threshold(&mut chart, t, x_max)?;
        }
        if let Some(k) = knee {
            let marks = [
                (k.measured, "measured", false),
                (k.pooled, "pooled", true),
                (k.partitioned, "partitioned", true),
            ];
            for (row, (rho, name, dashed)) in marks.into_iter().enumerate() {
                if let Some(r) = rho.filter(|r| *r < x_max) {
                    draw_knee(&mut chart, r, name, row, dashed, (y_lo, y_hi))?;
                }
            }
        }
        for (i, (_, colour)) in PERCENTILES.iter().enumerate() {
            if let Some(lines) = &pooled {
                chart.draw_series(LineSeries::new(clip(&lines[i], y_hi), colour.stroke_width(2)))?;
            }
            if let Some(lines) = &partitioned {
                chart.draw_series(DashedLineSeries::new(
                    clip(&lines[i], y_hi),
                    6,
                    4,
                    colour.stroke_width(2),
                ))?;
            }
            let style = colour.filled().stroke_width(2);
            chart.draw_series(points.iter().zip(&spreads).map(|((rho, p), s)| {
                ErrorBar::new_vertical(*rho, s[i].0, measured(&p.latency_ms, i), s[i].1, style, 10)
            }))?;
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<TickedAxis, TickedAxis>>;

/// The dotted line at 10 service times, labelled at its right end.
fn draw_threshold(chart: &mut Chart, ms: f64, x_max: f64) -> anyhow::Result<()> {
    let dots = (0..((x_max / 0.01) as usize)).step_by(2).map(|i| i as f64 * 0.01);
    let style = RGBColor(0x60, 0x60, 0x60).stroke_width(1);
    chart.draw_series(dots.map(|x| PathElement::new(vec![(x, ms), ((x + 0.008).min(x_max), ms)], style)))?;
    let label = format!("10 × S = {} ms", format::ms(ms));
    let anchor = font(12.0).pos(Pos::new(HPos::Left, VPos::Bottom));
    chart.draw_series(std::iter::once(Text::new(label, (0.02, ms * 1.04), anchor)))?;
    Ok(())
}

/// A vertical line at utilization `rho`: solid for the measured knee, dashed for a model's,
/// named at the top, each name on its own `row` so that close knees stay legible.
fn draw_knee(
    chart: &mut Chart,
    rho: f64,
    name: &str,
    row: usize,
    dashed: bool,
    (lo, hi): (f64, f64),
) -> anyhow::Result<()> {
    let style = KNEE.stroke_width(if dashed { 1 } else { 2 });
    let at_row = hi * (lo / hi).powf(0.03 + 0.045 * row as f64);
    let label = font(12.0).pos(Pos::new(HPos::Right, VPos::Center));
    chart.draw_series(std::iter::once(Text::new(format!("{name} {rho:.2} "), (rho, at_row), label)))?;
    if dashed {
        let steps = 40;
        let at = |i: usize| lo * (hi / lo).powf(i as f64 / steps as f64);
        chart.draw_series(
            (0..steps).step_by(2).map(|i| PathElement::new(vec![(rho, at(i)), (rho, at(i + 1))], style)),
        )?;
    } else {
        chart.draw_series(std::iter::once(PathElement::new(vec![(rho, lo), (rho, hi)], style)))?;
    }
    Ok(())
}

/// Each percentile's lowest and highest round; the median's value when there are no rounds.
fn spread4(p: &Point) -> [(f64, f64); 4] {
    std::array::from_fn(|i| {
        let of = |r: &Round| measured(&r.latency_ms, i);
        let (lo, hi) = p.spread(of).unwrap_or((measured(&p.latency_ms, i), measured(&p.latency_ms, i)));
        let m = measured(&p.latency_ms, i);
        (lo.min(m).max(f64::MIN_POSITIVE), hi.max(m))
    })
}

/// One colour entry per percentile, then what each style and mark means.
fn legend(series: &Series, q: Option<Queue>, models: bool) -> Vec<LegendEntry> {
    let mut entries: Vec<LegendEntry> =
        PERCENTILES.iter().map(|(name, c)| LegendEntry::new(*name, *c, Swatch::Line)).collect();
    entries.push(LegendEntry::new("measured (bar: rounds' spread)", INK, Swatch::Marker));
    match (q, models) {
        (Some(q), true) => {
            let c = q.servers;
            entries.push(LegendEntry::new(format!("pooled, M/D/{c}"), INK, Swatch::Line));
            entries.push(LegendEntry::new(format!("partitioned, {c} × M/D/1"), INK, Swatch::Dashed));
        }
        _ => {
            let why = series.points.iter().find_map(|p| p.offered.as_ref()?.model_note.clone());
            entries.push(LegendEntry::new(why.unwrap_or_else(|| "no model".into()), INK, Swatch::None));
        }
    }
    if let Some(k) = &series.knee {
        let at = |r: Option<f64>| r.map_or("none".to_string(), |r| format!("ρ {r:.2}"));
        entries.push(LegendEntry::new(format!("knee, measured: {}", at(k.measured)), KNEE, Swatch::Line));
        entries.push(LegendEntry::new(format!("knee, pooled: {}", at(k.pooled)), KNEE, Swatch::Dashed));
        entries.push(LegendEntry::new(
            format!("knee, partitioned: {}", at(k.partitioned)),
            KNEE,
            Swatch::Dashed,
        ));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_leaving_the_plot_is_cut_at_its_edge() {
        let line = [(0.1, 1.0), (0.5, 10.0), (0.9, 1000.0)];
        let cut = clip(&line, 100.0);
        assert_eq!(cut.len(), 3);
        assert!((cut[2].0 - 0.7).abs() < 1e-9 && cut[2].1 == 100.0, "{cut:?}");
        assert_eq!(clip(&line, 1e6), line);
    }

    #[test]
    fn the_grid_thickens_where_the_lines_turn_up() {
        let g = grid(1.04);
        assert_eq!((g.len(), g[0], *g.last().unwrap()), (54, 0.02, 0.99));
        assert!(grid(0.5).iter().all(|x| *x < 0.5));
    }
}
