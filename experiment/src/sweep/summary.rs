//! What a sweep prints when it ends, and `results.csv`: one row per point, the measured
//! throughput beside the theory, the latency and the errors, and each series' fit.
//!
//! A scale series (workers, replicas, cpus) is about throughput, so its table sets req/s
//! against the theory. A choice series (algorithm, distribution) is about latency at the same
//! load, so its table names each choice and shows the tail, per path when the load is a mix.
//! A load series (load, rate) sets each percentile against the offered load and the models'
//! p99, and ends with the knee. A point where no request finished says so instead of showing
//! zeros. Every row ends with the CPU used outside the lab while the point was measured, marked
//! `noisy` past a tenth of a core, and a series with noisy points says what they are worth.

use std::fmt::Write;

use super::outside;
use crate::results::{Knee, Point, Results, Series};
use crate::usl;

/// The terminal summary: one table per series, then its fit.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    for s in &results.series {
        let _ = writeln!(
            out,
            "\nvary {} ({} cores, {} load: {})",
            s.title(),
            results.cores,
            results.runner,
            results.load.target
        );
        if s.is_load() {
            load_rows(&mut out, s);
            if let Some(noise) = noise_line(s) {
                let _ = writeln!(out, "  {noise}");
            }
            if let Some(k) = &s.knee {
                let _ = writeln!(out, "  {}", knee_line(k));
            }
            continue;
        }
        if s.is_choice() {
            choice_rows(&mut out, s);
        } else {
            scale_rows(&mut out, s);
        }
        if let Some(noise) = noise_line(s) {
            let _ = writeln!(out, "  {noise}");
        }
        match &s.fit {
            Some(f) => {
                let peak = f.peak_n.map_or_else(|| "none (kappa = 0)".to_string(), |n| format!("{n:.1}"));
                let noisy = s.noisy_points().len();
                let caveat = match noisy {
                    0 => String::new(),
                    _ => format!("; fitted over {noisy} noisy point(s) of {}", s.points.len()),
                };
                let _ = writeln!(
                    out,
                    "  USL: sigma {:.4}  kappa {:.5}  lambda {:.1} req/s  N* {peak}  R^2 {:.3}  ({}){caveat}",
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
    let _ = writeln!(
        out,
        "\noutside: CPU cores used outside the lab while a point was measured (noisy above {})",
        outside::NOISY_CORES
    );
    out
}

/// `noisy: workers=2 (0.85 cores), workers=3 (0.41): something outside ...`, when a point of
/// `s` is noisy.
pub fn noise_line(s: &Series) -> Option<String> {
    let noisy = s.noisy_points();
    if noisy.is_empty() {
        return None;
    }
    let named: Vec<String> = noisy
        .iter()
        .map(|p| format!("{} ({:.2} cores)", p.name(s), p.outside_cpu_cores.unwrap_or_default()))
        .collect();
    Some(format!("noisy: {}: {}.", named.join(", "), outside::WORTH))
}

/// The last column of a row: cores used outside the lab, `noisy` past the bound.
fn outside_cell(p: &Point) -> String {
    let cores = p.outside_cpu_cores.map_or("-".to_string(), |c| format!("{c:.2}"));
    format!("{cores:>7}{}", if p.noisy { " noisy" } else { "" })
}

/// workers/replicas/cpus: value, N, throughput against the theory, latency, errors.
fn scale_rows(out: &mut String, s: &Series) {
    let _ = writeln!(
        out,
        "  {:>6} {:>5} {:>9} {:>9} {:>6} {:>9} {:>9} {:>7} {:>7}",
        "value", "N", "req/s", "theory", "ratio", "p50 ms", "p99 ms", "errors", "outside"
    );
    for p in &s.points {
        if p.nothing_completed() {
            let _ = writeln!(out, "  {:>6} {:>5} {}", p.value, p.n, nothing_completed(p));
            continue;
        }
        let _ = writeln!(
            out,
            "  {:>6} {:>5} {:>9.1} {:>9.1} {:>6.2} {:>9.2} {:>9.2} {:>7} {}",
            p.value,
            p.n,
            p.rps,
            p.theory_rps,
            p.ratio,
            p.latency_ms.p50,
            p.latency_ms.p99,
            p.errors,
            outside_cell(p)
        );
    }
}

/// What a row says instead of zeros when no request of the point finished.
pub fn nothing_completed(p: &Point) -> String {
    let in_flight: u64 = p.rounds.iter().map(|r| r.in_flight).sum();
    format!("nothing completed: no request finished in any round ({in_flight} still in flight at the ends)")
}

/// load/rate: the offered rate and utilization, the measured percentiles, the models' p99.
fn load_rows(out: &mut String, s: &Series) {
    let _ = writeln!(
        out,
        "  {:>6} {:>8} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>7} {:>7}",
        "value",
        "rate",
        "rho",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "pooled p99",
        "part. p99",
        "errors",
        "outside"
    );
    for p in &s.points {
        let o = p.offered.as_ref();
        let rate = o.map_or("-".into(), |o| format!("{:.1}", o.rate_rps));
        let rho = o.and_then(|o| o.utilization).map_or("-".into(), |u| format!("{u:.2}"));
        if p.nothing_completed() {
            let _ = writeln!(out, "  {:>6} {rate:>8} {rho:>5} {}", p.value, nothing_completed(p));
            continue;
        }
        let model = |m: Option<f64>| m.map_or("-".to_string(), |v| format!("{v:.2}"));
        let l = &p.latency_ms;
        let _ = writeln!(
            out,
            "  {:>6} {rate:>8} {rho:>5} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>10} {:>10} {:>7} {}",
            p.value,
            p.rps,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            model(o.and_then(|o| o.pooled).map(|m| m.p99)),
            model(o.and_then(|o| o.partitioned).map(|m| m.p99)),
            p.errors,
            outside_cell(p)
        );
    }
}

/// `knee (p99 > 50 ms = 10 x S): measured rho 0.87, pooled 0.93, partitioned 0.80`.
pub fn knee_line(k: &Knee) -> String {
    let rho = |r: Option<f64>| r.map_or("none below 1".to_string(), |r| format!("{r:.2}"));
    let measured = match (k.measured, &k.measured_note) {
        (Some(r), _) => format!("{r:.2}"),
        (None, Some(why)) => format!("none ({why})"),
        (None, None) => "none".into(),
    };
    format!(
        "knee (p99 > {:.1} ms = 10 x S): measured rho {measured}, pooled (M/D/c) {}, partitioned (c x M/D/1) {}",
        k.threshold_ms,
        rho(k.pooled),
        rho(k.partitioned)
    )
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
    let _ = writeln!(out, "{head} {:>7} {:>7}", "errors", "outside");
    for p in &s.points {
        let l = &p.latency_ms;
        let name = p.label.clone().unwrap_or_else(|| p.value.to_string());
        if p.nothing_completed() {
            let _ = writeln!(out, "  {name:<12} {}", nothing_completed(p));
            continue;
        }
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
        let _ = writeln!(out, "{row} {:>7} {}", p.errors, outside_cell(p));
    }
}

/// `results.csv`: a header, then one row per point.
pub fn csv(results: &Results) -> String {
    let mut out = String::from(
        "series,value,label,n,rps,theory_rps,ratio,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,stdev_ms,errors,rounds,\
         at,offered_rps,utilization,pooled_p99_ms,partitioned_p99_ms,completed,outside_cpu_cores,noisy\n",
    );
    for s in &results.series {
        for p in &s.points {
            let l = &p.latency_ms;
            let o = p.offered.as_ref();
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
            let _ = writeln!(
                out,
                "{},{},{},{},{:.3},{:.3},{:.4},{},{},{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{}",
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
                p.rounds.len(),
                s.at.as_deref().unwrap_or(""),
                opt(o.map(|o| o.rate_rps)),
                opt(o.and_then(|o| o.utilization)),
                opt(o.and_then(|o| o.pooled).map(|m| m.p99)),
                opt(o.and_then(|o| o.partitioned).map(|m| m.p99)),
                !p.nothing_completed(),
                opt(p.outside_cpu_cores),
                p.noisy,
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

    #[test]
    fn a_load_series_sets_percentiles_against_the_models_and_names_the_knee() {
        let mut r = fixture();
        r.series =
            vec![crate::report::tests::load_series(Some("distribution=reuseport"), &[0.2, 0.6, 0.9, 1.1])];
        let text = table(&r);
        assert!(text.contains("vary load at distribution=reuseport"), "{text}");
        assert!(text.contains("pooled p99  part. p99"), "{text}");
        let row = text.lines().find(|l| l.trim_start().starts_with("0.9 ")).expect(&text);
        assert!(row.contains("   360.0  0.90"), "{row}");
        // Above capacity the models have nothing to say.
        let over = text.lines().find(|l| l.trim_start().starts_with("1.1 ")).expect(&text);
        assert!(over.trim_end().ends_with("-          -       0    0.02"), "{over}");
        assert!(text.contains("knee (p99 > 50.0 ms = 10 x S): measured rho 0."), "{text}");
        assert!(!text.contains("USL"), "a load series has no fit line: {text}");
        let csv = csv(&r);
        let line = csv.lines().find(|l| l.starts_with("load,0.9,")).expect(&csv);
        assert!(line.contains(",distribution=reuseport,360.0000,0.9000,"), "{line}");
    }

    #[test]
    fn a_point_where_nothing_completed_says_so() {
        let mut r = fixture();
        let p = &mut r.series[0].points[1];
        p.rps = 0.0;
        p.latency_ms = Percentiles::default();
        for round in &mut p.rounds {
            round.completed = Some(0);
            round.in_flight = 16;
        }
        let text = table(&r);
        let row = text.lines().find(|l| l.contains("nothing completed")).expect(&text);
        assert!(row.contains("48 still in flight"), "{row}");
        assert!(!row.contains("0.00"), "no zeros posing as measurements: {row}");
    }

    /// The regression: a point measured while a busy loop ran beside the lab looked like any
    /// other, and the fit over it read the interference as contention.
    #[test]
    fn noisy_points_are_marked_named_and_the_fit_says_it_was_fitted_over_them() {
        let mut r = fixture();
        let p = &mut r.series[0].points[1];
        p.outside_cpu_cores = Some(0.85);
        p.noisy = true;
        let text = table(&r);
        let row = text.lines().find(|l| l.starts_with("       2     2    1810.0")).expect(&text);
        assert!(row.ends_with("      0    0.85 noisy"), "{row}");
        let quiet = text.lines().find(|l| l.starts_with("       1     1     975.0")).expect(&text);
        assert!(quiet.ends_with("      0    0.02"), "{quiet}");
        assert!(
            text.contains(
                "  noisy: workers=2 (0.85 cores): something outside the lab used more than a tenth of a core"
            ),
            "{text}"
        );
        assert!(text.contains("fitted over 1 noisy point(s) of 3"), "{text}");
        let replicas = &text[text.find("vary replicas").unwrap()..];
        assert!(!replicas.contains("noisy:") && !replicas.contains("fitted over"), "{replicas}");
        assert!(text.contains(
            "outside: CPU cores used outside the lab while a point was measured (noisy above 0.1)"
        ));
        let csv = csv(&r);
        assert!(csv.lines().next().unwrap().ends_with(",completed,outside_cpu_cores,noisy"), "{csv}");
        assert!(csv.lines().nth(2).unwrap().ends_with(",true,0.8500,true"), "{csv}");
        assert!(csv.lines().nth(1).unwrap().ends_with(",true,0.0200,false"), "{csv}");
    }
}
