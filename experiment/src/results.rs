//! `results.json`: what a sweep measured, point by point, and the fit of each series. A sweep
//! writes it after every point (so an interrupted sweep keeps what it measured); `scalelab
//! report DIR` reads it back to redraw `report.html` without measuring again.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::queueing::Prediction;

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
    /// The machine it ran on (`None` in files from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
    /// The base topology file the series vary.
    pub base: String,
    /// The load every point was measured with.
    pub load: LoadSpec,
    /// One series per `--vary`, in command-line order.
    pub series: Vec<Series>,
}

/// The largest `results.json` read back (by `scalelab report` and `scalelab compare`). A sweep
/// at its bounds (256 points of 20 rounds, each with its workers' counts and topology) writes a
/// few MiB; 64 MiB leaves room for anything a sweep can write and stops a file that is not one.
pub const MAX_RESULTS_BYTES: u64 = 64 * 1024 * 1024;

/// Why a `results.json` could not be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a regular file (a {kind}): a sweep writes results.json as a plain file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than {} MiB, the most a results.json may hold", MAX_RESULTS_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

impl Results {
    /// Reads and parses `path`, refusing anything but a regular file of at most
    /// [`MAX_RESULTS_BYTES`]. The file is opened without blocking (a FIFO would otherwise wait
    /// for a writer forever) and checked on the open handle, so it cannot be swapped between
    /// the check and the read; the read stops one byte past the bound whatever the file claims
    /// (a growing file, `/proc`), so memory stays bounded.
    pub fn read(path: &Path) -> Result<Results, ReadError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(|source| ReadError::Open { path: path.into(), source })?;
        let meta = file.metadata().map_err(|source| ReadError::Read { path: path.into(), source })?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile { path: path.into(), kind: file_kind(&meta.file_type()) });
        }
        let mut bytes = Vec::new();
        file.take(MAX_RESULTS_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ReadError::Read { path: path.into(), source })?;
        if bytes.len() as u64 > MAX_RESULTS_BYTES {
            return Err(ReadError::TooLarge { path: path.into() });
        }
        serde_json::from_slice(&bytes).map_err(|source| ReadError::Parse { path: path.into(), source })
    }
}

/// What a file that is not a regular one is, for the error.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
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
    /// Open loop: `uniform` or `poisson` arrivals (`None` in older files: uniform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<String>,
}

/// The machine a sweep ran on: what decides whether two sweeps can be compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU model (`model name` in /proc/cpuinfo), or `unknown`.
    pub cpu_model: String,
    /// CPU cores available to the sweep.
    pub cores: usize,
    /// The host's name (informative: two hosts of one model are the same machine here).
    pub hostname: String,
}

impl Machine {
    /// This machine, with `cores` cores.
    pub fn current(cores: usize) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| "unknown".into());
        let hostname = hostname().unwrap_or_else(|| "unknown".into());
        Machine { cpu_model, cores, hostname }
    }
}

/// The kernel's name for this host.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string())
}

/// One `--vary FIELD=V1,V2,...`: a point per value, every other field as in the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The field varied: `workers`, `replicas`, `cpus`, `algorithm`, `distribution`, `load` or
    /// `rate`.
    pub vary: String,
    /// In a `--grid` sweep, the setting every point of this series shares
    /// (`distribution=reuseport`); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// One point per value, in the order given.
    pub points: Vec<Point>,
    /// The USL fit over every round of every point (x = [`Point::n`], y = round req/s);
    /// `None` when the series is too short to fit, with the reason in `fit_note`.
    pub fit: Option<UslFit>,
    /// Why there is no fit, or a caveat about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_note: Option<String>,
    /// A load series: where p99 first exceeds 10 service times, measured and predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<Knee>,
}

impl Series {
    /// Whether it compares choices (algorithm, distribution) rather than a scale: its points
    /// have names, and "N" means nothing for it.
    pub fn is_choice(&self) -> bool {
        self.points.iter().any(|p| p.label.is_some())
    }

    /// The points measured while something outside the lab used the CPU.
    pub fn noisy_points(&self) -> Vec<&Point> {
        self.points.iter().filter(|p| p.noisy).collect()
    }

    /// Whether it varies the offered load (`load` or `rate`) on one topology.
    pub fn is_load(&self) -> bool {
        matches!(self.vary.as_str(), "load" | "rate")
    }

    /// Its name in tables and legends: `load`, or `load at distribution=shared` in a grid.
    pub fn title(&self) -> String {
        match &self.at {
            Some(at) => format!("{} at {at}", self.vary),
            None => self.vary.clone(),
        }
    }
}

