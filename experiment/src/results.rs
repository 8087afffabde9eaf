//! `results.json`: what a sweep measured, point by point, and the fit of each series. A sweep
//! writes it after every point (so an interrupted sweep keeps what it measured); `scalelab
//! report DIR` reads it back to redraw `report.html` without measuring again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The scalelab version that measured it.
    pub scalelab_version: String,
    /// When the sweep started (RFC 3339, UTC).
    pub started: String,
    /// CPU cores the machine had (what the theoretical capacity is bounded by).
    pub cores: usize,
    /// `native` (`scalelab up` processes) or `compose` (Docker Compose containers).
    pub runner: String,
    /// The base topology file the series vary.
    pub base: String,
    /// The load every point was measured with.
    pub load: LoadSpec,
    /// One series per `--vary`, in command-line order.
    pub series: Vec<Series>,
}

/// How each point was loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    /// The path (`/op2`) or the mix (`op1=9,op2=1`) requested.
    pub target: String,
    /// Closed loop: concurrent connections.
    pub connections: u32,
    /// Open loop: requests per second; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Measured seconds per round.
    pub duration_s: f64,
    /// Unmeasured seconds of load before the first round of each point.
    pub warmup_s: f64,
    /// Rounds per point.
    pub rounds: u32,
}

/// One `--vary FIELD=V1,V2,...`: a point per value, every other field as in the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The field varied: `workers`, `replicas` or `cpus`.
    pub vary: String,
    /// One point per value, in the order given.
    pub points: Vec<Point>,
    /// The USL fit over every round of every point (x = [`Point::n`], y = round req/s);
    /// `None` when the series is too short to fit, with the reason in `fit_note`.
    pub fit: Option<UslFit>,
    /// Why there is no fit, or a caveat about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_note: Option<String>,
}

impl Series {
    /// Whether it compares choices (algorithm, distribution) rather than a scale: its points
    /// have names, and "N" means nothing for it.
    pub fn is_choice(&self) -> bool {
        self.points.iter().any(|p| p.label.is_some())
    }
}

/// One topology, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The value of the varied field (workers, replicas or cpus); for a choice (algorithm,
    /// distribution), its position in the series, 1, 2, ...
    pub value: f64,
    /// The name of a choice (`least_conn`); `None` on a scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The scale the USL sees: total workers (workers and replicas series) or total cores
    /// the nodes may use (cpus series).
    pub n: f64,
    /// Median over the rounds of the 2xx responses per second.
    pub rps: f64,
    /// The theoretical /op2 capacity, req/s: min(Σ over nodes of min(workers, cpus), cores)
    /// × 1000 / op2_cpu_ms. For a mix, the capacity of its /op2 share (see `theory_note`).
    pub theory_rps: f64,
    /// `rps / theory_rps`.
    pub ratio: f64,
    /// Every measured round, in order.
    pub rounds: Vec<Round>,
    /// Latency of the median round, milliseconds.
    pub latency_ms: Percentiles,
    /// The same per path of a mix (`/op1`, `/op2`); empty for one path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_by_path_ms: BTreeMap<String, Percentiles>,
    /// Requests without a 2xx response, over all rounds.
    pub errors: u64,
    /// Responses by node over all rounds.
    pub by_node: BTreeMap<String, u64>,
    /// Responses by `node/worker` over all rounds.
    pub by_worker: BTreeMap<String, u64>,
    /// CPU each node's cgroup (natively) or container (compose) used while measured, in cores
    /// (CPU seconds per second of the measured rounds).
    pub cpu_used: BTreeMap<String, f64>,
    /// The topology this point ran, as YAML.
    pub topology: String,
}

/// One measured round of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// 2xx responses per second.
    pub rps: f64,
    /// Requests without a 2xx response.
    pub errors: u64,
    /// Latency percentiles, milliseconds.
    pub latency_ms: Percentiles,
    /// The same per path of a mix; empty for one path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_by_path_ms: BTreeMap<String, Percentiles>,
    /// Responses by `node/worker`.
    pub by_worker: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Standard deviation, ms.
    #[serde(default)]
    pub stdev: f64,
}

/// A Universal Scalability Law fit: X(N) = λN / (1 + σ(N−1) + κN(N−1)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// σ, contention: the serial fraction.
    pub sigma: f64,
    /// κ, coherency: the cost of crosstalk between units.
    pub kappa: f64,
    /// λ, the throughput of one unit, req/s.
    pub lambda: f64,
    /// N* = √((1−σ)/κ), where throughput peaks; `None` when κ = 0 (no peak: it levels off).
    pub peak_n: Option<f64>,
    /// X(N*), req/s; with no peak, the asymptote λ/σ (or `None` when σ = 0 too).
    pub peak_rps: Option<f64>,
    /// Coefficient of determination of the fit over the points it was fitted to.
    pub r_squared: f64,
    /// How many (N, X) measurements it was fitted to.
    pub points: usize,
}

impl UslFit {
    /// X(N): the throughput the fitted model predicts at scale `n`, req/s.
    pub fn throughput(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }
}
