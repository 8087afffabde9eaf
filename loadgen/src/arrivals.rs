//! When open-loop requests are meant to arrive: evenly spaced (`uniform`, ticket `i` at
//! `i / rate`, as wrk2 does) or as a Poisson process (`poisson`: independent exponential gaps
//! of mean `1 / rate`), the arrivals queueing theory's M/·/c models assume. Uniform arrivals
//! into a server with a fixed service time never queue below 100% utilization, so a latency
//! curve measured with them has no knee to compare with M/D/c.
//!
//! A Poisson schedule is drawn from a seeded PRNG: the same seed gives the same arrival
//! instants in every run, so two runs (or two rounds of a sweep given the same seed) offer
//! exactly the same load.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// The seed `--arrivals poisson` uses: fixed, so every run offers the same arrival pattern.
pub const DEFAULT_SEED: u64 = 0x5ca1_ab1e;

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arrivals {
    /// Ticket `i` at `i / rate`: no variability at all.
    #[default]
    Uniform,
    /// A Poisson process: exponential gaps of mean `1 / rate`, drawn from `seed`.
    Poisson {
        /// The PRNG seed the gaps are drawn from.
        seed: u64,
    },
}

impl Arrivals {
    /// `uniform` or `poisson`, as `--arrivals` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Uniform => "uniform",
            Arrivals::Poisson { .. } => "poisson",
        }
    }
}

impl fmt::Display for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arrivals {
    type Err = String;

    fn from_str(s: &str) -> Result<Arrivals, String> {
        match s {
            "uniform" => Ok(Arrivals::Uniform),
            "poisson" => Ok(Arrivals::Poisson { seed: DEFAULT_SEED }),
            _ => Err(format!("`{s}` is not an arrival process; expected uniform or poisson")),
        }
    }
}

/// The next Poisson arrival, handed out in time order to whichever connection asks.
#[derive(Debug)]
pub struct PoissonClock {
    /// Requests per second.
    rate: f64,
    /// (the PRNG, the next arrival's offset from the start in seconds).
    state: Mutex<(fastrand::Rng, f64)>,
}

impl PoissonClock {
    /// A clock at `rate` per second (> 0) whose first arrival is at the start.
    pub fn new(rate: f64, seed: u64) -> PoissonClock {
        PoissonClock { rate, state: Mutex::new((fastrand::Rng::with_seed(seed), 0.0)) }
    }

    /// The next arrival's offset from the start; each call moves on by one exponential gap.
    pub fn next_offset(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = state.1;
        state.1 += gap(&mut state.0, self.rate);
        Duration::from_secs_f64(at)
    }

    /// How many arrivals fall before `horizon`: what a clock of this seed will hand out over
    /// a run that long (it replays the same gaps; bounded by `limit`).
    pub fn count_before(rate: f64, seed: u64, horizon: Duration, limit: u64) -> u64 {
        let (mut rng, mut at, mut n) = (fastrand::Rng::with_seed(seed), 0.0, 0);
        let end = horizon.as_secs_f64();
        while at < end && n < limit {
            n += 1;
            at += gap(&mut rng, rate);
        }
        n
    }
}

/// One exponential gap of mean `1 / rate` seconds (inverse transform of a uniform in (0, 1]).
fn gap(rng: &mut fastrand::Rng, rate: f64) -> f64 {
    let u = 1.0 - rng.f64(); // (0, 1]: never ln(0)
    -u.ln() / rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_names_and_refuses_others() {
        assert_eq!("uniform".parse::<Arrivals>(), Ok(Arrivals::Uniform));
        assert_eq!("poisson".parse::<Arrivals>(), Ok(Arrivals::Poisson { seed: DEFAULT_SEED }));
        assert!("bursty".parse::<Arrivals>().unwrap_err().contains("expected uniform or poisson"));
    }

    #[test]
    fn poisson_gaps_have_the_mean_and_spread_of_an_exponential() {
        // 200,000 gaps at 1000/s: mean 1 ms, and a coefficient of variation of 1 (uniform
        // arrivals have 0); P(gap > mean) = e^-1.
        let clock = PoissonClock::new(1000.0, 7);
        let offsets: Vec<f64> = (0..200_001).map(|_| clock.next_offset().as_secs_f64()).collect();
        let gaps: Vec<f64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!((mean - 1e-3).abs() < 1e-5, "mean gap {mean}");
        assert!((sd / mean - 1.0).abs() < 0.01, "coefficient of variation {}", sd / mean);
        let above = gaps.iter().filter(|g| **g > 1e-3).count() as f64 / n;
        assert!((above - (-1f64).exp()).abs() < 0.005, "P(gap > mean) = {above}");
        assert_eq!(offsets[0], 0.0, "the first arrival is at the start");
    }

    #[test]
    fn the_same_seed_replays_the_same_arrivals() {
        let (a, b) = (PoissonClock::new(50.0, 3), PoissonClock::new(50.0, 3));
        let first: Vec<Duration> = (0..100).map(|_| a.next_offset()).collect();
        let second: Vec<Duration> = (0..100).map(|_| b.next_offset()).collect();
        assert_eq!(first, second);
        let horizon = first[60] + Duration::from_nanos(1);
        assert_eq!(PoissonClock::count_before(50.0, 3, horizon, u64::MAX), 61);
        assert_eq!(PoissonClock::count_before(50.0, 3, horizon, 10), 10);
    }
}
