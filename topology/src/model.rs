//! The topology types, as `topology.yaml` spells them, and what follows from them: the
//! replicas a group expands to and the addresses the balancer should send traffic to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Problem, TopologyError};
use crate::limits::MAX_FILE_BYTES;
use crate::spans::Spans;

/// The whole lab: one balancer, the work the nodes do, and the node groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Allow ports below 1024 (privileged) for the balancer and the nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privileged_ports: bool,
    pub balancer: BalancerConfig,
    #[serde(default)]
    pub workload: Workload,
    pub nodes: Vec<NodeGroup>,
}

/// The balancer's listeners and policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerConfig {
    /// Where client traffic arrives.
    pub listen: SocketAddr,
    /// Where `/metrics` and `/state` are served.
    pub admin: SocketAddr,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Proxy worker threads.
    #[serde(default = "one")]
    pub threads: usize,
    /// Milliseconds a client has to send its whole request head, from its first byte (or from
    /// the connection's start); a slower client is answered 408 and closed.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Milliseconds an idle client connection is kept between two requests.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// Client connections held at once; more are closed as soon as they are accepted (the
    /// balancer may lower it to fit its file-descriptor limit, and says so).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections to the nodes.
    #[serde(default)]
    pub upstream: UpstreamConfig,
}

/// How the balancer picks a backend among the healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// In turn.
    #[default]
    RoundRobin,
    /// At random.
    Random,
    /// The backend with the fewest requests in flight.
    LeastConn,
    /// Power of two random choices: of two backends drawn at random, the one with fewer
    /// requests in flight.
    P2c,
    /// Peak-EWMA (Finagle, linkerd): the lowest moving average of latency, peak-sensitive,
    /// weighted by requests in flight.
    PeakEwma,
}

impl Algorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Algorithm; 5] =
        [Algorithm::RoundRobin, Algorithm::Random, Algorithm::LeastConn, Algorithm::P2c, Algorithm::PeakEwma];

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Random => "random",
            Algorithm::LeastConn => "least_conn",
            Algorithm::P2c => "p2c",
            Algorithm::PeakEwma => "peak_ewma",
        }
    }
}

/// How a node spreads connections over its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "cli", value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Every worker accepts on one shared socket; the kernel wakes one of them per connection
    /// (Node.js `SCHED_NONE`, gunicorn, nginx without `reuseport`).
    #[default]
    Shared,
    /// Each worker has its own `SO_REUSEPORT` socket on the same port; the kernel hashes each
    /// connection to one of them.
    Reuseport,
    /// The primary accepts and hands each connection to the next worker in turn over a Unix
    /// socket (Node.js `SCHED_RR`).
    RoundRobin,
}

impl Distribution {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Shared => "shared",
            Distribution::Reuseport => "reuseport",
            Distribution::RoundRobin => "round_robin",
        }
    }
}

/// The balancer's connections to the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Idle connections kept open per balancer thread, over all nodes.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// A connection is not reused once it is this old, ms (0: no limit). Workers a node gains
    /// in a live resize get traffic only on new connections; this bounds how long that takes.
    #[serde(default = "default_max_age_ms")]
    pub max_age_ms: u64,
    /// The longest wait for a node's response head (and for each later read of its body),
    /// ms. Unset: [`UpstreamConfig::read_timeout_in_force`] derives it from the workload, so that a
    /// full `/op2` queue fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout_ms: Option<u64>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig { pool_size: default_pool_size(), max_age_ms: default_max_age_ms(), read_timeout_ms: None }
    }
}

impl UpstreamConfig {
    /// The read timeout in force, ms: the one set, or else the default for `workload`:
    /// twice the CPU time of the longest legal `/op2` wait ([`Workload::longest_queue_ms`]:
    /// a request behind a full queue of requests at the cap), and at least 10 s. Twice,
    /// because a worker rarely has a whole core: two workers under a 1-core cap (the default
    /// topology) burn at half speed. Never above [`crate::limits::READ_TIMEOUT_MS`]'s ceiling.
    pub fn read_timeout_in_force(&self, workload: &Workload) -> std::time::Duration {
        let (_, hi) = crate::limits::READ_TIMEOUT_MS;
        let ms = self.read_timeout_ms.unwrap_or_else(|| {
            workload.longest_queue_ms().saturating_mul(2).clamp(crate::limits::DEFAULT_MIN_READ_TIMEOUT_MS, hi)
        });
        std::time::Duration::from_millis(ms)
    }
}

