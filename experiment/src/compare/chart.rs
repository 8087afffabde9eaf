//! One chart per metric with both runs on it: a row per matching point, A and B each a
//! marker (the median round) on a horizontal bar (the rounds' lowest to highest), so a
//! difference beyond the noise shows as two bars that do not overlap. Latency axes are
//! logarithmic; throughput's is linear from 0.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::judge::Metric;
use super::pair::{Comparison, Pair};
use crate::report::charts::axis::TickedAxis;
use crate::report::charts::{
    canvas, draw_legend, font, legend_height, series_colour, shorten, text_width, LegendEntry, Swatch,
};
use crate::report::charts::{GRID, LEGEND_WIDTH, MUTED, WIDTH};
use crate::report::format;

/// Height of a row (one matching point).
const ROW: u32 = 26;
/// Space above and below the rows: the x axis and its label.
const FRAME: u32 = 110;
/// Point labels longer than this are cut.
const LABEL_CHARS: usize = 34;
/// Vertical space above the legend's first entry.
const LEGEND_TOP: i32 = 30;

/// A row's label: the series (when there are several) and the point.
fn label(pair: &Pair, several: bool) -> String {
    let text = if several {
        format!("{} {}", pair.series.replace(" at ", " "), pair.point)
    } else {
        pair.point.clone()
    };
    shorten(&text.replace("load at ", ""), LABEL_CHARS)
}

/// Draws `metric`'s chart for the comparison; `names` label A and B.
pub fn draw(c: &Comparison, metric: Metric, names: (&str, &str)) -> anyhow::Result<String> {
    let several = c.pairs.iter().any(|p| p.series != c.pairs[0].series);
    let labels: Vec<String> = c.pairs.iter().map(|p| label(p, several)).collect();
    let cells: Vec<_> = c.pairs.iter().map(|p| p.cells.iter().find(|x| x.metric == metric)).collect();
    let values =
        cells.iter().flatten().flat_map(|x| [x.a_span, x.b_span]).flatten().flat_map(|(lo, hi)| [lo, hi]);
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let log = metric != Metric::Rps;
    let x_range = match (log, hi > 0.0) {
        (true, true) => TickedAxis::log(lo.max(hi * 1e-4).max(1e-3) / 1.3..hi * 1.3),
        (false, true) => TickedAxis::linear_from_zero(hi * 1.1, 6),
        (_, false) => TickedAxis::linear(0.0..1.0, vec![0.0, 1.0]),
    };
    let label_px = labels.iter().map(|l| text_width(l, 12.0)).fold(60.0, f64::max) as u32 + 16;
    let rows = c.pairs.len().max(1) as u32;
    let height = rows * ROW + FRAME;
    let (a_colour, b_colour) = (series_colour(0), series_colour(1));
    let entries = vec![
        LegendEntry::new(format!("A: {}", names.0), a_colour, Swatch::Marker),
        LegendEntry::new(format!("B: {}", names.1), b_colour, Swatch::Marker),
        LegendEntry::new("bar: the rounds' spread", MUTED, Swatch::None),
    ];
    canvas(height.max(legend_height(entries.len(), LEGEND_TOP)), |root| {
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let y_ticks: Vec<f64> = (0..rows).map(f64::from).collect();
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .margin_top(20)
            .x_label_area_size(50)
            .y_label_area_size(label_px.min(340))
            .build_cartesian_2d(x_range, TickedAxis::linear(-0.6..f64::from(rows) - 0.4, y_ticks))?;
        chart
            .configure_mesh()
            .x_desc(format!("{}{}", metric.title(), if log { " (log scale)" } else { "" }))
            .y_desc("point")
            .x_label_formatter(&|v| if log { format::tick(*v) } else { format::rps_tick(*v) })
            .y_label_formatter(&|y| labels.get(y.round() as usize).cloned().unwrap_or_default())
            .label_style(font(12.0))
            .axis_desc_style(font(14.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()?;
        for (i, cell) in cells.iter().enumerate() {
            let Some(cell) = cell else { continue };
            let y = i as f64;
            for (span, value, colour, dy) in
                [(cell.a_span, cell.a, a_colour, -0.17), (cell.b_span, cell.b, b_colour, 0.17)]
            {
                match (span, value) {
                    (Some((lo, hi)), Some(v)) if v > 0.0 || !log => {
                        let style = colour.filled().stroke_width(2);
                        chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                            y + dy,
                            lo,
                            v,
                            hi,
                            style,
                            8,
                        )))?;
                    }
                    _ => {
                        let at = chart.x_range().start;
                        let note = font(11.0).color(&MUTED).pos(Pos::new(HPos::Left, VPos::Center));
                        chart.draw_series(std::iter::once(Text::new(
                            "nothing completed",
                            (at, y + dy),
                            note,
                        )))?;
                    }
                }
            }
        }
        draw_legend(&side, &entries, LEGEND_TOP)
    })
}
