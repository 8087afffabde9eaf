//! The load model as data: which request comes next, to which path, and when it is *meant*
//! to be sent.
//!
//! Every model shares one ticket counter; they differ only in [`Pace`]:
//!
//! - **Closed loop** (`Pace::Closed`): every connection sends its next request as soon as the
//!   previous one answered. A ticket has no intended time; latency runs from the actual send.
//! - **Open loop** (`Pace::Open`): ticket `i` is intended at `start + i / rate`, whatever the
//!   server does. A connection that takes a ticket waits until that instant; latency runs from
//!   the *intended* instant, so a stalled server is charged for the requests that queued up
//!   behind it (coordinated omission is corrected, as in wrk2).
//!   With `--arrivals poisson` the instants are a Poisson process instead (exponential gaps
//!   from a fixed seed, see `arrivals.rs`), what the queueing models assume.
//! - **Ramped open loop** (`Pace::OpenRamp`, `--stages`): the rate follows a [`Curve`]; ticket
//!   `k` is intended when the area under the rate curve reaches `k`.
//! - **Ramped closed loop** (`Pace::ClosedRamp`, `--stages-of connections`): connection `j`
//!   (from 0) sends back-to-back while the curve is at `j + 0.5` or above (the curve rounded
//!   to the nearest whole number of connections), and otherwise waits for its turn.
//!
//! The worker loop in `client.rs` is the same for all: `while let Some(t) = next_ticket()`.
//!
//! Open-loop sends wake on Tokio's timer, which has millisecond resolution and rounds up: a
//! request may leave up to about 1 ms after its intended instant, and that lag is part of its
//! latency (wrk2 has the same caveat). The report's `schedule.max_lag_ms` shows how late sends
//! actually were.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::arrivals::{Arrivals, PoissonClock};
use crate::stages::Curve;

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Back-to-back on each connection.
    Closed,
    /// A fixed total rate across all connections, in requests per second (> 0).
    Open { rate: f64 },
    /// A total rate that follows the curve, in requests per second.
    OpenRamp(Curve),
    /// Back-to-back on as many connections as the curve says.
    ClosedRamp(Curve),
}