/// Active HTTP health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path probed with GET; any 200 counts as healthy.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Milliseconds between probes of each backend.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Milliseconds a probe may take (connect and read) before it counts as a failure.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures that eject a backend.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: usize,
    /// Consecutive successes that readmit it.
    #[serde(default = "one")]
    pub healthy_after: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: default_health_path(),
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            unhealthy_after: default_unhealthy_after(),
            healthy_after: 1,
        }
    }
}

/// What the endpoints cost, and how much work a node worker accepts at once. The node runs
/// with exactly this type (its flags and its workers' settings are this struct).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// CPU milliseconds one `/op2` request burns.
    #[serde(default = "default_op2_cpu_ms")]
    #[cfg_attr(feature = "cli", arg(long = "op2-cpu-ms", default_value_t = default_op2_cpu_ms()))]
    pub op2_cpu_ms: u64,
    /// Cap on the per-request `?cpu_ms=` override, in milliseconds.
    #[serde(default = "default_max_cpu_ms")]
    #[cfg_attr(feature = "cli", arg(long = "max-cpu-ms", default_value_t = default_max_cpu_ms()))]
    pub max_cpu_ms: u64,
    /// `/op2` requests one worker holds waiting for its CPU (beyond the one it is burning);
    /// more are shed at once with 503 and `Retry-After`.
    #[serde(default = "default_max_queue")]
    #[cfg_attr(feature = "cli", arg(long = "max-queue", default_value_t = default_max_queue()))]
    pub max_queue: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            op2_cpu_ms: default_op2_cpu_ms(),
            max_cpu_ms: default_max_cpu_ms(),
            max_queue: default_max_queue(),
        }
    }
}

impl Workload {
    /// The longest CPU time a legal `/op2` request can wait for its answer, ms: a full queue
    /// of `max_queue` requests at the cap ahead of it, and its own, on one worker.
    pub fn longest_queue_ms(&self) -> u64 {
        (self.max_queue as u64).saturating_add(1).saturating_mul(self.max_cpu_ms)
    }

    /// What is wrong with these costs, as (field, message) pairs; empty when they are valid.
    /// The topology's validation and a node's own flags both use it.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        use crate::limits::{MAX_CPU_MS, MAX_QUEUE};
        let mut out = Vec::new();
        if !(1..=MAX_CPU_MS).contains(&self.max_cpu_ms) {
            out.push(("max_cpu_ms", format!("expected 1 to {MAX_CPU_MS} ms, found {}", self.max_cpu_ms)));
        }
        if self.op2_cpu_ms < 1 || self.op2_cpu_ms > self.max_cpu_ms {
            out.push((
                "op2_cpu_ms",
                format!("expected 1 to max_cpu_ms ({}) ms, found {}", self.max_cpu_ms, self.op2_cpu_ms),
            ));
        }
        if !(1..=MAX_QUEUE).contains(&self.max_queue) {
            out.push(("max_queue", format!("expected 1 to {MAX_QUEUE} requests, found {}", self.max_queue)));
        }
        out
    }
}

/// A group of identical nodes; replicas are named `<name>-1`, `<name>-2`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    pub name: String,
    /// How many nodes (horizontal scaling).
    pub replicas: usize,
    /// Worker processes per node (vertical scaling).
    pub workers: usize,
    /// CPU cap per replica in (fractional) cores; `None` leaves it uncapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// First port: natively replica `i` listens on `port + i - 1`; in containers every
    /// replica listens on `port`.
    pub port: u16,
    /// How each node spreads connections over its workers.
    #[serde(default, skip_serializing_if = "is_default")]
    pub distribution: Distribution,
    /// The group's autoscaler; while it is set, `replicas` is only the starting count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
}

impl NodeGroup {
    /// The most replicas this group can run: `max_replicas` when it autoscales (ports and
    /// the process bound are reserved for all of them), `replicas` otherwise.
    pub fn max_replicas(&self) -> usize {
        self.autoscale.as_ref().map_or(self.replicas, |a| a.max_replicas.max(self.replicas))
    }
}

