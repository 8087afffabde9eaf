//! A staged run stage by stage: what the text report's `Stages` table and the JSON's
//! `by_stage` show, so each stage's latency is read apart (a low stage's p99 is not drowned by
//! a high one's).
//!
//! A request counts in the stage that sent it, with its outcome whenever that came. A busy
//! stage's backlog answered during a quiet one is the busy stage's: no stage shows more
//! answers than it sent, and a stage's latency is that of the load it offered. (The timeline,
//! second by second, counts responses in the second they finished; see `seconds.rs`.)
//!
//! Each stage covers whole seconds of the run: a second belongs to the stage its middle falls
//! in, and a last partial second to the last stage. A stage shorter than that (a step, `0s:N`)
//! has no row. Connections count into a tally of their own per stage (see
//! [`crate::seconds::Recorder`]) and hand it over when their stage changes.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::seconds::{Bucket, Tally};
use crate::stages::Stages;

/// One stage of a staged run (`--stages`), as reported.
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
    /// Requests sent in its seconds; then, of those requests whenever they finished: 2xx
    /// responses, requests without a 2xx, 503s (`ok + errors <= sent`: the rest were cut off
    /// at the end of the run).
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub unavailable: u64,
    /// Latency percentiles of the responses to its requests, ms (`None` without responses).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The seconds one stage covers, and its targets.
#[derive(Debug, Clone, PartialEq)]
struct Span {
    stage: usize,
    from_s: u32,
    to_s: u32,
    from_target: f64,
    to_target: f64,
}

/// The shared per-stage record of a staged run.
#[derive(Debug)]
pub struct ByStage {
    /// In order, every second of the run in exactly one (none when no stage lasts a second).
    spans: Vec<Span>,
    buckets: Mutex<Vec<Bucket>>,
}

impl ByStage {
    /// The record of `stages` over a run of `seconds` whole or partial seconds.
    pub fn new(stages: &Stages, seconds: usize) -> ByStage {
        let mut spans = Vec::new();
        let (mut start, mut from_target) = (0.0, 0.0);
        for (i, stage) in stages.stages.iter().enumerate() {
            let end = start + stage.duration_s;
            // Second k belongs here when k + 0.5 falls in [start, end).
            let (from, to) =
                ((start - 0.5f64).ceil().max(0.0) as usize, (end - 0.5f64).ceil().max(0.0) as usize);
            let to = to.min(seconds);
            if from < to {
                spans.push(Span {
                    stage: i + 1,
                    from_s: from as u32,
                    to_s: to as u32,
                    from_target,
                    to_target: stage.target,
                });
            }
            start = end;
            from_target = stage.target;
        }
        if let Some(last) = spans.last_mut() {
            last.to_s = last.to_s.max(seconds as u32);
        }
        let mut buckets = Vec::new();
        buckets.resize_with(spans.len(), Bucket::default);
        ByStage { spans, buckets: Mutex::new(buckets) }
    }

    /// The index of the stage second `second` of the run belongs to (the last one past the
    /// end); `None` when no stage lasts a second.
    pub fn stage_of(&self, second: usize) -> Option<usize> {
        let i = self.spans.partition_point(|s| (s.to_s as usize) <= second);
        match self.spans.len() {
            0 => None,
            n => Some(i.min(n - 1)),
        }
    }

    /// Adds a connection's tally for stage index `stage` (from [`ByStage::stage_of`]).
    pub fn merge(&self, stage: usize, tally: &Tally) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get_mut(stage) {
            b.merge(tally);
        }
    }

    /// Every stage that lasts at least one whole second, with its counts.
    pub fn summaries(&self) -> Vec<StageSummary> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        self.spans
            .iter()
            .zip(buckets.iter())
            .map(|(s, b)| StageSummary {
                stage: s.stage,
                from_s: s.from_s,
                to_s: s.to_s,
                from_target: s.from_target,
                to_target: s.to_target,
                sent: b.sent,
                ok: b.ok,
                errors: b.errors,
                unavailable: b.unavailable,
                p50_ms: b.latency_ms(0.5),
                p99_ms: b.latency_ms(0.99),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::seconds::Seconds;
    use crate::stages::{Stage, StageTarget};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn stages(list: &[(f64, f64)]) -> Stages {
        Stages {
            of: StageTarget::Rate,
            stages: list.iter().map(|&(duration_s, target)| Stage { duration_s, target }).collect(),
        }
    }

    #[test]
    fn stages_cover_every_second_once() {
        //   stages  |-- 2 s at 10 --|(step)|-- 2.3 s at 50 ----|
        //   seconds   0       1              2       3       4 (partial: the last stage's)
        let b = ByStage::new(&stages(&[(2.0, 10.0), (0.0, 50.0), (2.3, 50.0)]), 5);
        let spans: Vec<_> = b.spans.iter().map(|s| (s.stage, s.from_s, s.to_s)).collect();
        assert_eq!(spans, [(1, 0, 2), (3, 2, 5)]);
        let of: Vec<_> = (0..7).map(|s| b.stage_of(s)).collect();
        assert_eq!(of, [Some(0), Some(0), Some(1), Some(1), Some(1), Some(1), Some(1)]);
        assert_eq!(ByStage::new(&stages(&[(0.2, 10.0)]), 1).stage_of(0), None, "no whole second");
    }

    #[test]
    fn a_request_counts_in_the_stage_that_sent_it() {
        let t0 = Instant::now();
        let s = stages(&[(2.0, 10.0), (0.0, 50.0), (2.0, 50.0)]);
        let seconds = Seconds::new(t0, Some(Duration::from_secs(4)), Some(&s));
        let mut r = seconds.recorder();
        // Seconds 0 and 1 answer in 1 ms; a request sent at 1.9 s is answered at 2.3 s (a
        // backlog left to the next stage); seconds 2 and 3 answer in 100 ms, one a 503; a
        // request sent at 3.5 s fails at 3.6 s.
        for (sent, done, status) in
            [(100, 101, 200), (1100, 1101, 200), (1900, 2300, 200), (2100, 2200, 200), (3100, 3200, 503)]
        {
            r.sent(t0 + ms(sent));
            r.response(t0 + ms(sent), t0 + ms(done), status, ms(done - sent));
        }
        r.sent(t0 + ms(3500));
        r.failure(t0 + ms(3500), t0 + ms(3600));
        r.flush();
        let table = seconds.stage_summaries();
        let counts: Vec<_> =
            table.iter().map(|x| (x.stage, x.from_s, x.to_s, x.sent, x.ok, x.errors)).collect();
        assert_eq!(counts, [(1, 0, 2, 3, 3, 0), (3, 2, 4, 3, 1, 2)]);
        assert_eq!(table[1].unavailable, 1);
        assert!(table[0].p99_ms.unwrap() > 399.0, "the backlog's 400 ms is the first stage's: {table:?}");
        assert!(table[1].p99_ms.unwrap() < 101.0, "{table:?}");
        assert_eq!((table[1].from_target, table[1].to_target), (50.0, 50.0));
        // The timeline still counts each response in the second it finished.
        let rows = seconds.rows(|_| None);
        assert_eq!(rows.iter().map(|r| (r.sent, r.ok)).collect::<Vec<_>>(), [(1, 1), (2, 1), (1, 2), (2, 0)]);
    }
}
