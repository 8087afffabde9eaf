//! What queueing theory says a lab's latency should be at a given load, for `scalelab sweep
//! --vary load=...` and its report. Two models of the same c servers and service time S:
//!
//! - **Pooled**: one queue feeding all c servers, M/D/c. Percentiles by a deterministic
//!   simulation of that queue ([`mdc_sim`]; exact M/D/1 when c = 1), checked in the tests
//!   against Cosmetatos' and Allen–Cunneen's mean waits ([`erlang`]) and against the exact
//!   M/D/1.
//! - **Partitioned**: c independent M/D/1 queues, each given 1/c of the arrivals, so each at
//!   the same utilization ρ; a request's latency is one M/D/1's, known exactly ([`md1`]).
//!
//! The knee is the utilization where p99 first exceeds 10 S.
//!
//! # Layout
//! - [`erlang`]: Erlang B and C, the M/M/c mean wait, the M/D/c mean-wait approximations.
//! - [`md1`]: Pollaczek–Khinchine and the exact M/D/1 waiting-time distribution.
//! - [`mdc_sim`]: the M/D/c simulation and nearest-rank quantiles.

pub mod erlang;
pub mod md1;
pub mod mdc_sim;

use serde::{Deserialize, Serialize};

use scalelab_topology::Topology;

/// The knee: the utilization where p99 first exceeds this many service times.
pub const KNEE_FACTOR: f64 = 10.0;
/// The percentiles every prediction gives.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Customers the pooled simulation runs for a model line (a report draws dozens of points).
const CURVE_SAMPLES: usize = 250_000;
/// Bisection steps for a knee: ρ to within 2⁻¹⁶.
const KNEE_STEPS: u32 = 16;
/// The highest utilization a knee is looked for below.
const KNEE_MAX_RHO: f64 = 0.999;

/// Which way c servers share their arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One queue for all c servers (M/D/c).
    Pooled,
    /// c queues of one server each, every one given 1/c of the arrivals (c × M/D/1).
    Partitioned,
}

impl Model {
    /// `pooled` or `partitioned`.
    pub fn name(self) -> &'static str {
        match self {
            Model::Pooled => "pooled",
            Model::Partitioned => "partitioned",
        }
    }
}

/// A model's predicted latency (wait plus service), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The mean.
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

/// The servers of a lab, as the models see them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    /// c: the lab's usable cores, Σ over nodes of min(workers, cpus), at most the machine's,
    /// rounded to a whole number of servers (at least 1).
    pub servers: u32,
    /// S, ms: the `/op2` CPU time, stretched by usable/c when the cores are fractional so that
    /// c/S stays the lab's theoretical capacity.
    pub service_ms: f64,
}

impl Queue {
    /// The queue of `t` on a machine of `cores` for requests costing `cpu_ms` of CPU each;
    /// `None` when they cost none or the lab has no usable core.
    pub fn of(t: &Topology, cores: usize, cpu_ms: f64) -> Option<Queue> {
        let usable = t.usable_cores(cores);
        if !(cpu_ms > 0.0 && usable > 0.0) {
            return None;
        }
        let servers = usable.round().clamp(1.0, f64::from(mdc_sim::MAX_SERVERS)) as u32;
        Some(Queue { servers, service_ms: cpu_ms * f64::from(servers) / usable })
    }

    /// The capacity, requests per second: c / S.
    pub fn capacity_rps(&self) -> f64 {
        f64::from(self.servers) * 1000.0 / self.service_ms
    }

    /// What `model` predicts at utilization `rho`; `None` when ρ ≥ 1 (no steady state: the
    /// queue grows for as long as the load lasts) or ρ < 0.
    pub fn predict(&self, model: Model, rho: f64) -> Option<Prediction> {
        self.predict_with(model, rho, mdc_sim::SAMPLES)
    }

    /// [`predict`](Queue::predict) with a coarser simulation, for drawing a model line.
    pub fn predict_for_curve(&self, model: Model, rho: f64) -> Option<Prediction> {
        self.predict_with(model, rho, CURVE_SAMPLES)
    }

