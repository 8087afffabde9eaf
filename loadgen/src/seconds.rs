//! The run second by second (what `--timeline` draws): requests sent, responses, 2xx, errors and
//! 503s, and the p50 and p99 of the responses that finished in each second.
//!
//! Every connection counts its current second in a [`Tally`] of its own (pure `push`, no
//! locks) and hands it to the shared [`Seconds`] when its second is over, or after
//! [`FLUSH_AFTER`] responses: one short lock per connection per second at most. The shared
//! record keeps one bucket per second of the run, each with a small histogram (2 significant
//! digits, about 10 KiB) made on first use.
//!
//! Memory is bounded by [`MAX_SECONDS`]: at most one hour of buckets (about 36 MiB with every
//! histogram made). A run of at most an hour has one bucket per second of its duration, and
//! anything that finishes after it counts in its last second; a longer run, or one bounded
//! only by `--requests`, keeps its first hour, and [`Seconds::dropped`] counts what came later.
//!
//! A staged run also keeps its stage table (`by_stage.rs`), counted by the time each request
//! was sent: the same [`Recorder`] feeds both.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::by_stage::{ByStage, StageSummary};
use crate::report::MAX_LATENCY_US;
use crate::stages::Stages;

/// The most seconds a run keeps.
pub const MAX_SECONDS: usize = 3600;
/// A connection hands its tally over after this many responses even within a second, so a
/// tally never holds more than this many latencies.
pub const FLUSH_AFTER: usize = 256;

/// One second of the run, as `--timeline` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds from the start of the run: this row covers `t` to `t + 1`.
    pub t: u32,
    /// Requests the load model called for in this second: in open loop the tickets intended
    /// in it (sent or not), in closed loop the requests sent.
    pub offered: u64,
    /// Requests sent in this second.
    pub sent: u64,
    /// Requests that got a response (any status) in this second.
    pub responses: u64,
    /// Responses with a 2xx status: the served rate.
    pub ok: u64,
    /// Requests that finished without a 2xx response (failed, or any other status).
    pub errors: u64,
    /// Responses with status 503 (a balancer shedding load, or no node to send to).
    pub unavailable: u64,
    /// Median latency of this second's responses, ms (2 significant digits); `None` without
    /// responses.
    pub p50_ms: Option<f64>,
    /// 99th percentile of this second's responses, ms.
    pub p99_ms: Option<f64>,
}

/// One connection's counts for one second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// The second counted, from the start of the run.
    pub second: usize,
    sent: u64,
    responses: u64,
    ok: u64,
    errors: u64,
    unavailable: u64,
    /// Latency of each response, µs (capped at [`MAX_LATENCY_US`], which fits a u32).
    latencies_us: Vec<u32>,
}

impl Tally {
    /// Counts a request sent.
    pub fn push_sent(&mut self) {
        self.sent += 1;
    }

    /// Counts a response with `status` after `latency`.
    pub fn push_response(&mut self, status: u16, latency: Duration) {
        self.responses += 1;
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            self.errors += 1;
        }
        if status == 503 {
            self.unavailable += 1;
        }
        let us = latency.as_micros().min(u128::from(MAX_LATENCY_US));
        self.latencies_us.push(us as u32);
    }

    /// Counts a request that failed without a response.
    pub fn push_failure(&mut self) {
        self.errors += 1;
    }

    /// Whether it should be handed over now, though its second is not over.
    pub fn is_full(&self) -> bool {
        self.latencies_us.len() >= FLUSH_AFTER
    }

    fn is_empty(&self) -> bool {
        self.sent == 0 && self.responses == 0 && self.errors == 0
    }
}

/// One second (or one stage) of the whole run: every connection's tallies for it, merged.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub(crate) sent: u64,
    pub(crate) responses: u64,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) unavailable: u64,
    /// Made on the first response of the second.
    latency: Option<Histogram<u32>>,
}

impl Bucket {
    /// Adds a connection's tally.
    pub(crate) fn merge(&mut self, t: &Tally) {
        self.sent += t.sent;
        self.responses += t.responses;
        self.ok += t.ok;
        self.errors += t.errors;
        self.unavailable += t.unavailable;
        if t.latencies_us.is_empty() {
            return;
        }
        let h = self.latency.get_or_insert_with(|| {
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static histogram bounds are valid")
        });
        for &us in &t.latencies_us {
            h.saturating_record(u64::from(us));
        }
    }

