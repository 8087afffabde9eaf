//! The Universal Scalability Law fit: X(N) = λN / (1 + σ(N−1) + κN(N−1)) fitted to measured
//! (N, X) pairs by non-linear least squares (Levenberg-Marquardt), within the bounds the R `usl`
//! package uses: 0 ≤ σ ≤ 1, 0 ≤ κ ≤ 1, λ > 0. Also what a reader wants to know about a fit:
//! which [`Regime`] limits it and where its peak lies against the measurements
//! ([`PeakPosition`]).

use std::fmt;

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{storage::Owned, DMatrix, DVector, Dyn};

use crate::results::UslFit;

/// Measurements a fit needs: three coefficients and a few degrees of freedom left to judge them.
pub const MIN_POINTS: usize = 6;

/// Distinct values of N a fit needs: two only pin a line (σ and κ cannot be told apart).
pub const MIN_DISTINCT_N: usize = 3;

/// Where the optimiser starts σ and κ, as the R `usl` package does (`usl.solve.nlxb`).
const SIGMA_START: f64 = 0.01;
const KAPPA_START: f64 = 0.0001;

/// A fit counts as linear when at [`LINEAR_REFERENCE_N`] units contention and coherency
/// together cost less than this fraction of linear throughput.
const LINEAR_MAX_OVERHEAD: f64 = 0.01;
/// The scale at which [`LINEAR_MAX_OVERHEAD`] is judged: well past the few workers a sweep on
/// one machine reaches, so a "linear" verdict still holds a little beyond the data.
const LINEAR_REFERENCE_N: f64 = 100.0;

/// A data set [`fit`] refuses, naming the measurement at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Fewer than [`MIN_POINTS`] measurements.
    #[error("the USL needs at least {needed} measurements (N, X) to fit σ, κ and λ; found {found}")]
    TooFewPoints {
        /// How many were given.
        found: usize,
        /// [`MIN_POINTS`].
        needed: usize,
    },
    /// Fewer than [`MIN_DISTINCT_N`] different values of N.
    #[error(
        "the USL needs measurements at {needed} or more different values of N to tell \
         contention from coherency; found {found}"
    )]
    TooFewDistinctN {
        /// How many different values of N were given.
        found: usize,
        /// [`MIN_DISTINCT_N`].
        needed: usize,
    },
    /// N is not a finite number greater than 0.
    #[error("points[{index}]: concurrency N = {} must be a finite number greater than 0", compact(*.value))]
    BadConcurrency {
        /// Index into the slice given to [`fit`].
        index: usize,
        /// The value found.
        value: f64,
    },
    /// X is negative or not finite.
    #[error("points[{index}]: throughput X = {} must be a finite number, 0 or more", compact(*.value))]
    BadThroughput {
        /// Index into the slice given to [`fit`].
        index: usize,
        /// The value found.
        value: f64,
    },
    /// Every X is 0: there is no throughput whose scaling could be fitted.
    #[error("every throughput X is 0: there is no scaling to fit")]
    NoThroughput,
    /// No start of the optimiser ended on finite coefficients within the bounds.
    #[error("the least-squares fit found no finite σ, κ, λ within 0 ≤ σ ≤ 1, 0 ≤ κ ≤ 1, λ > 0")]
    NoSolution,
}

/// Fits the USL to `points`, each (N, X): concurrency (or units of scale) and throughput.
///
/// The result minimises Σ(X − X(N))² subject to 0 ≤ σ ≤ 1, 0 ≤ κ ≤ 1, λ > 0, as the R `usl`
/// package does; on the published data sets it reproduces that package's coefficients (see
/// the tests).
pub fn fit(points: &[(f64, f64)]) -> Result<UslFit, FitError> {
    validate(points)?;
    let lambda_start = lambda_start(points);
    let negligible_sse = 1e-12 * points.iter().map(|&(_, x)| x * x).sum::<f64>();
    let mut best: Option<Candidate> = None;
    for face in FACES {
        let Some(candidate) = solve_face(points, face, lambda_start) else { continue };
        // Faces come simplest first; a face with more free coefficients replaces the best so
        // far only when it fits measurably better, so exactly linear data gets σ = κ = 0 rather
        // than 1e-17 noise.
        let better = match &best {
            None => true,
            Some(b) => candidate.sse < b.sse - negligible_sse,
        };
        if better {
            best = Some(candidate);
        }
    }
    let best = best.ok_or(FitError::NoSolution)?;
    Ok(summarise(points, best.sigma, best.kappa, best.lambda))
}