impl Pace {
    /// Whether requests are sent on a schedule of their own (open loop).
    pub fn is_open(&self) -> bool {
        matches!(self, Pace::Open { .. } | Pace::OpenRamp(_))
    }
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
    /// Ramped closed loop: the connection's turn has not come yet; send no earlier than this
    /// (latency still runs from the actual send).
    pub not_before: Option<Instant>,
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
    /// [`Schedule::planned`], worked out once: no ticket at or past it is handed out.
    limit: Option<u64>,
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
        let mut schedule = Schedule {
            pace,
            start,
            deadline: duration.map(|d| start + d),
            total,
            sequence,
            next: AtomicU64::new(0),
            limit: None,
            poisson: None,
        };
        schedule.limit = schedule.planned();
        schedule
    }

    /// The same schedule with fixed-rate open-loop tickets spaced by `arrivals` (a closed loop
    /// and a ramped rate ignore it). Poisson arrivals before the deadline are counted here, by
    /// replaying the seed, so that [`planned`](Schedule::planned) stays exact.
    pub fn with_arrivals(mut self, arrivals: Arrivals) -> Schedule {
        self.poisson = match (&self.pace, arrivals) {
            (Pace::Open { rate }, Arrivals::Poisson { seed }) => {
                let limit = self.total.unwrap_or(u64::MAX);
                let before =
                    self.deadline.map(|d| PoissonClock::count_before(*rate, seed, d - self.start, limit));
                Some((PoissonClock::new(*rate, seed), before))
            }
            _ => None,
        };
        self.limit = self.planned();
        self
    }

    /// The pacing model.
    pub fn pace(&self) -> &Pace {
        &self.pace
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
        let by_time = match (self.deadline, &self.poisson) {
            (Some(_), Some((_, before))) => *before,
            (Some(deadline), None) => self.due_by((deadline - self.start).as_secs_f64()),
            (None, _) => None,
        };
        match (by_time, self.total) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Open loop: how many tickets are intended before `t` seconds into the run (the count
    /// and the deadline aside); `None` for a closed loop.
    fn due_by(&self, t: f64) -> Option<u64> {
        // Ticket k is intended before t when k < area(t): there are ⌈area(t)⌉ of them. The
        // small allowance keeps an area that is whole but for rounding from counting one more.
        let count = |area: f64| (area - 1e-9).ceil().max(0.0) as u64;
        match &self.pace {
            Pace::Open { rate } => Some(count(t * rate)),
            Pace::OpenRamp(curve) => Some(count(curve.area_to(t))),
            Pace::Closed | Pace::ClosedRamp(_) => None,
        }
    }

    /// Open loop: the tickets intended within second `s` of the run (with Poisson arrivals,
    /// the expected count: the rate) (from `s` to `s + 1`
    /// seconds), whether or not they were sent: the offered load of that second. `None` for
    /// a closed loop, whose offered load is what it sent.
    pub fn offered_in(&self, s: u32) -> Option<u64> {
        let cap = |n: u64| self.limit.map_or(n, |p| n.min(p));
        let before = |t: f64| self.due_by(t).map(cap);
        Some(before(f64::from(s) + 1.0)? - before(f64::from(s))?)
    }

    /// The next ticket for connection `conn` (numbered from 0), or `None` when the run is over
    /// for it (count reached, deadline passed, in open loop the next intended instant falls at
    /// or after the deadline, in a ramped closed loop its turn never comes again).
    pub fn next_ticket(&self, now: Instant, conn: usize) -> Option<Ticket> {
        if self.deadline.is_some_and(|d| now >= d) {
            return None;
        }
        let not_before = match &self.pace {
            Pace::ClosedRamp(curve) => self.turn(curve, now, conn)?,
            _ => None,
        };
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|l| index >= l) {
            return None;
        }
        let intended = match &self.pace {
            Pace::Closed | Pace::ClosedRamp(_) => None,
            Pace::Open { rate } => match &self.poisson {
                Some((clock, _)) => Some(self.start + clock.next_offset()),
                // Whole nanoseconds, rounded: ticket 400 at 200/s lands exactly on 2 s.
                None => Some(self.start + Duration::from_nanos((index as f64 * 1e9 / rate).round() as u64)),
            },
            Pace::OpenRamp(curve) => {
                Some(self.start + Duration::from_secs_f64(curve.time_of_area(index as f64)?))
            }
        };
        if intended.is_some_and(|at| self.deadline.is_some_and(|d| at >= d)) {
            return None;
        }
        let path = self.sequence[(index % self.sequence.len() as u64) as usize] as usize;
        Some(Ticket { index, path, intended, not_before })
    }

    /// Ramped closed loop: `Some(None)` when connection `conn` may send now, `Some(Some(at))`
    /// when its turn comes at `at`, `None` when it never comes again.
    fn turn(&self, curve: &Curve, now: Instant, conn: usize) -> Option<Option<Instant>> {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        let at = curve.first_at_least(conn as f64 + 0.5, t)?;
        if at <= t {
            return Some(None);
        }
        let at = self.start + Duration::from_secs_f64(at);
        if self.deadline.is_some_and(|d| at >= d) {
            return None;
        }
        Some(Some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &Schedule, now: Instant) -> Vec<Ticket> {
        std::iter::from_fn(|| s.next_ticket(now, 0)).collect()
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
        assert_eq!(s.next_ticket(t0, 0), None);
    }

    #[test]
    fn closed_loop_stops_at_the_deadline() {
        let t0 = Instant::now();
        let s = Schedule::new(Pace::Closed, t0, Some(Duration::from_secs(2)), None, vec![0]);
        assert!(s.next_ticket(t0, 0).is_some());
        assert!(s.next_ticket(t0 + Duration::from_millis(1999), 0).is_some());
        assert_eq!(s.next_ticket(t0 + Duration::from_secs(2), 0), None);
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
            s.next_ticket(t0, 0).unwrap();
        }
        assert_eq!(s.next_ticket(t0 + Duration::from_secs(2), 0), None);
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

    fn ramp(stages: &str) -> Curve {
        Curve::new(&stages.parse::<crate::stages::StageList>().unwrap().0)
    }

    #[test]
    fn a_ramped_rate_intends_tickets_where_its_area_reaches_them() {
        //   0 → 100 req/s over 2 s, then 100 req/s for 2 s: 100 + 200 = 300 tickets;
        //   N(t) = 25t² on the ramp, so ticket k is intended at √(k/25) s
        let t0 = Instant::now();
        let curve = ramp("2s:100,2s:100");
        let s = Schedule::new(Pace::OpenRamp(curve), t0, Some(Duration::from_secs(4)), None, vec![0]);
        assert_eq!(s.planned(), Some(300));
        let tickets = drain(&s, t0);
        assert_eq!(tickets.len(), 300);
        let at = |i: usize| (tickets[i].intended.unwrap() - t0).as_secs_f64();
        assert!(at(0) == 0.0 && (at(25) - 1.0).abs() < 1e-6 && (at(100) - 2.0).abs() < 1e-6);
        assert!((at(200) - 3.0).abs() < 1e-6 && (at(299) - 3.99).abs() < 1e-6);
        assert!(tickets.windows(2).all(|w| w[0].intended < w[1].intended), "in order");
        // The offered load of each second: 25, 75, then 100 and 100.
        assert_eq!((0..5).map(|i| s.offered_in(i).unwrap()).collect::<Vec<_>>(), [25, 75, 100, 100, 0]);
    }

    #[test]
    fn the_offered_load_of_a_fixed_rate_and_a_count() {
        let t0 = Instant::now();
        let s =
            Schedule::new(Pace::Open { rate: 150.0 }, t0, Some(Duration::from_secs(2)), Some(200), vec![0]);
        assert_eq!((0..3).map(|i| s.offered_in(i).unwrap()).collect::<Vec<_>>(), [150, 50, 0]);
        let closed = Schedule::new(Pace::Closed, t0, Some(Duration::from_secs(2)), None, vec![0]);
        assert_eq!(closed.offered_in(0), None, "a closed loop offers what it sends");
    }

    #[test]
    fn a_ramped_closed_loop_gives_each_connection_its_turn() {
        //   connections 0 → 4 over 4 s, then 4 → 0 over 4 s: connection j may send while the
        //   curve is at j + 0.5 or above (from 0.5 + j s to 7.5 − j s)
        let t0 = Instant::now();
        let curve = ramp("4s:4,4s:0");
        let s = Schedule::new(Pace::ClosedRamp(curve), t0, Some(Duration::from_secs(8)), None, vec![0]);
        let secs = |x: f64| t0 + Duration::from_secs_f64(x);
        let first = s.next_ticket(t0, 0).unwrap();
        assert_eq!((first.intended, first.not_before), (None, Some(secs(0.5))));
        assert_eq!(s.next_ticket(t0, 3).unwrap().not_before, Some(secs(3.5)));
        assert_eq!(s.next_ticket(secs(2.0), 1).unwrap().not_before, None, "its turn has come");
        assert_eq!(s.next_ticket(secs(5.0), 3), None, "connection 3 is done after 4.5 s");
        assert_eq!(s.next_ticket(secs(5.0), 2).unwrap().not_before, None);
        assert_eq!(s.next_ticket(secs(7.0), 1), None);
        assert_eq!(s.planned(), None);
    }
}
