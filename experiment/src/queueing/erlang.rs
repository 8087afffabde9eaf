//! Closed forms for c servers fed by one queue with Poisson arrivals: Erlang B and Erlang C
//! (M/M/c), and the two published approximations of the M/D/c mean wait built on Erlang C
//! (Allen–Cunneen, Cosmetatos).
//!
//! Everything is in units of the service time S: `a` = λS is the offered load in erlangs and
//! ρ = a/c the utilization of each server; a wait of 1.0 is one service time.

/// Erlang B, the blocking probability of c servers and no queue (M/M/c/c), by the recursion
/// B(0) = 1, B(k) = a·B(k−1) / (k + a·B(k−1)): every step is a ratio of positive numbers, so
/// it neither overflows (aᶜ and c! do for c ≈ 170) nor cancels.
pub fn erlang_b(c: u32, a: f64) -> f64 {
    (1..=c).fold(1.0, |b, k| a * b / (f64::from(k) + a * b))
}

/// Erlang C, the probability that an arrival waits in M/M/c:
/// C = [aᶜ/c! · c/(c−a)] / [Σ_{k<c} aᵏ/k! + aᶜ/c! · c/(c−a)], computed from Erlang B as
/// C = c·B / (c − a(1−B)). `None` unless 0 ≤ a < c (no steady state otherwise).
pub fn erlang_c(c: u32, a: f64) -> Option<f64> {
    let servers = f64::from(c);
    if c == 0 || !(0.0..servers).contains(&a) {
        return None;
    }
    let b = erlang_b(c, a);
    Some(servers * b / (servers - a * (1.0 - b)))
}

/// Mean wait in queue of M/M/c, in service times: Wq = C / (cμ − λ) = C / (c − a).
pub fn mmc_mean_wait(c: u32, a: f64) -> Option<f64> {
    erlang_c(c, a).map(|p| p / (f64::from(c) - a))
}

/// Allen–Cunneen's M/D/c mean wait: Wq(GI/G/c) ≈ (ca² + cs²)/2 · Wq(M/M/c), which for Poisson
/// arrivals (ca² = 1) and a fixed service time (cs² = 0) is half the M/M/c wait (Allen,
/// *Probability, Statistics, and Queueing Theory*, 1978/1990). Exact for c = 1 (it is then
/// Pollaczek–Khinchine's ρ/(2(1−ρ))).
pub fn allen_cunneen_mdc_wait(c: u32, a: f64) -> Option<f64> {
    mmc_mean_wait(c, a).map(|w| w / 2.0)
}

