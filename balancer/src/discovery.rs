//! Where backends come from: `TopologyDiscovery`, a pingora `ServiceDiscovery` that resolves
//! the current topology's backend targets on every pass, and `TopologyWatcher`, the background
//! service that swaps in each valid edit of the topology file.
//!
//! pingora's only built-in discovery (`Static`) resolves once and blocks while doing so; this
//! one resolves asynchronously every `update_frequency`, so edits of the node count and
//! `docker scale` show up without a restart.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_error::Result;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use scalelab_topology::{BackendTarget, DiscoveryMode, Topology, TopologyWatch};
use tokio::task::JoinSet;

use crate::live::Live;
use crate::metrics::Metrics;
use crate::state::Roster;

/// How long one name may take to resolve before this pass skips it.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the topology file is polled for edits.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Backends from the current topology: every target the topology names, resolved.
pub struct TopologyDiscovery {
    /// The last valid topology; `TopologyWatcher` replaces it.
    topology: Arc<ArcSwap<Topology>>,
    mode: DiscoveryMode,
    roster: Arc<Roster>,
    metrics: Arc<Metrics>,
}

impl TopologyDiscovery {
    /// Discovery over `topology`, publishing names into `roster`.
    pub fn new(
        topology: Arc<ArcSwap<Topology>>,
        mode: DiscoveryMode,
        roster: Arc<Roster>,
        metrics: Arc<Metrics>,
    ) -> TopologyDiscovery {
        TopologyDiscovery { topology, mode, roster, metrics }
    }
}

#[async_trait]
impl ServiceDiscovery for TopologyDiscovery {
    /// Cancel-safe: nothing is published until every lookup has finished, and dropping the
    /// future drops the `JoinSet`, which aborts the lookups still running.
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let targets = self.topology.load().backend_targets(&self.mode);
        let found = resolve_all(targets).await;
        self.roster.replace(&found, &self.metrics);
        let backends = found
            .into_iter()
            .map(|(addr, _)| Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        Ok((backends, HashMap::new()))
    }
}

/// Resolves every target concurrently; a target that fails or times out is skipped (its node
/// may simply not be up yet), the others still count. Results keep the targets' order.
async fn resolve_all(targets: Vec<BackendTarget>) -> Vec<(SocketAddr, String)> {
    let mut lookups = JoinSet::new();
    for (index, target) in targets.into_iter().enumerate() {
        lookups.spawn(async move {
            let result =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(target.addr.clone())).await;
            (index, target, result)
        });
    }
    let mut resolved = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let (index, target, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("name lookup task failed: {e}");
                continue;
            }
        };
        match result {
            Ok(Ok(addrs)) => resolved.extend(addrs.map(|a| (index, a, target.name.clone()))),
            Ok(Err(e)) => tracing::debug!("{} ({}) does not resolve, skipped: {e}", target.name, target.addr),
            Err(_) => tracing::warn!(
                "{} ({}) took over {RESOLVE_TIMEOUT:?} to resolve, skipped",
                target.name,
                target.addr
            ),
        }
    }
    resolved.sort_by_key(|&(index, addr, _)| (index, addr));
    resolved.into_iter().map(|(_, addr, name)| (addr, name)).collect()
}

/// The file beside the topology where a lab's autoscaler writes its state
/// (`Vec<`[`AutoscaleState`](crate::status::AutoscaleState)`>` as JSON).
pub const AUTOSCALE_FILE: &str = "autoscale.json";

/// Polls the topology file and publishes each valid edit; an invalid edit is logged with its
/// problems and the last good topology stays in force. Both are noted for the dashboard, as
/// is an edit rejected upstream: a supervisor that publishes only valid topologies (`scalelab
/// up`) writes why it refused one to `rejected.txt` beside the file.
pub struct TopologyWatcher {
    /// Behind a mutex only because `BackgroundService::start` takes `&self`; one task uses it.
    watch: Mutex<Watched>,
    topology: Arc<ArcSwap<Topology>>,
    live: Arc<Live>,
    /// Started by a supervisor (`scalelab up`) that replaces this process when `balancer:`
    /// changes, so such an edit is news, not a warning.
    supervised: bool,
}

/// The file and the notes beside it, as last seen.
struct Watched {
    topology: TopologyWatch,
    rejected: std::path::PathBuf,
    rejected_seen: Option<String>,
    /// The lab's autoscaler state (`autoscale.json`), rewritten at each of its syncs.
    autoscale: std::path::PathBuf,
    autoscale_seen: Option<String>,
}

