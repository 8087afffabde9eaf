//! The report's charts, each drawn by plotters' SVG backend into a string the page inlines:
//! throughput against N ([`throughput`]), latency percentiles on an HDR axis ([`latency`]),
//! each worker's share of the requests ([`share`]) and, per load series, latency against
//! utilization with the queueing models and the knee ([`knee`]). This file holds what they share: the
//! canvas width, fonts, colours and the legend beside each plot; [`axis`] has the axes whose
//! ticks the charts choose themselves.

pub mod axis;
pub mod knee;
pub mod latency;
pub mod share;
pub mod throughput;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::results::Results;

/// Width of every chart in SVG pixels; the page scales it down on narrow screens.
pub const WIDTH: u32 = 1000;
/// Width of the legend strip right of a plot: legends sit beside the data, never on it.
pub const LEGEND_WIDTH: u32 = 250;
/// Height of one legend entry.
const LEGEND_ROW: i32 = 22;
/// Legend labels longer than this are cut with an ellipsis so they stay inside the strip.
const LEGEND_CHARS: usize = 30;

/// Text colour: near-black, softer on the eye than pure black.
pub const INK: RGBColor = RGBColor(0x2b, 0x2b, 0x2b);
/// Colour of the text and marks that say "nothing here".
pub const MUTED: RGBColor = RGBColor(0x8a, 0x8a, 0x8a);
/// Grid lines.
pub const GRID: RGBColor = RGBColor(0xe6, 0xe6, 0xe6);

/// One colour per series, in order (Okabe–Ito: tells apart for colour-blind readers too).
const SERIES: [RGBColor; 6] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x56, 0xb4, 0xe9),
];

/// The drawing surface every chart draws on.
pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The charts as `<svg>` text.
#[derive(Debug, Clone)]
pub struct Charts {
    /// Throughput against N for every scale series; `None` when the sweep only compares
    /// choices, which have no N to draw against.
    pub throughput: Option<String>,
    /// Latency percentiles per point.
    pub latency: String,
    /// Per-worker share of requests per point.
    pub share: String,
    /// Latency against utilization, one chart per load series: (its title, the SVG).
    pub load: Vec<(String, String)>,
}

