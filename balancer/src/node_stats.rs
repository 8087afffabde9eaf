//! What a node says about itself on `GET /stats`: the CPU time its processes have used (from
//! its own cgroup, natively or inside its container) and its CPU cap. The live sampler asks
//! every node once a second; a node that does not answer in time is shown without CPU.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::JoinSet;

use crate::fetch::get_json;

/// How long one node may take to answer.
const STATS_TIMEOUT: Duration = Duration::from_millis(300);

/// A node's `/stats` document.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NodeStats {
    /// The node's own name (`node-1`, or `node@<hostname>` in a container).
    #[serde(default)]
    pub node: Option<String>,
    /// CPU its processes used since its cgroup began, µs; `None` when it cannot read one.
    #[serde(default, rename = "cpu_used_us", deserialize_with = "micros")]
    pub cpu_used: Option<Duration>,
    /// Its CPU cap in cores; `None` when uncapped or unknown.
    #[serde(default)]
    pub cpu_cap: Option<f64>,
}

fn micros<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
}

/// Asks every node at once; the ones that answered in time, by address.
pub async fn fetch_all(addrs: &[SocketAddr]) -> HashMap<SocketAddr, NodeStats> {
    let mut asks = JoinSet::new();
    for &addr in addrs {
        asks.spawn(
            async move { (addr, tokio::time::timeout(STATS_TIMEOUT, get_json(addr, "/stats")).await) },
        );
    }
    let mut found = HashMap::new();
    while let Some(done) = asks.join_next().await {
        if let Ok((addr, Ok(Ok(stats)))) = done {
            found.insert(addr, stats);
        }
    }
    found
}