/// What limits a fitted system's scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// σ and κ are both negligible: throughput grows in proportion to N.
    Linear,
    /// σ ≥ κ: queueing for a shared resource limits scaling more than crosstalk does.
    ContentionBound,
    /// κ > σ: keeping units consistent with each other limits scaling more than queueing does.
    CoherencyBound,
}

/// The [`Regime`] of `fit`: linear when at N = 100 contention and coherency together would
/// cost under 1% of linear throughput, else whichever of σ and κ is larger.
pub fn regime(fit: &UslFit) -> Regime {
    let n = LINEAR_REFERENCE_N;
    let overhead = fit.sigma * (n - 1.0) + fit.kappa * n * (n - 1.0);
    if overhead < LINEAR_MAX_OVERHEAD {
        Regime::Linear
    } else if fit.kappa > fit.sigma {
        Regime::CoherencyBound
    } else {
        Regime::ContentionBound
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Regime::Linear => {
                "linear: contention and coherency are negligible (under 1% lost at N = 100), so \
                 throughput grows in proportion to N"
            }
            Regime::ContentionBound => {
                "contention-bound (σ ≥ κ): waiting for a shared resource (the serial fraction σ) \
                 limits scaling more than crosstalk between units (κ)"
            }
            Regime::CoherencyBound => {
                "coherency-bound (κ > σ): crosstalk between units, keeping each other consistent \
                 (κ), limits scaling more than waiting for a shared resource (σ)"
            }
        })
    }
}

/// Where a fit's peak N* lies against the range of N that was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PeakPosition {
    /// κ = 0: throughput never falls. It levels off at `asymptote` = λ/σ, or grows without
    /// limit when σ = 0 too (`None`).
    NoPeak {
        /// λ/σ, req/s.
        asymptote: Option<f64>,
    },
    /// N* is below the smallest N measured: every measurement is past the peak.
    BelowMeasured {
        /// N*.
        peak_n: f64,
        /// The smallest N measured.
        min_n: f64,
    },
    /// N* is within the measured range: the measurements show the peak.
    WithinMeasured {
        /// N*.
        peak_n: f64,
        /// The smallest N measured.
        min_n: f64,
        /// The largest N measured.
        max_n: f64,
    },
    /// N* is beyond the largest N measured: the peak is an extrapolation.
    BeyondMeasured {
        /// N*.
        peak_n: f64,
        /// The largest N measured.
        max_n: f64,
    },
}

/// Where `fit`'s peak lies against the measured scales `min_n..=max_n`.
pub fn peak_position(fit: &UslFit, min_n: f64, max_n: f64) -> PeakPosition {
    match fit.peak_n {
        None => PeakPosition::NoPeak { asymptote: fit.peak_rps },
        Some(peak_n) if peak_n < min_n => PeakPosition::BelowMeasured { peak_n, min_n },
        Some(peak_n) if peak_n > max_n => PeakPosition::BeyondMeasured { peak_n, max_n },
        Some(peak_n) => PeakPosition::WithinMeasured { peak_n, min_n, max_n },
    }
}

impl fmt::Display for PeakPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PeakPosition::NoPeak { asymptote: Some(x) } => {
                write!(f, "no peak (κ = 0): throughput levels off towards λ/σ = {}", four_digits(x))
            }
            PeakPosition::NoPeak { asymptote: None } => {
                write!(f, "no peak (σ = κ = 0): throughput grows without limit")
            }
            PeakPosition::BelowMeasured { peak_n, min_n } => write!(
                f,
                "N* = {} is below the smallest N measured ({}): every measurement is past the peak",
                peak(peak_n),
                compact(min_n)
            ),
            PeakPosition::WithinMeasured { peak_n, min_n, max_n } => write!(
                f,
                "N* = {} is within the measured N ({} to {}): the measurements show the peak",
                peak(peak_n),
                compact(min_n),
                compact(max_n)
            ),
            PeakPosition::BeyondMeasured { peak_n, max_n } => write!(
                f,
                "N* = {} is beyond the largest N measured ({}): the peak is an extrapolation, {}× \
                 the largest N",
                peak(peak_n),
                compact(max_n),
                match peak_n / max_n {
                    r if r < 1e9 => format!("{r:.1}"),
                    r => format!("{r:.1e}"),
                }
            ),
        }
    }
}

