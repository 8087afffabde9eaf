//! The `/state` document: what the balancer sees and runs with. One public type for both ends:
//! the admin app serializes it, and `scalelab up`, `scalelab sweep` and the tests read it back
//! with serde instead of by string keys.

use scalelab_topology::{Algorithm, Discovery};
use serde::{Deserialize, Serialize};

/// The whole `/state` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    /// Every discovered backend, in discovery order.
    pub backends: Vec<BackendState>,
    /// How many of them pass their health checks.
    pub healthy_backends: usize,
    /// Attempts repeated on another (or a fresh) connection since start.
    pub retries: u64,
    /// The settings in force (fixed for the life of the process).
    #[serde(flatten)]
    pub settings: Settings,
    /// Every node group of the topology in force, with its autoscaler's state.
    #[serde(default)]
    pub groups: Vec<GroupState>,
}

/// One node group as the lab runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    pub name: String,
    /// Replicas the topology in force gives it (an autoscaler's current count).
    pub replicas: usize,
    /// Its autoscaler, when the group has one and the lab runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleState>,
}

/// What a group's autoscaler saw and decided last. The lab that runs the controller writes it
/// (`autoscale.json` beside the published topology); the balancer serves it on `/state` and
/// in its live samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleState {
    /// The group it scales.
    pub group: String,
    /// Replicas running (or starting) now.
    pub current: usize,
    /// What the metric alone asked for at the last sync.
    pub recommended: usize,
    /// What the last sync decided, after stabilization, rate limits and clamping.
    pub desired: usize,
    pub min_replicas: usize,
    pub max_replicas: usize,
    /// `cpu`, `in_flight` or `rps`.
    pub metric: scalelab_topology::AutoscaleMetric,
    /// The metric's mean over the ready nodes at the last sync (`None`: no node reported).
    pub value: Option<f64>,
    /// The per-node value it aims for.
    pub target: f64,
    /// Unix time of the last sync, seconds.
    pub synced_at: f64,
    /// The last change of replicas it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
    /// Replica changes so far (the newest [`MAX_DECISIONS`] are kept in `decisions`).
    pub decisions_total: u64,
    /// Its recent replica changes, oldest first.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// Decisions an [`AutoscaleState`] keeps.
pub const MAX_DECISIONS: usize = 50;

/// One change of replicas by an autoscaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix time, seconds.
    pub at: f64,
    pub from: usize,
    pub to: usize,
    /// In words, e.g. `cpu 93% of the 0.50-core cap (target 60%)`.
    pub reason: String,
}

/// One backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendState {
    /// Its topology name: the replica (`node-1`) natively, the group (`node`) with DNS.
    pub name: String,
    /// `ip:port`.
    pub addr: String,
    /// Whether it passes its health checks (and so takes traffic).
    pub healthy: bool,
    /// Responses relayed from it since it (last) joined.
    pub requests: u64,
}

/// The balancer's settings, from the topology and its flags at startup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The balancing algorithm (`round_robin`, `random`, `least_conn`, `p2c`, `peak_ewma`).
    pub algorithm: Algorithm,
    /// How backends are found (`local` or `dns`).
    pub discovery: Discovery,
    /// The prefix of group DNS names (`dns` discovery only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_prefix: Option<String>,
    /// The client listener.
    pub listen: String,
    /// The admin listener.
    pub admin: String,
    /// Proxy worker threads.
    pub threads: usize,
    /// The health check path.
    pub health_path: String,
    /// Milliseconds between health check passes.
    pub health_interval_ms: u64,
    /// A client's whole request head must arrive within this, ms.
    pub header_timeout_ms: u64,
    /// An idle client connection is closed after this, ms.
    pub keepalive_timeout_ms: u64,
    /// Client connections held at once (after fitting the open-file limit).
    pub max_connections: usize,
}

impl StateReport {
    /// The sorted names of the healthy backends.
    pub fn healthy_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.backends.iter().filter(|b| b.healthy).map(|b| b.name.clone()).collect();
        names.sort_unstable();
        names
    }
}
