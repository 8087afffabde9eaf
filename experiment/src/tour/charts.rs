//! Step 1's chart: /op1's p50 and p99 in each phase as pairs of horizontal bars, drawn with the
//! report's canvas, fonts, colours and legend so the tour reads like the other pages.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::charts::axis::TickedAxis;
use crate::report::charts::{
    canvas, draw_legend, font, font_left, legend_height, series_colour, LegendEntry, Swatch, GRID,
    LEGEND_WIDTH, WIDTH,
};

/// Height of one phase's pair of bars.
const ROW: u32 = 64;
/// Room left of the bars for the phase's name.
const LABEL_WIDTH: u32 = 250;

/// One phase: its name, and /op1's p50 and p99 in ms.
pub struct Phase {
    pub label: String,
    pub p50: f64,
    pub p99: f64,
}

/// Draws the bars as SVG: ms on a linear axis from 0, each bar labelled with its value.
pub fn latency_bars(phases: &[Phase]) -> anyhow::Result<String> {
    let rows = phases.len().max(1) as u32;
    let height = (40 + rows * ROW + 50).max(legend_height(2, 30));
    let max = phases.iter().map(|p| p.p99.max(p.p50)).fold(1.0, f64::max) * 1.15;
    let axis = TickedAxis::linear_from_zero(max, 5);
    canvas(height, |root| {
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(LABEL_WIDTH)
            .build_cartesian_2d(axis, 0.0..f64::from(rows))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .x_desc("/op1 latency, ms")
            .axis_desc_style(font(14.0))
            .label_style(font(12.0))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (i, phase) in phases.iter().enumerate() {
            let top = f64::from(rows) - i as f64;
            for (j, (value, colour)) in
                [(phase.p50, series_colour(0)), (phase.p99, series_colour(1))].into_iter().enumerate()
            {
                let (y0, y1) = (top - 0.15 - 0.35 * (j as f64 + 1.0), top - 0.15 - 0.35 * j as f64 - 0.06);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (value, y1)],
                    colour.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!(" {value:.1} ms"),
                    (value, (y0 + y1) / 2.0),
                    font_left(12.0),
                )))?;
            }
            let (x, y) = chart.backend_coord(&(0.0, top - 0.5));
            plot.draw(&Text::new(
                phase.label.clone(),
                (x - 10, y),
                font(13.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        let entries = [
            LegendEntry::new("/op1 p50", series_colour(0), Swatch::Line),
            LegendEntry::new("/op1 p99", series_colour(1), Swatch::Line),
        ];
        draw_legend(&legend, &entries, 30)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_two_labelled_bars() {
        let phases = [
            Phase { label: "alone".into(), p50: 0.4, p99: 1.1 },
            Phase { label: "behind /op2".into(), p50: 26.0, p99: 51.0 },
        ];
        let svg = latency_bars(&phases).unwrap();
        // Each colour fills a bar per phase (the legend draws lines, not fills).
        for c in [series_colour(0), series_colour(1)] {
            let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            assert_eq!(svg.matches(&fill).count(), 2, "{fill} in {svg}");
        }
        for text in ["alone", "behind /op2", "0.4 ms", "51.0 ms", "/op1 p99"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