impl TopologyWatcher {
    /// A watcher publishing into `topology`. `watch` should already have been polled once
    /// (its first poll always reports the file). `supervised`: a supervisor restarts this
    /// process on a `balancer:` edit.
    pub fn new(
        watch: TopologyWatch,
        topology: Arc<ArcSwap<Topology>>,
        live: Arc<Live>,
        supervised: bool,
    ) -> TopologyWatcher {
        let rejected = watch.path().with_file_name("rejected.txt");
        let autoscale = watch.path().with_file_name(AUTOSCALE_FILE);
        let watched =
            Watched { topology: watch, rejected, rejected_seen: None, autoscale, autoscale_seen: None };
        TopologyWatcher { watch: Mutex::new(watched), topology, live, supervised }
    }

    /// One poll: publish a valid edit, log an invalid one.
    pub fn poll(&self) {
        let mut watched = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(note) = std::fs::read_to_string(&watched.rejected) {
            if watched.rejected_seen.as_deref() != Some(note.as_str()) {
                self.live.rejected(note.trim().to_string());
                watched.rejected_seen = Some(note);
            }
        }
        if let Ok(text) = std::fs::read_to_string(&watched.autoscale) {
            if watched.autoscale_seen.as_deref() != Some(text.as_str()) {
                match serde_json::from_str(&text) {
                    Ok(states) => self.live.autoscaled(states),
                    Err(e) => tracing::warn!("{}: {e}", watched.autoscale.display()),
                }
                watched.autoscale_seen = Some(text);
            }
        }
        let polled = watched.topology.poll();
        drop(watched);
        match polled {
            None => {}
            Some(Ok(next)) => {
                let current = self.topology.load();
                self.live.changed(scalelab_topology::diff::changes(&current, &next));
                if next.balancer != current.balancer && self.supervised {
                    tracing::info!("topology: balancer settings changed; a successor takes over the sockets");
                } else if next.balancer != current.balancer {
                    tracing::warn!(
                        "topology: balancer settings changed; backends follow the edit, but listeners, \
                         algorithm, health checks and threads keep their startup values until a restart"
                    );
                }
                let replicas: usize = next.nodes.iter().map(|g| g.replicas).sum();
                tracing::info!("topology reloaded: {} node groups, {replicas} replicas", next.nodes.len());
                self.topology.store(Arc::new(next));
            }
            Some(Err(e)) => {
                tracing::error!("topology edit rejected, keeping the last good one: {e}");
                self.live.rejected(e.to_string());
            }
        }
    }
}

#[async_trait]
impl BackgroundService for TopologyWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.poll(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, addr: &str) -> BackendTarget {
        BackendTarget { name: name.into(), addr: addr.into() }
    }

    #[tokio::test]
    async fn unresolvable_targets_are_skipped() {
        let found = resolve_all(vec![
            target("node-1", "127.0.0.1:8081"),
            target("bad", "not a host:port"),
            target("node-2", "127.0.0.1:8082"),
        ])
        .await;
        let names: Vec<_> = found.iter().map(|(a, n)| format!("{n}={a}")).collect();
        assert_eq!(names, ["node-1=127.0.0.1:8081", "node-2=127.0.0.1:8082"]);
    }

    #[tokio::test]
    async fn discovery_follows_the_published_topology() {
        let yaml = |replicas: usize| {
            format!(
                "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
                 nodes: [{{ name: node, replicas: {replicas}, workers: 1, port: 8081 }}]\n"
            )
        };
        let topology = Arc::new(ArcSwap::from_pointee(Topology::from_yaml(&yaml(2)).unwrap()));
        let roster = Arc::new(Roster::default());
        let discovery = TopologyDiscovery::new(
            topology.clone(),
            DiscoveryMode::Local,
            roster.clone(),
            Arc::new(Metrics::new()),
        );

        let (backends, _) = discovery.discover().await.unwrap();
        assert_eq!(backends.len(), 2);
        assert_eq!(roster.get(&"127.0.0.1:8082".parse().unwrap()).unwrap().name, "node-2");

        topology.store(Arc::new(Topology::from_yaml(&yaml(1)).unwrap()));
        let (backends, _) = discovery.discover().await.unwrap();
        assert_eq!(backends.len(), 1);
        assert!(roster.get(&"127.0.0.1:8082".parse().unwrap()).is_none());
    }
}