/// Draws the charts of `results`: throughput when a series is a scale, latency and share
/// always, and a latency-against-load chart per load series.
pub fn draw(results: &Results) -> anyhow::Result<Charts> {
    let scales: Vec<_> = results.series.iter().filter(|s| !s.is_choice() && !s.is_load()).cloned().collect();
    let throughput = match scales.is_empty() {
        true => None,
        false => Some(
            throughput::draw(&Results { series: scales, ..results.clone() })
                .context("drawing the throughput chart")?,
        ),
    };
    Ok(Charts {
        throughput,
        latency: latency::draw(results).context("drawing the latency chart")?,
        share: share::draw(results).context("drawing the per-worker share chart")?,
        load: results
            .series
            .iter()
            .filter(|s| s.is_load())
            .map(|s| {
                Ok((s.title(), knee::draw(s).with_context(|| format!("drawing the {} chart", s.title()))?))
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Runs `paint` on a white `WIDTH`×`height` SVG canvas and returns the SVG text.
pub fn canvas(height: u32, paint: impl FnOnce(&Area) -> anyhow::Result<()>) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        paint(&root)?;
        root.present()?;
    }
    Ok(svg)
}

/// The sans-serif font at `px` CSS pixels (plotters' SVG backend writes size / 1.24).
pub fn font(px: f64) -> TextStyle<'static> {
    ("sans-serif", px * 1.24).into_font().color(&INK)
}

/// `font(px)` anchored at its left edge and vertical centre.
pub fn font_left(px: f64) -> TextStyle<'static> {
    font(px).pos(Pos::new(HPos::Left, VPos::Center))
}

/// The colour of series `i`.
pub fn series_colour(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// `c` mixed with white: `t` = 0 keeps it, `t` = 1 is white.
pub fn tint(c: RGBColor, t: f64) -> RGBColor {
    let mix = |v: u8| (v as f64 + (255.0 - v as f64) * t.clamp(0.0, 1.0)).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Swatch {
    /// A filled circle on a vertical bar: measured medians and their spread.
    Marker,
    /// A solid line.
    Line,
    /// A solid line through circles.
    LineMarker,
    /// A dashed line.
    Dashed,
    /// No mark: a note in the legend.
    None,
}

/// One row of a legend.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    /// What the entry names.
    pub label: String,
    /// Its colour.
    pub colour: RGBColor,
    /// How it is drawn.
    pub swatch: Swatch,
}

impl LegendEntry {
    /// An entry of `label` drawn as `swatch` in `colour`.
    pub fn new(label: impl Into<String>, colour: RGBColor, swatch: Swatch) -> Self {
        LegendEntry { label: label.into(), colour, swatch }
    }
}

/// The height a legend of `entries` rows needs, starting `top` pixels down.
pub fn legend_height(entries: usize, top: i32) -> u32 {
    (top + entries as i32 * LEGEND_ROW + LEGEND_ROW) as u32
}

/// Draws `entries` one under another in `area` (the strip right of a plot), from `top` down.
pub fn draw_legend(area: &Area, entries: &[LegendEntry], top: i32) -> anyhow::Result<()> {
    let x = 12;
    for (i, e) in entries.iter().enumerate() {
        let y = top + i as i32 * LEGEND_ROW;
        let c = e.colour;
        match e.swatch {
            Swatch::Marker => {
                area.draw(&PathElement::new(vec![(x + 12, y - 8), (x + 12, y + 8)], c.stroke_width(2)))?;
                area.draw(&Circle::new((x + 12, y), 5, c.filled()))?;
            }
            Swatch::Line => area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)))?,
            Swatch::LineMarker => {
                area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2)))?;
                area.draw(&Circle::new((x + 12, y), 4, c.filled()))?;
            }
            Swatch::Dashed => {
                for (a, b) in [(0, 6), (9, 15), (18, 24)] {
                    area.draw(&PathElement::new(vec![(x + a, y), (x + b, y)], c.stroke_width(2)))?;
                }
            }
            Swatch::None => {}
        }
        let colour = if e.swatch == Swatch::None { MUTED } else { INK };
        area.draw(&Text::new(shorten(&e.label, LEGEND_CHARS), (x + 34, y), font_left(13.0).color(&colour)))?;
    }
    Ok(())
}

/// `s` cut to `max` characters, the last one an ellipsis when it was longer.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A rough width in pixels of `text` at `px` pixels of sans-serif: enough to decide whether a
/// label fits, with some room to spare.
pub fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.6
}

/// The label of a point in the latency and share charts: `workers=2`, and in a grid
/// `shared load=0.5` or `workers=2 load=0.5`.
pub fn point_label(series: &crate::results::Series, point: &crate::results::Point) -> String {
    let vary = &series.vary;
    let own = match &point.label {
        Some(choice) => format!("{vary}={choice}"),
        None => format!("{vary}={}", super::format::n(point.value)),
    };
    // A choice needs no field name to be recognised (`reuseport load=0.2`); a number does.
    match series.at.as_deref().map(|at| at.split_once('=').map_or(at, |(_, v)| v)) {
        Some(value) if value.parse::<f64>().is_err() => format!("{value} {own}"),
        Some(_) => format!("{} {own}", series.at.as_deref().unwrap_or_default()),
        None => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_short_and_cuts_long() {
        assert_eq!(shorten("workers", 10), "workers");
        assert_eq!(shorten("abcdefghijkl", 5), "abcd…");
    }

    #[test]
    fn tint_mixes_towards_white() {
        assert_eq!(tint(RGBColor(0, 100, 255), 0.0), RGBColor(0, 100, 255));
        assert_eq!(tint(RGBColor(0, 100, 255), 1.0), RGBColor(255, 255, 255));
        assert_eq!(tint(RGBColor(0, 0, 0), 0.5), RGBColor(128, 128, 128));
    }

    #[test]
    fn canvas_returns_an_svg() {
        let svg = canvas(100, |_| Ok(())).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("viewBox=\"0 0 1000 100\""), "{svg}");
    }
}
