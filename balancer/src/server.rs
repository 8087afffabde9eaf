//! Assembling and running the pingora `Server`: the proxy (behind the client guard, on its
//! listening socket), the admin listener, the discovery-and-health background service, the
//! topology watcher and a readiness notice, with shutdown settings that stop the process in
//! a few seconds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora_load_balancing::{Backends, LoadBalancer};
use scalelab_topology::{Algorithm, BalancerConfig, DiscoveryMode, Topology, TopologyWatch};

use crate::admin::{AdminApp, AdminServer};
use crate::discovery::{TopologyDiscovery, TopologyWatcher};
use crate::guard::{ClientGuard, ClientLimits};
use crate::health::http_health_check;
use crate::live::{Live, Sampler};
use crate::metrics::Metrics;
use crate::proxy::Balancer;
use crate::selection::{LeastConn, P2c, PeakEwmaSelection};
use crate::sockets::{Listeners, WithListener};
use crate::state::Roster;
use crate::status;
use crate::BalancerArgs;

/// Descriptors kept free of client connections: upstream pools, health checks, the admin
/// listener and its clients, logs.
const RESERVED_FDS: u64 = 256;

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
    /// Where to report readiness (one byte), if a supervisor asked.
    pub ready_fd: Option<i32>,
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
            ready_fd: args.ready_fd,
        }
    }

    /// The client limits, with `max_connections` lowered to what the open-file limit allows
    /// (each client connection may hold an upstream connection too), and a warning if so.
    pub fn client_limits(&self) -> ClientLimits {
        let b = &self.balancer;
        let wanted = b.max_connections;
        let max_connections = match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            Ok((soft, _)) => {
                let fits = (soft.saturating_sub(RESERVED_FDS) / 2).max(1) as usize;
                if fits < wanted {
                    tracing::warn!(
                        "balancer.max_connections {wanted} does not fit the open-file limit {soft} \
                         (two descriptors per connection, {RESERVED_FDS} kept for the rest): holding at \
                         most {fits} client connections"
                    );
                }
                wanted.min(fits)
            }
            Err(e) => {
                tracing::warn!("cannot read the open-file limit ({e}); max_connections stays {wanted}");
                wanted
            }
        };
        ClientLimits {
            header_timeout: Duration::from_millis(b.header_timeout_ms),
            keepalive_timeout: Duration::from_millis(b.keepalive_timeout_ms),
            max_connections,
        }
    }

    /// What `/state` reports.
    fn status_settings(&self, limits: &ClientLimits) -> status::Settings {
        status::Settings {
            algorithm: self.balancer.algorithm,
            discovery: self.mode.kind(),
            dns_prefix: self.mode.dns_prefix().map(str::to_string),
            listen: self.listen.to_string(),
            admin: self.admin.to_string(),
            threads: self.threads(),
            health_path: self.balancer.health_check.path.clone(),
            health_interval_ms: self.balancer.health_check.interval_ms,
            header_timeout_ms: self.balancer.header_timeout_ms,
            keepalive_timeout_ms: self.balancer.keepalive_timeout_ms,
            max_connections: limits.max_connections,
        }
    }

    fn threads(&self) -> usize {
        self.balancer.threads.max(1)
    }

    /// pingora's own settings. The defaults would make SIGTERM take 300 s (grace period) plus
    /// 5 s, and would share pid and upgrade-socket paths between balancers on one machine.
    /// The grace period is how long in-flight requests may finish after SIGTERM (the old
    /// balancer of a restart drains for that long while its successor already serves).
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
            upstream_keepalive_pool_size: self.balancer.upstream.pool_size,
            grace_period_seconds: Some(2),
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

