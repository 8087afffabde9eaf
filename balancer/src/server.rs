//! Assembling and running the pingora `Server`: the proxy and admin listeners, the
//! discovery-and-health background service, the topology watcher and a readiness notice,
//! with shutdown settings that stop the process in about three seconds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora_load_balancing::{Backends, LoadBalancer};
use scalelab_topology::{Algorithm, BalancerConfig, DiscoveryMode, Topology, TopologyWatch};

use crate::admin::{self, AdminApp};
use crate::discovery::{TopologyDiscovery, TopologyWatcher};
use crate::health::http_health_check;
use crate::metrics::Metrics;
use crate::proxy::Balancer;
use crate::state::Roster;
use crate::BalancerArgs;

/// How often discovery re-reads the topology and re-resolves the targets.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// How long the listeners may take to accept connections before startup counts as failed.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// What the balancer runs with, from the flags and the topology at startup.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The topology file, watched for edits.
    pub topology_path: PathBuf,
    /// Client listener (`--listen` or `balancer.listen`).
    pub listen: SocketAddr,
    /// Admin listener (`--admin` or `balancer.admin`).
    pub admin: SocketAddr,
    /// How targets become addresses.
    pub mode: DiscoveryMode,
    /// `balancer:` as it was at startup; listeners, algorithm, health checks and threads
    /// are fixed for the life of the process.
    pub balancer: BalancerConfig,
}

impl Settings {
    /// Flags override the topology.
    pub fn new(args: &BalancerArgs, topology: &Topology) -> Settings {
        Settings {
            topology_path: args.topology.clone(),
            listen: args.listen.unwrap_or(topology.balancer.listen),
            admin: args.admin.unwrap_or(topology.balancer.admin),
            mode: args.discovery_mode(),
            balancer: topology.balancer.clone(),
        }
    }

    /// Fails early, with the flag to blame, when a listener address cannot be bound (pingora
    /// would otherwise only panic inside its service thread and keep running without it).
    pub fn check_listeners(&self) -> anyhow::Result<()> {
        if self.listen == self.admin {
            anyhow::bail!("the client listener and the admin listener are both {}", self.listen);
        }
        for (what, addr) in
            [("--listen (balancer.listen)", self.listen), ("--admin (balancer.admin)", self.admin)]
        {
            std::net::TcpListener::bind(addr).with_context(|| format!("{what}: cannot listen on {addr}"))?;
        }
        Ok(())
    }

    /// What `/state` reports.
    fn admin_settings(&self) -> admin::Settings {
        admin::Settings {
            algorithm: self.balancer.algorithm.as_str(),
            discovery: match self.mode {
                DiscoveryMode::Local => "local",
                DiscoveryMode::Dns { .. } => "dns",
            },
            dns_prefix: match &self.mode {
                DiscoveryMode::Local => None,
                DiscoveryMode::Dns { prefix } => Some(prefix.clone()),
            },
            listen: self.listen.to_string(),
            admin: self.admin.to_string(),
            threads: self.threads(),
            health_path: self.balancer.health_check.path.clone(),
            health_interval_ms: self.balancer.health_check.interval_ms,
        }
    }

    fn threads(&self) -> usize {
        self.balancer.threads.max(1)
    }

    /// pingora's own settings. The defaults would make SIGTERM take 300 s (grace period) plus
    /// 5 s, and would share pid and upgrade-socket paths between balancers on one machine.
    fn server_conf(&self) -> ServerConf {
        let scratch = std::env::temp_dir();
        let pid = std::process::id();
        ServerConf {
            threads: self.threads(),
            // With one thread there is nobody to steal work from: pingora then runs each service
            // on a current-thread runtime instead of a one-worker multi-thread one, which skips
            // the cross-thread queue and wake-up bookkeeping on every task switch (measured in
            // scripts/bench.sh, comparison 3). With more threads, stealing keeps them balanced.
            work_stealing: self.threads() > 1,
            grace_period_seconds: Some(1),
            graceful_shutdown_timeout_seconds: Some(2),
            pid_file: scratch.join(format!("scalelab-balancer-{pid}.pid")).to_string_lossy().into_owned(),
            upgrade_sock: scratch
                .join(format!("scalelab-balancer-{pid}.sock"))
                .to_string_lossy()
                .into_owned(),
            ..ServerConf::default()
        }
    }
}

