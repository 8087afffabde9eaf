//! The timeline page's four charts, drawn like report.html's with the report's own canvas,
//! fonts, colours, legends and log axis: offered against served requests per second; p50 and
//! p99 latency with the `--slo` limits as lines; replicas per group as steps with the
//! autoscalers' decisions marked; CPU used against its cap per node. Every value of a second
//! is drawn at the middle of that second; a second without data breaks the line.

use std::collections::BTreeMap;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Timeline;
use crate::report::charts::axis::TickedAxis;
use crate::report::charts::{
    canvas, draw_legend, font, legend_height, series_colour, Area, LegendEntry, Swatch, GRID, LEGEND_WIDTH,
    MUTED, WIDTH,
};
use crate::report::format;

/// Plot height when the legend is short.
const HEIGHT: u32 = 380;
/// Vertical space above the legend's first entry.
const LEGEND_TOP: i32 = 30;
const X_DESC: &str = "time since the start of the run, s";

/// The charts as `<svg>` text.
#[derive(Debug, Clone)]
pub struct Charts {
    pub rate: String,
    pub latency: String,
    /// `None` without admin data.
    pub replicas: Option<String>,
    /// `None` without CPU readings.
    pub cpu: Option<String>,
}

/// Draws every chart that has data.
pub fn draw(t: &Timeline) -> anyhow::Result<Charts> {
    let has_cpu =
        t.seconds.iter().filter_map(|s| s.admin.as_ref()).any(|a| a.cpu.values().any(|c| c.used.is_some()));
    let has_replicas = t.seconds.iter().filter_map(|s| s.admin.as_ref()).any(|a| !a.replicas.is_empty());
    Ok(Charts {
        rate: rate(t)?,
        latency: latency(t)?,
        replicas: if has_replicas { Some(replicas(t)?) } else { None },
        cpu: if has_cpu { Some(cpu(t)?) } else { None },
    })
}

/// The x axis' end: the run's last second.
fn x_end(t: &Timeline) -> f64 {
    (t.seconds.len() as f64).max(1.0)
}