/// A group's autoscaler, with the semantics of Kubernetes' HorizontalPodAutoscaler
/// (`autoscaling/v2`): every `sync_ms` it computes `ceil(current × metric / target)`, skips
/// changes within `tolerance`, stabilizes over its windows and clamps to
/// [`min_replicas`, `max_replicas`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscale {
    /// Fewest replicas (HPA `minReplicas`).
    #[serde(default = "one")]
    pub min_replicas: usize,
    /// Most replicas (HPA `maxReplicas`).
    pub max_replicas: usize,
    /// What is measured per node.
    #[serde(default)]
    pub metric: AutoscaleMetric,
    /// The value of the metric per node the controller aims for (for `cpu`, a fraction of
    /// the node's cap).
    pub target: f64,
    /// How often the controller decides, ms (HPA's sync period, 15 s by default).
    #[serde(default = "default_sync_ms")]
    pub sync_ms: u64,
    /// No change while |metric / target − 1| is at most this (HPA: 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// A scale-down takes the highest recommendation of this window, ms (HPA: 300 s).
    #[serde(default = "default_scale_down_stabilization_ms")]
    pub scale_down_stabilization_ms: u64,
    /// A scale-up takes the lowest recommendation of this window, ms (HPA: 0).
    #[serde(default)]
    pub scale_up_stabilization_ms: u64,
}

/// The per-node metric an autoscaler follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoscaleMetric {
    /// Cores used divided by the node's cap (HPA's CPU utilization, against the limit).
    #[default]
    Cpu,
    /// Requests in flight at the balancer, per node.
    InFlight,
    /// Requests per second served, per node (from the balancer).
    Rps,
}

impl AutoscaleMetric {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoscaleMetric::Cpu => "cpu",
            AutoscaleMetric::InFlight => "in_flight",
            AutoscaleMetric::Rps => "rps",
        }
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// One node process as the lab runs it natively.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// The group it belongs to.
    pub group: String,
    /// `<group>-<index>`.
    pub name: String,
    /// 1-based position in its group.
    pub index: usize,
    pub listen: SocketAddr,
    pub workers: usize,
    pub cpus: Option<f64>,
    pub distribution: Distribution,
}

/// Which way the balancer finds its nodes, without the way's settings: the spelling of the
/// balancer's `--discovery` flag and of `/state`'s `settings.discovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// One backend per replica at 127.0.0.1:port+i-1.
    #[default]
    Local,
    /// One DNS name per group, re-resolved every second.
    Dns,
}

/// How the balancer turns node groups into backend addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DiscoveryMode {
    /// Natively: one loopback address per replica.
    #[default]
    Local,
    /// In containers: the DNS name `<prefix><group>` resolves to every replica
    /// (`prefix` is `tasks.` under Docker Swarm).
    Dns { prefix: String },
}

impl DiscoveryMode {
    /// Which way this is.
    pub fn kind(&self) -> Discovery {
        match self {
            DiscoveryMode::Local => Discovery::Local,
            DiscoveryMode::Dns { .. } => Discovery::Dns,
        }
    }

    /// The prefix of group DNS names, for `dns`.
    pub fn dns_prefix(&self) -> Option<&str> {
        match self {
            DiscoveryMode::Local => None,
            DiscoveryMode::Dns { prefix } => Some(prefix),
        }
    }
}

/// Something the balancer resolves into backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTarget {
    /// Replica name (local) or group name (DNS).
    pub name: String,
    /// `host:port` to resolve.
    pub addr: String,
}

