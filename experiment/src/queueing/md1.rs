//! M/D/1: one server, Poisson arrivals, a fixed service time D. Its mean wait is
//! Pollaczek–Khinchine's ρ/(2μ(1−ρ)); its whole waiting-time distribution is known exactly
//! (Erlang 1909, Crommelin 1932), so its percentiles are computed, not simulated.
//!
//! Times are in units of D. The computation goes through N, the number in the system at an
//! arbitrary instant (by PASTA, what an arrival finds):
//!
//! - **N's distribution**, by level crossing on the chain at departures (M/G/1 type, where
//!   N falls by at most one per step): π₀ = 1−ρ and
//!   π_j = [π₀·Ā_j + Σ_{i=1}^{j−1} π_i·Ā_{j−i+1}] / a₀, with a_k = e^{−ρ}ρᵏ/k! the chance of
//!   k arrivals during one service and Ā_k = Σ_{m≥k} a_m. Every term is positive, so unlike
//!   the textbook forward recursion (which subtracts) it does not lose precision as j grows.
//! - **The wait**, for t = kD + u with 0 ≤ u < D: an arrival at τ waits at most t exactly
//!   when N(τ−D+u) + A(τ−D+u, τ) ≤ k+1, except when the server was idle at τ−D+u and all k+1
//!   came after it (then the one in service started after τ−D+u and will not finish in time):
//!   P(W ≤ t) = Σ_{a=0}^{k+1} P(A=a)·P(N ≤ k+1−a) − π₀·P(A=k+1), A ~ Poisson(ρ(1−u)).
//!   This is Crommelin's result written with positive terms; the closed form
//!   (1−ρ)·Σ_{j≤k} [ρ(j−t)]ʲ/j!·e^{−ρ(j−t)} alternates in sign and cancels catastrophically
//!   for the waits of a p99.9 near ρ = 1.

/// States of N computed at most: enough for ρ up to about 0.9995 (the tail of N decays like
/// zⁿ with z − 1 ≈ 2(1−ρ)), and a bound on the memory (8 bytes each) and time (× `ARRIVALS`).
pub const MAX_STATES: usize = 200_000;
/// Arrivals per service time counted: P(A > 60) for A ~ Poisson(≤ 1.2) is below 1e-60.
const ARRIVALS: usize = 60;
/// N's distribution is cut where a state's probability falls below this.
const NEGLIGIBLE: f64 = 1e-17;

/// Pollaczek–Khinchine's mean wait of M/D/1, in service times: ρ / (2(1−ρ)); `None` unless
/// 0 ≤ ρ < 1.
pub fn mean_wait(rho: f64) -> Option<f64> {
    (0.0..1.0).contains(&rho).then(|| rho / (2.0 * (1.0 - rho)))
}

/// The exact waiting-time distribution of M/D/1 at one utilization.
#[derive(Debug, Clone)]
pub struct Md1 {
    rho: f64,
    /// P(N ≤ j) for j = 0, 1, ...; 1 beyond the last entry.
    at_most: Vec<f64>,
}

impl Md1 {
    /// The distribution at utilization `rho`; `None` unless 0 ≤ ρ < 1 and N's distribution
    /// fits in [`MAX_STATES`].
    pub fn new(rho: f64) -> Option<Md1> {
        if !(0.0..1.0).contains(&rho) {
            return None;
        }
        let a = poisson_pmf(rho);
        // Ā_k, summed from the top so the small ones keep their digits.
        let mut tail = vec![0.0; ARRIVALS + 2];
        for k in (0..=ARRIVALS).rev() {
            tail[k] = tail[k + 1] + a[k];
        }
        let tail_at = |k: usize| tail.get(k).copied().unwrap_or(0.0);
        let mut pi = vec![1.0 - rho];
        let mut total = 1.0 - rho;
        let mut peaked = false;
        while total < 1.0 - 1e-15 {
            let j = pi.len();
            if j >= MAX_STATES {
                return None;
            }
            let from = j.saturating_sub(ARRIVALS).max(1);
            let sum: f64 = pi[0] * tail_at(j) + (from..j).map(|i| pi[i] * tail_at(j - i + 1)).sum::<f64>();
            let next = sum / a[0];
            peaked |= next < pi[j - 1];
            pi.push(next);
            total += next;
            if peaked && next < NEGLIGIBLE {
                break;
            }
        }
        let mut at_most = Vec::with_capacity(pi.len());
        let mut cumulative = 0.0;
        for p in pi {
            cumulative += p / total; // what rounding left over is spread evenly
            at_most.push(cumulative.min(1.0));
        }
        Some(Md1 { rho, at_most })
    }

    fn n_at_most(&self, j: usize) -> f64 {
        self.at_most.get(j).copied().unwrap_or(1.0)
    }