/// Builds the server for the topology's algorithm and runs it on `listeners` until a shutdown
/// signal.
pub fn serve(settings: Settings, topology: Topology, listeners: Listeners) -> anyhow::Result<()> {
    // The load-aware selectors read the roster's per-backend load; pingora's own need nothing.
    let roster = Arc::new(Roster::default());
    let load = Some(roster.clone());
    match settings.balancer.algorithm {
        Algorithm::RoundRobin => serve_with::<RoundRobin>(settings, topology, listeners, roster, None),
        Algorithm::Random => serve_with::<Random>(settings, topology, listeners, roster, None),
        Algorithm::LeastConn => serve_with::<LeastConn>(settings, topology, listeners, roster, load),
        Algorithm::P2c => serve_with::<P2c>(settings, topology, listeners, roster, load),
        Algorithm::PeakEwma => serve_with::<PeakEwmaSelection>(settings, topology, listeners, roster, load),
    }
}

fn serve_with<S>(
    settings: Settings,
    topology: Topology,
    listeners: Listeners,
    roster: Arc<Roster>,
    selector_config: Option<S::Config>,
) -> anyhow::Result<()>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let health = &settings.balancer.health_check;
    let metrics = Arc::new(Metrics::new());

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
    let mut lb =
        LoadBalancer::<S>::from_backends_with_config(Backends::new(Box::new(discovery)), selector_config);
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

    let live = Arc::new(Live::default());
    let watcher = background_service(
        "topology watch",
        TopologyWatcher::new(watch, topology.clone(), live.clone(), settings.ready_fd.is_some()),
    );
    server.add_service(watcher);

    let connect_timeout = Duration::from_millis(health.timeout_ms.max(1));
    let limits = settings.client_limits();
    let max_age = settings.balancer.upstream.max_age_ms;
    let read_timeout = settings.balancer.upstream.read_timeout_in_force(&topology.load().workload);
    let track_latency = settings.balancer.algorithm == Algorithm::PeakEwma;
    let balancer = Balancer::new(
        lb.clone(),
        roster.clone(),
        metrics.clone(),
        connect_timeout,
        read_timeout,
        max_age,
        track_latency,
    );
    let app =
        ClientGuard::new(pingora_proxy::http_proxy(&server.configuration, balancer), limits, metrics.clone());
    let mut proxy = Service::new("scalelab proxy".to_string(), app);
    proxy.add_tcp(&settings.listen.to_string());
    // Listen only once the first discovery pass has filled the selector, so no early
    // request meets an empty backend set.
    let proxy = server.add_service(WithListener::new(proxy, settings.listen, listeners.listen));
    proxy.add_dependency(&backends);

    let algorithm = settings.balancer.algorithm;
    let sampler =
        Sampler::new(lb.clone(), roster.clone(), topology, live.clone(), metrics.clone(), algorithm);
    server.add_service(background_service("live sampler", sampler));
    let admin_app = AdminApp::new(lb.clone(), roster, metrics, live, settings.status_settings(&limits));
    let admin = server.add_service(background_service("admin", AdminServer::new(admin_app, listeners.admin)));

    let count = lb.clone();
    let notice = ReadyNotice {
        listen: settings.listen,
        admin: settings.admin,
        ready_fd: settings.ready_fd,
        backends: Box::new(move || count.backends().get_backend().len()),
    };
    let notice = server.add_service(background_service("ready notice", notice));
    notice.add_dependencies([&proxy, &admin]);

    server.run(RunArgs::default());
    tracing::info!("balancer stopped");
    Ok(())
}

/// Logs the one "listening" line once both listeners accept connections (and tells the
/// supervisor through its readiness pipe), or exits the process if they never do.
struct ReadyNotice {
    listen: SocketAddr,
    admin: SocketAddr,
    ready_fd: Option<i32>,
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
        if let Some(fd) = self.ready_fd {
            notify_ready(fd);
        }
    }
}

/// Writes the readiness byte to the supervisor's pipe and closes our end.
fn notify_ready(fd: i32) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: the supervisor placed the pipe's write end at `fd` for this process alone, and
    // this is its only user; it is written once and closed.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Err(e) = pipe.write_all(b"R") {
        tracing::warn!("cannot report readiness on fd {fd}: {e}");
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
