//! The respawn delay of a supervised slot (a node's worker, or a lab's node or balancer). A
//! child that dies is replaced at once, unless its slot keeps dying right after each start:
//! that is a crash loop, and each further quick death doubles the wait before the next
//! attempt, up to a cap (PM2's `min_uptime` plus exponential restart delay). Each supervisor
//! picks its constants as a [`Policy`].
//!
//! ```text
//!   consecutive quick deaths:  0   1     2        3        4     ...  cap
//!   delay:                     0   0   first   2·first  4·first  ...  max
//!   Policy::WORKER (first 100 ms, max 5 s); Policy::LAB (first 500 ms, max 30 s)
//! ```

use std::time::{Duration, Instant};

/// The constants of a backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A child that dies younger than this counts as a quick death.
    pub min_uptime: Duration,
    /// Delay after the second quick death in a row.
    pub first_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl Policy {
    /// A node's worker slots: workers start in milliseconds, so a second is a long life.
    pub const WORKER: Policy = Policy {
        min_uptime: Duration::from_secs(1),
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
    };
    /// A lab's children (node primaries, the balancer): they start their own children and
    /// wait for them, so a child that lived 10 s was not in a crash loop.
    pub const LAB: Policy = Policy {
        min_uptime: Duration::from_secs(10),
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
    };

    /// The wait after `quick_deaths` consecutive quick deaths.
    pub fn delay_after(&self, quick_deaths: u32) -> Duration {
        match quick_deaths {
            0 | 1 => Duration::ZERO,
            n => self.first_delay.saturating_mul(1u32 << (n - 2).min(16)).min(self.max_delay),
        }
    }
}

/// Crash-loop state of one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    policy: Policy,
    /// Consecutive deaths younger than the policy's `min_uptime`.
    quick_deaths: u32,
    /// No respawn before this instant.
    not_before: Option<Instant>,
}

impl Backoff {
    /// A slot that has not died yet.
    pub fn new(policy: Policy) -> Backoff {
        Backoff { policy, quick_deaths: 0, not_before: None }
    }

    /// Records a death (or failed spawn) after `uptime` at `now`; returns the respawn delay.
    pub fn record_death(&mut self, uptime: Duration, now: Instant) -> Duration {
        if uptime < self.policy.min_uptime {
            self.quick_deaths = self.quick_deaths.saturating_add(1);
        } else {
            self.quick_deaths = 0;
        }
        let delay = self.policy.delay_after(self.quick_deaths);
        self.not_before = Some(now + delay);
        delay
    }

    /// Whether the slot may be respawned at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// When the slot may be respawned (`None`: at once).
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Consecutive quick deaths so far.
    pub fn quick_deaths(&self) -> u32 {
        self.quick_deaths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn a_long_lived_child_is_replaced_at_once() {
        let now = Instant::now();
        let mut b = Backoff::new(Policy::WORKER);
        assert!(b.ready(now));
        assert_eq!(b.record_death(LONG, now), Duration::ZERO);
        assert!(b.ready(now));
    }

    #[test]
    fn quick_deaths_double_the_delay_up_to_the_cap() {
        let now = Instant::now();
        let mut b = Backoff::new(Policy::WORKER);
        let delays: Vec<u64> = (0..10).map(|_| b.record_death(QUICK, now).as_millis() as u64).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert!(!b.ready(now + Duration::from_millis(4999)));
        assert!(b.ready(now + Policy::WORKER.max_delay));
        assert_eq!(b.quick_deaths(), 10);
    }

    #[test]
    fn the_lab_policy_waits_longer() {
        let now = Instant::now();
        let mut b = Backoff::new(Policy::LAB);
        // 5 s is a quick death for a lab child (min_uptime 10 s), not for a worker.
        let delays: Vec<u64> =
            (0..9).map(|_| b.record_death(Duration::from_secs(5), now).as_millis() as u64).collect();
        assert_eq!(delays, [0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }

    #[test]
    fn surviving_min_uptime_resets_the_loop() {
        let now = Instant::now();
        let mut b = Backoff::new(Policy::WORKER);
        b.record_death(QUICK, now);
        b.record_death(QUICK, now);
        assert_eq!(b.record_death(LONG, now), Duration::ZERO);
        assert_eq!(b.record_death(QUICK, now), Duration::ZERO);
        assert_eq!(b.record_death(QUICK, now), Policy::WORKER.first_delay);
    }

    #[test]
    fn the_count_cannot_overflow() {
        let mut b = Backoff { quick_deaths: u32::MAX, ..Backoff::new(Policy::WORKER) };
        assert_eq!(b.record_death(QUICK, Instant::now()), Policy::WORKER.max_delay);
    }
}
