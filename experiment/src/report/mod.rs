//! `report.html`: one self-contained page of charts, tables and words for a sweep's
//! `results.json`. It opens from file:// with no network: the charts are inline SVG drawn by
//! plotters, the page is an askama template with inline CSS, and there is no script.
//! `scalelab report DIR` redraws it from `results.json` without measuring again.
//!
//! # Layout
//! - `charts`: the three charts (throughput, latency, per-worker share), each an `<svg>`.
//! - `text`: what a fit means, in words.
//! - `format`: how numbers are written.
//! - `page`: the template's data; the template itself is `templates/report.html`.

pub(crate) mod charts;
pub(crate) mod format;
mod page;
mod text;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use askama::Template;

use crate::results::Results;

/// The file a sweep writes and the report reads, inside the sweep's directory.
pub const RESULTS_FILE: &str = "results.json";
/// The file the report writes, beside `results.json`.
pub const REPORT_FILE: &str = "report.html";

/// `scalelab report DIR`: redraw `DIR/report.html` from `DIR/results.json`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// directory holding results.json
    pub dir: PathBuf,
}

/// Runs `scalelab report`: writes the report and prints where.
pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let path = write_report(&args.dir)?;
    println!("report written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The whole HTML page for `results`.
pub fn render(results: &Results) -> anyhow::Result<String> {
    let charts = charts::draw(results)?;
    page::Page::new(results, charts).render().context("filling templates/report.html")
}

/// Reads `dir/results.json`, writes `dir/report.html` and returns its path.
pub fn write_report(dir: &Path) -> anyhow::Result<PathBuf> {
    let input = dir.join(RESULTS_FILE);
    let results = Results::read(&input)?;
    write(dir, &results).with_context(|| format!("drawing the report of {}", input.display()))
}

/// Writes `results`' page to `dir/report.html` and returns its path.
pub fn write(dir: &Path, results: &Results) -> anyhow::Result<PathBuf> {
    let output = dir.join(REPORT_FILE);
    write_atomically(&output, &render(results)?)?;
    Ok(output)
}

/// Writes `contents` to `path` under a temporary name beside it, then renames it: a reader
/// (a browser, an interrupted sweep's next run) never sees half a file.
pub fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    fs::write(&partial, contents).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::results::{LoadSpec, Percentiles, Point, Round, Series, UslFit};

    /// A fixture point at scale `n`: `rps` median with rounds ±3%, latencies growing with the
    /// load, `workers` even shares.
    pub(crate) fn point(value: f64, n: f64, rps: f64, workers: usize) -> Point {
        let latency =
            Percentiles { p50: 2.0 * n, p90: 3.5 * n, p99: 6.0 * n, p999: 11.0 * n, max: 20.0 * n, stdev: n };
        let by_worker: BTreeMap<String, u64> = (0..workers)
            .map(|w| (format!("node-1/{}", w + 1), (rps * 30.0) as u64 / workers as u64))
            .collect();
        let round = |rps: f64| Round {
            rps,
            errors: 0,
            latency_ms: latency,
            latency_by_path_ms: Default::default(),
            by_worker: by_worker.clone(),
            completed: None,
            in_flight: 0,
        };
        Point {
            value,
            label: None,
            n,
            rps,
            theory_rps: 1000.0 * n.min(4.0),
            ratio: rps / (1000.0 * n.min(4.0)),
            rounds: vec![round(rps * 0.97), round(rps), round(rps * 1.03)],
            latency_ms: latency,
            latency_by_path_ms: Default::default(),
            errors: 0,
            by_node: BTreeMap::from([("node-1".to_string(), by_worker.values().sum())]),
            by_worker,
            cpu_used: BTreeMap::from([("node-1".to_string(), n.min(4.0))]),
            topology: format!("nodes: [{{name: node-1, workers: {n}}}]\n"),
            offered: None,
            outside_cpu_cores: Some(0.02),
            noisy: false,
        }
    }

    /// A fixture sweep: workers 1, 2, 4 (contention-bound fit) and replicas 1, 2, 4
    /// (coherency-bound fit), on a 4-core machine.
    pub(crate) fn fixture() -> Results {
        let workers_fit = UslFit {
            sigma: 0.08,
            kappa: 0.002,
            lambda: 980.0,
            peak_n: Some(21.5),
            peak_rps: Some(8125.0),
            r_squared: 0.991,
            points: 9,
        };
        let replicas_fit = UslFit {
            sigma: 0.01,
            kappa: 0.06,
            lambda: 990.0,
            peak_n: Some(4.06),
            peak_rps: Some(2310.0),
            r_squared: 0.97,
            points: 9,
        };
        Results {
            scalelab_version: "0.1.0".into(),
            started: "2025-01-01T00:00:00Z".into(),
            cores: 4,
            runner: "native".into(),
            machine: None,
            base: "topology.yaml".into(),
            load: LoadSpec {
                target: "/op2".into(),
                connections: 64,
                rate: None,
                duration_s: 10.0,
                warmup_s: 2.0,
                rounds: 3,
                arrivals: None,
            },
            series: vec![
                Series {
                    vary: "workers".into(),
                    points: vec![
                        point(1.0, 1.0, 975.0, 1),
                        point(2.0, 2.0, 1810.0, 2),
                        point(4.0, 4.0, 3120.0, 4),
                    ],
                    fit: Some(workers_fit),
                    fit_note: None,
                    at: None,
                    knee: None,
                },
                Series {
                    vary: "replicas".into(),
                    points: vec![
                        point(1.0, 1.0, 990.0, 1),
                        point(2.0, 2.0, 1650.0, 2),
                        point(4.0, 4.0, 2290.0, 4),
                    ],
                    fit: Some(replicas_fit),
                    fit_note: None,
                    at: None,
                    knee: None,
                },
            ],
        }
    }

    /// A fixture load series on 2 servers of 5 ms (400 req/s): one point per load, the
    /// measured percentiles a little above the partitioned model's, rounds ±5%, the models'
    /// predictions and the knee worked out as a sweep does.
    pub(crate) fn load_series(at: Option<&str>, loads: &[f64]) -> Series {
        use crate::queueing::{Model, Queue};
        use crate::results::Offered;
        let q = Queue { servers: 2, service_ms: 5.0 };
        let points: Vec<Point> = loads
            .iter()
            .map(|&x| {
                let pooled = q.predict(Model::Pooled, x);
                let partitioned = q.predict(Model::Partitioned, x);
                let base = partitioned.unwrap_or(crate::queueing::Prediction {
                    mean: 900.0,
                    p50: 800.0,
                    p90: 1500.0,
                    p99: 2400.0,
                    p999: 3000.0,
                });
                let latency = Percentiles {
                    p50: base.p50 * 1.2 + 0.5,
                    p90: base.p90 * 1.2 + 0.5,
                    p99: base.p99 * 1.2 + 0.5,
                    p999: base.p999 * 1.3 + 0.5,
                    max: base.p999 * 2.0,
                    stdev: base.mean / 2.0,
                };
                let mut p = point(x, x, 400.0 * x.min(1.0), 4);
                p.latency_ms = latency;
                for (r, f) in p.rounds.iter_mut().zip([0.95, 1.0, 1.05]) {
                    r.latency_ms = Percentiles {
                        p50: latency.p50 * f,
                        p90: latency.p90 * f,
                        p99: latency.p99 * f,
                        p999: latency.p999 * f,
                        ..latency
                    };
                }
                p.theory_rps = 400.0;
                p.offered = Some(Offered {
                    rate_rps: 400.0 * x,
                    capacity_rps: Some(400.0),
                    utilization: Some(x),
                    servers: Some(2),
                    service_ms: Some(5.0),
                    pooled,
                    partitioned,
                    model_note: None,
                });
                p
            })
            .collect();
        let knee = crate::sweep::load::knee(
            &points,
            Some((50.0, q.knee(Model::Pooled), q.knee(Model::Partitioned))),
        );
        Series {
            vary: "load".into(),
            at: at.map(str::to_string),
            points,
            fit: None,
            fit_note: Some("load is the offered load, not a scale: see the knee".into()),
            knee,
        }
    }

    #[test]
    fn the_page_has_every_chart_table_and_the_fit_text() {
        let html = render(&fixture()).unwrap();
        for id in ["chart-throughput", "chart-latency", "chart-share"] {
            let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
            assert!(
                html[at..].trim_start_matches(|c| c != '>').get(1..).unwrap().starts_with("<svg"),
                "#{id}"
            );
        }
        assert_eq!(html.matches("<svg").count(), 3);
        // The points tables: workers=2 measured 1,810 req/s against 2,000 in theory.
        assert!(html.contains("<td>2</td><td>2</td><td>1,810</td><td>2,000</td>"), "no workers=2 row");
        assert!(html.contains("<td>4</td><td>4</td><td>2,290</td><td>4,000</td>"), "no replicas=4 row");
        // The fit table and its text.
        assert!(html.contains("<td>workers</td><td>0.0800</td><td>0.00200</td><td>980</td>"), "fit row");
        assert!(html.contains("contention-bound"));
        assert!(html.contains("coherency-bound"));
        assert!(html.contains("N* ≈ 21.5"));
        assert!(html.contains("beyond the largest N measured (N = 1–4)"));
        assert!(!html.contains("<script"), "the page needs no script");
        for fetch in ["src=", "href=", "<link", "@import", "url("] {
            assert!(!html.contains(fetch), "the page must load nothing, found {fetch}");
        }
    }

    #[test]
    fn awkward_series_still_render() {
        let mut r = fixture();
        let lone = point(1.0, 1.0, 0.0, 0);
        let mut zero = lone.clone();
        zero.latency_ms = Percentiles::default();
        r.series.push(Series {
            vary: "cpus".into(),
            points: vec![zero],
            fit: None,
            fit_note: Some("one point".into()),
            at: None,
            knee: None,
        });
        let mut many = point(32.0, 32.0, 9000.0, 32);
        many.by_worker.insert("node-1/1".into(), 500_000);
        r.series.push(Series {
            vary: "workers".into(),
            points: vec![many],
            fit: None,
            fit_note: None,
            at: None,
            knee: None,
        });
        r.series.push(Series {
            vary: "replicas".into(),
            points: vec![],
            fit: None,
            fit_note: None,
            at: None,
            knee: None,
        });
        let html = render(&r).unwrap();
        assert!(html.contains("no per-worker counts"));
        assert!(html.contains("One point."));
        assert_eq!(html.matches("<svg").count(), 3);
    }

    /// A fixture series comparing algorithms under a mix: named points, each path's latency.
    fn choices() -> Series {
        let choice = |i: usize, label: &str, p99: f64| {
            let mut p = point(i as f64, 2.0, 600.0, 2);
            p.label = Some(label.into());
            p.latency_ms.p99 = p99;
            p.latency_by_path_ms = BTreeMap::from([
                ("/op1".to_string(), Percentiles { p99: p99 / 2.0, ..p.latency_ms }),
                ("/op2".to_string(), Percentiles { p99: p99 * 2.0, ..p.latency_ms }),
            ]);
            p
        };
        Series {
            vary: "algorithm".into(),
            points: vec![choice(1, "round_robin", 40.0), choice(2, "least_conn", 28.0)],
            fit: None,
            fit_note: Some("algorithm is a choice, not a scale: the USL does not apply".into()),
            at: None,
            knee: None,
        }
    }

    #[test]
    fn a_sweep_of_choices_has_no_throughput_chart_and_tables_each_path() {
        let mut r = fixture();
        r.series = vec![choices()];
        let html = render(&r).unwrap();
        assert!(!html.contains("chart-throughput"), "no N, so no throughput-against-N chart");
        assert_eq!(html.matches("<svg").count(), 2, "latency and share are drawn");
        assert!(!html.contains("table-fit"), "choices have no fit to tabulate");
        assert!(html.contains("What the comparison shows"));
        assert!(html.contains("shortest tail: least_conn"), "the text compares the choices");
        assert!(html.contains("<th>/op1 p99, ms</th><th>/op2 p99, ms</th>"), "a p99 column per path");
        // least_conn: 600 req/s, p50 4, p99 28, p99.9 22 (the fixture's), stdev 2, /op1 14, /op2 56.
        assert!(
            html.contains("<tr><td>least_conn</td><td>600</td><td>4.00</td><td>28.0</td><td>22.0</td>"),
            "no least_conn row"
        );
        assert!(html.contains("<td>2.00</td><td>14.0</td><td>56.0</td><td>0</td>"), "no per-path p99");

        // Beside scale series, the throughput chart and the fit table keep only the scales.
        let mut both = fixture();
        both.series.push(choices());
        let html = render(&both).unwrap();
        assert!(html.contains("id=\"chart-throughput\""));
        let fits = &html[html.find("table-fit").unwrap()..];
        let fits = &fits[..fits.find("</table>").unwrap()];
        assert!(fits.contains("<td>workers</td>") && !fits.contains("<td>algorithm</td>"), "{fits}");
    }

    #[test]
    fn a_load_sweep_has_a_latency_against_load_chart_per_series_and_its_tables() {
        let mut r = fixture();
        r.series = vec![
            load_series(Some("distribution=shared"), &[0.2, 0.5, 0.8, 0.9, 0.95]),
            load_series(Some("distribution=reuseport"), &[0.2, 0.5, 0.8, 0.9, 0.95, 1.1]),
        ];
        let html = render(&r).unwrap();
        for id in ["chart-load-1", "chart-load-2", "chart-latency", "chart-share"] {
            assert!(html.contains(&format!("id=\"{id}\"><svg")), "no #{id}");
        }
        assert!(!html.contains("chart-throughput") && !html.contains("table-fit"), "a load is not a scale");
        assert!(html.contains("Latency against offered load: load at distribution=reuseport"));
        let chart = &html[html.find("chart-load-1").unwrap()..];
        let chart = &chart[..chart.find("</figure>").unwrap()];
        for words in
            ["pooled, M/D/2", "partitioned, 2 × M/D/1", "10 × S = 50.0 ms", "knee, measured", "utilization ρ"]
        {
            assert!(chart.contains(words), "the chart lacks {words:?}");
        }
        // 4 percentiles × (a pooled line, a partitioned line, the error bars' paths).
        assert!(chart.matches("<polyline").count() >= 8, "model lines");
        assert!(chart.matches("<circle").count() >= 20, "a marker per percentile per point");
        // The table: ρ 0.90 offered 360 req/s, with both models' p99.
        assert!(html.contains("<tr><td>0.9</td><td>360</td><td>0.90</td>"), "no ρ = 0.9 row");
        let knee = html.find("knee (p99").map(|i| &html[i..i + 60]);
        assert!(knee.is_some_and(|k| k.contains("50.0 ms = 10 x S")), "the knee under the table: {knee:?}");
        assert!(html.contains("What the lab followed"));
    }

    #[test]
    fn noisy_points_are_marked_in_the_table_the_text_and_a_warning() {
        let quiet = render(&fixture()).unwrap();
        assert!(!quiet.contains("id=\"noise\"") && !quiet.contains("class=\"noisy\""));
        assert!(quiet.contains("<td>0.02</td></tr>"), "every row shows the outside CPU");
        let mut r = fixture();
        let p = &mut r.series[0].points[2];
        p.outside_cpu_cores = Some(0.93);
        p.noisy = true;
        let html = render(&r).unwrap();
        let warning = &html[html.find("id=\"noise\"").expect("a warning")..];
        let warning = &warning[..warning.find("</p>").unwrap()];
        assert!(warning.contains("1 of 6 points were noisy (workers=4)"), "{warning}");
        assert!(warning.contains("re-run them on an idle machine"), "{warning}");
        assert!(html.contains("<td>3,120</td><td>4,000</td>"), "the workers=4 row");
        assert!(html.contains("<td class=\"noisy\">0.93 noisy</td></tr>"), "its outside CPU is marked");
        assert!(html.contains("contention-bound, fitted over 1 noisy point(s)"), "the fit's verdict says so");
    }

    #[test]
    fn write_report_round_trips_results_json() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(RESULTS_FILE), serde_json::to_string_pretty(&fixture()).unwrap()).unwrap();
        let path = write_report(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(REPORT_FILE));
        assert_eq!(fs::read_to_string(&path).unwrap(), render(&fixture()).unwrap());
        assert!(!dir.path().join("report.html.partial").exists());
    }

    #[test]
    fn missing_or_bad_results_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(RESULTS_FILE);
        let missing = format!("{:#}", write_report(dir.path()).unwrap_err());
        assert!(missing.contains(&file.display().to_string()), "{missing}");

        fs::write(&file, "{\"series\": [").unwrap();
        let bad = format!("{:#}", write_report(dir.path()).unwrap_err());
        assert!(bad.contains(&format!("parsing {}", file.display())), "{bad}");
    }
}