/// Native nodes listen on loopback only: the lab never exposes them beyond this machine.
pub const NODE_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl Topology {
    /// Parses and validates a YAML document; every problem is reported, with positions. A
    /// leading byte-order mark is allowed (editors on some systems write one).
    pub fn from_yaml(src: &str) -> Result<Topology, TopologyError> {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let invalid = |problems| TopologyError::Invalid { file: None, problems };
        if let Some(second) = crate::spans::second_document(src) {
            return Err(invalid(vec![second]));
        }
        let value: serde_yaml::Value =
            serde_yaml::from_str(src).map_err(|e| invalid(vec![syntax_problem(&e, src)]))?;
        let spans = Spans::index(src);
        let topology: Topology = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = clean_path(&e.path().to_string());
            let (line, column) = spans.find(&path).unwrap_or((1, 1));
            let problem =
                Problem { path, line: Some(line), column: Some(column), message: e.into_inner().to_string() };
            invalid(vec![problem])
        })?;
        let problems = crate::validate::problems(&topology, &spans);
        if problems.is_empty() {
            Ok(topology)
        } else {
            Err(invalid(problems))
        }
    }

    /// Parses and validates the raw bytes of a topology file: at most
    /// [`MAX_FILE_BYTES`](crate::limits::MAX_FILE_BYTES) of UTF-8, then [`Topology::from_yaml`].
    /// A byte that is not UTF-8 is reported with its line and column.
    pub fn from_bytes(bytes: &[u8]) -> Result<Topology, TopologyError> {
        let invalid = |problem| TopologyError::Invalid { file: None, problems: vec![problem] };
        if bytes.len() > MAX_FILE_BYTES {
            return Err(invalid(Problem {
                path: String::new(),
                line: Some(1),
                column: Some(1),
                message: format!(
                    "expected a topology of at most {MAX_FILE_BYTES} bytes, found {} bytes",
                    bytes.len()
                ),
            }));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Topology::from_yaml(text),
            Err(e) => {
                let valid = &bytes[..e.valid_up_to()];
                let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
                let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
                let byte = bytes[e.valid_up_to()];
                Err(invalid(Problem {
                    path: String::new(),
                    line: Some(line),
                    column: Some(column),
                    message: format!("expected UTF-8 text, found byte 0x{byte:02x} that is not UTF-8"),
                }))
            }
        }
    }

    /// Reads, parses and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let bytes = read_bounded(path)?;
        Topology::from_bytes(&bytes).map_err(|e| e.in_file(path.to_path_buf()))
    }

    /// The topology as YAML that [`Topology::from_yaml`] reads back to an equal value.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a topology always serializes to YAML")
    }

    /// Processes the lab may run: each node's primary and workers, and the balancer. An
    /// autoscaled group counts at its `max_replicas`.
    pub fn processes(&self) -> usize {
        1 + self
            .nodes
            .iter()
            .map(|g| g.max_replicas().saturating_mul(g.workers.saturating_add(1)))
            .sum::<usize>()
    }

    /// This topology with group `name` at `replicas` nodes (what an autoscaler runs); the
    /// caller keeps `replicas` within the group's bounds.
    pub fn with_replicas(&self, name: &str, replicas: usize) -> Topology {
        let mut t = self.clone();
        if let Some(g) = t.nodes.iter_mut().find(|g| g.name == name) {
            g.replicas = replicas;
        }
        t
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&NodeGroup> {
        self.nodes.iter().find(|g| g.name == name)
    }

    /// Every node process of the native layout, group by group.
    pub fn replicas(&self) -> Vec<Replica> {
        self.nodes
            .iter()
            .flat_map(|g| {
                (1..=g.replicas).map(move |i| Replica {
                    group: g.name.clone(),
                    name: format!("{}-{i}", g.name),
                    index: i,
                    listen: SocketAddr::new(NODE_HOST, g.port + (i as u16 - 1)),
                    workers: g.workers,
                    cpus: g.cpus,
                    distribution: g.distribution,
                })
            })
            .collect()
    }

    /// What the balancer resolves to find the nodes.
    pub fn backend_targets(&self, mode: &DiscoveryMode) -> Vec<BackendTarget> {
        match mode {
            DiscoveryMode::Local => self
                .replicas()
                .into_iter()
                .map(|r| BackendTarget { name: r.name, addr: r.listen.to_string() })
                .collect(),
            DiscoveryMode::Dns { prefix } => self
                .nodes
                .iter()
                .map(|g| BackendTarget {
                    name: g.name.clone(),
                    addr: format!("{prefix}{}:{}", g.name, g.port),
                })
                .collect(),
        }
    }

    /// Cores the lab can burn at once on a machine of `cores`: min(Σ over nodes of
    /// min(workers, cpus), cores). A worker is single-threaded (one core at most); a node uses
    /// at most its cap; the lab at most the machine.
    pub fn usable_cores(&self, cores: usize) -> f64 {
        let nodes: f64 = self
            .nodes
            .iter()
            .map(|g| g.replicas as f64 * g.cpus.map_or(g.workers as f64, |c| c.min(g.workers as f64)))
            .sum();
        nodes.min(cores as f64)
    }

    /// The lab's theoretical `/op2` capacity on a machine of `cores`, req/s:
    /// [`usable_cores`](Topology::usable_cores) × 1000 / `op2_cpu_ms`.
    pub fn op2_capacity(&self, cores: usize) -> f64 {
        self.usable_cores(cores) * 1000.0 / self.workload.op2_cpu_ms.max(1) as f64
    }

    /// Total workers over all replicas.
    pub fn total_workers(&self) -> usize {
        self.nodes.iter().map(|g| g.replicas * g.workers).sum()
    }
}

