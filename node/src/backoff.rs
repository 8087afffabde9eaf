//! The respawn delay of one worker slot. A worker that dies is replaced at once, unless its
//! slot keeps dying right after each start: that is a crash loop, and each further quick death
//! doubles the wait before the next attempt, up to a cap (PM2's `min_uptime` plus exponential
//! restart delay).
//!
//! ```text
//!   consecutive quick deaths:  0   1     2       3       4    ...  8+
//!   delay:                     0   0   100ms   200ms   400ms  ...  5s (cap)
//! ```

use std::time::{Duration, Instant};

/// A worker that dies younger than this counts as a quick death.
pub const MIN_UPTIME: Duration = Duration::from_secs(1);
/// Delay after the second quick death in a row.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Crash-loop state of one slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive deaths younger than [`MIN_UPTIME`].
    quick_deaths: u32,
    /// No respawn before this instant.
    not_before: Option<Instant>,
}

impl Backoff {
    /// Records a death (or failed spawn) after `uptime` at `now`; returns the respawn delay.
    pub fn record_death(&mut self, uptime: Duration, now: Instant) -> Duration {
        if uptime < MIN_UPTIME {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        } else {
            self.quick_deaths = 0;
        }
        let delay = delay_after(self.quick_deaths);
        self.not_before = Some(now + delay);
        delay
    }

    /// Whether the slot may be respawned at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// Consecutive quick deaths so far.
    pub fn quick_deaths(&self) -> u32 {
        self.quick_deaths
    }
}

/// The wait after `quick_deaths` consecutive quick deaths.
fn delay_after(quick_deaths: u32) -> Duration {
    match quick_deaths {
        0 | 1 => Duration::ZERO,
        n => FIRST_DELAY.saturating_mul(1u32 << (n - 2).min(16)).min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn a_long_lived_worker_is_replaced_at_once() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(now));
        assert_eq!(b.record_death(LONG, now), Duration::ZERO);
        assert!(b.ready(now));
    }

    #[test]
    fn quick_deaths_double_the_delay_up_to_the_cap() {
        let now = Instant::now();
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..10).map(|_| b.record_death(QUICK, now).as_millis() as u64).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert!(!b.ready(now + Duration::from_millis(4999)));
        assert!(b.ready(now + MAX_DELAY));
        assert_eq!(b.quick_deaths(), 10);
    }

    #[test]
    fn surviving_min_uptime_resets_the_loop() {
        let now = Instant::now();
        let mut b = Backoff::default();
        b.record_death(QUICK, now);
        b.record_death(QUICK, now);
        assert_eq!(b.record_death(LONG, now), Duration::ZERO);
        assert_eq!(b.record_death(QUICK, now), Duration::ZERO);
        assert_eq!(b.record_death(QUICK, now), FIRST_DELAY);
    }

    #[test]
    fn the_count_cannot_overflow() {
        let mut b = Backoff { quick_deaths: u32::MAX, not_before: None };
        assert_eq!(b.record_death(QUICK, Instant::now()), MAX_DELAY);
    }
}
