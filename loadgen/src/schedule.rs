//! The load model as data: which request comes next, to which path, and when it is *meant*
//! to be sent.
//!
//! Both models share one ticket counter; they differ only in [`Pace`]:
//!
//! - **Closed loop** (`Pace::Closed`): every connection sends its next request as soon as the
//!   previous one answered. A ticket has no intended time; latency runs from the actual send.
//! - **Open loop** (`Pace::Open`): ticket `i` is intended at `start + i / rate`, whatever the
//!   server does. A connection that takes a ticket waits until that instant; latency runs from
//!   the *intended* instant, so a stalled server is charged for the requests that queued up
//!   behind it (coordinated omission is corrected, as in wrk2).
//!
//! The worker loop in `client.rs` is the same for both: `while let Some(t) = next_ticket()`.
//!
//! Open-loop sends wake on Tokio's timer, which has millisecond resolution and rounds up: a
//! request may leave up to about 1 ms after its intended instant, and that lag is part of its
//! latency (wrk2 has the same caveat). The report's `schedule.max_lag_ms` shows how late sends
//! actually were.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::arrivals::{Arrivals, PoissonClock};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Back-to-back on each connection.
    Closed,
    /// A fixed total rate across all connections, in requests per second (> 0).
    Open { rate: f64 },
}

/// One request to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Position in the run, from 0.
    pub index: u64,
    /// Index of the path in the mix.
    pub path: usize,
    /// Open loop: when the request is meant to be sent (latency is measured from here).
    /// Closed loop: `None`, latency is measured from the actual send.
    pub intended: Option<Instant>,
}

/// The shared plan of a run: hands out tickets until the count or the deadline is reached.
#[derive(Debug)]
pub struct Schedule {
    pace: Pace,
    /// Ticket 0's intended instant (open loop) and the origin of the deadline.
    start: Instant,
    /// No ticket is handed out at or after this instant (the run's `--duration`).
    deadline: Option<Instant>,
    /// No more than this many tickets in total (`--requests`).
    total: Option<u64>,
    /// The mix unrolled to one path index per request (see `Mix::sequence`); never empty.
    sequence: Vec<u16>,
    /// The next ticket's index. It may run past the last ticket: every caller that sees
    /// `None` still bumped it, so it is not a count of tickets handed out.
    next: AtomicU64,
    /// Open loop with Poisson arrivals: the clock that spaces them (`None`: ticket `i` at
    /// `i / rate`), and how many of its arrivals fall before the deadline.
    poisson: Option<(PoissonClock, Option<u64>)>,
}

impl Schedule {
    /// A schedule starting at `start`. `sequence` must not be empty.
    pub fn new(
        pace: Pace,
        start: Instant,
        duration: Option<Duration>,
        total: Option<u64>,
        sequence: Vec<u16>,
    ) -> Schedule {
        assert!(!sequence.is_empty(), "a schedule needs at least one path");
        Schedule {
            pace,
            start,
            deadline: duration.map(|d| start + d),
            total,
            sequence,
            next: AtomicU64::new(0),
            poisson: None,
        }
    }

    /// The same schedule with open-loop tickets spaced by `arrivals` (a closed loop ignores
    /// it). Poisson arrivals before the deadline are counted here, by replaying the seed, so
    /// that [`planned`](Schedule::planned) stays exact.
    pub fn with_arrivals(mut self, arrivals: Arrivals) -> Schedule {
        self.poisson = match (self.pace, arrivals) {
            (Pace::Open { rate }, Arrivals::Poisson { seed }) => {
                let limit = self.total.unwrap_or(u64::MAX);
                let before =
                    self.deadline.map(|d| PoissonClock::count_before(rate, seed, d - self.start, limit));
                Some((PoissonClock::new(rate, seed), before))
            }
            _ => None,
        };
        self
    }