/// serde_path_to_error writes `nodes[0].workers` already; the root is `.`.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// Reads at most one byte more than a topology may have, so a huge file is refused without
/// reading it all.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, TopologyError> {
    use std::io::Read;
    let io = |error| TopologyError::Io { path: path.to_path_buf(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// A YAML syntax error, with serde_yaml's own position (or the end of the text when it has
/// none, e.g. an empty document).
fn syntax_problem(e: &serde_yaml::Error, src: &str) -> Problem {
    let loc = e.location();
    let mut message = e.to_string();
    // serde_yaml appends " at line L column C" to its message; the Problem carries it already.
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(pos) = message.find(&suffix) {
            message.replace_range(pos..pos + suffix.len(), "");
        }
    }
    let end = (src.lines().count().max(1), src.lines().last().map_or(0, |l| l.chars().count()) + 1);
    Problem {
        path: String::new(),
        line: Some(loc.as_ref().map_or(end.0, |l| l.line())),
        column: Some(loc.as_ref().map_or(end.1, |l| l.column())),
        message: format!("YAML syntax: {message}"),
    }
}

fn one() -> usize {
    1
}
fn default_health_path() -> String {
    "/health".into()
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_unhealthy_after() -> usize {
    2
}
fn default_op2_cpu_ms() -> u64 {
    20
}
fn default_max_cpu_ms() -> u64 {
    200
}
fn default_max_queue() -> usize {
    32
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_keepalive_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    4096
}
fn default_pool_size() -> usize {
    128
}
fn default_max_age_ms() -> u64 {
    5000
}
fn default_sync_ms() -> u64 {
    5000
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_scale_down_stabilization_ms() -> u64 {
    60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
balancer:
  listen: 127.0.0.1:8080
  admin: 127.0.0.1:9090
  algorithm: round_robin
  health_check: { path: /health, interval_ms: 1000, unhealthy_after: 2, healthy_after: 1 }
workload:
  op2_cpu_ms: 20
  max_cpu_ms: 1000
nodes:
  - name: big
    replicas: 1
    workers: 4
    cpus: 2.0
    port: 8081
  - name: small
    replicas: 3
    workers: 1
    port: 8091
";

    fn problems(src: &str) -> Vec<Problem> {
        Topology::from_yaml(src).expect_err("should be invalid").problems().to_vec()
    }

    /// The only problem of `src`, checked to name `path` at `line`.
    fn only_problem(src: &str, path: &str, line: usize) -> Problem {
        let p = problems(src);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, path, "{p:#?}");
        assert_eq!(p[0].line, Some(line), "{p:#?}");
        p[0].clone()
    }

    #[test]
    fn parses_groups_and_expands_replicas() {
        let t = Topology::from_yaml(GOOD).unwrap();
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.total_workers(), 7);
        let r = t.replicas();
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["big-1", "small-1", "small-2", "small-3"]);
        assert_eq!(r[3].listen, "127.0.0.1:8093".parse().unwrap());
        assert_eq!(r[0].cpus, Some(2.0));
    }

    #[test]
    fn backend_targets_per_mode() {
        let t = Topology::from_yaml(GOOD).unwrap();
        let local = t.backend_targets(&DiscoveryMode::Local);
        assert_eq!(local.len(), 4);
        assert_eq!(local[1], BackendTarget { name: "small-1".into(), addr: "127.0.0.1:8091".into() });
        let dns = t.backend_targets(&DiscoveryMode::Dns { prefix: "tasks.".into() });
        assert_eq!(dns[1].addr, "tasks.small:8091");
    }

    #[test]
    fn defaults_fill_optional_sections() {
        let t = Topology::from_yaml(
            "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
             nodes: [{ name: n, replicas: 1, workers: 1, port: 8081 }]\n",
        )
        .unwrap();
        assert_eq!(t.workload, Workload::default());
        assert_eq!(t.balancer.health_check.path, "/health");
        assert_eq!(t.balancer.algorithm, Algorithm::RoundRobin);
    }

    #[test]
    fn zero_workers_names_field_and_line() {
        let p = only_problem(&GOOD.replace("workers: 4", "workers: 0"), "nodes[0].workers", 12);
        assert!(p.message.contains("expected 1 to 64 workers, found 0"), "{}", p.message);
    }

    #[test]
    fn unknown_field_is_named() {
        let p = only_problem(&GOOD.replace("    workers: 1\n", "    worker: 1\n"), "nodes[1].worker", 17);
        assert!(p.message.contains("unknown field `worker`"), "{}", p.message);
    }

    #[test]
    fn bad_cpus_and_listen() {
        let p = only_problem(&GOOD.replace("cpus: 2.0", "cpus: -1"), "nodes[0].cpus", 13);
        assert!(p.message.contains("from 0.01 to 1024"), "{}", p.message);
        let p = only_problem(
            &GOOD.replace("listen: 127.0.0.1:8080", "listen: localhost:80x"),
            "balancer.listen",
            2,
        );
        assert!(p.message.contains("socket address"), "{}", p.message);
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let src = GOOD
            .replace("workers: 4", "workers: 0")
            .replace("port: 8091", "port: 8081")
            .replace("cpus: 2.0", "cpus: 0");
        let p = problems(&src);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["nodes[0].workers", "nodes[0].cpus", "nodes[1].port"], "{p:#?}");
        assert!(p[2].message.contains("clashes with nodes[0]"));
    }

    #[test]
    fn node_port_on_balancer_port_clashes() {
        let p = only_problem(&GOOD.replace("port: 8091", "port: 8078"), "nodes[1].port", 18);
        assert!(p.message.contains("balancer.listen"), "{}", p.message);
    }

    #[test]
    fn broken_yaml_has_a_position() {
        let p = problems("balancer:\n  listen: [127.0.0.1\nnodes: []\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].line.is_some() && p[0].message.starts_with("YAML syntax"), "{p:#?}");
    }

    #[test]
    fn group_names_must_not_look_like_replicas() {
        let p = only_problem(&GOOD.replace("name: big", "name: big-2"), "nodes[0].name", 10);
        assert!(p.message.contains("'-<number>'"));
        only_problem(&GOOD.replace("name: small", "name: big"), "nodes[1].name", 15);
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let t = Topology::from_yaml(&format!("\u{feff}{GOOD}")).unwrap();
        assert_eq!(t, Topology::from_yaml(GOOD).unwrap());
    }

    #[test]
    fn non_utf8_bytes_are_placed() {
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("workers: 4").unwrap() + "workers: ".len();
        bytes[at] = 0xff;
        let p = Topology::from_bytes(&bytes).unwrap_err().problems().to_vec();
        assert_eq!((p[0].line, p[0].column), (Some(12), Some(14)), "{p:#?}");
        assert!(p[0].message.contains("0xff"), "{p:#?}");
    }

    #[test]
    fn a_second_document_is_placed() {
        let p = problems(&format!("{GOOD}---\n{GOOD}"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].line, Some(19), "{p:#?}");
        assert!(p[0].message.contains("expected one YAML document"), "{p:#?}");
    }

    #[test]
    fn empty_and_oversized_files_are_placed() {
        let p = problems("");
        assert!(p[0].line.is_some() && p[0].column.is_some(), "{p:#?}");
        let big = format!("{GOOD}#{}\n", "x".repeat(MAX_FILE_BYTES));
        let p = Topology::from_bytes(big.as_bytes()).unwrap_err().problems().to_vec();
        assert!(p[0].message.contains("at most 1048576 bytes"), "{p:#?}");
    }

    #[test]
    fn limits_are_named_in_the_errors() {
        let cases = [
            (
                "algorithm: round_robin",
                "algorithm: round_robin\n  threads: 1000000",
                "balancer.threads",
                "per core",
            ),
            ("cpus: 2.0", "cpus: 1e-300", "nodes[0].cpus", "from 0.01"),
            (
                "interval_ms: 1000",
                "interval_ms: 18446744073709551615",
                "balancer.health_check.interval_ms",
                "50 to 300000 ms",
            ),
            ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:80", "balancer.listen", "allow_privileged_ports"),
            ("port: 8091", "port: 0", "nodes[1].port", "1024 to 65535, found 0"),
            ("max_cpu_ms: 1000", "max_cpu_ms: 60000", "workload.max_cpu_ms", "1 to 10000 ms"),
            ("path: /health", "path: \"/a b\"", "balancer.health_check.path", "URI path"),
            (
                "replicas: 1\n    workers: 4",
                "replicas: 64\n    workers: 63",
                "nodes",
                "at most 256 processes",
            ),
        ];
        for (from, to, path, words) in cases {
            let src = GOOD.replacen(from, to, 1);
            let p = problems(&src);
            let hit = p.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{to}: {p:#?}"));
            assert!(hit.message.contains(words), "{to}: {hit:#?}");
            assert!(hit.line.is_some() && hit.column.is_some(), "{hit:#?}");
        }
        let allowed =
            format!("allow_privileged_ports: true\n{}", GOOD.replace("127.0.0.1:8080", "127.0.0.1:80"));
        assert!(Topology::from_yaml(&allowed).is_ok());
    }

    #[test]
    fn read_timeout_defaults_to_fit_a_full_queue_and_is_bounded() {
        let t = Topology::from_yaml(GOOD).unwrap();
        // max_queue 32 (default) x max_cpu_ms 1000: a full queue is 33 s of CPU, twice that.
        assert_eq!(t.workload.longest_queue_ms(), 33_000);
        assert_eq!(t.balancer.upstream.read_timeout_in_force(&t.workload).as_millis(), 66_000);
        // The default workload: 33 x 200 ms = 6.6 s, twice is 13.2 s.
        let w = Workload::default();
        assert_eq!(UpstreamConfig::default().read_timeout_in_force(&w).as_millis(), 13_200);
        // Small workloads still get 10 s.
        let small = Workload { max_queue: 1, ..w };
        assert_eq!(UpstreamConfig::default().read_timeout_in_force(&small).as_millis(), 10_000);
        let set = |ms: &str, queue: &str| {
            GOOD.replace("max_cpu_ms: 1000", &format!("max_cpu_ms: 200\n  max_queue: {queue}"))
                .replace("algorithm: round_robin", &format!("algorithm: round_robin\n  upstream: {{ read_timeout_ms: {ms} }}"))
        };
        let t = Topology::from_yaml(&set("1500", "4")).unwrap();
        assert_eq!(t.balancer.upstream.read_timeout_in_force(&t.workload).as_millis(), 1500);
        let p = only_problem(&set("50", "4"), "balancer.upstream.read_timeout_ms", 5);
        assert!(p.message.contains("100 to 600000 ms"), "{p:#?}");
        let p = only_problem(&set("1500", "32"), "balancer.upstream.read_timeout_ms", 5);
        assert!(p.message.contains("at least 6600 ms") && p.message.contains("max_queue"), "{p:#?}");
    }

    const AUTOSCALED: &str = "\
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - name: node
    replicas: 1
    workers: 1
    cpus: 0.5
    port: 8081
    autoscale:
      min_replicas: 1
      max_replicas: 4
      metric: cpu
      target: 0.6
";

    #[test]
    fn autoscale_parses_with_hpa_defaults() {
        let t = Topology::from_yaml(AUTOSCALED).unwrap();
        let a = t.nodes[0].autoscale.clone().unwrap();
        assert_eq!((a.min_replicas, a.max_replicas, a.metric, a.target), (1, 4, AutoscaleMetric::Cpu, 0.6));
        assert_eq!((a.sync_ms, a.tolerance), (5000, 0.1));
        assert_eq!((a.scale_down_stabilization_ms, a.scale_up_stabilization_ms), (60_000, 0));
        // Ports and processes are reserved for max_replicas.
        assert_eq!(t.nodes[0].max_replicas(), 4);
        assert_eq!(t.processes(), 1 + 4 * 2);
        assert_eq!(t.with_replicas("node", 3).replicas().len(), 3);
        assert_eq!(Topology::from_yaml(&t.to_yaml()).unwrap(), t);
    }

    #[test]
    fn autoscale_bounds_are_named() {
        let cases = [
            ("replicas: 1", "replicas: 5", "nodes[0].replicas", "expected min_replicas (1) to max_replicas (4)", 4),
            ("min_replicas: 1", "min_replicas: 5", "nodes[0].autoscale.max_replicas", "expected min_replicas (5)", 10),
            ("max_replicas: 4", "max_replicas: 65", "nodes[0].autoscale.max_replicas", "to 64 replicas", 10),
            ("target: 0.6", "target: 1.5", "nodes[0].autoscale.target", "0.05 to 1 of the node's CPU cap", 12),
            ("target: 0.6", "target: 0.6\n      sync_ms: 100", "nodes[0].autoscale.sync_ms", "500 to 600000 ms", 13),
            ("target: 0.6", "target: 0.6\n      tolerance: -1", "nodes[0].autoscale.tolerance", "0 to 1", 13),
            (
                "target: 0.6",
                "target: 0.6\n      scale_down_stabilization_ms: 3600001",
                "nodes[0].autoscale.scale_down_stabilization_ms",
                "0 to 3600000 ms",
                13,
            ),
            ("    cpus: 0.5\n", "", "nodes[0].autoscale.metric", "expected `cpus` on this group", 10),
            ("metric: cpu", "metric: queue", "nodes[0].autoscale.metric", "unknown variant `queue`", 11),
        ];
        for (from, to, path, words, line) in cases {
            let src = AUTOSCALED.replacen(from, to, 1);
            let p = problems(&src);
            let hit = p.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{to}: {p:#?}"));
            assert!(hit.message.contains(words), "{to}: {hit:#?}");
            assert_eq!(hit.line, Some(line), "{to}: {hit:#?}");
        }
        // in_flight and rps need no cap, and have their own target ranges.
        let src = AUTOSCALED.replace("    cpus: 0.5\n", "").replace("metric: cpu", "metric: in_flight");
        assert!(Topology::from_yaml(&src.replace("target: 0.6", "target: 8")).is_ok());
        let p = problems(&src.replace("metric: in_flight", "metric: rps").replace("target: 0.6", "target: 0.01"));
        assert!(p[0].message.contains("requests per second per node"), "{p:#?}");
    }

    #[test]
    fn autoscale_reserves_ports_and_processes_for_max_replicas() {
        let src = AUTOSCALED.replace(
            "      target: 0.6\n",
            "      target: 0.6\n  - { name: other, replicas: 1, workers: 1, port: 8083 }\n",
        );
        let p = problems(&src);
        assert!(p.iter().any(|p| p.path == "nodes[1].port" && p.message.contains("8081..=8084")), "{p:#?}");
        let big = AUTOSCALED.replace("max_replicas: 4", "max_replicas: 64").replace("workers: 1", "workers: 4");
        let p = problems(&big);
        assert!(p.iter().any(|p| p.message.contains("at most 256 processes")), "{p:#?}");
    }

    #[test]
    fn thousands_of_groups_are_refused_quickly() {
        let mut src = String::from("balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\nnodes:\n");
        for i in 0..20_000 {
            src.push_str(&format!("  - {{ name: g{i}x, replicas: 1, workers: 1, port: 10000 }}\n"));
        }
        let started = std::time::Instant::now();
        let p = problems(&src);
        assert!(p.iter().any(|p| p.message.contains("at most 32 node groups")), "{:#?}", &p[..3]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn to_yaml_reads_back_equal() {
        let t = Topology::from_yaml(GOOD).unwrap();
        assert_eq!(Topology::from_yaml(&t.to_yaml()).unwrap(), t);
        assert_eq!(t.processes(), 1 + (4 + 1) + 3 * (1 + 1));
    }

    #[test]
    fn error_display_lists_file_line_and_field() {
        let err = Topology::from_yaml(&GOOD.replace("workers: 4", "workers: 0"))
            .unwrap_err()
            .in_file("topology.yaml".into());
        let text = err.to_string();
        assert!(
            text.contains(
                "topology.yaml: line 12 column 5: nodes[0].workers: expected 1 to 64 workers, found 0"
            ),
            "{text}"
        );
    }
}