    /// The latency at quantile `q` of the responses counted, ms; `None` without responses.
    pub(crate) fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency.as_ref().map(|h| h.value_at_quantile(q) as f64 / 1000.0)
    }

    fn row(&self, t: u32, offered: Option<u64>) -> SecondRow {
        let ms = |q: f64| self.latency_ms(q);
        SecondRow {
            t,
            offered: offered.unwrap_or(self.sent),
            sent: self.sent,
            responses: self.responses,
            ok: self.ok,
            errors: self.errors,
            unavailable: self.unavailable,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    }
}

/// The shared per-second record of a run.
#[derive(Debug)]
pub struct Seconds {
    start: Instant,
    /// Whether the run's duration fits the record: then late events count in its last second.
    bounded: bool,
    buckets: Mutex<Vec<Bucket>>,
    /// Tallies of seconds past the last bucket (a run bounded only by a count), not kept.
    dropped: Mutex<u64>,
    /// A staged run's stage table; `None` for a run without stages.
    by_stage: Option<ByStage>,
}

impl Seconds {
    /// A record for a run starting at `start`, one bucket per second of `duration` (at most
    /// [`MAX_SECONDS`]; that many when the run has no duration), and one per stage of
    /// `stages`.
    pub fn new(start: Instant, duration: Option<Duration>, stages: Option<&Stages>) -> Seconds {
        let wanted = duration.map(|d| (d.as_secs_f64().ceil() as usize).max(1));
        let bounded = wanted.is_some_and(|n| n <= MAX_SECONDS);
        let len = wanted.unwrap_or(MAX_SECONDS).min(MAX_SECONDS);
        let mut buckets = Vec::new();
        buckets.resize_with(len, Bucket::default);
        let by_stage = stages.map(|s| ByStage::new(s, len));
        Seconds { start, bounded, buckets: Mutex::new(buckets), dropped: Mutex::new(0), by_stage }
    }

    /// A connection's recorder into this record.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder { seconds: self, tally: Tally::default(), by_stage: None }
    }

    /// The second of the run `at` falls in.
    pub fn second_of(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    /// Adds a connection's tally to its second.
    pub fn merge(&self, tally: &Tally) {
        if tally.is_empty() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let last = buckets.len() - 1;
        let i = match tally.second {
            s if s <= last => s,
            _ if self.bounded => last,
            _ => {
                drop(buckets);
                *self.dropped.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                return;
            }
        };
        buckets[i].merge(tally);
    }

    /// Tallies of seconds past the record's end that were not kept.
    pub fn dropped(&self) -> u64 {
        *self.dropped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rows of the run: every second of a run bounded in time, up to the last second with
    /// anything in it otherwise. `offered(t)` is the open loop's offered load of second `t`;
    /// `None` takes the requests sent.
    pub fn rows(&self, offered: impl Fn(u32) -> Option<u64>) -> Vec<SecondRow> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let used = match self.bounded {
            true => buckets.len(),
            false => buckets.iter().rposition(|b| b.sent + b.responses + b.errors > 0).map_or(0, |i| i + 1),
        };
        (0..used).map(|i| buckets[i].row(i as u32, offered(i as u32))).collect()
    }
}

impl Seconds {
    /// A staged run's stage table: each stage that lasts at least one whole second, with the
    /// requests sent in it and their outcomes (see `by_stage.rs`); empty without stages.
    pub fn stage_summaries(&self) -> Vec<StageSummary> {
        self.by_stage.as_ref().map_or_else(Vec::new, ByStage::summaries)
    }
}

/// One connection's way into [`Seconds`]: counts into its tally and hands it over when the
/// second changes or the tally is full; in a staged run, also into a tally of the stage each
/// request was sent in. [`Recorder::flush`] at the end of the connection.
#[derive(Debug)]
pub struct Recorder<'a> {
    seconds: &'a Seconds,
    /// The second now counted: requests sent in it, responses finished in it.
    tally: Tally,
    /// A staged run: the stage (its index) of the request in flight, and the tally of the
    /// requests this connection sent in it. A connection has one request in flight at a
    /// time, so its stages only move forward.
    by_stage: Option<(usize, Tally)>,
}

