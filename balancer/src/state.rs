//! The roster: what the balancer knows about each backend beyond its address (its topology
//! name, its address as text, its request count and its metric handles) and the load it
//! carries now (requests in flight, a peak-sensitive latency average). Discovery writes it;
//! the proxy reads it once per request; the load-aware selectors score backends with it; the
//! admin app reads it for `/state`. Its entries outlive selector rebuilds and topology edits,
//! so the load they count does too.
//!
//! pingora's `Backend::ext` could carry this too, but `select()` clones the `Backend` on
//! every request and cloning `Extensions` allocates, so the roster is a separate map.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus::IntCounter;

use crate::metrics::Metrics;
use crate::traffic::Traffic;

/// One discovered backend.
#[derive(Debug)]
pub struct BackendEntry {
    /// The topology name: the replica (`node-1`) locally, the group (`node`) with DNS.
    pub name: String,
    /// `ip:port`, formatted once: the metric label and the `/state` field.
    pub addr: String,
    /// The same text as a header value, built once: the proxy adds it to every response as
    /// `x-upstream`, and cloning it only bumps a reference count.
    pub addr_header: http::HeaderValue,
    /// Responses relayed from this backend since it joined.
    requests: AtomicU64,
    /// The `requests_total{code="200"}` series, resolved once because nearly every response
    /// is a 200 and a label lookup per request is avoidable work on the hot path.
    ok: IntCounter,
    /// `shed_total{backend}`, resolved once: when a node sheds, most responses are shed.
    pub shed: IntCounter,
    /// Attempts sent to this backend and not finished yet.
    in_flight: AtomicUsize,
    /// Response-time average for `peak_ewma`.
    latency: Mutex<PeakEwma>,
    /// What it served, for the live dashboard.
    pub traffic: Traffic,
    /// When discovery first listed it: its start, as far as the balancer can tell (the
    /// autoscaler's CPU initialization period counts from here). A backend that leaves and
    /// comes back gets a new entry, so a new time.
    pub found: SystemTime,
}

/// How long a latency observation weighs in the average: Finagle's and linkerd's default.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// What a backend without any response yet is assumed to take.
const EWMA_START_US: f64 = 1000.0;

/// A moving average of response time that jumps to any slower observation at once (a
/// backend that just got slow is avoided right away) and otherwise decays towards recent
/// values with time constant [`EWMA_DECAY`].
#[derive(Debug)]
struct PeakEwma {
    value_us: f64,
    at: Instant,
}

impl PeakEwma {
    fn observe(&mut self, rtt_us: f64, now: Instant) {
        if rtt_us > self.value_us {
            self.value_us = rtt_us;
        } else {
            let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
            let keep = (-elapsed / EWMA_DECAY.as_secs_f64()).exp();
            self.value_us = self.value_us * keep + rtt_us * (1.0 - keep);
        }
        self.at = now;
    }
}

/// One attempt in flight on a backend; dropping it (the attempt failed, was retried elsewhere,
/// finished, or its client went away) gives the count back.
#[derive(Debug)]
pub struct InFlightGuard(Arc<BackendEntry>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendEntry {
    /// A new entry with zero requests.
    pub fn new(name: String, addr: SocketAddr, metrics: &Metrics) -> BackendEntry {
        let addr = addr.to_string();
        let ok = metrics.requests.with_label_values(&[addr.as_str(), "200"]);
        let shed = metrics.shed.with_label_values(&[addr.as_str()]);
        // `ip:port` is always a valid header value (digits, dots, colons, brackets).
        let addr_header = http::HeaderValue::from_str(&addr).expect("ip:port is a valid header value");
        BackendEntry {
            name,
            addr,
            addr_header,
            requests: AtomicU64::new(0),
            ok,
            shed,
            in_flight: AtomicUsize::new(0),
            latency: Mutex::new(PeakEwma { value_us: EWMA_START_US, at: Instant::now() }),
            traffic: Traffic::default(),
            found: SystemTime::now(),
        }
    }

    /// Counts an attempt on `entry` as in flight until the guard drops.
    pub fn start(entry: &Arc<BackendEntry>) -> InFlightGuard {
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(entry))
    }

    /// Attempts in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Feeds one response time into the peak-EWMA.
    pub fn observe_latency(&self, rtt: Duration) {
        let mut ewma = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        ewma.observe(rtt.as_secs_f64() * 1e6, Instant::now());
    }

    /// The peak-EWMA of response time, microseconds.
    pub fn latency_ewma_us(&self) -> f64 {
        self.latency.lock().unwrap_or_else(|p| p.into_inner()).value_us
    }

    /// Counts one relayed response with HTTP status `code`.
    pub fn record(&self, code: http::StatusCode, metrics: &Metrics) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if code == http::StatusCode::OK {
            self.ok.inc();
        } else {
            metrics.requests.with_label_values(&[self.addr.as_str(), code.as_str()]).inc();
        }
    }

    /// Responses relayed from this backend since it joined.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Every backend the last discovery pass found, by address.
