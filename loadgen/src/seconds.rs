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

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::report::MAX_LATENCY_US;

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

/// One second of the whole run: every connection's tallies for it, merged.
#[derive(Debug, Default)]
struct Bucket {
    sent: u64,
    responses: u64,
    ok: u64,
    errors: u64,
    unavailable: u64,
    /// Made on the first response of the second.
    latency: Option<Histogram<u32>>,
}

impl Bucket {
    fn merge(&mut self, t: &Tally) {
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

    /// Adds another second's counts and latencies to this one.
    fn add(&mut self, other: &Bucket) {
        self.sent += other.sent;
        self.responses += other.responses;
        self.ok += other.ok;
        self.errors += other.errors;
        self.unavailable += other.unavailable;
        if let Some(h) = &other.latency {
            match &mut self.latency {
                Some(mine) => mine.add(h).expect("buckets share their bounds"),
                None => self.latency = Some(h.clone()),
            }
        }
    }

    fn row(&self, t: u32, offered: Option<u64>) -> SecondRow {
        let ms = |q: f64| self.latency.as_ref().map(|h| h.value_at_quantile(q) as f64 / 1000.0);
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
}

impl Seconds {
    /// A record for a run starting at `start`, one bucket per second of `duration` (at most
    /// [`MAX_SECONDS`]; that many when the run has no duration).
    pub fn new(start: Instant, duration: Option<Duration>) -> Seconds {
        let wanted = duration.map(|d| (d.as_secs_f64().ceil() as usize).max(1));
        let bounded = wanted.is_some_and(|n| n <= MAX_SECONDS);
        let len = wanted.unwrap_or(MAX_SECONDS).min(MAX_SECONDS);
        let mut buckets = Vec::new();
        buckets.resize_with(len, Bucket::default);
        Seconds { start, bounded, buckets: Mutex::new(buckets), dropped: Mutex::new(0) }
    }

    /// A connection's recorder into this record.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder { seconds: self, tally: Tally::default() }
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

/// One stage of a staged run (`--stages`), summed over the seconds it covers: what the text
/// report's `Stages` table and the JSON's `by_stage` show, so each stage's latency is read
/// apart (a low stage's p99 is not drowned by a high one's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    /// Its position in `--stages`, from 1.
    pub stage: usize,
    /// The seconds of the run it covers, `from_s` to `to_s` (whole seconds: a second belongs to
    /// the stage its middle falls in).
    pub from_s: u32,
    pub to_s: u32,
    /// The target at its start and at its end (req/s, or connections).
    pub from_target: f64,
    pub to_target: f64,
    /// Requests sent, 2xx responses, requests without a 2xx, 503s.
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub unavailable: u64,
    /// Latency percentiles of its responses, ms (`None` without responses).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Seconds {
    /// Each stage of `stages` (that lasts at least one whole second), summed from the
    /// seconds recorded.
    pub fn stage_summaries(&self, stages: &crate::stages::Stages) -> Vec<StageSummary> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let (mut start, mut from_target) = (0.0, 0.0);
        for (i, stage) in stages.stages.iter().enumerate() {
            let end = start + stage.duration_s;
            // Second k belongs here when k + 0.5 falls in [start, end).
            let (from, to) =
                ((start - 0.5f64).ceil().max(0.0) as usize, (end - 0.5f64).ceil().max(0.0) as usize);
            let to = to.min(buckets.len());
            if from < to {
                let mut sum = Bucket::default();
                for b in &buckets[from..to] {
                    sum.add(b);
                }
                let ms = |q: f64| sum.latency.as_ref().map(|h| h.value_at_quantile(q) as f64 / 1000.0);
                out.push(StageSummary {
                    stage: i + 1,
                    from_s: from as u32,
                    to_s: to as u32,
                    from_target,
                    to_target: stage.target,
                    sent: sum.sent,
                    ok: sum.ok,
                    errors: sum.errors,
                    unavailable: sum.unavailable,
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                });
            }
            start = end;
            from_target = stage.target;
        }
        out
    }
}

/// One connection's way into [`Seconds`]: counts into its tally and hands it over when the
/// second changes or the tally is full. [`Recorder::flush`] at the end of the connection.
#[derive(Debug)]
pub struct Recorder<'a> {
    seconds: &'a Seconds,
    tally: Tally,
}

impl Recorder<'_> {
    /// The tally of the second `at` falls in, after handing over an older or full one.
    pub fn at(&mut self, at: Instant) -> &mut Tally {
        let second = self.seconds.second_of(at);
        if second != self.tally.second || self.tally.is_full() {
            self.flush();
            self.tally.second = second;
        }
        &mut self.tally
    }

    /// Hands the current tally to the shared record.
    pub fn flush(&mut self) {
        self.seconds.merge(&self.tally);
        // Keep the latency buffer's allocation for the next second.
        let mut latencies_us = std::mem::take(&mut self.tally.latencies_us);
        latencies_us.clear();
        self.tally = Tally { second: self.tally.second, latencies_us, ..Tally::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn stages_sum_the_seconds_they_cover() {
        use crate::stages::{Stage, StageTarget, Stages};
        let t0 = Instant::now();
        let seconds = Seconds::new(t0, Some(Duration::from_secs(4)));
        let mut r = seconds.recorder();
        // Seconds 0 and 1 answer in 1 ms, seconds 2 and 3 in 100 ms (one a 503).
        for (at, status, latency) in [(100, 200, 1), (1100, 200, 1), (2100, 200, 100), (3100, 503, 100)] {
            r.at(t0 + ms(at)).push_sent();
            r.at(t0 + ms(at)).push_response(status, ms(latency));
        }
        r.flush();
        let stages = Stages {
            of: StageTarget::Rate,
            stages: vec![
                Stage { duration_s: 2.0, target: 10.0 },
                Stage { duration_s: 0.0, target: 50.0 }, // a step: no second of its own
                Stage { duration_s: 2.0, target: 50.0 },
            ],
        };
        let s = seconds.stage_summaries(&stages);
        assert_eq!(s.iter().map(|x| (x.stage, x.from_s, x.to_s)).collect::<Vec<_>>(), [(1, 0, 2), (3, 2, 4)]);
        assert_eq!((s[0].sent, s[0].ok, s[0].unavailable), (2, 2, 0));
        assert_eq!((s[1].sent, s[1].ok, s[1].errors, s[1].unavailable), (2, 1, 1, 1));
        assert!(s[0].p99_ms.unwrap() < 1.1 && s[1].p99_ms.unwrap() > 99.0, "{s:?}");
        assert_eq!((s[1].from_target, s[1].to_target), (50.0, 50.0));
    }

    #[test]
    fn tallies_count_and_merge_into_their_second() {
        let t0 = Instant::now();
        let seconds = Seconds::new(t0, Some(Duration::from_secs(3)));
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
        let seconds = Seconds::new(t0, Some(Duration::from_secs(1)));
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
        let seconds = Seconds::new(t0, None);
        let mut r = seconds.recorder();
        r.at(t0 + ms(1500)).push_sent();
        r.at(t0 + Duration::from_secs(MAX_SECONDS as u64 + 5)).push_sent();
        r.flush();
        assert_eq!(seconds.rows(|_| None).len(), 2, "up to the last second with data");
        assert_eq!(seconds.dropped(), 1);
    }
}