    fn predict_with(&self, model: Model, rho: f64, samples: usize) -> Option<Prediction> {
        let s = self.service_ms;
        let waits = match (model, self.servers) {
            (Model::Partitioned, _) | (Model::Pooled, 1) => {
                let d = md1::Md1::new(rho)?;
                QUANTILES.map(|q| d.wait_quantile(q)).to_vec()
            }
            (Model::Pooled, c) => {
                let mut w = mdc_sim::waits(c, rho, samples)?;
                mdc_sim::quantiles(&mut w, &QUANTILES)
            }
        };
        let mean_wait = match (model, self.servers) {
            (Model::Partitioned, _) | (Model::Pooled, 1) => md1::mean_wait(rho)?,
            (Model::Pooled, c) => erlang::cosmetatos_mdc_wait(c, rho * f64::from(c))?,
        };
        Some(Prediction {
            mean: s * (1.0 + mean_wait),
            p50: s * (1.0 + waits[0]),
            p90: s * (1.0 + waits[1]),
            p99: s * (1.0 + waits[2]),
            p999: s * (1.0 + waits[3]),
        })
    }

    /// The knee `model` predicts: the utilization where p99 reaches [`KNEE_FACTOR`] service
    /// times, by bisection (p99 grows with ρ in both models); `None` when it does not below
    /// ρ = 0.999.
    pub fn knee(&self, model: Model) -> Option<f64> {
        let threshold = KNEE_FACTOR * self.service_ms;
        let above =
            |rho: f64| self.predict_with(model, rho, CURVE_SAMPLES).is_some_and(|p| p.p99 > threshold);
        if !above(KNEE_MAX_RHO) {
            return None;
        }
        let (mut lo, mut hi) = (0.0, KNEE_MAX_RHO);
        for _ in 0..KNEE_STEPS {
            let mid = (lo + hi) / 2.0;
            if above(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some((lo + hi) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(workers: usize, cpus: &str) -> Topology {
        Topology::from_yaml(&format!(
            "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
             nodes: [{{ name: node, replicas: 1, workers: {workers}, port: 8081 {cpus} }}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn servers_are_the_usable_cores_and_keep_the_capacity() {
        // 4 workers on 2 cores: 2 servers of 5 ms, 400 req/s.
        let q = Queue::of(&topology(4, ""), 2, 5.0).unwrap();
        assert_eq!((q.servers, q.service_ms, q.capacity_rps()), (2, 5.0, 400.0));
        // Half a core: one server, twice as slow.
        let half = Queue::of(&topology(1, ", cpus: 0.5"), 2, 20.0).unwrap();
        assert_eq!((half.servers, half.service_ms, half.capacity_rps()), (1, 40.0, 25.0));
        assert_eq!(Queue::of(&topology(1, ""), 2, 0.0), None);
    }

    #[test]
    fn pooling_waits_less_than_partitioning_and_its_knee_comes_later() {
        let q = Queue { servers: 4, service_ms: 10.0 };
        let pooled = q.predict(Model::Pooled, 0.8).unwrap();
        let partitioned = q.predict(Model::Partitioned, 0.8).unwrap();
        assert!(pooled.p99 < partitioned.p99 && pooled.mean < partitioned.mean, "{pooled:?} {partitioned:?}");
        // Every latency is at least the service time, percentiles in order.
        for p in [pooled, partitioned] {
            assert!(10.0 <= p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999, "{p:?}");
        }
        // M/D/1 at ρ = 0.8 waits ρ/(2(1−ρ)) = 2 service times on average: 30 ms in all.
        assert!((partitioned.mean - 30.0).abs() < 1e-9);
        let (kp, kq) = (q.knee(Model::Pooled).unwrap(), q.knee(Model::Partitioned).unwrap());
        assert!(kq < kp && kp < 1.0, "partitioned knee {kq}, pooled {kp}");
        // At the partitioned knee its p99 is 10 service times.
        let at = q.predict(Model::Partitioned, kq).unwrap().p99;
        assert!((at - 100.0).abs() < 0.5, "{at}");
        // One server: the two models are the same queue.
        let one = Queue { servers: 1, service_ms: 10.0 };
        assert_eq!(one.predict(Model::Pooled, 0.7), one.predict(Model::Partitioned, 0.7));
        assert_eq!(q.predict(Model::Pooled, 1.0), None);
        assert_eq!(q.predict(Model::Partitioned, 1.05), None);
    }
}