#[derive(Debug, Default)]
pub struct Roster {
    entries: ArcSwap<HashMap<SocketAddr, Arc<BackendEntry>>>,
}

impl Roster {
    /// Every entry, by address.
    pub fn all(&self) -> Arc<HashMap<SocketAddr, Arc<BackendEntry>>> {
        self.entries.load_full()
    }

    /// The entry for `addr`, if discovery found it.
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<BackendEntry>> {
        self.entries.load().get(addr).cloned()
    }

    /// Replaces the roster with `found` (address and name, first name wins for an address).
    /// Entries whose address and name did not change are kept, so their counts survive.
    /// (Every entry, for the admin app and the live sampler.)
    pub fn replace(&self, found: &[(SocketAddr, String)], metrics: &Metrics) {
        let old = self.entries.load();
        let mut next = HashMap::with_capacity(found.len());
        for (addr, name) in found {
            if next.contains_key(addr) {
                continue;
            }
            let entry = match old.get(addr) {
                Some(e) if e.name == *name => Arc::clone(e),
                _ => Arc::new(BackendEntry::new(name.clone(), *addr, metrics)),
            };
            next.insert(*addr, entry);
        }
        let unchanged = next.len() == old.len()
            && next.iter().all(|(a, e)| old.get(a).is_some_and(|o| Arc::ptr_eq(o, e)));
        if !unchanged {
            self.entries.store(Arc::new(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn replace_keeps_counts_of_unchanged_backends() {
        let metrics = Metrics::new();
        let roster = Roster::default();
        roster.replace(&[(addr(8081), "node-1".into()), (addr(8082), "node-2".into())], &metrics);
        roster.get(&addr(8081)).unwrap().record(http::StatusCode::OK, &metrics);

        // node-2 leaves, node-3 joins, node-1 stays:
        //   before: {8081: node-1 (1 req), 8082: node-2}
        //   after:  {8081: node-1 (1 req), 8083: node-3}
        roster.replace(&[(addr(8081), "node-1".into()), (addr(8083), "node-3".into())], &metrics);
        assert_eq!(roster.get(&addr(8081)).unwrap().requests(), 1);
        assert!(roster.get(&addr(8082)).is_none());
        assert_eq!(roster.get(&addr(8083)).unwrap().name, "node-3");
    }

    #[test]
    fn a_backend_is_found_once_per_stay() {
        // The time it was found is its start for the autoscaler: kept while it stays, new
        // when it comes back.
        let metrics = Metrics::new();
        let roster = Roster::default();
        let both = [(addr(8081), "node-1".into()), (addr(8082), "node-2".into())];
        roster.replace(&both, &metrics);
        let found = |port| roster.get(&addr(port)).unwrap().found;
        let (first, second) = (found(8081), found(8082));
        std::thread::sleep(Duration::from_millis(5));
        roster.replace(&both[..1], &metrics);
        roster.replace(&both, &metrics);
        assert_eq!(found(8081), first);
        assert!(found(8082) > second, "found again when it came back");
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let t0 = Instant::now();
        let mut e = PeakEwma { value_us: 100.0, at: t0 };
        e.observe(5000.0, t0);
        assert_eq!(e.value_us, 5000.0, "a slower response is taken at once");
        e.observe(100.0, t0 + EWMA_DECAY);
        let expected = 5000.0 * (-1.0f64).exp() + 100.0 * (1.0 - (-1.0f64).exp());
        assert!((e.value_us - expected).abs() < 1e-6, "{} vs {expected}", e.value_us);
    }

    #[test]
    fn first_name_wins_for_a_shared_address() {
        let metrics = Metrics::new();
        let roster = Roster::default();
        roster.replace(&[(addr(8081), "a".into()), (addr(8081), "b".into())], &metrics);
        assert_eq!(roster.get(&addr(8081)).unwrap().name, "a");
    }
}
