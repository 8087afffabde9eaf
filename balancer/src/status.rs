//! The `/state` document: what the balancer sees and runs with. One public type for both ends:
//! the admin app serializes it, and `scalelab up`, `scalelab sweep` and the tests read it back
//! with serde instead of by string keys.

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
    /// `round_robin` or `random`.
    pub algorithm: String,
    /// `local` or `dns`.
    pub discovery: String,
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
