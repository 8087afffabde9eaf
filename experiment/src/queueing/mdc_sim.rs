//! M/D/c by simulation: c servers, one first-come-first-served queue, Poisson arrivals, a
//! fixed service time. M/D/c has no simple closed form for its percentiles, so the pooled
//! model simulates the queue itself, deterministically: a seeded PRNG and a fixed number of
//! customers, so the same inputs always give the same answer.
//!
//! With equal service times and one FCFS queue, customers leave in the order they came, so
//! customer i starts when it arrives or when customer i−c leaves, whichever is later:
//! start_i = max(a_i, start_{i−c} + D). No event list is needed; the last c start times are
//! a ring. Every arrival draws from the same uniform numbers whatever the rate (the gaps are
//! scaled, not redrawn), so the waits grow monotonically with ρ and a bisection on ρ (the knee)
//! is well-defined.

/// Customers simulated after the warm-up, by default: about 20 ms of work and 8 MB.
pub const SAMPLES: usize = 1_000_000;
/// Customers simulated at most: the bound on memory (8 bytes each) and time.
pub const MAX_SAMPLES: usize = 4_000_000;
/// Servers simulated at most.
pub const MAX_SERVERS: u32 = 1024;
/// The PRNG seed: fixed, so a report redrawn from the same results draws the same lines.
const SEED: u64 = 0x4d44_6373; // "MDcs"

/// The waits of `samples` customers of an M/D/c queue at utilization `rho`, in service times,
/// after a warm-up of a twentieth as many customers starting from an empty system. `None`
/// unless c is 1 to [`MAX_SERVERS`], 0 ≤ ρ < 1 and `samples` is 1 to [`MAX_SAMPLES`].
pub fn waits(c: u32, rho: f64, samples: usize) -> Option<Vec<f64>> {
    if !(1..=MAX_SERVERS).contains(&c) || !(0.0..1.0).contains(&rho) || !(1..=MAX_SAMPLES).contains(&samples)
    {
        return None;
    }
    let rate = rho * f64::from(c); // arrivals per service time
    if rate == 0.0 {
        return Some(vec![0.0; samples]);
    }
    let warmup = samples / 20;
    let mut rng = fastrand::Rng::with_seed(SEED);
    // start_{i−c}, ..., start_{i−1}: the ring; an empty system's "earlier starts" never delay.
    let mut starts = vec![f64::NEG_INFINITY; c as usize];
    let mut now = 0.0;
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        now += -(1.0 - rng.f64()).ln() / rate;
        let slot = i % c as usize;
        let start = now.max(starts[slot] + 1.0);
        starts[slot] = start;
        if i >= warmup {
            out.push(start - now);
        }
    }
    Some(out)
}

/// The `qs` quantiles (each in (0, 1), ascending) of `values`, by nearest rank: the value at
/// rank ⌈q·n⌉. Reorders `values` (a partial selection per quantile, not a sort).
pub fn quantiles(values: &mut [f64], qs: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut out = vec![0.0; qs.len()];
    let mut end = n;
    // From the highest quantile down: each selection only has to search what lies below the last.
    for (k, q) in qs.iter().enumerate().rev() {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        let upto = end.max(rank + 1).min(n);
        let (_, v, _) = values[..upto].select_nth_unstable_by(rank, f64::total_cmp);
        out[k] = *v;
        end = rank + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{erlang, md1};
    use super::*;

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn one_server_matches_the_exact_m_d_1() {
        for rho in [0.5, 0.8, 0.9] {
            let mut w = waits(1, rho, 2_000_000).unwrap();
            let pk = md1::mean_wait(rho).unwrap();
            assert!((mean(&w) - pk).abs() < 0.04 * pk, "ρ={rho}: simulated {} P-K {pk}", mean(&w));
            let exact = md1::Md1::new(rho).unwrap();
            let qs = [0.5, 0.9, 0.99];
            for (q, sim) in qs.iter().zip(quantiles(&mut w, &qs)) {
                let want = exact.wait_quantile(*q);
                assert!(
                    (sim - want).abs() < 0.05 * want.max(1.0),
                    "ρ={rho} q={q}: simulated {sim}, exact {want}"
                );
            }
        }
    }

    #[test]
    fn several_servers_match_cosmetatos_and_bracket_allen_cunneen() {
        // Cosmetatos' approximation is within a few percent of the exact M/D/c mean for few
        // servers in moderate to heavy traffic (here within 2.5%); Allen–Cunneen's ½·M/M/c
        // sits a little below.
        for c in [2u32, 3, 4, 8] {
            for rho in [0.6, 0.8, 0.9] {
                let a = rho * f64::from(c);
                let sim = mean(&waits(c, rho, 2_000_000).unwrap());
                let cosmetatos = erlang::cosmetatos_mdc_wait(c, a).unwrap();
                let allen_cunneen = erlang::allen_cunneen_mdc_wait(c, a).unwrap();
                assert!(
                    (sim - cosmetatos).abs() < 0.03 * cosmetatos,
                    "c={c} ρ={rho}: sim {sim}, Cosmetatos {cosmetatos}"
                );
                assert!(
                    sim > 0.95 * allen_cunneen,
                    "c={c} ρ={rho}: sim {sim}, Allen–Cunneen {allen_cunneen}"
                );
            }
        }
    }

    #[test]
    fn the_chance_of_waiting_sits_below_erlang_c() {
        // A fixed service time queues less often than an exponential one at the same load.
        let w = waits(4, 0.8, 1_000_000).unwrap();
        let waited = w.iter().filter(|x| **x > 0.0).count() as f64 / w.len() as f64;
        let c = erlang::erlang_c(4, 3.2).unwrap();
        assert!(waited < c && waited > 0.5 * c, "P(wait) {waited}, Erlang C {c}");
    }

    #[test]
    fn deterministic_monotone_and_bounded() {
        assert_eq!(waits(3, 0.7, 10_000), waits(3, 0.7, 10_000));
        let (lo, hi) = (waits(2, 0.7, 50_000).unwrap(), waits(2, 0.8, 50_000).unwrap());
        assert!(lo.iter().zip(&hi).all(|(a, b)| a <= b), "waits grow with ρ, customer by customer");
        assert_eq!(waits(0, 0.5, 10), None);
        assert_eq!(waits(2, 1.0, 10), None);
        assert_eq!(waits(2, 0.5, MAX_SAMPLES + 1), None);
        assert_eq!(waits(2, 0.0, 3), Some(vec![0.0; 3]));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=1000).rev().map(f64::from).collect();
        assert_eq!(quantiles(&mut v, &[0.5, 0.9, 0.99, 0.999]), [500.0, 900.0, 990.0, 999.0]);
        let mut one = vec![7.0];
        assert_eq!(quantiles(&mut one, &[0.5, 0.999]), [7.0, 7.0]);
    }
}
