//! What a series means, in words. For a scale (workers, replicas, cpus): whether contention
//! (σ) or coherency (κ) bounds its fit, where N* falls against the N that was measured, and how
//! far to trust the fit. For a choice (algorithm, distribution): which choice had the shortest
//! tail, how far apart the choices were, and whether throughput differed at all. For a load
//! series: which queueing model the measured p99 followed, where the knee fell against the
//! models' knees, and why, from how the node spreads its connections ([`load`]). Whatever the
//! kind, a series with noisy points (measured while something outside the lab used the CPU)
//! names them and says what they are worth, and a fit over them says so in its verdict.

mod load;

use crate::results::{Point, Series, UslFit};
use crate::usl::{self, PeakPosition, Regime};

use super::format;

/// Below this R² the text warns that the model fits the points poorly.
const POOR_R_SQUARED: f64 = 0.9;

/// One series' fit, explained.
#[derive(Debug, Clone, PartialEq)]
pub struct FitText {
    /// The varied field (`workers`, `replicas`, `cpus`).
    pub series: String,
    /// `contention-bound`, `coherency-bound`, `linear`, or `no fit`.
    pub verdict: String,
    /// The sentences after the verdict.
    pub explanation: String,
}

/// Explains the fit of `series`, or why it has none; a choice series is compared instead.
/// Noisy points are named after it.
pub fn explain(series: &Series) -> FitText {
    let mut text = explain_measured(series);
    let noisy = series.noisy_points();
    if !noisy.is_empty() {
        if series.fit.is_some() && !series.is_choice() && !series.is_load() {
            text.verdict = format!("{}, fitted over {} noisy point(s)", text.verdict, noisy.len());
        }
        let named: Vec<String> = noisy
            .iter()
            .map(|p| {
                format!(
                    "{} ({} cores)",
                    p.name(series),
                    format::sig3(p.outside_cpu_cores.unwrap_or_default())
                )
            })
            .collect();
        text.explanation.push_str(&format!(
            " Noisy points, {}: {}.",
            named.join(", "),
            crate::sweep::outside::WORTH
        ));
    }
    text
}

/// [`explain`] without the noise.
fn explain_measured(series: &Series) -> FitText {
    let series_name = series.title();
    if series.is_load() {
        return load::explain(series);
    }
    if series.is_choice() {
        return compare(series);
    }
    let Some(fit) = &series.fit else {
        let why = series
            .fit_note
            .as_deref()
            .map(sentence)
            .unwrap_or_else(|| "The sweep recorded no reason.".into());
        return FitText { series: series_name, verdict: "no fit".into(), explanation: why };
    };
    let (lo, hi) = measured_range(series);
    let mut sentences = vec![bound(fit), peak(fit, lo, hi)];
    if fit.r_squared < POOR_R_SQUARED {
        sentences.push(format!(
            "R² = {} is low: the curve misses much of the spread, so read σ and κ with care.",
            format::sig3(fit.r_squared)
        ));
    }
    if let Some(note) = &series.fit_note {
        sentences.push(format!("Note: {}", sentence(note)));
    }
    FitText { series: series_name, verdict: verdict(fit).into(), explanation: sentences.join(" ") }
}

/// The one-word reading of σ against κ ([`usl::regime`] decides).
fn verdict(fit: &UslFit) -> &'static str {
    match usl::regime(fit) {
        Regime::Linear => "linear",
        Regime::ContentionBound => "contention-bound",
        Regime::CoherencyBound => "coherency-bound",
    }
}

/// The sentence that says which term dominates and what that does to scaling.
fn bound(fit: &UslFit) -> String {
    let (s, k) = (format::sig3(fit.sigma), format::sig3(fit.kappa));
    match verdict(fit) {
        "linear" => format!(
            "σ = {s}, κ = {k}: every unit added contributed about its full λ; nothing measurable held \
             scaling back."
        ),
        "contention-bound" => format!(
            "σ = {s} > κ = {k}: the serial share of the work (waiting for something only one \
             unit can hold at a time) costs more than crosstalk between units, so throughput \
             flattens out more than it turns down."
        ),
        "coherency-bound" => format!(
            "κ = {k} > σ = {s}: the cost of keeping units in step grows with N², so past N* \
             each unit added lowers throughput."
        ),
        _ => unreachable!("verdict() has three answers"),
    }
}