impl Recorder<'_> {
    /// Counts a request sent at `at`.
    pub fn sent(&mut self, at: Instant) {
        self.at(at).push_sent();
        if let Some(t) = self.stage_of(at) {
            t.push_sent();
        }
    }

    /// Counts the response to the request sent at `sent`: `status` after `latency`, at `now`.
    pub fn response(&mut self, sent: Instant, now: Instant, status: u16, latency: Duration) {
        self.at(now).push_response(status, latency);
        if let Some(t) = self.stage_of(sent) {
            t.push_response(status, latency);
        }
    }

    /// Counts the request sent at `sent` as failed, at `now`, without a response.
    pub fn failure(&mut self, sent: Instant, now: Instant) {
        self.at(now).push_failure();
        if let Some(t) = self.stage_of(sent) {
            t.push_failure();
        }
    }

    /// The tally of the second `at` falls in, after handing over an older or full one.
    fn at(&mut self, at: Instant) -> &mut Tally {
        let second = self.seconds.second_of(at);
        if second != self.tally.second || self.tally.is_full() {
            self.flush_second();
            self.tally.second = second;
        }
        &mut self.tally
    }

    /// The tally of the stage a request sent at `sent` belongs to, after handing over an
    /// older or full one; `None` for a run without stages.
    fn stage_of(&mut self, sent: Instant) -> Option<&mut Tally> {
        let seconds: &Seconds = self.seconds;
        let stage = seconds.by_stage.as_ref()?.stage_of(seconds.second_of(sent))?;
        if self.by_stage.as_ref().is_some_and(|(at, t)| *at != stage || t.is_full()) {
            self.flush_stage();
        }
        Some(&mut self.by_stage.get_or_insert_with(|| (stage, Tally::default())).1)
    }

    /// Hands the current tallies to the shared record.
    pub fn flush(&mut self) {
        self.flush_second();
        self.flush_stage();
    }

    fn flush_second(&mut self) {
        self.seconds.merge(&self.tally);
        // Keep the latency buffer's allocation for the next second.
        let mut latencies_us = std::mem::take(&mut self.tally.latencies_us);
        latencies_us.clear();
        self.tally = Tally { second: self.tally.second, latencies_us, ..Tally::default() };
    }

    fn flush_stage(&mut self) {
        if let (Some((stage, tally)), Some(record)) = (self.by_stage.take(), &self.seconds.by_stage) {
            record.merge(stage, &tally);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tallies_count_and_merge_into_their_second() {
        let t0 = Instant::now();
        let seconds = Seconds::new(t0, Some(Duration::from_secs(3)), None);
        // Connection A: second 0 sends 2, gets a 200 and a 503; second 2 gets a 200.
        let mut a = seconds.recorder();
        a.at(t0).push_sent();
        a.at(t0 + ms(10)).push_sent();
        a.at(t0 + ms(20)).push_response(200, ms(4));
        a.at(t0 + ms(900)).push_response(503, ms(8));
        a.at(t0 + ms(2500)).push_response(200, ms(30));
        a.flush();
        // Connection B: second 0 fails once; a late response (3.2 s) counts in the last second.
        let mut b = seconds.recorder();
        b.at(t0 + ms(100)).push_failure();
        b.at(t0 + ms(3200)).push_response(200, ms(40));
        b.flush();

        let rows = seconds.rows(|_| None);
        assert_eq!(rows.len(), 3);
        let r0 = &rows[0];
        assert_eq!((r0.offered, r0.sent, r0.responses, r0.ok, r0.errors, r0.unavailable), (2, 2, 2, 1, 2, 1));
        // 2 significant digits: within 1%.
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() <= want * 0.01);
        assert!(near(r0.p50_ms, 4.0) && near(r0.p99_ms, 8.0), "{r0:?}");
        assert_eq!((rows[1].responses, rows[1].p50_ms), (0, None));
        assert!(rows[2].ok == 2 && near(rows[2].p99_ms, 40.0), "{:?}", rows[2]);
        assert_eq!(seconds.dropped(), 0);
    }

    #[test]
    fn a_full_tally_is_handed_over_within_its_second() {
        let t0 = Instant::now();
        let seconds = Seconds::new(t0, Some(Duration::from_secs(1)), None);
        let mut r = seconds.recorder();
        for _ in 0..FLUSH_AFTER * 2 + 3 {
            r.at(t0).push_response(200, ms(1));
        }
        assert!(r.tally.latencies_us.len() <= FLUSH_AFTER, "never more than FLUSH_AFTER held");
        r.flush();
        assert_eq!(seconds.rows(|_| Some(7))[0].ok, FLUSH_AFTER as u64 * 2 + 3);
        assert_eq!(seconds.rows(|_| Some(7))[0].offered, 7, "the open loop's offered load");
    }

    #[test]
    fn a_run_without_a_duration_keeps_its_first_hour() {
        let t0 = Instant::now();
        let seconds = Seconds::new(t0, None, None);
        let mut r = seconds.recorder();
        r.at(t0 + ms(1500)).push_sent();
        r.at(t0 + Duration::from_secs(MAX_SECONDS as u64 + 5)).push_sent();
        r.flush();
        assert_eq!(seconds.rows(|_| None).len(), 2, "up to the last second with data");
        assert_eq!(seconds.dropped(), 1);
    }
}
