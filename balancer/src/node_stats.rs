//! What a node says about itself on `GET /stats`: the CPU time its processes have used (from
//! its own cgroup, natively or inside its container) and its CPU cap. The live sampler asks
//! every node once a second; a node that does not answer in time is shown without CPU.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::fetch::get_json;

/// How long one node may take to answer.
const STATS_TIMEOUT: Duration = Duration::from_millis(300);

pub use scalelab_wire::NodeStats;

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
