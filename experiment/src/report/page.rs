//! The page's data: what `templates/report.html` shows, with every number already formatted,
//! built from a [`Results`] and its drawn charts.

use std::collections::BTreeSet;

use askama::Template;

use scalelab_loadgen::Spread;

use super::charts::Charts;
use super::format;
use super::text::{explain, FitText};
use crate::results::{LoadSpec, Point, Results, Series};

/// The whole page, rendered by askama from `templates/report.html`.
#[derive(Template)]
#[template(path = "report.html")]
pub(super) struct Page {
    /// `<title>` and `<h1>`.
    title: String,
    /// How every point was loaded, in a line.
    load: String,
    /// Cores, runner and base topology, in a line.
    machine: String,
    /// When the sweep started.
    started: String,
    /// The scalelab version that measured it.
    version: String,
    /// The charts, as SVG.
    charts: Charts,
    /// One paragraph per series: what its fit means, or how its choices compare.
    texts: Vec<FitText>,
    /// One row per scale series: its fit's parameters (choices have none).
    fits: Vec<FitRow>,
    /// One table per series: its points.
    series: Vec<SeriesTable>,
}

/// A series' fit parameters, formatted (`-` where there is none).
struct FitRow {
    series: String,
    sigma: String,
    kappa: String,
    lambda: String,
    peak_n: String,
    peak_rps: String,
    r_squared: String,
    points: String,
}

/// A series' points, formatted.
struct SeriesTable {
    /// The varied field, heading the first column.
    vary: String,
    /// A choice series (algorithm, distribution): no N, theory or ratio, but the tail and,
    /// for a mix, each path's p99.
    choice: bool,
    /// The paths of a mix, one p99 column each (choice tables only).
    paths: Vec<String>,
    rows: Vec<PointRow>,
}

/// One measured point, formatted.
struct PointRow {
    value: String,
    n: String,
    rps: String,
    theory: String,
    ratio: String,
    p50: String,
    p99: String,
    p999: String,
    stdev: String,
    /// p99 of each of the table's `paths`, in order.
    path_p99: Vec<String>,
    errors: String,
    jain: String,
}

impl Page {
    /// The page for `results`, around already drawn `charts`.
    pub(super) fn new(results: &Results, charts: Charts) -> Self {
        Page {
            title: format!("scalelab sweep: {}", results.load.target),
            load: load_line(&results.load),
            machine: format!(
                "{} cores, {} runner, base topology {}",
                results.cores, results.runner, results.base
            ),
            started: results.started.clone(),
            version: results.scalelab_version.clone(),
            charts,
            texts: results.series.iter().map(explain).collect(),
            fits: results.series.iter().filter(|s| !s.is_choice()).map(fit_row).collect(),
            series: results.series.iter().map(series_table).collect(),
        }
    }
}

/// `/op2, 64 connections (closed loop), 3 rounds of 10 s after 2 s of warm-up`.
fn load_line(load: &LoadSpec) -> String {
    let loop_kind = match load.rate {
        Some(rate) => {
            format!("open loop at {} req/s over {} connections", format::rps(rate), load.connections)
        }
        None => format!("{} connections (closed loop)", load.connections),
    };
    format!(
        "{}, {loop_kind}, {} rounds of {} s after {} s of warm-up",
        load.target,
        load.rounds,
        format::n(load.duration_s),
        format::n(load.warmup_s)
    )
}

fn fit_row(series: &Series) -> FitRow {
    let dash = || "-".to_string();
    match &series.fit {
        Some(f) => FitRow {
            series: series.vary.clone(),
            sigma: format::sig3(f.sigma),
            kappa: format::sig3(f.kappa),
            lambda: format::rps(f.lambda),
            peak_n: f.peak_n.map(format::sig3).unwrap_or_else(|| "none".into()),
            peak_rps: f.peak_rps.map(format::rps).unwrap_or_else(dash),
            r_squared: format!("{:.3}", f.r_squared),
            points: format!("{} rounds", f.points),
        },
        None => FitRow {
            series: series.vary.clone(),
            sigma: dash(),
            kappa: dash(),
            lambda: dash(),
            peak_n: dash(),
            peak_rps: dash(),
            r_squared: dash(),
            points: "no fit".into(),
        },
    }
}

fn series_table(series: &Series) -> SeriesTable {
    let choice = series.is_choice();
    let paths: Vec<String> = match choice {
        true => {
            let all: BTreeSet<&String> =
                series.points.iter().flat_map(|p| p.latency_by_path_ms.keys()).collect();
            all.into_iter().cloned().collect()
        }
        false => Vec::new(),
    };
    let rows = series.points.iter().map(|p| point_row(p, &paths)).collect();
    SeriesTable { vary: series.vary.clone(), choice, paths, rows }
}

fn point_row(p: &Point, paths: &[String]) -> PointRow {
    PointRow {
        value: p.label.clone().unwrap_or_else(|| format::n(p.value)),
        n: format::n(p.n),
        rps: format::rps(p.rps),
        theory: format::rps(p.theory_rps),
        ratio: if p.ratio.is_finite() { format!("{:.2}", p.ratio) } else { "-".into() },
        p50: format::ms(p.latency_ms.p50),
        p99: format::ms(p.latency_ms.p99),
        p999: format::ms(p.latency_ms.p999),
        stdev: format::ms(p.latency_ms.stdev),
        path_p99: paths
            .iter()
            .map(|path| {
                p.latency_by_path_ms.get(path).map(|l| format::ms(l.p99)).unwrap_or_else(|| "-".into())
            })
            .collect(),
        errors: p.errors.to_string(),
        jain: Spread::of(p.by_worker.values())
            .map(|s| format!("{:.2}", s.jain))
            .unwrap_or_else(|| "-".into()),
    }
}