/// Builds the server for the topology's algorithm and runs it until a shutdown signal.
pub fn serve(settings: Settings, topology: Topology) -> anyhow::Result<()> {
    match settings.balancer.algorithm {
        Algorithm::RoundRobin => serve_with::<RoundRobin>(settings, topology),
        Algorithm::Random => serve_with::<Random>(settings, topology),
    }
}

fn serve_with<S>(settings: Settings, topology: Topology) -> anyhow::Result<()>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let health = &settings.balancer.health_check;
    let metrics = Arc::new(Metrics::new());
    let roster = Arc::new(Roster::default());

    // The watch's first poll always reports the file; start from it when it is still valid,
    // so the watcher's first report is a real edit.
    let mut watch = TopologyWatch::new(&settings.topology_path);
    let topology = match watch.poll() {
        Some(Ok(latest)) => latest,
        _ => topology,
    };
    let topology = Arc::new(ArcSwap::from_pointee(topology));

    let discovery =
        TopologyDiscovery::new(topology.clone(), settings.mode.clone(), roster.clone(), metrics.clone());
    let mut lb = LoadBalancer::<S>::from_backends(Backends::new(Box::new(discovery)));
    lb.set_health_check(Box::new(http_health_check(health, roster.clone())?));
    lb.health_check_frequency = Some(Duration::from_millis(health.interval_ms.max(1)));
    lb.update_frequency = Some(DISCOVERY_INTERVAL);
    // One dead backend must not delay the verdict on the others by its timeout.
    lb.parallel_health_check = true;

    let mut server = Server::new_with_opt_and_conf(None, settings.server_conf());
    server.bootstrap();

    let backends = background_service("discovery and health checks", lb);
    let lb = backends.task();
    let backends = server.add_service(backends);

    let watcher = background_service("topology watch", TopologyWatcher::new(watch, topology));
    server.add_service(watcher);

    let connect_timeout = Duration::from_millis(health.timeout_ms.max(1));
    let balancer = Balancer::new(lb.clone(), roster.clone(), metrics.clone(), connect_timeout);
    let mut proxy =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, balancer, "scalelab proxy");
    proxy.add_tcp(&settings.listen.to_string());
    // Listen only once the first discovery pass has filled the selector, so no early
    // request meets an empty backend set.
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&backends);

    let admin_app = AdminApp::new(lb.clone(), roster, metrics, settings.admin_settings());
    let mut admin = Service::new("scalelab admin".to_string(), HttpServer::new_app(admin_app));
    admin.add_tcp(&settings.admin.to_string());
    admin.threads = Some(1);
    let admin = server.add_service(admin);

    let count = lb.clone();
    let notice = ReadyNotice {
        listen: settings.listen,
        admin: settings.admin,
        backends: Box::new(move || count.backends().get_backend().len()),
    };
    let notice = server.add_service(background_service("ready notice", notice));
    notice.add_dependencies([&proxy, &admin]);

    server.run(RunArgs::default());
    tracing::info!("balancer stopped");
    Ok(())
}

/// Logs the one "listening" line once both listeners accept connections, or exits the
/// process if they never do.
struct ReadyNotice {
    listen: SocketAddr,
    admin: SocketAddr,
    backends: Box<dyn Fn() -> usize + Send + Sync>,
}

#[async_trait]
impl BackgroundService for ReadyNotice {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let deadline = Instant::now() + READY_DEADLINE;
        for addr in [self.listen, self.admin] {
            while tokio::net::TcpStream::connect(reachable(addr)).await.is_err() {
                if Instant::now() >= deadline {
                    tracing::error!(
                        "balancer: {addr} accepts no connections after {READY_DEADLINE:?}; exiting"
                    );
                    std::process::exit(1);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tracing::info!(
            "balancer listening on {} (admin {}), {} backends",
            self.listen,
            self.admin,
            (self.backends)()
        );
    }
}

/// An address this process can connect to for a listener bound to `addr` (a wildcard bind
/// is reached through loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}
