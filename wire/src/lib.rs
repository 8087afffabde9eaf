//! The node's wire contract, in one place: the headers every node answer carries, and the
//! `/stats` and `/info` bodies. The node writes these types, the balancer and the load tool
//! (and the tests) read them, so a field renamed on one side is a compile error on the other.

use std::time::Duration;

use scalelab_topology::Distribution;
use serde::{Deserialize, Serialize};

/// Response header: the name of the node that answered (`node-1`, `node@<hostname>`).
pub const X_NODE: &str = "x-node";
/// Response header: the id (1-based) of the worker that answered.
pub const X_WORKER: &str = "x-worker";
/// Response header: the process id of the worker that answered.
pub const X_PID: &str = "x-pid";
/// Response header on a 503: the worker's `/op2` queue was full (load shedding), as opposed to
/// a 503 of a worker shutting down or of a proxy.
pub const X_SHED: &str = "x-shed";

/// `GET /stats`: what the balancer's sampler asks each node once a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's own name (`node-1`, or `node@<hostname>` in a container).
    #[serde(default)]
    pub node: Option<String>,
    /// CPU its processes used since its cgroup began, µs; `None` when it cannot read one.
    #[serde(default)]
    pub cpu_used_us: Option<u64>,
    /// Its CPU cap in cores; `None` when uncapped or unknown.
    #[serde(default)]
    pub cpu_cap: Option<f64>,
}

impl NodeStats {
    /// [`NodeStats::cpu_used_us`] as a duration.
    pub fn cpu_used(&self) -> Option<Duration> {
        self.cpu_used_us.map(Duration::from_micros)
    }
}

/// `GET /info`: one worker describing itself and the request that asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name.
    pub node: String,
    /// The worker's id, 1-based.
    pub worker: usize,
    /// The worker's process id.
    pub pid: u32,
    /// Seconds since the worker started.
    pub uptime_s: f64,
    /// Requests this worker has served, this one included.
    pub requests: u64,
    /// `/op2` requests it shed (503 + `x-shed`).
    pub shed: u64,
    /// `/op2` requests waiting for its CPU now.
    pub queued: usize,
    /// CPU ms of a plain `/op2`.
    pub op2_cpu_ms: u64,
    /// The cap on `/op2?cpu_ms=`, ms.
    pub max_cpu_ms: u64,
    /// `/op2` requests one worker holds waiting, at most.
    pub max_queue: usize,
    /// How the node spreads connections over its workers.
    pub distribution: Distribution,
    /// The `X-Forwarded-For` this request carried (a proxy in front appends the client).
    pub forwarded_for: Option<String>,
    /// The `Host` this request carried (the balancer sets one if the client did not).
    pub host: Option<String>,
}

/// The body of `/op1` and the start of `/op2`'s: who answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub node: String,
    pub worker: usize,
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_info_read_back_as_written() {
        let stats =
            NodeStats { node: Some("node-1".into()), cpu_used_us: Some(2_500_000), cpu_cap: Some(1.5) };
        let text = serde_json::to_string(&stats).unwrap();
        assert_eq!(text, r#"{"node":"node-1","cpu_used_us":2500000,"cpu_cap":1.5}"#);
        let back: NodeStats = serde_json::from_str(&text).unwrap();
        assert_eq!(back, stats);
        assert_eq!(back.cpu_used(), Some(Duration::from_millis(2500)));
        // A node that cannot read its cgroups says null; an older one may leave fields out.
        assert_eq!(serde_json::from_str::<NodeStats>("{}").unwrap(), NodeStats::default());

        let info = NodeInfo {
            node: "node-2".into(),
            worker: 3,
            pid: 4242,
            uptime_s: 1.5,
            requests: 7,
            shed: 1,
            queued: 0,
            op2_cpu_ms: 20,
            max_cpu_ms: 200,
            max_queue: 32,
            distribution: Distribution::RoundRobin,
            forwarded_for: Some("10.0.0.9".into()),
            host: None,
        };
        let text = serde_json::to_string(&info).unwrap();
        assert!(text.contains(r#""distribution":"round_robin""#), "{text}");
        assert_eq!(serde_json::from_str::<NodeInfo>(&text).unwrap(), info);
        let who = Identity { node: "node-1".into(), worker: 1, pid: 7 };
        let text = serde_json::to_string(&who).unwrap();
        assert_eq!(serde_json::from_str::<Identity>(&text).unwrap(), who);
    }
}