/// `x` to four significant digits; in scientific notation outside [1e-4, 1e9), so that a
/// degenerate fit's 1e300 is not printed as 301 digits.
fn four_digits(x: f64) -> String {
    let magnitude = if x == 0.0 || !x.is_finite() { 0 } else { x.abs().log10().floor() as i32 };
    if !(-4..9).contains(&magnitude) {
        return format!("{x:.3e}");
    }
    format!("{x:.*}", (3 - magnitude).max(0) as usize)
}

/// `x` as written for a person: the shortest form that reads back as `x` (`216`, `0.5`), or
/// scientific notation when that is longer than 12 characters (`1e-300`, not 300 digits).
pub fn compact(x: f64) -> String {
    let plain = x.to_string();
    if plain.len() <= 12 {
        plain
    } else {
        format!("{x:e}")
    }
}

/// A peak N: two decimals, scientific notation when huge.
fn peak(n: f64) -> String {
    if n.abs() < 1e9 {
        format!("{n:.2}")
    } else {
        format!("{n:.3e}")
    }
}

/// Checks what [`fit`] needs of its input, in the order a reader would fix it.
fn validate(points: &[(f64, f64)]) -> Result<(), FitError> {
    if points.len() < MIN_POINTS {
        return Err(FitError::TooFewPoints { found: points.len(), needed: MIN_POINTS });
    }
    for (index, &(n, x)) in points.iter().enumerate() {
        if !(n.is_finite() && n > 0.0) {
            return Err(FitError::BadConcurrency { index, value: n });
        }
        if !(x.is_finite() && x >= 0.0) {
            return Err(FitError::BadThroughput { index, value: x });
        }
    }
    let mut ns: Vec<f64> = points.iter().map(|&(n, _)| n).collect();
    ns.sort_by(f64::total_cmp);
    ns.dedup();
    if ns.len() < MIN_DISTINCT_N {
        return Err(FitError::TooFewDistinctN { found: ns.len(), needed: MIN_DISTINCT_N });
    }
    if points.iter().all(|&(_, x)| x == 0.0) {
        return Err(FitError::NoThroughput);
    }
    Ok(())
}

/// λ's starting value, as the R `usl` package chooses it: the best throughput per unit seen.
fn lambda_start(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|&(n, x)| x / n).fold(0.0, f64::max)
}

/// σ and κ, each either free or pinned to one of its bounds; λ is always free.
///
/// Levenberg-Marquardt knows no bounds, so the box 0 ≤ σ, κ ≤ 1 is handled by enumerating its
/// faces: fit once with both free, once with each pinned at 0 or 1 and the other free, once
/// with both pinned. A bounded minimum is an unbounded minimum of the face it lies on, so the
/// best fit that lands inside the box, over all nine, is the bounded least-squares fit. A
/// reparametrisation (σ = sin²u, say) would reach a bound only in the limit, never exactly, and
/// so could not report the κ = 0 that R's `usl` reports for data that do not turn down.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Face {
    /// `None` when σ is fitted; `Some(bound)` when it is held there.
    sigma: Option<f64>,
    /// `None` when κ is fitted; `Some(bound)` when it is held there.
    kappa: Option<f64>,
}

/// Every face of the box, fewest free coefficients first (see [`fit`] on ties).
const FACES: [Face; 9] = [
    Face { sigma: Some(0.0), kappa: Some(0.0) },
    Face { sigma: Some(0.0), kappa: Some(1.0) },
    Face { sigma: Some(1.0), kappa: Some(0.0) },
    Face { sigma: Some(1.0), kappa: Some(1.0) },
    Face { sigma: None, kappa: Some(0.0) },
    Face { sigma: None, kappa: Some(1.0) },
    Face { sigma: Some(0.0), kappa: None },
    Face { sigma: Some(1.0), kappa: None },
    Face { sigma: None, kappa: None },
];

/// One face's least-squares fit, if it ends inside the box.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    sigma: f64,
    kappa: f64,
    lambda: f64,
    /// Σ(X − X(N))².
    sse: f64,
}