    /// P(W ≤ t), `t` in service times.
    pub fn cdf(&self, t: f64) -> f64 {
        if t < 0.0 {
            return 0.0;
        }
        let k = t.floor() as usize;
        let u = t - t.floor();
        let pmf = poisson_pmf(self.rho * (1.0 - u));
        let arrivals = |a: usize| pmf.get(a).copied().unwrap_or(0.0);
        let ways: f64 = (0..=(k + 1).min(ARRIVALS)).map(|a| arrivals(a) * self.n_at_most(k + 1 - a)).sum();
        (ways - (1.0 - self.rho) * arrivals(k + 1)).clamp(0.0, 1.0)
    }

    /// The `q` quantile (0 < q < 1) of the wait, in service times: the least t with
    /// P(W ≤ t) ≥ q, to 1e-9 of a service time.
    pub fn wait_quantile(&self, q: f64) -> f64 {
        if self.cdf(0.0) >= q {
            return 0.0;
        }
        let mut hi = 1.0;
        while self.cdf(hi) < q && hi < self.at_most.len() as f64 + 2.0 {
            hi *= 2.0;
        }
        let mut lo = 0.0;
        while hi - lo > 1e-9 {
            let mid = (lo + hi) / 2.0;
            if self.cdf(mid) >= q {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

/// e^{−m}·mᵏ/k! for k = 0..=ARRIVALS, by the product recursion (no factorials).
fn poisson_pmf(m: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(ARRIVALS + 1);
    let mut p = (-m).exp();
    for k in 0..=ARRIVALS {
        out.push(p);
        p *= m / (k + 1) as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ∫₀^∞ P(W > t) dt by the trapezoid rule on a fine grid: the mean, from the distribution.
    fn mean_from_cdf(d: &Md1) -> f64 {
        let step = 1e-3;
        let end = d.wait_quantile(1.0 - 1e-12) + 1.0;
        let n = (end / step) as usize;
        (0..n).map(|i| 1.0 - (d.cdf(i as f64 * step) + d.cdf((i + 1) as f64 * step)) / 2.0).sum::<f64>()
            * step
    }

    #[test]
    fn pollaczek_khinchine_mean_wait() {
        // ρ/(2μ(1−ρ)): at ρ = 0.5 half a service time, at 0.9 4.5 of them.
        assert_eq!(mean_wait(0.5), Some(0.5));
        assert!((mean_wait(0.9).unwrap() - 4.5).abs() < 1e-12);
        assert_eq!(mean_wait(1.0), None);
        assert_eq!(mean_wait(-0.1), None);
    }

    #[test]
    fn the_distribution_has_the_right_atom_mean_and_queue() {
        for rho in [0.2, 0.5, 0.8, 0.95] {
            let d = Md1::new(rho).unwrap();
            // An arrival finds the server idle with probability 1−ρ.
            assert!((d.cdf(0.0) - (1.0 - rho)).abs() < 1e-12, "P(W=0) at {rho}");
            // The mean of the distribution is Pollaczek–Khinchine's.
            let mean = mean_from_cdf(&d);
            let pk = mean_wait(rho).unwrap();
            assert!((mean - pk).abs() < 1e-4 * pk.max(1.0), "ρ={rho}: mean {mean}, P-K {pk}");
            // P(N ≤ 1) = (1−ρ)eᵖ, the first step of the chain.
            assert!((d.n_at_most(1) - (1.0 - rho) * rho.exp()).abs() < 1e-12);
        }
    }

    #[test]
    fn the_cdf_is_continuous_across_whole_service_times_and_rises() {
        let d = Md1::new(0.7).unwrap();
        for k in 1..20 {
            let t = k as f64;
            assert!((d.cdf(t - 1e-9) - d.cdf(t)).abs() < 1e-7, "jump at {t}");
        }
        let mut last = 0.0;
        for i in 0..400 {
            let f = d.cdf(i as f64 * 0.05);
            assert!(f + 1e-12 >= last, "falls at {}", i as f64 * 0.05);
            last = f;
        }
        assert!(last > 0.99999, "P(W ≤ 20) = {last}");
    }

    #[test]
    fn quantiles_invert_the_cdf_near_saturation() {
        // At ρ = 0.99 the p99.9 wait is hundreds of service times: the alternating closed
        // form would have lost every digit there.
        let d = Md1::new(0.99).unwrap();
        let w = d.wait_quantile(0.999);
        assert!((d.cdf(w) - 0.999).abs() < 1e-6, "P(W ≤ {w}) = {}", d.cdf(w));
        assert!(w > 100.0 && w < 2000.0, "{w}");
        assert_eq!(Md1::new(0.3).unwrap().wait_quantile(0.5), 0.0, "most arrivals do not wait");
        assert!(Md1::new(1.0).is_none());
    }
}
