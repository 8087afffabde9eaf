//! The load-aware algorithms pingora-load-balancing does not have: `least_conn`, `p2c` and
//! `peak_ewma`, built on its `BackendSelection` trait so that health checks, discovery and
//! retries work the same as for round robin.
//!
//! pingora rebuilds a selector whenever discovery changes the backend set, so nothing that
//! must last (requests in flight, latency averages) is kept in the selector: it lives in the
//! [`Roster`](crate::state::Roster)'s entries, which survive rebuilds and topology edits, and
//! the selector reads it through the roster it is built with (`Config`).
//!
//! Each selector yields every backend, best first, so pingora's `select_with` can skip the
//! unhealthy ones and those that already failed the request, and land on the next best.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;

use crate::state::{BackendEntry, Roster};

/// How a load-aware selector scores a backend: lower is better.
pub trait Score: Send + Sync + 'static {
    /// The score of `entry` (`None`: discovery has not named it yet, score as idle).
    fn score(entry: Option<&BackendEntry>) -> f64;
    /// Whether to compare two random candidates only (power of two choices) instead of all.
    const TWO_CHOICES: bool = false;
}

/// Fewest requests in flight.
pub struct InFlight;

impl Score for InFlight {
    fn score(entry: Option<&BackendEntry>) -> f64 {
        entry.map_or(0.0, |e| e.in_flight() as f64)
    }
}

/// Power of two choices over requests in flight.
pub struct TwoChoices;

impl Score for TwoChoices {
    fn score(entry: Option<&BackendEntry>) -> f64 {
        InFlight::score(entry)
    }
    const TWO_CHOICES: bool = true;
}

/// Peak-EWMA: the latency average (which jumps to any slower response at once and decays
/// slowly), times requests in flight plus one, as linkerd and Finagle weigh it.
pub struct PeakEwma;

impl Score for PeakEwma {
    fn score(entry: Option<&BackendEntry>) -> f64 {
        entry.map_or(0.0, |e| e.latency_ewma_us() * (e.in_flight() as f64 + 1.0))
    }
}

/// `least_conn`.
pub type LeastConn = LeastLoaded<InFlight>;
/// `p2c`.
pub type P2c = LeastLoaded<TwoChoices>;
/// `peak_ewma`.
pub type PeakEwmaSelection = LeastLoaded<PeakEwma>;

/// A selector over one backend set, scoring with `S` through the shared roster.
pub struct LeastLoaded<S> {
    backends: Box<[Backend]>,
    roster: Arc<Roster>,
    /// Rotates among backends with equal scores, so idle ones are taken in turn.
    turn: AtomicUsize,
    score: std::marker::PhantomData<S>,
}

impl<S: Score> BackendSelection for LeastLoaded<S> {
    type Iter = Ranked;
    type Config = Arc<Roster>;

    fn build_with_config(backends: &BTreeSet<Backend>, roster: &Arc<Roster>) -> Self {
        LeastLoaded {
            backends: backends.iter().cloned().collect(),
            roster: roster.clone(),
            turn: AtomicUsize::new(0),
            score: std::marker::PhantomData,
        }
    }

    /// Without the roster every backend scores as idle: round robin.
    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::default())
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Ranked {
        let n = self.backends.len();
        let start = if n == 0 { 0 } else { self.turn.fetch_add(1, Ordering::Relaxed) % n };
        // Candidates from `start` around: a stable sort then keeps that rotation among ties.
        // The roster is loaded once per pick, not once per backend.
        let entries = self.roster.all();
        let mut order: Vec<(f64, usize)> = (0..n)
            .map(|k| {
                let i = (start + k) % n;
                let entry = self.backends[i].addr.as_inet().and_then(|a| entries.get(a));
                (S::score(entry.map(|e| &**e)), i)
            })
            .collect();
        if S::TWO_CHOICES && n > 2 {
            // Two distinct candidates at random; the better first, then everything else as
            // the fallback order.
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let pick = |k: usize| order.iter().position(|&(_, i)| i == k).expect("every index is listed");
            let (pa, pb) = (pick(a), pick(b));
            let (first, second) = if order[pb].0 < order[pa].0 { (pb, pa) } else { (pa, pb) };
            let chosen = [order[first], order[second]];
            order.retain(|&(_, i)| i != chosen[0].1 && i != chosen[1].1);
            order.splice(0..0, chosen);
        } else {
            order.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
        Ranked { backends: order.into_iter().map(|(_, i)| self.backends[i].clone()).collect(), next: 0 }
    }
}

