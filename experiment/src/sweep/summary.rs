//! What a sweep prints when it ends, and `results.csv`: one row per point, the measured
//! throughput beside the theory, the latency and the errors, and each series' fit.

use std::fmt::Write;

use crate::results::Results;
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

/// `results.csv`: a header, then one row per point.
pub fn csv(results: &Results) -> String {
    let mut out = String::from(
        "series,value,n,rps,theory_rps,ratio,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,errors,rounds\n",
    );
    for s in &results.series {
        for p in &s.points {
            let l = &p.latency_ms;
            let _ = writeln!(
                out,
                "{},{},{},{:.3},{:.3},{:.4},{},{},{},{},{},{},{}",
                s.vary,
                p.value,
                p.n,
                p.rps,
                p.theory_rps,
                p.ratio,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                p.errors,
                p.rounds.len()
            );
        }
    }
    out
}
