//! Chart 3: how each point's responses split across its workers, one 100%-wide stacked bar per
//! point, so an uneven split (70/10/10/10) shows at a glance. Workers of one node share a hue,
//! alternating dark and light; each bar is followed by Jain's fairness index and its largest
//! share against the fair one.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use scalelab_loadgen::{natural_cmp, Spread};

use super::axis::TickedAxis;
use super::{canvas, font, font_left, point_label, series_colour, text_width, tint, GRID, INK, MUTED};
use crate::report::format;
use crate::results::Results;

/// Height of one bar's row.
const ROW: u32 = 36;
/// Fraction of a row the bar fills.
const BAR: f64 = 0.66;
/// Room right of the bars for the fairness text.
const RIGHT_TEXT: u32 = 270;
/// Font size of the labels inside segments.
const SEGMENT_PX: f64 = 12.0;

/// One bar: a point's label and its workers' shares in natural order.
struct Bar {
    label: String,
    /// (worker, share of the point's responses).
    shares: Vec<(String, f64)>,
    jain: Option<f64>,
}

/// Draws the share chart as SVG.
pub fn draw(results: &Results) -> anyhow::Result<String> {
    let bars = bars(results);
    let rows = bars.len().max(1);
    let height = 24 + rows as u32 * ROW + 60;
    let label_width = bars.iter().map(|b| text_width(&b.label, 13.0)).fold(60.0, f64::max) as u32 + 24;
    canvas(height, |root| {
        let top = rows as f64;
        let centres: Vec<f64> = (0..rows).map(|r| top - r as f64 - 0.5).collect();
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .margin_top(16)
            .margin_right(RIGHT_TEXT)
            .x_label_area_size(52)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0f64..100.0, TickedAxis::linear(0f64..top, centres.clone()))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(11)
            .x_desc("share of the point's responses, by node/worker")
            .x_label_formatter(&|v| format!("{v:.0}%"))
            .y_label_formatter(&|y| {
                let row = (top - y).floor() as usize;
                labels.get(row).cloned().unwrap_or_default()
            })
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        for (bar, &y) in bars.iter().zip(&centres) {
            draw_bar(&mut chart, bar, y)?;
            let (px, py) = chart.backend_coord(&(100.0, y));
            root.draw(&Text::new(fairness(bar), (px + 14, py), font_left(13.0)))?;
        }
        Ok(())
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, TickedAxis>>;

/// Draws one stacked bar centred on `y`, or a grey outline saying why there is none.
fn draw_bar(chart: &mut Chart, bar: &Bar, y: f64) -> anyhow::Result<()> {
    let (y0, y1) = (y - BAR / 2.0, y + BAR / 2.0);
    if bar.shares.is_empty() {
        chart.draw_series([Rectangle::new([(0.0, y0), (100.0, y1)], MUTED.stroke_width(1))])?;
        let centre = Pos::new(HPos::Center, VPos::Center);
        let note = Text::new("no per-worker counts", (50.0, y), font(13.0).color(&MUTED).pos(centre));
        chart.draw_series([note])?;
        return Ok(());
    }
    let px_per_percent = chart.backend_coord(&(100.0, y)).0 - chart.backend_coord(&(0.0, y)).0;
    let widths: Vec<f64> = bar.shares.iter().map(|(_, s)| s * px_per_percent as f64).collect();
    let labels = segment_labels(&bar.shares, &widths);
    let mut x = 0.0;
    let mut node_of_previous: Option<&str> = None;
    let (mut node, mut worker) = (0usize, 0usize);
    for ((name, share), label) in bar.shares.iter().zip(labels) {
        let this_node = name.split('/').next().unwrap_or(name);
        match node_of_previous {
            Some(prev) if prev == this_node => worker += 1,
            Some(_) => (node, worker) = (node + 1, 0),
            None => {}
        }
        node_of_previous = Some(this_node);
        let colour = tint(series_colour(node), if worker % 2 == 0 { 0.0 } else { 0.35 });
        let x1 = x + share * 100.0;
        chart.draw_series([
            Rectangle::new([(x, y0), (x1, y1)], colour.filled()),
            Rectangle::new([(x, y0), (x1, y1)], WHITE.stroke_width(1)),
        ])?;
        if let Some(label) = label {
            let ink = if luminance(colour) < 150.0 { WHITE } else { INK };
            let centre = Pos::new(HPos::Center, VPos::Center);
            let text = Text::new(label, ((x + x1) / 2.0, y), font(SEGMENT_PX).color(&ink).pos(centre));
            chart.draw_series([text])?;
        }
        x = x1;
    }
    Ok(())
}

/// The labels of a bar's segments, `widths` pixels wide, chosen by the narrowest so that a bar
/// reads evenly: every segment `node-1/2 70%` when all fit, else every segment `70%`, else
/// only the segments well above a fair share, where they fit.
fn segment_labels(shares: &[(String, f64)], widths: &[f64]) -> Vec<Option<String>> {
    let fits = |label: &str, width: f64| text_width(label, SEGMENT_PX) + 8.0 <= width;
    let named = |(name, share): &(String, f64)| format!("{name} {}", format::percent(*share));
    let bare = |(_, share): &(String, f64)| format::percent(*share);
    let pairs = || shares.iter().zip(widths.iter().copied());
    if pairs().all(|(s, w)| fits(&named(s), w)) {
        return shares.iter().map(|s| Some(named(s))).collect();
    }
    if pairs().all(|(s, w)| fits(&bare(s), w)) {
        return shares.iter().map(|s| Some(bare(s))).collect();
    }
    let notable = 1.25 / shares.len() as f64;
    pairs().map(|(s, w)| (s.1 >= notable && fits(&bare(s), w)).then(|| bare(s))).collect()
}

/// The text after a bar: `J = 0.52 · busiest 70%, fair 25%`.
fn fairness(bar: &Bar) -> String {
    let Some(j) = bar.jain else { return String::new() };
    let busiest = bar.shares.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    if bar.shares.len() == 1 {
        return format!("J = {j:.2} · one worker");
    }
    let fair = 1.0 / bar.shares.len() as f64;
    format!("J = {j:.2} · busiest {}, fair {}", format::percent(busiest), format::percent(fair))
}

/// One bar per point of every series, in order.
fn bars(results: &Results) -> Vec<Bar> {
    let mut out = Vec::new();
    for s in &results.series {
        for p in &s.points {
            let total: u64 = p.by_worker.values().sum();
            let mut shares: Vec<(String, f64)> = match total {
                0 => Vec::new(),
                _ => p.by_worker.iter().map(|(w, &c)| (w.clone(), c as f64 / total as f64)).collect(),
            };
            shares.sort_by(|a, b| natural_cmp(&a.0, &b.0));
            out.push(Bar {
                label: point_label(s, p),
                shares,
                jain: Spread::of(p.by_worker.values()).map(|s| s.jain),
            });
        }
    }
    out
}

/// Perceived brightness of `c`, 0–255: decides white or dark text on it.
fn luminance(c: RGBColor) -> f64 {
    0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_labels_shrink_to_fit_the_narrowest() {
        let shares: Vec<(String, f64)> =
            [("node-1/1", 0.7), ("node-1/2", 0.3)].map(|(k, s)| (k.into(), s)).into();
        let all = segment_labels(&shares, &[700.0, 300.0]);
        assert_eq!(all, [Some("node-1/1 70%".into()), Some("node-1/2 30%".into())]);
        let bare = segment_labels(&shares, &[70.0, 30.0]);
        assert_eq!(bare, [Some("70%".into()), Some("30%".into())]);
        let notable = segment_labels(&shares, &[70.0, 3.0]);
        assert_eq!(notable, [Some("70%".into()), None]);
    }
}