/// The sentence that places N* (or the ceiling, when there is no peak) against the measured N.
fn peak(fit: &UslFit, lo: f64, hi: f64) -> String {
    let range = if lo == hi {
        format!("N = {}", format::n(lo))
    } else {
        format!("N = {}–{}", format::n(lo), format::n(hi))
    };
    let Some(peak_n) = fit.peak_n else {
        return match fit.peak_rps {
            Some(ceiling) => format!(
                "κ = 0, so there is no peak: throughput levels off towards λ/σ ≈ {} req/s \
                 (measured {range}).",
                format::rps(ceiling)
            ),
            None => format!("No peak and no ceiling within the model (measured {range})."),
        };
    };
    let at = fit
        .peak_rps
        .map(|x| format!(", where the model predicts {} req/s", format::rps(x)))
        .unwrap_or_default();
    let n_star = format!("N* ≈ {}{at}", format::sig3(peak_n));
    match usl::peak_position(fit, lo, hi) {
        PeakPosition::BelowMeasured { .. } => format!(
            "{n_star}, below the smallest N measured ({range}): by the fit, adding units past \
             N* only lowers throughput."
        ),
        PeakPosition::WithinMeasured { .. } => format!(
            "{n_star}, inside the measured range ({range}): the sweep saw the peak, and scaling \
             past it bought less throughput, not more."
        ),
        PeakPosition::BeyondMeasured { .. } | PeakPosition::NoPeak { .. } => format!(
            "{n_star}, beyond the largest N measured ({range}): throughput was still rising \
             where it was measured, and the peak is an extrapolation."
        ),
    }
}

/// Below this spread of throughput (lowest against highest choice) the choices are said to
/// have carried the same load: the open loop offered it, and every one kept up.
const SAME_THROUGHPUT: f64 = 0.03;

/// Compares the choices of a choice series: the shortest and longest p99 overall and per
/// path, the throughput spread, and any errors.
fn compare(series: &Series) -> FitText {
    let name = |p: &Point| p.label.clone().unwrap_or_else(|| format::n(p.value));
    let measured: Vec<&Point> = series.points.iter().filter(|p| p.latency_ms.p99 > 0.0).collect();
    let (Some(best), Some(worst)) = (
        measured.iter().min_by(|a, b| a.latency_ms.p99.total_cmp(&b.latency_ms.p99)),
        measured.iter().max_by(|a, b| a.latency_ms.p99.total_cmp(&b.latency_ms.p99)),
    ) else {
        return FitText {
            series: series.title(),
            verdict: "nothing measured".into(),
            explanation: "No choice of this series answered a request.".into(),
        };
    };
    let mut sentences = vec![format!(
        "p99 ran from {} ms ({}) to {} ms ({}){}.",
        format::ms(best.latency_ms.p99),
        name(best),
        format::ms(worst.latency_ms.p99),
        name(worst),
        times_apart(worst.latency_ms.p99, best.latency_ms.p99),
    )];
    let paths: Vec<&String> = best.latency_by_path_ms.keys().collect();
    if paths.len() > 1 {
        for path in paths {
            let p99 = |p: &Point| p.latency_by_path_ms.get(path).map(|l| l.p99).filter(|v| *v > 0.0);
            let lo = measured
                .iter()
                .filter_map(|p| p99(p).map(|v| (v, name(p))))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let hi = measured
                .iter()
                .filter_map(|p| p99(p).map(|v| (v, name(p))))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let (Some((lo, lo_name)), Some((hi, hi_name))) = (lo, hi) {
                sentences.push(format!(
                    "{path} alone: {} ms ({lo_name}) to {} ms ({hi_name}).",
                    format::ms(lo),
                    format::ms(hi)
                ));
            }
        }
    }
    let rps = series.points.iter().map(|p| p.rps);
    let (lo, hi) = rps.fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let span = match format::rps(lo) == format::rps(hi) {
        true => format::rps(hi),
        false => format!("{}–{}", format::rps(lo), format::rps(hi)),
    };
    sentences.push(if hi > 0.0 && (hi - lo) / hi <= SAME_THROUGHPUT {
        format!(
            "Every choice carried the same load ({span} req/s): they differ in how long \
             requests waited, not in how many were served."
        )
    } else {
        format!(
            "Throughput differed too: {span} req/s. A choice that served less left requests \
             queued or failed."
        )
    });
    let errors: u64 = series.points.iter().map(|p| p.errors).sum();
    if errors > 0 {
        let failing: Vec<String> = series
            .points
            .iter()
            .filter(|p| p.errors > 0)
            .map(|p| format!("{} {}", name(p), p.errors))
            .collect();
        sentences.push(format!("Errors: {}.", failing.join(", ")));
    }
    FitText {
        series: series.title(),
        verdict: format!("shortest tail: {}", name(best)),
        explanation: sentences.join(" "),
    }
}