    /// The pacing model.
    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the run stops handing out tickets, if it is bounded in time.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How many tickets the plan holds, when that is known in advance: `--requests`, or for the
    /// open loop the number of intended instants before the deadline. `None` for a closed loop
    /// bounded only in time.
    pub fn planned(&self) -> Option<u64> {
        let by_time = match (self.pace, self.deadline) {
            (Pace::Open { .. }, Some(_)) if self.poisson.is_some() => self.poisson.as_ref().and_then(|p| p.1),
            (Pace::Open { rate }, Some(deadline)) => {
                Some(((deadline - self.start).as_secs_f64() * rate).ceil() as u64)
            }
            _ => None,
        };
        match (by_time, self.total) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next ticket, or `None` when the run is over (count reached, deadline passed, or,
    /// open loop, the next intended instant falls at or after the deadline).
    pub fn next_ticket(&self, now: Instant) -> Option<Ticket> {
        if self.deadline.is_some_and(|d| now >= d) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.total.is_some_and(|t| index >= t) {
            return None;
        }
        let intended = match self.pace {
            Pace::Closed => None,
            Pace::Open { rate } => {
                // Whole nanoseconds, rounded: ticket 400 at 200/s lands exactly on 2 s.
                let at = match &self.poisson {
                    Some((clock, _)) => self.start + clock.next_offset(),
                    None => self.start + Duration::from_nanos((index as f64 * 1e9 / rate).round() as u64),
                };
                if self.deadline.is_some_and(|d| at >= d) {
                    return None;
                }
                Some(at)
            }
        };
        let path = self.sequence[(index % self.sequence.len() as u64) as usize] as usize;
        Some(Ticket { index, path, intended })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &Schedule, now: Instant) -> Vec<Ticket> {
        std::iter::from_fn(|| s.next_ticket(now)).collect()
    }

    #[test]
    fn closed_loop_stops_at_the_count() {
        let t0 = Instant::now();
        let s = Schedule::new(Pace::Closed, t0, None, Some(5), vec![0, 0, 1, 0]);
        let tickets = drain(&s, t0);
        assert_eq!(tickets.len(), 5);
        assert!(tickets.iter().all(|t| t.intended.is_none()));
        let paths: Vec<usize> = tickets.iter().map(|t| t.path).collect();
        assert_eq!(paths, [0, 0, 1, 0, 0]);
        assert_eq!(s.planned(), Some(5));
        // Once over, it stays over.
        assert_eq!(s.next_ticket(t0), None);
    }

    #[test]
    fn closed_loop_stops_at_the_deadline() {
        let t0 = Instant::now();
        let s = Schedule::new(Pace::Closed, t0, Some(Duration::from_secs(2)), None, vec![0]);
        assert!(s.next_ticket(t0).is_some());
        assert!(s.next_ticket(t0 + Duration::from_millis(1999)).is_some());
        assert_eq!(s.next_ticket(t0 + Duration::from_secs(2)), None);
        assert_eq!(s.planned(), None);
    }

    #[test]
    fn open_loop_intends_tickets_at_i_over_rate() {
        //   rate 200/s -> one ticket every 5 ms; 2 s -> tickets 0..399, ticket 400 would be at 2 s
        let t0 = Instant::now();
        let s = Schedule::new(Pace::Open { rate: 200.0 }, t0, Some(Duration::from_secs(2)), None, vec![0]);
        assert_eq!(s.planned(), Some(400));
        let tickets = drain(&s, t0);
        assert_eq!(tickets.len(), 400);
        assert_eq!(tickets[0].intended, Some(t0));
        assert_eq!(tickets[1].intended, Some(t0 + Duration::from_millis(5)));
        assert_eq!(tickets[399].intended, Some(t0 + Duration::from_millis(1995)));
    }

    #[test]
    fn open_loop_with_a_count_and_no_deadline() {
        let t0 = Instant::now();
        let s = Schedule::new(Pace::Open { rate: 1000.0 }, t0, None, Some(3), vec![0]);
        let at: Vec<_> = drain(&s, t0).iter().map(|t| t.intended.unwrap() - t0).collect();
        assert_eq!(at, [Duration::ZERO, Duration::from_millis(1), Duration::from_millis(2)]);
    }

    #[test]
    fn open_loop_that_falls_behind_stops_at_the_deadline() {
        // A worker that only gets to ask at 2 s finds the run over, even though ticket 10 was
        // intended at 50 ms: the missing tickets are the report's "missed" count.
        let t0 = Instant::now();
        let s = Schedule::new(Pace::Open { rate: 200.0 }, t0, Some(Duration::from_secs(2)), None, vec![0]);
        for _ in 0..10 {
            s.next_ticket(t0).unwrap();
        }
        assert_eq!(s.next_ticket(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn poisson_arrivals_are_in_order_before_the_deadline_and_counted_in_advance() {
        //   rate 500/s for 2 s: about 1000 tickets, at irregular instants, never past 2 s
        let t0 = Instant::now();
        let two = Duration::from_secs(2);
        let poisson = Arrivals::Poisson { seed: 11 };
        let s =
            Schedule::new(Pace::Open { rate: 500.0 }, t0, Some(two), None, vec![0]).with_arrivals(poisson);
        let planned = s.planned().unwrap();
        let at: Vec<Duration> = drain(&s, t0).iter().map(|t| t.intended.unwrap() - t0).collect();
        assert_eq!(at.len() as u64, planned, "planned counts exactly the tickets handed out");
        assert!((900..1100).contains(&planned), "{planned}");
        assert!(at.windows(2).all(|w| w[0] <= w[1]) && *at.last().unwrap() < two);
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().any(|g| *g < Duration::from_micros(500)), "some arrivals bunch up");
        assert!(gaps.iter().any(|g| *g > Duration::from_millis(6)), "some leave gaps");
        // A closed loop ignores it.
        let closed = Schedule::new(Pace::Closed, t0, None, Some(3), vec![0]).with_arrivals(poisson);
        assert!(drain(&closed, t0).iter().all(|t| t.intended.is_none()));
    }

    #[test]
    fn count_and_deadline_take_the_smaller() {
        let t0 = Instant::now();
        let s =
            Schedule::new(Pace::Open { rate: 100.0 }, t0, Some(Duration::from_secs(10)), Some(50), vec![0]);
        assert_eq!(s.planned(), Some(50));
        assert_eq!(drain(&s, t0).len(), 50);
    }
}