/// Backends in the order a selector prefers them.
pub struct Ranked {
    backends: Vec<Backend>,
    next: usize,
}

impl BackendIter for Ranked {
    fn next(&mut self) -> Option<&Backend> {
        let b = self.backends.get(self.next)?;
        self.next += 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::metrics::Metrics;

    fn setup(n: u16) -> (Arc<Roster>, BTreeSet<Backend>, Metrics) {
        let metrics = Metrics::new();
        let roster = Arc::new(Roster::default());
        let found: Vec<(SocketAddr, String)> =
            (1..=n).map(|i| (SocketAddr::from(([127, 0, 0, 1], 8080 + i)), format!("node-{i}"))).collect();
        roster.replace(&found, &metrics);
        let backends = found.iter().map(|(a, _)| Backend::new(&a.to_string()).unwrap()).collect();
        (roster, backends, metrics)
    }

    fn first<S: Score>(sel: &Arc<LeastLoaded<S>>) -> u16 {
        let mut it = sel.iter(b"");
        it.next().unwrap().addr.as_inet().unwrap().port() - 8080
    }

    fn hold(roster: &Roster, node: u16, requests: usize) -> Vec<crate::state::InFlightGuard> {
        let entry = roster.get(&SocketAddr::from(([127, 0, 0, 1], 8080 + node))).unwrap();
        (0..requests).map(|_| BackendEntry::start(&entry)).collect()
    }

    #[test]
    fn least_conn_never_picks_a_busier_backend_and_rotates_among_the_idle() {
        //   in flight:  node-1 2   node-2 0   node-3 1   ->  node-2, always
        let (roster, backends, _m) = setup(3);
        let sel = Arc::new(LeastConn::build_with_config(&backends, &roster));
        let _held = [hold(&roster, 1, 2), hold(&roster, 3, 1)];
        for _ in 0..20 {
            assert_eq!(first(&sel), 2);
        }
        // Whole order: the fallback is the next least loaded.
        let mut it = sel.iter(b"");
        let order: Vec<u16> =
            std::iter::from_fn(|| it.next().map(|b| b.addr.as_inet().unwrap().port() - 8080)).collect();
        assert_eq!(order, [2, 3, 1]);
        drop(_held);
        // All idle: each takes its turn.
        let picks: BTreeSet<u16> = (0..3).map(|_| first(&sel)).collect();
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn in_flight_counts_survive_a_rebuild_and_go_back_to_zero() {
        let (roster, backends, _m) = setup(2);
        let held = hold(&roster, 1, 3);
        let rebuilt = Arc::new(LeastConn::build_with_config(&backends, &roster));
        for _ in 0..10 {
            assert_eq!(first(&rebuilt), 2, "the count lives in the roster, not the selector");
        }
        drop(held);
        let entry = roster.get(&SocketAddr::from(([127, 0, 0, 1], 8081))).unwrap();
        assert_eq!(entry.in_flight(), 0);
    }

    #[test]
    fn p2c_prefers_the_less_loaded_of_two_and_spreads_over_many_picks() {
        let (roster, backends, _m) = setup(4);
        let sel = Arc::new(P2c::build_with_config(&backends, &roster));
        // One backend far busier: p2c picks it only when both draws land on it, which two
        // distinct draws never do, so it is never first.
        let _held = hold(&roster, 4, 10);
        let mut counts = [0usize; 5];
        for _ in 0..3000 {
            counts[first(&sel) as usize] += 1;
        }
        assert_eq!(counts[4], 0, "{counts:?}");
        // The other three are idle, so each is first in about a third of the picks.
        for (i, &c) in counts.iter().enumerate().take(4).skip(1) {
            assert!((700..1300).contains(&c), "node-{i} first in {c} of 3000: {counts:?}");
        }
    }

    #[test]
    fn peak_ewma_avoids_the_slow_backend() {
        let (roster, backends, _m) = setup(2);
        let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 8080 + i));
        roster.get(&addr(1)).unwrap().observe_latency(std::time::Duration::from_millis(50));
        roster.get(&addr(2)).unwrap().observe_latency(std::time::Duration::from_millis(1));
        let sel = Arc::new(PeakEwmaSelection::build_with_config(&backends, &roster));
        for _ in 0..10 {
            assert_eq!(first(&sel), 2);
        }
        // With enough requests piled on the fast one, the slow one becomes the better bet.
        let _held = hold(&roster, 2, 60);
        assert_eq!(first(&sel), 1);
    }
}