/// Fits the free coefficients of `face`; `None` when the fit leaves the box or is not finite.
fn solve_face(points: &[(f64, f64)], face: Face, lambda_start: f64) -> Option<Candidate> {
    let mut start = Vec::with_capacity(3);
    if face.sigma.is_none() {
        start.push(SIGMA_START);
    }
    if face.kappa.is_none() {
        start.push(KAPPA_START);
    }
    start.push(lambda_start);
    let problem = UslProblem { points, face, free: DVector::from_vec(start) };
    // Relative tolerances far below the 0.1% the published fits are checked to; the published
    // data sets converge on them in under 50 evaluations.
    let (problem, _report) = LevenbergMarquardt::new().with_ftol(1e-14).with_xtol(1e-14).minimize(problem);
    // The problem holds the last point the optimiser accepted (or, after a numerical failure,
    // tried): judge that point by its own bounds and residuals, not by the termination reason.
    let (sigma, kappa, lambda) = problem.coefficients();
    let inside = (0.0..=1.0).contains(&sigma) && (0.0..=1.0).contains(&kappa) && lambda > 0.0;
    let sse = sum_of_squared_residuals(points, sigma, kappa, lambda);
    (inside && lambda.is_finite() && sse.is_finite()).then_some(Candidate { sigma, kappa, lambda, sse })
}

/// The least-squares problem on one face: residuals X(N) − X and their Jacobian.
struct UslProblem<'a> {
    points: &'a [(f64, f64)],
    face: Face,
    /// The free coefficients, in the order σ (if free), κ (if free), λ.
    free: DVector<f64>,
}

impl UslProblem<'_> {
    /// (σ, κ, λ), taking the pinned ones from the face.
    fn coefficients(&self) -> (f64, f64, f64) {
        let mut free = self.free.iter().copied();
        let sigma = self.face.sigma.unwrap_or_else(|| free.next().unwrap_or(f64::NAN));
        let kappa = self.face.kappa.unwrap_or_else(|| free.next().unwrap_or(f64::NAN));
        let lambda = free.next().unwrap_or(f64::NAN);
        (sigma, kappa, lambda)
    }
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for UslProblem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.free.copy_from(x);
    }

    fn params(&self) -> DVector<f64> {
        self.free.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let (sigma, kappa, lambda) = self.coefficients();
        let r = self.points.iter().map(|&(n, x)| model(sigma, kappa, lambda, n) - x);
        Some(DVector::from_iterator(self.points.len(), r))
    }

    /// With D = 1 + σ(N−1) + κN(N−1): ∂/∂σ = −λN(N−1)/D², ∂/∂κ = −λN²(N−1)/D², ∂/∂λ = N/D.
    fn jacobian(&self) -> Option<DMatrix<f64>> {
        let (sigma, kappa, lambda) = self.coefficients();
        let mut j = DMatrix::zeros(self.points.len(), self.free.len());
        for (row, &(n, _)) in self.points.iter().enumerate() {
            let d = 1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0);
            let mut col = 0;
            if self.face.sigma.is_none() {
                j[(row, col)] = -lambda * n * (n - 1.0) / (d * d);
                col += 1;
            }
            if self.face.kappa.is_none() {
                j[(row, col)] = -lambda * n * n * (n - 1.0) / (d * d);
                col += 1;
            }
            j[(row, col)] = n / d;
        }
        Some(j)
    }
}