/// Cosmetatos' correction of the half-M/M/c estimate (Cosmetatos, "Some approximate
/// equilibrium results for the multi-server queue (M/G/r)", Operational Research Quarterly
/// 27, 1976; quoted in this form by Tijms, *A First Course in Stochastic Models*, 2003, and
/// refined by Kimura, JORS 42, 1991, doi 10.1057/jors.1991.119):
/// Wq(M/D/c) ≈ ½ · [1 + (1−ρ)(c−1)(√(4+5c) − 2) / (16ρc)] · Wq(M/M/c). The bracket is 1 for
/// c = 1 and grows in light traffic, where halving M/M/c underestimates the M/D/c wait.
pub fn cosmetatos_mdc_wait(c: u32, a: f64) -> Option<f64> {
    let servers = f64::from(c);
    let rho = a / servers;
    if rho <= 0.0 {
        return mmc_mean_wait(c, a);
    }
    let correction =
        1.0 + (1.0 - rho) * (servers - 1.0) * ((4.0 + 5.0 * servers).sqrt() - 2.0) / (16.0 * rho * servers);
    allen_cunneen_mdc_wait(c, a).map(|w| w * correction)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Erlang C for c = 2..10 at ρ = 0.5, 0.8 and 0.9: the direct formula evaluated in exact
    /// rational arithmetic (Python's `fractions`, Σ aᵏ/k! with no rounding), rounded to six
    /// places, as a printed Erlang C table tabulates it.
    const TABLE: [(u32, [f64; 3]); 9] = [
        (2, [0.333333, 0.711111, 0.852632]),
        (3, [0.236842, 0.647191, 0.817061]),
        (4, [0.173913, 0.596432, 0.787753]),
        (5, [0.130371, 0.554113, 0.762493]),
        (6, [0.099143, 0.517772, 0.740126]),
        (7, [0.076198, 0.485938, 0.719957]),
        (8, [0.059044, 0.457645, 0.701533]),
        (9, [0.046050, 0.432222, 0.684535]),
        (10, [0.036105, 0.409180, 0.668732]),
    ];

    #[test]
    fn erlang_c_matches_the_table_for_two_to_ten_servers() {
        for (c, row) in TABLE {
            for (rho, expected) in [0.5, 0.8, 0.9].into_iter().zip(row) {
                let got = erlang_c(c, rho * f64::from(c)).unwrap();
                assert!((got - expected).abs() < 5e-7, "C({c}, ρ={rho}) = {got}, table {expected}");
            }
        }
    }

    #[test]
    fn erlang_c_matches_printed_readings() {
        // A printed Erlang C table (a TETRA trunking handbook's "Table C"): 8 channels carry
        // A = 3.87 erlangs at 5% delayed, 10 channels 4.08 erlangs at 1%; its A is given to
        // two decimals, so the probability agrees to about 1%.
        assert!((erlang_c(8, 3.87).unwrap() - 0.05).abs() < 0.0005);
        assert!((erlang_c(10, 4.08).unwrap() - 0.01).abs() < 0.0001);
        // The textbook exercise: 10 assistants, 6 erlangs, "the probability of waiting is about
        // 0.10"; and the hand-worked small cases, C(2, 1) = 1/3, C(3, 2) = 4/9.
        assert!((erlang_c(10, 6.0).unwrap() - 0.1013).abs() < 1e-4);
        assert!((erlang_c(2, 1.0).unwrap() - 1.0 / 3.0).abs() < 1e-15);
        assert!((erlang_c(3, 2.0).unwrap() - 4.0 / 9.0).abs() < 1e-15);
        // One server waits with probability ρ.
        assert!((erlang_c(1, 0.7).unwrap() - 0.7).abs() < 1e-15);
    }

    #[test]
    fn erlang_c_is_stable_for_many_servers_and_refuses_overload() {
        // a^c / c! overflows f64 at c = 171; the recursion does not.
        let big = erlang_c(500, 480.0).unwrap();
        assert!(big.is_finite() && (0.0..1.0).contains(&big), "{big}");
        assert_eq!(erlang_c(4, 4.0), None);
        assert_eq!(erlang_c(4, 5.0), None);
        assert_eq!(erlang_c(0, 0.5), None);
        assert_eq!(erlang_c(3, 0.0), Some(0.0));
    }

    #[test]
    fn mean_waits_halve_for_a_fixed_service_time() {
        // M/M/1 at ρ = 0.5 waits ρ/(1−ρ) = 1 service time; M/D/1 half of it: Pollaczek–
        // Khinchine's ρ/(2(1−ρ)) = 0.5. Cosmetatos' bracket is 1 for one server.
        assert!((mmc_mean_wait(1, 0.5).unwrap() - 1.0).abs() < 1e-15);
        assert!((allen_cunneen_mdc_wait(1, 0.5).unwrap() - 0.5).abs() < 1e-15);
        assert_eq!(cosmetatos_mdc_wait(1, 0.9), allen_cunneen_mdc_wait(1, 0.9));
        // M/M/2 at a = 1: C = 1/3, Wq = (1/3)/(2−1).
        assert!((mmc_mean_wait(2, 1.0).unwrap() - 1.0 / 3.0).abs() < 1e-15);
        // With more servers, Cosmetatos adds to Allen–Cunneen, most in light traffic.
        let light = cosmetatos_mdc_wait(4, 1.2).unwrap() / allen_cunneen_mdc_wait(4, 1.2).unwrap();
        let heavy = cosmetatos_mdc_wait(4, 3.8).unwrap() / allen_cunneen_mdc_wait(4, 3.8).unwrap();
        assert!(light > heavy && heavy > 1.0, "{light} {heavy}");
    }
}
