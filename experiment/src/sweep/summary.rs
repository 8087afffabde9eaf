//! What a sweep prints when it ends, and `results.csv`: one row per point, the measured
//! throughput beside the theory, the latency and the errors, and each series' fit.
//!
//! A scale series (workers, replicas, cpus) is about throughput, so its table sets req/s
//! against the theory. A choice series (algorithm, distribution) is about latency at the same
//! load, so its table names each choice and shows the tail, per path when the load is a mix.

use std::fmt::Write;

use crate::results::{Results, Series};
use crate::usl;

/// The terminal summary: one table per series, then its fit.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    for s in &results.series {
        let _ = writeln!(
            out,
            "\nvary {} ({} cores, {} load: {})",
            s.vary, results.cores, results.runner, results.load.target
        );
        if s.is_choice() {
            choice_rows(&mut out, s);
        } else {
            scale_rows(&mut out, s);
        }
        match &s.fit {
            Some(f) => {
                let peak = f.peak_n.map_or_else(|| "none (kappa = 0)".to_string(), |n| format!("{n:.1}"));
                let _ = writeln!(
                    out,
                    "  USL: sigma {:.4}  kappa {:.5}  lambda {:.1} req/s  N* {peak}  R^2 {:.3}  ({})",
                    f.sigma,
                    f.kappa,
                    f.lambda,
                    f.r_squared,
                    usl::regime(f)
                );
            }
            None => {
                let _ =
                    writeln!(out, "  USL: no fit: {}", s.fit_note.as_deref().unwrap_or("not enough points"));
            }
        }
    }
    out
}

/// workers/replicas/cpus: value, N, throughput against the theory, latency, errors.
fn scale_rows(out: &mut String, s: &Series) {
    let _ = writeln!(
        out,
        "  {:>6} {:>5} {:>9} {:>9} {:>6} {:>9} {:>9} {:>7}",
        "value", "N", "req/s", "theory", "ratio", "p50 ms", "p99 ms", "errors"
    );
    for p in &s.points {
        let _ = writeln!(
            out,
            "  {:>6} {:>5} {:>9.1} {:>9.1} {:>6.2} {:>9.2} {:>9.2} {:>7}",
            p.value, p.n, p.rps, p.theory_rps, p.ratio, p.latency_ms.p50, p.latency_ms.p99, p.errors
        );
    }
}

/// algorithm/distribution: the choice by name, throughput, the tail over all requests and,
/// for a mix, the p99 of each path.
fn choice_rows(out: &mut String, s: &Series) {
    let paths: Vec<&String> =
        s.points.first().map(|p| p.latency_by_path_ms.keys().collect()).unwrap_or_default();
    let mut head = format!(
        "  {:<12} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "value", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "stdev ms"
    );
    for path in &paths {
        let _ = write!(head, " {:>12}", format!("{path} p99"));
    }
    let _ = writeln!(out, "{head} {:>7}", "errors");
    for p in &s.points {
        let l = &p.latency_ms;
        let name = p.label.clone().unwrap_or_else(|| p.value.to_string());
        let mut row = format!(
            "  {name:<12} {:>8.1} {:>8.2} {:>8.2} {:>9.2} {:>9.2}",
            p.rps, l.p50, l.p99, l.p999, l.stdev
        );
        for path in &paths {
            match p.latency_by_path_ms.get(*path) {
                Some(pp) => write!(row, " {:>12.2}", pp.p99),
                None => write!(row, " {:>12}", "-"),
            }
            .ok();
        }
        let _ = writeln!(out, "{row} {:>7}", p.errors);
    }
}

/// `results.csv`: a header, then one row per point.
pub fn csv(results: &Results) -> String {
    let mut out = String::from(
        "series,value,label,n,rps,theory_rps,ratio,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,stdev_ms,errors,rounds\n",
    );
    for s in &results.series {
        for p in &s.points {
            let l = &p.latency_ms;
            let _ = writeln!(
                out,
                "{},{},{},{},{:.3},{:.3},{:.4},{},{},{},{},{},{:.3},{},{}",
                s.vary,
                p.value,
                p.label.as_deref().unwrap_or(""),
                p.n,
                p.rps,
                p.theory_rps,
                p.ratio,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                l.stdev,
                p.errors,
                p.rounds.len()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{fixture, point};
    use crate::results::Percentiles;

    #[test]
    fn a_scale_series_shows_throughput_against_theory() {
        let text = table(&fixture());
        assert!(text.contains("vary workers (4 cores, native load: /op2)"), "{text}");
        assert!(text.contains("  value     N     req/s    theory  ratio"), "{text}");
        // workers=2: 1810 measured, 2000 in theory.
        assert!(text.contains("     2     2    1810.0    2000.0   0.91"), "{text}");
        assert!(text.contains("USL: sigma 0.0800"), "{text}");
    }

    #[test]
    fn a_choice_series_names_each_choice_and_shows_each_path() {
        let mut r = fixture();
        let mut points = Vec::new();
        for (i, (name, op1_p99)) in [("round_robin", 40.5), ("least_conn", 12.25)].into_iter().enumerate() {
            let mut p = point(i as f64 + 1.0, 4.0, 700.0, 4);
            p.label = Some(name.to_string());
            p.latency_by_path_ms.insert("/op1".into(), Percentiles { p99: op1_p99, ..Default::default() });
            p.latency_by_path_ms.insert("/op2".into(), Percentiles { p99: 60.0, ..Default::default() });
            points.push(p);
        }
        r.series = vec![Series {
            vary: "algorithm".into(),
            points,
            fit: None,
            fit_note: Some("algorithm is a choice, not a scale: the USL does not apply".into()),
            at: None,
            knee: None,
        }];
        let text = table(&r);
        assert!(text.contains("/op1 p99     /op2 p99  errors"), "{text}");
        let rr = text.lines().find(|l| l.trim_start().starts_with("round_robin")).expect(&text);
        assert!(rr.contains("   700.0") && rr.contains("       40.50        60.00"), "{rr}");
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("least_conn") && l.contains("12.25")),
            "{text}"
        );
        assert!(!text.contains("theory"), "a choice has no theory column: {text}");

        let csv = csv(&r);
        assert!(csv.lines().nth(1).unwrap().starts_with("algorithm,1,round_robin,4,700.000,"), "{csv}");
    }
}