/// `values` (second, value) as runs of consecutive seconds, each drawn at mid-second.
fn runs(values: impl Iterator<Item = (u32, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last: Option<u32> = None;
    for (t, v) in values {
        let Some(v) = v.filter(|v| v.is_finite()) else {
            last = None;
            continue;
        };
        if last.is_none_or(|l| l + 1 != t) {
            out.push(Vec::new());
        }
        out.last_mut().expect("pushed above").push((f64::from(t) + 0.5, v));
        last = Some(t);
    }
    out
}

type LinearChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white chart with the legend strip on the right, a linear y axis from 0 to `y_max`.
fn linear_chart<'a, 'b>(
    plot: &'a Area<'b>,
    x_end: f64,
    y_max: f64,
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> anyhow::Result<LinearChart<'a, 'b>> {
    let mut chart = ChartBuilder::on(plot)
        .margin(16)
        .margin_top(24)
        .x_label_area_size(52)
        .y_label_area_size(76)
        .build_cartesian_2d(0f64..x_end, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc(y_desc)
        .x_labels(12)
        .y_labels(8)
        .x_label_formatter(&|v| format::tick(*v))
        .y_label_formatter(y_label)
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;
    Ok(chart)
}

/// One line of the rate chart: its name, the count it draws, its colour, whether dashed.
struct RateLine(&'static str, fn(&super::Second) -> u64, RGBColor, bool);

/// Chart 1: offered against served (2xx) and failed requests per second.
fn rate(t: &Timeline) -> anyhow::Result<String> {
    let series = [
        RateLine("offered", |s| s.load.offered, series_colour(0), true),
        RateLine("served (2xx)", |s| s.load.ok, series_colour(2), false),
        RateLine("errors (no 2xx)", |s| s.load.errors, series_colour(1), false),
    ];
    let y_max = t.seconds.iter().flat_map(|s| series.iter().map(move |l| (l.1)(s))).max().unwrap_or(0);
    let entries: Vec<LegendEntry> = series
        .iter()
        .map(|RateLine(name, _, c, dashed)| {
            LegendEntry::new(*name, *c, if *dashed { Swatch::Dashed } else { Swatch::Line })
        })
        .collect();
    canvas(HEIGHT.max(legend_height(entries.len(), LEGEND_TOP)), |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let y_max = (y_max as f64 * 1.1).max(1.0);
        let mut chart =
            linear_chart(&plot, x_end(t), y_max, "requests per second", &|v| format::rps_tick(*v))?;
        for RateLine(_, f, colour, dashed) in &series {
            for run in runs(t.seconds.iter().map(|s| (s.load.t, Some(f(s) as f64)))) {
                if *dashed {
                    chart.draw_series(DashedLineSeries::new(run, 7, 5, colour.stroke_width(2)))?;
                } else {
                    chart.draw_series(LineSeries::new(run, colour.stroke_width(2)))?;
                }
            }
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

/// Chart 2: p50 and p99 per second on a log axis, with the `--slo` limits of those
/// percentiles as dashed lines.
fn latency(t: &Timeline) -> anyhow::Result<String> {
    let p50 = runs(t.seconds.iter().map(|s| (s.load.t, s.load.p50_ms.filter(|v| *v > 0.0))));
    let p99 = runs(t.seconds.iter().map(|s| (s.load.t, s.load.p99_ms.filter(|v| *v > 0.0))));
    let limits: Vec<(&str, f64, RGBColor)> = t
        .thresholds
        .iter()
        .filter_map(|th| match th.metric.as_str() {
            "p50" => Some((th.slo.as_str(), th.limit, series_colour(0))),
            "p99" => Some((th.slo.as_str(), th.limit, series_colour(1))),
            _ => None,
        })
        .collect();
    let mut entries = vec![
        LegendEntry::new("p50", series_colour(0), Swatch::Line),
        LegendEntry::new("p99", series_colour(1), Swatch::Line),
    ];
    entries
        .extend(limits.iter().map(|(slo, _, c)| LegendEntry::new(format!("SLO {slo}"), *c, Swatch::Dashed)));
    if p50.is_empty() {
        entries.push(LegendEntry::new("no responses to draw", MUTED, Swatch::None));
    }
    let values = p50.iter().chain(&p99).flatten().map(|(_, v)| *v).chain(limits.iter().map(|l| l.1));
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 { (lo / 1.5, hi * 1.5) } else { (0.1, 10.0) };
    canvas(HEIGHT.max(legend_height(entries.len(), LEGEND_TOP)), |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .margin_top(24)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .build_cartesian_2d(0f64..x_end(t), TickedAxis::log(lo..hi))?;
        chart
            .configure_mesh()
            .x_desc(X_DESC)
            .y_desc("latency over the second, ms (log scale)")
            .x_labels(12)
            .x_label_formatter(&|v| format::tick(*v))
            .y_label_formatter(&|v| format::tick(*v))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        for (lines, colour) in [(&p50, series_colour(0)), (&p99, series_colour(1))] {
            for run in lines {
                let style = ShapeStyle { color: colour.to_rgba(), filled: true, stroke_width: 2 };
                chart.draw_series(LineSeries::new(run.clone(), style).point_size(if run.len() == 1 {
                    3
                } else {
                    0
                }))?;
            }
        }
        for (_, limit, colour) in &limits {
            let line = vec![(0.0, *limit), (x_end(t), *limit)];
            chart.draw_series(DashedLineSeries::new(line, 9, 6, colour.stroke_width(2)))?;
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

/// Chart 3: replicas per group as steps, each autoscaler decision as a dashed line at its
/// time with a triangle (up or down) at the new count and `from→to` beside it.
fn replicas(t: &Timeline) -> anyhow::Result<String> {
    let groups: Vec<String> = t.admin.as_ref().map(|a| a.groups.clone()).unwrap_or_default();
    let decisions = t.admin.as_ref().map(|a| a.decisions.as_slice()).unwrap_or_default();
    let colour_of = |g: &str| series_colour(groups.iter().position(|x| x == g).unwrap_or(0));
    let steps: BTreeMap<&String, Vec<Vec<(f64, f64)>>> = groups
        .iter()
        .map(|g| {
            let values = t
                .seconds
                .iter()
                .map(|s| (s.load.t, s.admin.as_ref().and_then(|a| a.replicas.get(g)).map(|r| *r as f64)));
            (g, runs(values).into_iter().map(step).collect())
        })
        .collect();
    let top = t
        .seconds
        .iter()
        .filter_map(|s| s.admin.as_ref())
        .flat_map(|a| a.replicas.values().copied())
        .chain(decisions.iter().map(|d| d.decision.to.max(d.decision.from)))
        .max()
        .unwrap_or(1);
    let mut entries: Vec<LegendEntry> = groups
        .iter()
        .map(|g| LegendEntry::new(format!("{g}: replicas"), colour_of(g), Swatch::Line))
        .collect();
    let decided: Vec<&String> = groups.iter().filter(|g| decisions.iter().any(|d| &d.group == *g)).collect();
    entries.extend(
        decided
            .iter()
            .map(|g| LegendEntry::new(format!("{g}: scale decision"), colour_of(g), Swatch::Dashed)),
    );
    if decisions.is_empty() {
        entries.push(LegendEntry::new("no autoscaler decisions", MUTED, Swatch::None));
    }
    canvas(HEIGHT.max(legend_height(entries.len(), LEGEND_TOP)), |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let y_top = top as f64 + 1.0;
        let ticks = (0..=top + 1).map(|v| v as f64).collect();
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .margin_top(24)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .build_cartesian_2d(0f64..x_end(t), TickedAxis::linear(0.0..y_top, ticks))?;
        chart
            .configure_mesh()
            .x_desc(X_DESC)
            .y_desc("replicas")
            .x_labels(12)
            .x_label_formatter(&|v| format::tick(*v))
            .y_label_formatter(&|v| format::tick(*v))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        for (g, runs) in &steps {
            for run in runs {
                chart.draw_series(LineSeries::new(run.clone(), colour_of(g).stroke_width(3)))?;
            }
        }
        for d in decisions {
            let c = colour_of(&d.group);
            let (to, up) = (d.decision.to as f64, d.decision.to > d.decision.from);
            chart.draw_series(DashedLineSeries::new(
                vec![(d.t, 0.0), (d.t, y_top)],
                5,
                4,
                c.stroke_width(1),
            ))?;
            let tip = if up { vec![(0, -7), (-6, 5), (6, 5)] } else { vec![(0, 7), (-6, -5), (6, -5)] };
            let label = format!("{}→{}", d.decision.from, d.decision.to);
            chart.draw_series([EmptyElement::at((d.t, to))
                + Polygon::new(tip, c.filled())
                + Text::new(label, (8, -16), font(12.0))])?;
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

/// A run of (x, value) as steps: each value holds until the next one.
fn step(run: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(run.len() * 2);
    for (i, &(x, v)) in run.iter().enumerate() {
        if i > 0 {
            out.push((x, run[i - 1].1));
        }
        out.push((x, v));
    }
    out
}

/// Chart 4: CPU used per node (solid) against its cap (dashed, same colour).
fn cpu(t: &Timeline) -> anyhow::Result<String> {
    let nodes: Vec<String> = t.admin.as_ref().map(|a| a.nodes.clone()).unwrap_or_default();
    let reading = |n: &str, f: fn(&super::NodeCpu) -> Option<f64>| {
        runs(t.seconds.iter().map(|s| (s.load.t, s.admin.as_ref().and_then(|a| a.cpu.get(n)).and_then(f))))
    };
    let used: Vec<Vec<Vec<(f64, f64)>>> = nodes.iter().map(|n| reading(n, |c| c.used)).collect();
    let caps: Vec<Vec<Vec<(f64, f64)>>> = nodes.iter().map(|n| reading(n, |c| c.cap)).collect();
    let y_max = used.iter().chain(&caps).flatten().flatten().map(|(_, v)| *v).fold(0.0, f64::max);
    let mut entries = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        entries.push(LegendEntry::new(format!("{n} used"), series_colour(i), Swatch::Line));
        match caps[i].is_empty() {
            false => entries.push(LegendEntry::new(format!("{n} cap"), series_colour(i), Swatch::Dashed)),
            true => entries.push(LegendEntry::new(format!("{n}: no cap"), MUTED, Swatch::None)),
        }
    }
    canvas(HEIGHT.max(legend_height(entries.len(), LEGEND_TOP)), |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let y_max = (y_max * 1.15).max(0.1);
        let mut chart = linear_chart(&plot, x_end(t), y_max, "CPU, cores", &|v| format::tick(*v))?;
        for (i, (u, c)) in used.iter().zip(&caps).enumerate() {
            let colour = series_colour(i);
            for run in c {
                chart.draw_series(DashedLineSeries::new(run.clone(), 8, 5, colour.stroke_width(2)))?;
            }
            for run in u {
                chart.draw_series(LineSeries::new(run.clone(), colour.stroke_width(2)))?;
            }
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture;
    use super::*;

    #[test]
    fn runs_break_at_gaps_and_sit_mid_second() {
        let r = runs([(0, Some(1.0)), (1, Some(2.0)), (2, None), (3, Some(4.0)), (5, Some(6.0))].into_iter());
        assert_eq!(r, vec![vec![(0.5, 1.0), (1.5, 2.0)], vec![(3.5, 4.0)], vec![(5.5, 6.0)]]);
    }

    #[test]
    fn steps_hold_each_value_until_the_next() {
        assert_eq!(step(vec![(0.5, 1.0), (1.5, 2.0)]), vec![(0.5, 1.0), (1.5, 1.0), (1.5, 2.0)]);
    }

    #[test]
    fn every_chart_is_drawn_from_the_fixture() {
        let c = draw(&fixture(10)).unwrap();
        for svg in [&c.rate, &c.latency, c.replicas.as_ref().unwrap(), c.cpu.as_ref().unwrap()] {
            assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");
            assert!(svg.contains(X_DESC));
        }
        assert!(c.rate.contains("served (2xx)") && c.rate.contains("requests per second"));
        assert!(
            c.latency.contains("SLO p99&lt;25ms") || c.latency.contains("SLO p99<25ms"),
            "the SLO is named"
        );
        let replicas = c.replicas.unwrap();
        assert_eq!(replicas.matches("<polygon").count(), 2, "a marker per decision");
        assert!(replicas.contains("1→2") && replicas.contains("2→3"));
        assert!(c.cpu.unwrap().contains("node-3 cap"));
    }

    #[test]
    fn no_admin_data_draws_no_admin_chart() {
        let mut t = fixture(4);
        t.admin = None;
        t.seconds.iter_mut().for_each(|s| s.admin = None);
        let c = draw(&t).unwrap();
        assert!(c.replicas.is_none() && c.cpu.is_none());
    }
}