/// X(N) = λN / (1 + σ(N−1) + κN(N−1)).
fn model(sigma: f64, kappa: f64, lambda: f64, n: f64) -> f64 {
    lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

fn sum_of_squared_residuals(points: &[(f64, f64)], sigma: f64, kappa: f64, lambda: f64) -> f64 {
    points.iter().map(|&(n, x)| (model(sigma, kappa, lambda, n) - x).powi(2)).sum()
}

/// The [`UslFit`] of the fitted coefficients: peak, R² and point count.
fn summarise(points: &[(f64, f64)], sigma: f64, kappa: f64, lambda: f64) -> UslFit {
    let mut fit =
        UslFit { sigma, kappa, lambda, peak_n: None, peak_rps: None, r_squared: 0.0, points: points.len() };
    if kappa > 0.0 {
        let peak_n = ((1.0 - sigma) / kappa).sqrt();
        fit.peak_n = Some(peak_n);
        // With σ = 1 the peak is at N = 0, where the model is 0/0: report no throughput then.
        fit.peak_rps = Some(fit.throughput(peak_n)).filter(|x| x.is_finite());
    } else if sigma > 0.0 {
        fit.peak_rps = Some(lambda / sigma);
    }
    fit.r_squared = r_squared(points, sum_of_squared_residuals(points, sigma, kappa, lambda));
    fit
}

/// 1 − SS_res/SS_tot. When every X is equal (SS_tot = 0) there is no variation to explain:
/// 1 if the fit reproduces it, else 0, so the value stays a finite number JSON can carry.
fn r_squared(points: &[(f64, f64)], ss_res: f64) -> f64 {
    let mean = points.iter().map(|&(_, x)| x).sum::<f64>() / points.len() as f64;
    let ss_tot: f64 = points.iter().map(|&(_, x)| (x - mean).powi(2)).sum();
    let negligible = 1e-12 * points.iter().map(|&(_, x)| x * x).sum::<f64>();
    if ss_tot > negligible {
        1.0 - ss_res / ss_tot
    } else if ss_res <= negligible {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |actual − expected| / |expected|.
    fn rel_err(actual: f64, expected: f64) -> f64 {
        ((actual - expected) / expected).abs()
    }

    /// Asserts `actual` is within 0.1% of the published `expected`, naming the coefficient.
    #[track_caller]
    fn assert_published(name: &str, actual: f64, expected: f64) {
        let err = rel_err(actual, expected);
        assert!(err < 1e-3, "{name} = {actual}, published {expected}: off by {:.4}%", err * 100.0);
    }

    /// Points on an exact USL curve at the given N.
    fn exact(sigma: f64, kappa: f64, lambda: f64, ns: &[f64]) -> Vec<(f64, f64)> {
        ns.iter().map(|&n| (n, model(sigma, kappa, lambda, n))).collect()
    }

    /// SPEC SDM91 on a 16-CPU Sun SPARCcenter 2000 (Gunther, Guerrilla Capacity Planning,
    /// 2007): the `specsdm91` data set of the R `usl` package (smoeding/usl, data/specsdm91.rda),
    /// load in simulated users, throughput in scripts per hour.
    const SPECSDM91: [(f64, f64); 7] = [
        (1.0, 64.9),
        (18.0, 995.9),
        (36.0, 1652.4),
        (72.0, 1853.2),
        (108.0, 1828.9),
        (144.0, 1775.0),
        (216.0, 1702.2),
    ];

    #[test]
    fn specsdm91_matches_the_r_usl_package() {
        let fit = fit(&SPECSDM91).unwrap();
        // smoeding/usl README.md, `summary(usl(throughput ~ load, specsdm91))`.
        assert_published("σ", fit.sigma, 0.0277285);
        assert_published("κ", fit.kappa, 0.0001044);
        assert_published("λ", fit.lambda, 89.9952330);
        // smoeding/usl tests/peak-scalability.Rout.save: `peak.scalability(u)` is 96.51956;
        // tests/optimal-scalability.Rout.save: 1/σ is 36.06401; tests/limit-scalability.Rout.save:
        // λ/σ is 3245.589. These carry more digits than the printed κ and σ.
        assert_published("N*", fit.peak_n.unwrap(), 96.51956);
        assert_published("1/σ", 1.0 / fit.sigma, 36.06401);
        assert_published("λ/σ", fit.lambda / fit.sigma, 3245.589);
        // README.md: "peak: throughput 1884 at load 96.52".
        assert_eq!(fit.peak_rps.unwrap().round(), 1884.0);
        assert_eq!(fit.points, 7);
    }

    #[test]
    fn specsdm91_rounded_matches_codahale_usl() {
        // codahale/usl (Go) cmd/usl/example.csv: the same benchmark with throughput rounded to
        // integers; cmd/usl/usl_test.go expects "σ=0.0277299, κ=0.000104343, λ=89.9878".
        let points = [
            (1.0, 65.0),
            (18.0, 996.0),
            (36.0, 1652.0),
            (72.0, 1853.0),
            (108.0, 1829.0),
            (144.0, 1775.0),
            (216.0, 1702.0),
        ];
        let fit = fit(&points).unwrap();
        assert_published("σ", fit.sigma, 0.0277299);
        assert_published("κ", fit.kappa, 0.000104343);
        assert_published("λ", fit.lambda, 89.9878);
    }

    /// A Cisco router benchmark from Baron Schwartz, Practical Scalability Analysis with the
    /// Universal Scalability Law (2015), as tabled in codahale/usl4j
    /// src/test/java/com/codahale/usl4j/tests/ModelTest.java: concurrency, throughput.
    const CISCO: [(f64, f64); 32] = [
        (1.0, 955.16),
        (2.0, 1878.91),
        (3.0, 2688.01),
        (4.0, 3548.68),
        (5.0, 4315.54),
        (6.0, 5130.43),
        (7.0, 5931.37),
        (8.0, 6531.08),
        (9.0, 7219.8),
        (10.0, 7867.61),
        (11.0, 8278.71),
        (12.0, 8646.7),
        (13.0, 9047.84),
        (14.0, 9426.55),
        (15.0, 9645.37),
        (16.0, 9897.24),
        (17.0, 10097.6),
        (18.0, 10240.5),
        (19.0, 10532.39),
        (20.0, 10798.52),
        (21.0, 11151.43),
        (22.0, 11518.63),
        (23.0, 11806.0),
        (24.0, 12089.37),
        (25.0, 12075.41),
        (26.0, 12177.29),
        (27.0, 12211.41),
        (28.0, 12158.93),
        (29.0, 12155.27),
        (30.0, 12118.04),
        (31.0, 12140.4),
        (32.0, 12074.39),
    ];

    #[test]
    fn cisco_matches_the_book() {
        let fit = fit(&CISCO).unwrap();
        // The book's coefficients, as ModelTest.java (BOOK_SIGMA, BOOK_KAPPA, BOOK_LAMBDA) and
        // codahale/usl model_test.go check them.
        assert_published("σ", fit.sigma, 0.02671591);
        assert_published("κ", fit.kappa, 7.690945e-4);
        assert_published("λ", fit.lambda, 995.6486);
        // ModelTest.java throughputAtConcurrency: X(1), X(20), X(35) of usl4j's own fit.
        assert_published("X(1)", fit.throughput(1.0), 995.648772003358);
        assert_published("X(20)", fit.throughput(20.0), 11063.63312570436);
        assert_published("X(35)", fit.throughput(35.0), 12341.745655201905);
        // BOOK_N_MAX = 35: usl4j and codahale/usl round N* down to a whole concurrency.
        assert_eq!(fit.peak_n.unwrap().floor(), 35.0);
        assert_eq!(regime(&fit), Regime::ContentionBound);
    }

    #[test]
    fn r_usl_coef_test_data_gives_its_generating_coefficients() {
        // smoeding/usl tests/coef.R: X = N/(1 + 0.02(N−1) + 0.02N(N−1)) rounded to 4 decimals;
        // tests/coef.Rout.save prints alpha 0.02, beta 0.02, gamma 1.00.
        let points = [(1.0, 1.0), (2.0, 1.8868), (4.0, 3.0769), (6.0, 3.5294), (8.0, 3.5398), (10.0, 3.3557)];
        let fit = fit(&points).unwrap();
        assert_published("σ", fit.sigma, 0.02);
        assert_published("κ", fit.kappa, 0.02);
        assert_published("λ", fit.lambda, 1.0);
        assert_eq!(regime(&fit), Regime::ContentionBound);
    }

    /// Ray tracing on an SGI Origin 2000 (Gunther 2007): the `raytracer` data set of the R
    /// `usl` package (smoeding/usl, data/raytracer.rda), processors and operations per second.
    const RAYTRACER: [(f64, f64); 11] = [
        (1.0, 20.0),
        (4.0, 78.0),
        (8.0, 130.0),
        (12.0, 170.0),
        (16.0, 190.0),
        (20.0, 200.0),
        (24.0, 210.0),
        (28.0, 230.0),
        (32.0, 260.0),
        (48.0, 280.0),
        (64.0, 310.0),
    ];

    #[test]
    fn raytracer_first_six_matches_the_r_usl_package() {
        // smoeding/usl tests/confint.Rout.save: `coef(usl(throughput ~ processors,
        // raytracer[1:6, ]))` prints alpha 0.02444, beta 0.00163, gamma 20.85605. beta has
        // only three significant digits, so it is checked to those.
        let fit = fit(&RAYTRACER[..6]).unwrap();
        assert_published("σ", fit.sigma, 0.02444);
        assert_published("λ", fit.lambda, 20.85605);
        assert!((fit.kappa - 0.00163).abs() <= 0.000005, "κ = {} does not print as 0.00163", fit.kappa);
    }

    #[test]
    fn raytracer_holds_kappa_on_its_bound_as_the_r_usl_package_does() {
        // smoeding/usl tests/confint.Rout.save before commit c9673ee ("Update confint test to
        // avoid beta=0"): the whole data set fits alpha 0.0578, beta 0.0000, gamma 21.8488,
        // κ held at its lower bound. alpha is printed to three digits, so checked to those.
        let fit = fit(&RAYTRACER).unwrap();
        assert_eq!(fit.kappa, 0.0);
        assert!((fit.sigma - 0.0578).abs() <= 0.00005, "σ = {} does not print as 0.0578", fit.sigma);
        assert_published("λ", fit.lambda, 21.8488);
        assert_eq!(fit.peak_n, None);
        assert_published("λ/σ", fit.peak_rps.unwrap(), fit.lambda / fit.sigma);
    }

    #[test]
    fn exact_curves_are_recovered() {
        let ns = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
        for (sigma, kappa, lambda) in [(0.05, 0.001, 100.0), (0.3, 0.0, 7.0), (0.001, 0.01, 2500.0)] {
            let fit = fit(&exact(sigma, kappa, lambda, &ns)).unwrap();
            assert!(rel_err(fit.sigma, sigma) < 1e-6, "σ {} for {sigma}", fit.sigma);
            assert!((fit.kappa - kappa).abs() < 1e-9, "κ {} for {kappa}", fit.kappa);
            assert!(rel_err(fit.lambda, lambda) < 1e-6, "λ {} for {lambda}", fit.lambda);
            assert!(fit.r_squared > 1.0 - 1e-9);
        }
    }

    #[test]
    fn linear_data_has_no_contention_coherency_or_peak() {
        let points: Vec<(f64, f64)> = (1..=8).map(|n| (n as f64, 250.0 * n as f64)).collect();
        let fit = fit(&points).unwrap();
        assert_eq!((fit.sigma, fit.kappa), (0.0, 0.0));
        assert!(rel_err(fit.lambda, 250.0) < 1e-12);
        assert_eq!((fit.peak_n, fit.peak_rps), (None, None));
        assert_eq!(fit.r_squared, 1.0);
        assert_eq!(regime(&fit), Regime::Linear);
        assert_eq!(peak_position(&fit, 1.0, 8.0), PeakPosition::NoPeak { asymptote: None });
    }

    #[test]
    fn a_clear_peak_is_found_where_the_curve_turns() {
        //   X
        //   |      * *
        //   |    *     *
        //   |  *         *
        //   |*              N
        // σ = 0.1, κ = 0.02: N* = √(0.9/0.02) ≈ 6.7.
        let ns = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0];
        let fit = fit(&exact(0.1, 0.02, 1000.0, &ns)).unwrap();
        let peak_n = fit.peak_n.unwrap();
        assert!(rel_err(peak_n, (0.9f64 / 0.02).sqrt()) < 1e-6);
        assert!(rel_err(fit.peak_rps.unwrap(), model(0.1, 0.02, 1000.0, peak_n)) < 1e-6);
        // Nothing measured beats the fitted peak.
        assert!(ns.iter().all(|&n| fit.throughput(n) <= fit.peak_rps.unwrap()));
        assert!(matches!(peak_position(&fit, 1.0, 16.0), PeakPosition::WithinMeasured { .. }));
        assert_eq!(regime(&fit), Regime::ContentionBound);
    }

    #[test]
    fn coherency_dominates_when_kappa_exceeds_sigma() {
        let fit = fit(&exact(0.0, 0.05, 10.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).unwrap();
        assert_eq!(regime(&fit), Regime::CoherencyBound);
        assert!(regime(&fit).to_string().starts_with("coherency-bound"));
    }

    #[test]
    fn fewer_than_six_points_are_refused() {
        let points = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0), (5.0, 5.0)];
        let err = fit(&points).unwrap_err();
        assert_eq!(err, FitError::TooFewPoints { found: 5, needed: 6 });
        assert!(err.to_string().contains("at least 6 measurements"), "{err}");
        assert!(err.to_string().contains("found 5"), "{err}");
    }

    #[test]
    fn two_distinct_n_are_refused() {
        let points = [(1.0, 1.0), (1.0, 1.1), (2.0, 2.0), (2.0, 2.1), (1.0, 0.9), (2.0, 1.9)];
        assert_eq!(fit(&points).unwrap_err(), FitError::TooFewDistinctN { found: 2, needed: 3 });
    }

    #[test]
    fn bad_values_are_named_by_index() {
        let good = exact(0.05, 0.001, 100.0, &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        let with = |index: usize, point: (f64, f64)| {
            let mut points = good.clone();
            points[index] = point;
            fit(&points).unwrap_err()
        };
        assert_eq!(with(2, (-4.0, 10.0)), FitError::BadConcurrency { index: 2, value: -4.0 });
        assert_eq!(with(0, (0.0, 10.0)), FitError::BadConcurrency { index: 0, value: 0.0 });
        assert_eq!(with(3, (8.0, -1.5)), FitError::BadThroughput { index: 3, value: -1.5 });
        assert!(matches!(with(4, (16.0, f64::NAN)), FitError::BadThroughput { index: 4, .. }));
        assert!(matches!(with(5, (f64::INFINITY, 1.0)), FitError::BadConcurrency { index: 5, .. }));
        assert_eq!(
            with(3, (8.0, -1.5)).to_string(),
            "points[3]: throughput X = -1.5 must be a finite number, 0 or more"
        );
    }

    #[test]
    fn all_zero_throughput_is_refused() {
        let points: Vec<(f64, f64)> = (1..=6).map(|n| (n as f64, 0.0)).collect();
        assert_eq!(fit(&points).unwrap_err(), FitError::NoThroughput);
    }

    #[test]
    fn flat_throughput_is_all_contention() {
        // One unit's worth of work however many units: σ = 1, the whole job is serial.
        let points: Vec<(f64, f64)> = (1..=6).map(|n| (n as f64, 40.0)).collect();
        let fit = fit(&points).unwrap();
        assert_eq!((fit.sigma, fit.kappa), (1.0, 0.0));
        assert!(rel_err(fit.lambda, 40.0) < 1e-12);
        assert_eq!(fit.peak_rps, Some(fit.lambda));
        assert_eq!(fit.r_squared, 1.0);
    }

    #[test]
    fn peak_position_places_the_peak_against_the_measurements() {
        let fit = fit(&exact(0.1, 0.02, 1000.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).unwrap();
        let peak_n = fit.peak_n.unwrap();
        assert_eq!(peak_position(&fit, 1.0, 6.0), PeakPosition::BeyondMeasured { peak_n, max_n: 6.0 });
        assert_eq!(peak_position(&fit, 8.0, 16.0), PeakPosition::BelowMeasured { peak_n, min_n: 8.0 });
        let text = peak_position(&fit, 1.0, 6.0).to_string();
        assert!(text.contains("beyond the largest N measured (6)"), "{text}");
        let level = UslFit { sigma: 0.05, kappa: 0.0, peak_n: None, peak_rps: Some(378.19885), ..fit };
        assert_eq!(
            peak_position(&level, 1.0, 6.0).to_string(),
            "no peak (κ = 0): throughput levels off towards λ/σ = 378.2"
        );
    }

    #[test]
    fn the_jacobian_matches_central_differences() {
        // levenberg_marquardt::differentiate_numerically steps by a fixed amount, far too
        // coarse for κ ≈ 1e-4, so the differences here step by 0.01% of each coefficient.
        for face in FACES {
            let mut start = Vec::new();
            if face.sigma.is_none() {
                start.push(0.03);
            }
            if face.kappa.is_none() {
                start.push(0.0002);
            }
            start.push(90.0);
            let at = DVector::from_vec(start);
            let mut problem = UslProblem { points: &SPECSDM91, face, free: at.clone() };
            let analytic = problem.jacobian().unwrap();
            for col in 0..at.len() {
                let h = at[col] * 1e-4;
                let mut step = at.clone();
                step[col] += h;
                problem.set_params(&step);
                let up = problem.residuals().unwrap();
                step[col] -= 2.0 * h;
                problem.set_params(&step);
                let down = problem.residuals().unwrap();
                for row in 0..SPECSDM91.len() {
                    let numerical = (up[row] - down[row]) / (2.0 * h);
                    let a = analytic[(row, col)];
                    assert!(
                        (a - numerical).abs() <= 1e-6 * (1.0 + a.abs()),
                        "{face:?} ({row}, {col}): {a} vs {numerical}"
                    );
                }
            }
        }
    }
}
