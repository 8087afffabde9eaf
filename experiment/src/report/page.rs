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
    /// When some point was noisy: which, and what that is worth (empty otherwise).
    noise: String,
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
    /// The series' name (`load at distribution=shared`).
    title: String,
    /// The varied field, heading the first column.
    vary: String,
    /// A choice series (algorithm, distribution): no N, theory or ratio, but the tail and,
    /// for a mix, each path's p99.
    choice: bool,
    /// A load series: the offered rate, ρ, every percentile against the models'.
    load: bool,
    /// A load series' knee, in words (empty otherwise).
    knee: String,
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
    /// Load series only: the offered rate, ρ, p90, and the models' p50 and p99.
    rate: String,
    rho: String,
    p90: String,
    pooled_p50: String,
    pooled_p99: String,
    partitioned_p50: String,
    partitioned_p99: String,
    /// `nothing completed ...` when no request of the point finished (its numbers are then
    /// not shown).
    nothing: String,
    /// Cores used outside the lab while it was measured (`-` when unknown).
    outside: String,
    /// Whether that made it noisy.
    noisy: bool,
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
            fits: results.series.iter().filter(|s| !s.is_choice() && !s.is_load()).map(fit_row).collect(),
            series: results.series.iter().map(series_table).collect(),
            noise: noise(results),
        }
    }
}

/// The page's warning about noisy points: how many, which, and what they are worth.
fn noise(results: &Results) -> String {
    let named: Vec<String> =
        results.series.iter().flat_map(|s| s.noisy_points().into_iter().map(move |p| p.name(s))).collect();
    if named.is_empty() {
        return String::new();
    }
    let all: usize = results.series.iter().map(|s| s.points.len()).sum();
    format!(
        "{} of {all} points were noisy ({}): {}. They are marked in the tables below (outside CPU), and \
         a fit or comparison over them says so.",
        named.len(),
        named.join(", "),
        crate::sweep::outside::WORTH
    )
}

/// `/op2, 64 connections (closed loop), 3 rounds of 10 s after 2 s of warm-up`.
fn load_line(load: &LoadSpec) -> String {
    let arrivals = load.arrivals.as_deref().map(|a| format!(", {a} arrivals")).unwrap_or_default();
    let loop_kind = match load.rate {
        Some(rate) => {
            format!(
                "open loop at {} req/s over {} connections{arrivals}",
                format::rps(rate),
                load.connections
            )
        }
        None if !arrivals.is_empty() => {
            format!("open loop at each load point's rate over {} connections{arrivals}", load.connections)
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
    SeriesTable {
        title: series.title(),
        vary: series.vary.clone(),
        choice,
        load: series.is_load(),
        knee: series.knee.as_ref().map(crate::sweep::summary::knee_line).unwrap_or_default(),
        paths,
        rows,
    }
}

fn point_row(p: &Point, paths: &[String]) -> PointRow {
    let o = p.offered.as_ref();
    let model = |m: Option<f64>| m.map(format::ms).unwrap_or_else(|| "-".into());
    PointRow {
        rate: o.map(|o| format::rps(o.rate_rps)).unwrap_or_else(|| "-".into()),
        rho: o.and_then(|o| o.utilization).map(|u| format!("{u:.2}")).unwrap_or_else(|| "-".into()),
        p90: format::ms(p.latency_ms.p90),
        pooled_p50: model(o.and_then(|o| o.pooled).map(|m| m.p50)),
        pooled_p99: model(o.and_then(|o| o.pooled).map(|m| m.p99)),
        partitioned_p50: model(o.and_then(|o| o.partitioned).map(|m| m.p50)),
        partitioned_p99: model(o.and_then(|o| o.partitioned).map(|m| m.p99)),
        nothing: if p.nothing_completed() {
            crate::sweep::summary::nothing_completed(p)
        } else {
            String::new()
        },
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
        outside: p.outside_cpu_cores.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
        noisy: p.noisy,
        jain: Spread::of(p.by_worker.values())
            .map(|s| format!("{:.2}", s.jain))
            .unwrap_or_else(|| "-".into()),
    }
}
