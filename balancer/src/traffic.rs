//! What one backend served, as the live dashboard and `/metrics` show it: responses per node
//! worker (from the `x-worker` header every node sends), errors, retries, a sliding window of
//! response times, and the time its health last changed. The proxy writes it on every
//! response, lock-free except for the latency window; the live sampler reads it once a second.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use prometheus::IntCounter;

use crate::metrics::Metrics;

/// Worker ids counted one by one (a node has at most 64 workers); others are counted as 0.
const MAX_WORKER_ID: usize = 64;
/// Seconds of responses the latency percentiles cover.
pub const WINDOW_SECONDS: usize = 10;
/// The slowest response time the window tells apart, µs (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Latency percentiles over the window, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowLatency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses in the window.
    pub count: u64,
}

/// The last [`WINDOW_SECONDS`] seconds of response times, one histogram per second.
#[derive(Debug)]
struct LatencyWindow {
    current: Histogram<u64>,
    past: VecDeque<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static histogram bounds are valid")
}

/// What went wrong on one backend so far, in attempts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Responses outside 2xx, and attempts that got no response (timeouts included).
    pub errors: u64,
    /// Attempts that were retried.
    pub retries: u64,
    /// Attempts given up because the node did not answer within the read timeout.
    pub timeouts: u64,
}

/// One backend's traffic.
#[derive(Debug)]
pub struct Traffic {
    /// `scalelab_balancer_worker_responses_total{backend, name, worker}`, created on the
    /// first response from each worker; index = worker id.
    workers: Box<[OnceLock<IntCounter>]>,
    /// Responses to `/op2` (the CPU-bound requests the theory counts).
    op2: AtomicU64,
    /// Responses outside 2xx, and attempts that got no response.
    errors: AtomicU64,
    /// Attempts on this backend that were retried (on it or elsewhere).
    retries: AtomicU64,
    /// Attempts given up because it did not answer within the read timeout.
    timeouts: AtomicU64,
    window: Mutex<LatencyWindow>,
    /// Whether it passes its health checks, and since when.
    health: Mutex<(bool, SystemTime)>,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            workers: (0..=MAX_WORKER_ID).map(|_| OnceLock::new()).collect(),
            op2: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            window: Mutex::new(LatencyWindow { current: histogram(), past: VecDeque::new() }),
            health: Mutex::new((true, SystemTime::now())),
        }
    }
}

impl Traffic {
    /// Counts one response from `worker` (the `x-worker` header value) of backend
    /// `addr`/`name`, to an `/op2` request or not, with its status and time.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        addr: &str,
        name: &str,
        worker: Option<&[u8]>,
        op2: bool,
        ok: bool,
        took: Duration,
        metrics: &Metrics,
    ) {
        if op2 {
            self.op2.fetch_add(1, Ordering::Relaxed);
        }
        let id = worker
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.parse::<usize>().ok())
            .filter(|&w| w <= MAX_WORKER_ID)
            .unwrap_or(0);
        self.workers[id]
            .get_or_init(|| metrics.worker_responses.with_label_values(&[addr, name, &id.to_string()]))
            .inc();
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_US);
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.current.saturating_record(micros);
    }

    /// Counts an attempt that got no response.
    pub fn record_failure(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a retried attempt.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt given up because the node did not answer in time (it is also a
    /// failure: [`Traffic::record_failure`] counts it).
    pub fn record_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a health change.
    pub fn set_health(&self, healthy: bool) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if h.0 != healthy {
            *h = (healthy, SystemTime::now());
        }
    }

    /// When the health state last changed (or the backend was found).
    pub fn health_since(&self) -> SystemTime {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Responses so far by worker id (workers that sent none are left out).
    pub fn worker_counts(&self) -> Vec<(usize, u64)> {
        self.workers.iter().enumerate().filter_map(|(id, c)| c.get().map(|c| (id, c.get()))).collect()
    }

    /// Errors, retries and timeouts so far.
    pub fn faults(&self) -> Faults {
        Faults {
            errors: self.errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }

    /// Responses to `/op2` so far.
    pub fn op2(&self) -> u64 {
        self.op2.load(Ordering::Relaxed)
    }

    /// Closes the current second of the window and returns the percentiles of the window.
    pub fn rotate(&self) -> WindowLatency {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let finished = std::mem::replace(&mut w.current, histogram());
        w.past.push_back(finished);
        while w.past.len() > WINDOW_SECONDS {
            w.past.pop_front();
        }
        let mut all = histogram();
        for h in &w.past {
            all.add(h).expect("histograms share their bounds");
        }
        drop(w);
        if all.is_empty() {
            return WindowLatency::default();
        }
        WindowLatency {
            p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
            count: all.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_workers_errors_and_a_sliding_latency_window() {
        let m = Metrics::new();
        let t = Traffic::default();
        for _ in 0..3 {
            t.record("a", "node-1", Some(b"2"), true, true, Duration::from_millis(10), &m);
        }
        t.record("a", "node-1", Some(b"1"), false, false, Duration::from_millis(30), &m);
        t.record("a", "node-1", Some(b"nope"), false, true, Duration::from_millis(20), &m);
        assert_eq!(t.op2(), 3);
        assert_eq!(t.worker_counts(), [(0, 1), (1, 1), (2, 3)]);
        assert_eq!(t.faults(), Faults { errors: 1, retries: 0, timeouts: 0 });
        let w = t.rotate();
        assert_eq!(w.count, 5);
        assert!((9.9..10.2).contains(&w.p50_ms) && (29.0..31.0).contains(&w.p99_ms), "{w:?}");
        // Ten quiet seconds later the window is empty again.
        for _ in 0..WINDOW_SECONDS {
            t.rotate();
        }
        assert_eq!(t.rotate(), WindowLatency::default());
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text
            .contains(r#"scalelab_balancer_worker_responses_total{backend="a",name="node-1",worker="2"} 3"#));
    }
}
