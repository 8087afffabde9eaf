//! The topology types, as `topology.yaml` spells them, and what follows from them: the
//! replicas a group expands to and the addresses the balancer should send traffic to. Reading
//! one from text is [`crate::parse`]'s; the rules beyond the types are [`crate::validate`]'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

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
        UpstreamConfig {
            pool_size: default_pool_size(),
            max_age_ms: default_max_age_ms(),
            read_timeout_ms: None,
        }
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
            workload
                .longest_queue_ms()
                .saturating_mul(2)
                .clamp(crate::limits::DEFAULT_MIN_READ_TIMEOUT_MS, hi)
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
    /// For metric `cpu`: how long after a node starts its CPU samples are set aside while it
    /// is not ready or before it became ready, ms (Kubernetes: the controller-manager flag
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`, 5 min).
    #[serde(default = "default_cpu_initialization_period_ms")]
    pub cpu_initialization_period_ms: u64,
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
fn default_cpu_initialization_period_ms() -> u64 {
    10_000
}
fn default_scale_down_stabilization_ms() -> u64 {
    60_000
}
