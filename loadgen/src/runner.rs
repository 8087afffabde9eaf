//! One run, start to finish: resolve the target, lay out the schedule, start one task per
//! connection, merge their aggregates, and turn the totals into a [`Run`]: the [`Report`],
//! the merged latency histogram and the run second by second.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hdrhistogram::Histogram;
use http::header::HeaderValue;

use crate::client::{self, Shared, Target};
use crate::config::{LoadConfig, LoadError};
use crate::progress::Progress;
use crate::report::{Aggregate, Report, RunInfo};
use crate::schedule::{Pace, Schedule};
use crate::seconds::{SecondRow, Seconds};
use crate::stages::{Curve, StageTarget};

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// The totals, as `--json` prints them.
    pub report: Report,
    /// The latency of every response, µs (1 µs to 60 s, 3 significant digits).
    pub latency: Histogram<u64>,
    /// The run second by second, from its start.
    pub seconds: Vec<SecondRow>,
    /// Seconds past the first hour of a run bounded only by `--requests`, not in `seconds`.
    pub seconds_dropped: u64,
    /// The wall-clock time of the run's start (second 0 of `seconds`).
    pub started: SystemTime,
}

/// Runs the load `cfg` describes on the current Tokio runtime; draws a progress bar on stderr
/// when `show_progress`.
pub async fn execute(cfg: LoadConfig, show_progress: bool) -> Result<Run, LoadError> {
    cfg.validate()?;
    let target = target(&cfg).await?;
    let paths: Vec<String> = cfg.mix.paths().map(str::to_string).collect();
    let pace = match (&cfg.stages, cfg.rate) {
        (Some(s), _) if s.of == StageTarget::Rate => Pace::OpenRamp(Curve::new(&s.stages)),
        (Some(s), _) => Pace::ClosedRamp(Curve::new(&s.stages)),
        (None, Some(rate)) => Pace::Open { rate },
        (None, None) => Pace::Closed,
    };
    let (start, started) = (Instant::now(), SystemTime::now());
    let schedule = Schedule::new(pace, start, cfg.duration, cfg.requests, cfg.mix.sequence())
        .with_arrivals(cfg.arrivals);
    let planned = schedule.planned();
    let shared = Arc::new(Shared {
        target,
        schedule,
        timeout: cfg.timeout,
        done: AtomicU64::new(0),
        seconds: Seconds::new(start, cfg.duration, cfg.stages.as_ref()),
    });
    let progress = show_progress.then(|| Progress::start(shared.clone(), cfg.duration, cfg.requests));

    let connections: Vec<_> = (0..cfg.connections as usize)
        .map(|conn| tokio::spawn(client::run_connection(shared.clone(), conn)))
        .collect();
    let mut total = Aggregate::new(paths.len());
    let mut failure = None;
    for conn in connections {
        match conn.await {
            Ok(agg) => total.merge(&agg),
            Err(e) => failure = Some(LoadError::Worker(e.to_string())),
        }
    }
    // A staged run lasts as long as its stages. The connections are done once no request is
    // left to send, but stages at 0 after that are a quiet period the run (and what watches it:
    // the timeline, the balancer's autoscaler) still goes through.
    if let (Some(_), Some(end)) = (&cfg.stages, shared.schedule.deadline()) {
        tokio::time::sleep_until(end.into()).await;
    }
    let elapsed = start.elapsed();
    if let Some(p) = progress {
        p.finish();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut report = total.report(&RunInfo {
        url: cfg.url.url.clone(),
        connections: cfg.connections,
        threads: cfg.threads,
        rate: cfg.rate,
        stages: cfg.stages.clone(),
        elapsed,
        planned,
        paths,
    });
    report.by_stage = shared.seconds.stage_summaries();
    Ok(Run {
        report,
        latency: total.latency().clone(),
        seconds: shared.seconds.rows(|s| shared.schedule.offered_in(s)),
        seconds_dropped: shared.seconds.dropped(),
        started,
    })
}

/// Resolves the host once (the run then connects to that address) and prepares the requests.
async fn target(cfg: &LoadConfig) -> Result<Target, LoadError> {
    let url = &cfg.url;
    let resolve_err = |source| LoadError::Resolve { host: url.host.clone(), source };
    let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(resolve_err)?
        .next()
        .ok_or_else(|| resolve_err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?;
    let host = HeaderValue::from_str(&url.authority)
        .map_err(|e| LoadError::BadUrl { url: url.url.clone(), reason: e.to_string() })?;
    let paths = cfg
        .mix
        .paths()
        .map(|p| {
            let t = url.target(p);
            t.parse().map_err(|_| LoadError::BadPath(t))
        })
        .collect::<Result<_, _>>()?;
    Ok(Target { addr, host, paths })
}