/// The knee of a load series: the utilization where p99 first exceeds
/// [`threshold_ms`](Knee::threshold_ms), 10× the service time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// 10 × the service time, ms.
    pub threshold_ms: f64,
    /// Measured: interpolated (in log p99) between the last point below the threshold and the
    /// first above; `None` when no two such points exist (see `measured_note`).
    pub measured: Option<f64>,
    /// Why there is no measured knee, or a caveat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_note: Option<String>,
    /// The pooled model's (M/D/c); `None` when it has none below ρ = 0.999 or no model applies.
    pub pooled: Option<f64>,
    /// The partitioned model's (c × M/D/1).
    pub partitioned: Option<f64>,
}

/// The load a load-series point was offered, and what the queueing models predict for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    /// The open-loop rate, requests per second.
    pub rate_rps: f64,
    /// The lab's theoretical capacity, req/s (as `theory_rps`); `None` when the load costs no CPU.
    pub capacity_rps: Option<f64>,
    /// ρ = rate / capacity.
    pub utilization: Option<f64>,
    /// c, the servers the models see (the usable cores, rounded); `None` without a model.
    pub servers: Option<u32>,
    /// S, the service time the models see, ms.
    pub service_ms: Option<f64>,
    /// One queue for the c servers (M/D/c); `None` at ρ ≥ 1 or without a model.
    pub pooled: Option<Prediction>,
    /// c queues of one server (c × M/D/1).
    pub partitioned: Option<Prediction>,
    /// Why there is no model, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_note: Option<String>,
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
    /// A load-series point: the rate offered and the models' predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<Offered>,
    /// CPU used on this machine outside the lab while the rounds ran, in cores (CPU seconds per
    /// second of the measured rounds): the machine's busy time from /proc/stat less that of the
    /// lab's processes (or containers) and of the sweep itself, whose load generator runs in it
    /// (see [`crate::sweep::outside`]). `None` in files from before it was measured, or where
    /// /proc could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_cpu_cores: Option<f64>,
    /// Whether `outside_cpu_cores` was above
    /// [`NOISY_CORES`](crate::sweep::outside::NOISY_CORES), a tenth of a core: something else
    /// competed with the lab for the CPU while this point was measured, and its numbers include
    /// that. `false` in files from before it was measured.
    #[serde(default)]
    pub noisy: bool,
}

impl Point {
    /// Its name in a series: the choice's name, or the value (`workers=3`).
    pub fn name(&self, series: &Series) -> String {
        match &self.label {
            Some(label) => label.clone(),
            None => format!("{}={}", series.vary, crate::report::format::n(self.value)),
        }
    }

    /// Whether no request of any round finished (every one still in flight when its round
    /// ended): its zeros are not measurements. Unknown (files from before rounds counted
    /// them) reads as `false`.
    pub fn nothing_completed(&self) -> bool {
        !self.rounds.is_empty() && self.rounds.iter().all(|r| r.completed == Some(0))
    }

    /// The lowest and highest of `metric` over the rounds; `None` without rounds.
    pub fn spread(&self, metric: impl Fn(&Round) -> f64) -> Option<(f64, f64)> {
        let values = self.rounds.iter().map(metric);
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        (lo <= hi).then_some((lo, hi))
    }
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
    /// Requests that finished (a response or an error); `None` in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    /// Requests still in flight when the round ended (counted nowhere else).
    #[serde(default)]
    pub in_flight: u64,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_results_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results.json");
        let results = crate::report::tests::fixture();
        std::fs::write(&file, serde_json::to_string(&results).unwrap()).unwrap();
        assert_eq!(Results::read(&file).unwrap(), results);
        std::fs::write(&file, "{\"series\": [").unwrap();
        let bad = Results::read(&file).unwrap_err().to_string();
        assert!(bad.starts_with(&format!("parsing {}", file.display())), "{bad}");
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        // A FIFO with no writer: a plain open would wait for one forever.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = Results::read(&fifo).unwrap_err().to_string();
        assert!(err.contains("is not a regular file (a FIFO)") && err.contains("fifo"), "{err}");
        // A symlink to /dev/zero: endless zeros.
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = Results::read(&zero).unwrap_err().to_string();
        assert!(err.contains("zero.json is not a regular file (a character device)"), "{err}");
        let err = Results::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("(a directory)"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "refused without reading");
    }

    #[test]
    fn a_file_past_the_bound_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("results.json");
        // Sparse: the bound plus one byte costs no disk.
        std::fs::File::create(&big).unwrap().set_len(MAX_RESULTS_BYTES + 1).unwrap();
        let err = Results::read(&big).unwrap_err().to_string();
        assert!(err.contains("is larger than 64 MiB, the most a results.json may hold"), "{err}");
        // At the bound exactly it is read (and then fails to parse: zeros are not JSON).
        std::fs::File::create(&big).unwrap().set_len(MAX_RESULTS_BYTES).unwrap();
        assert!(matches!(Results::read(&big), Err(ReadError::Parse { .. })));
    }
}