/// `, 97.9× apart` when `hi` is noticeably above `lo`, nothing otherwise.
fn times_apart(hi: f64, lo: f64) -> String {
    match lo > 0.0 && hi / lo >= 1.1 {
        true => format!(", {}× apart", format::sig3(hi / lo)),
        false => String::new(),
    }
}

/// `note` as a sentence: a capital first letter and a full stop.
fn sentence(note: &str) -> String {
    let note = note.trim().trim_end_matches('.');
    let mut chars = note.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// The smallest and largest N of the series' points; (0, 0) for a series with none.
pub fn measured_range(series: &Series) -> (f64, f64) {
    let ns = series.points.iter().map(|p| p.n).filter(|n| n.is_finite());
    let (lo, hi) = ns.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), n| (lo.min(n), hi.max(n)));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Percentiles;

    fn fit(sigma: f64, kappa: f64, peak_n: Option<f64>) -> UslFit {
        UslFit { sigma, kappa, lambda: 1000.0, peak_n, peak_rps: Some(5000.0), r_squared: 0.98, points: 9 }
    }

    /// A series with points at N = 1, 2, 4 and the given fit.
    fn series(fit: Option<UslFit>) -> Series {
        let point = |n: f64| Point {
            value: n,
            label: None,
            n,
            rps: 1000.0 * n,
            theory_rps: 1000.0 * n,
            ratio: 1.0,
            rounds: vec![],
            latency_ms: Percentiles::default(),
            latency_by_path_ms: Default::default(),
            errors: 0,
            by_node: Default::default(),
            by_worker: Default::default(),
            cpu_used: Default::default(),
            topology: String::new(),
            offered: None,
            outside_cpu_cores: None,
            noisy: false,
        };
        Series {
            vary: "workers".into(),
            points: vec![point(1.0), point(2.0), point(4.0)],
            fit,
            fit_note: None,
            at: None,
            knee: None,
        }
    }

    #[test]
    fn sigma_above_kappa_is_contention_bound() {
        let t = explain(&series(Some(fit(0.05, 0.001, Some(30.8)))));
        assert_eq!(t.verdict, "contention-bound");
        assert!(t.explanation.contains("beyond the largest N measured (N = 1–4)"), "{}", t.explanation);
    }

    #[test]
    fn kappa_above_sigma_is_coherency_bound_and_places_the_peak() {
        let t = explain(&series(Some(fit(0.01, 0.05, Some(3.1)))));
        assert_eq!(t.verdict, "coherency-bound");
        assert!(t.explanation.contains("N* ≈ 3.10"), "{}", t.explanation);
        assert!(t.explanation.contains("inside the measured range"), "{}", t.explanation);
        let below = explain(&series(Some(fit(0.01, 0.9, Some(0.8)))));
        assert!(below.explanation.contains("below the smallest N"), "{}", below.explanation);
    }

    #[test]
    fn no_peak_levels_off() {
        let t = explain(&series(Some(fit(0.1, 0.0, None))));
        assert!(t.explanation.contains("levels off towards λ/σ ≈ 5,000 req/s"), "{}", t.explanation);
    }

    #[test]
    fn poor_fit_and_missing_fit_are_said() {
        let mut poor = fit(0.1, 0.01, Some(9.5));
        poor.r_squared = 0.5;
        assert!(explain(&series(Some(poor))).explanation.contains("R² = 0.500 is low"));
        let mut none = series(None);
        none.fit_note = Some("too few points to fit 3 parameters.".into());
        let t = explain(&none);
        assert_eq!(t.verdict, "no fit");
        assert_eq!(t.explanation, "Too few points to fit 3 parameters.");
    }

    #[test]
    fn a_fit_over_noisy_points_says_so_in_its_verdict() {
        let mut s = series(Some(fit(0.05, 0.001, Some(30.8))));
        s.points[2].outside_cpu_cores = Some(0.731);
        s.points[2].noisy = true;
        let t = explain(&s);
        assert_eq!(t.verdict, "contention-bound, fitted over 1 noisy point(s)");
        assert!(
            t.explanation.ends_with(
                "Noisy points, workers=4 (0.731 cores): something outside the lab used more than a tenth \
                 of a core while they were measured, and took CPU the lab would otherwise have had: \
                 their throughput may be lower and their latency tail longer than the lab's own, so \
                 re-run them on an idle machine before drawing a conclusion from them."
            ),
            "{}",
            t.explanation
        );
        // A quiet series says nothing of noise.
        assert!(!explain(&series(Some(fit(0.05, 0.001, Some(30.8))))).explanation.contains("Noisy"));
        // A choice has no fit: its comparison names the noisy point all the same.
        s.vary = "algorithm".into();
        s.points[2].label = Some("p2c".into());
        s.points.iter_mut().for_each(|p| p.latency_ms.p99 = 10.0);
        let t = explain(&s);
        assert!(
            t.verdict.starts_with("shortest tail")
                && t.explanation.contains("Noisy points, p2c (0.731 cores)")
        );
    }

    #[test]
    fn choices_are_compared_by_their_tail() {
        let mut s = series(None);
        s.vary = "algorithm".into();
        for (p, (label, p99, op1, rps)) in s.points.iter_mut().zip([
            ("round_robin", 2642.0, 2245.0, 540.0),
            ("least_conn", 70.7, 22.5, 600.0),
            ("peak_ewma", 27.0, 17.5, 599.0),
        ]) {
            p.label = Some(label.into());
            p.rps = rps;
            p.latency_ms.p99 = p99;
            for (path, v) in [("/op1", op1), ("/op2", p99 * 1.5)] {
                p.latency_by_path_ms.insert(path.into(), Percentiles { p99: v, ..Percentiles::default() });
            }
        }
        s.points[0].errors = 3;
        let t = explain(&s);
        assert_eq!(t.verdict, "shortest tail: peak_ewma");
        for expected in [
            "p99 ran from 27.0 ms (peak_ewma) to 2,642 ms (round_robin), 97.9× apart.",
            "/op1 alone: 17.5 ms (peak_ewma) to 2,245 ms (round_robin).",
            "Throughput differed too: 540–600 req/s.",
            "Errors: round_robin 3.",
        ] {
            assert!(t.explanation.contains(expected), "{expected:?} not in {}", t.explanation);
        }
        for p in &mut s.points {
            p.rps = 600.0;
        }
        assert!(explain(&s).explanation.contains("Every choice carried the same load (600 req/s)"));
    }
}
