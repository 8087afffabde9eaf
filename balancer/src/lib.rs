//! The scalelab balancer: a pingora reverse proxy that spreads requests over the topology's
//! nodes (round robin, random, least connections, power of two choices or peak-EWMA), ejects the ones that fail their health checks, follows
//! edits of the topology file at run time and reports itself on an admin listener.
//!
//! # Layout
//! - [`sockets`]: the two listening sockets, bound here or inherited from `scalelab up`, and
//!   how the inherited one is handed to pingora.
//! - [`guard`]: client connections at the door: a connection cap, header and idle deadlines.
//! - [`discovery`]: `TopologyDiscovery`, the pingora `ServiceDiscovery` that turns the current
//!   topology into backends, and `TopologyWatcher`, which swaps in valid edits of the file.
//! - [`state`]: `Roster`, the name, request count and load of every discovered backend,
//!   shared by discovery, the proxy, the selectors and the admin app.
//! - [`traffic`]: what each backend served (per worker, errors, retries, a latency window).
//! - [`health`]: the active HTTP health check built from `balancer.health_check`.
//! - [`proxy`]: `Balancer`, the `ProxyHttp` implementation: selection, failover, headers,
//!   metrics.
//! - [`selection`]: `least_conn`, `p2c` and `peak_ewma` on pingora's selection trait, scoring
//!   backends by the load the roster counts.
//! - [`metrics`]: the Prometheus registry and the metric handles the proxy updates.
//! - [`live`]: the sampler behind the dashboard: rates, percentiles, CPU, changes, theory.
//! - [`node_stats`]: each node's `/stats` (its CPU use and cap), asked once a second.
//! - [`fetch`]: one JSON document by `GET`: a node's `/stats`, the balancer's `/state`.
//! - [`admin`]: the admin listener (hyper): the dashboard (`/`, `/events`, `/live`),
//!   `GET /metrics` and `GET /state`.
//! - [`status`]: `StateReport`, the `/state` document, for the balancer and its readers.
//! - [`write_deadline`]: a socket whose writes may not stall past a deadline (admin clients
//!   that stop reading).
//! - [`server`]: assembling the pingora `Server` (services, shutdown settings) and running it.

pub mod admin;
pub mod discovery;
pub mod fetch;
pub mod guard;
pub mod health;
pub mod live;
pub mod metrics;
pub mod node_stats;
pub mod proxy;
pub mod selection;
pub mod server;
pub mod sockets;
pub mod state;
pub mod status;
pub mod traffic;
pub mod write_deadline;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use scalelab_topology::{DiscoveryMode, Topology};

/// Flags of `scalelab balancer`. The type owns its command line both ways: clap parses it,
/// [`BalancerArgs::to_args`] writes it for whoever starts a balancer.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct BalancerArgs {
    /// The topology file: backends, health checks and listeners; edits are followed live.
    #[arg(long, short, default_value = "topology.yaml")]
    pub topology: PathBuf,
    /// Client listener, overriding `balancer.listen` (e.g. 0.0.0.0:8080 in a container).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listener for /metrics and /state, overriding `balancer.admin`.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// How node groups become backend addresses: one loopback port per replica (`local`) or
    /// one DNS name per group resolving to every replica (`dns`).
    #[arg(long, value_enum, default_value_t = Discovery::Local)]
    pub discovery: Discovery,
    /// Prefix of the DNS name of each group with `--discovery dns` ("tasks." under Docker Swarm).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub dns_prefix: String,
    /// The listening sockets are inherited at fd 3 (client) and fd 4 (admin), bound by the
    /// supervisor that started this process (`scalelab up`).
    #[arg(long, hide = true)]
    pub inherited: bool,
    /// Write one byte to this descriptor once serving (a supervisor's readiness pipe).
    #[arg(long, hide = true, value_name = "FD")]
    pub ready_fd: Option<i32>,
}

/// The `--discovery` choices: the topology crate's [`Discovery`], the one spelling.
pub use scalelab_topology::Discovery;

impl BalancerArgs {
    /// Flags for a balancer of the topology at `topology`, everything else at its default.
    pub fn new(topology: impl Into<PathBuf>) -> BalancerArgs {
        BalancerArgs {
            topology: topology.into(),
            listen: None,
            admin: None,
            discovery: Discovery::Local,
            dns_prefix: String::new(),
            inherited: false,
            ready_fd: None,
        }
    }

    /// The argv after `scalelab balancer` that parses back into these flags (flags at their
    /// default are left out).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--topology".to_string(), self.topology.display().to_string()];
        for (flag, addr) in [("--listen", self.listen), ("--admin", self.admin)] {
            if let Some(a) = addr {
                args.extend([flag.to_string(), a.to_string()]);
            }
        }
        if self.discovery == Discovery::Dns {
            args.extend(["--discovery".to_string(), "dns".to_string()]);
        }
        if !self.dns_prefix.is_empty() {
            args.extend(["--dns-prefix".to_string(), self.dns_prefix.clone()]);
        }
        if self.inherited {
            args.push("--inherited".to_string());
        }
        if let Some(fd) = self.ready_fd {
            args.extend(["--ready-fd".to_string(), fd.to_string()]);
        }
        args
    }

    /// The discovery mode the flags ask for.
    pub fn discovery_mode(&self) -> DiscoveryMode {
        match self.discovery {
            Discovery::Local => DiscoveryMode::Local,
            Discovery::Dns => DiscoveryMode::Dns { prefix: self.dns_prefix.clone() },
        }
    }
}

/// Everything the balancer checks before it listens: what it builds from the topology (the
/// health check, the client limits) must build. `scalelab up` and the tests run the same check
/// on every topology they accept.
pub fn preflight(args: &BalancerArgs, topology: &Topology) -> anyhow::Result<()> {
    let settings = server::Settings::new(args, topology);
    health::http_health_check(&topology.balancer.health_check, Default::default())?;
    settings.client_limits();
    Ok(())
}

/// Runs the balancer until SIGTERM (graceful, a few seconds) or SIGINT (immediate).
pub fn run(args: BalancerArgs) -> anyhow::Result<()> {
    let topology = Topology::load(&args.topology).context("--topology")?;
    preflight(&args, &topology)?;
    let listen = args.listen.unwrap_or(topology.balancer.listen);
    let admin = args.admin.unwrap_or(topology.balancer.admin);
    let listeners = if args.inherited {
        sockets::Listeners::inherited(listen, admin)?
    } else {
        sockets::Listeners::bind(listen, admin)?
    };
    let settings = server::Settings::new(&args, &topology);
    server::serve(settings, topology, listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_args_parses_back_into_the_same_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            balancer: BalancerArgs,
        }
        let mut args = BalancerArgs::new("/lab/topology.yaml");
        args.listen = Some("0.0.0.0:8080".parse().unwrap());
        args.discovery = Discovery::Dns;
        args.dns_prefix = "tasks.".into();
        args.inherited = true;
        args.ready_fd = Some(5);
        let argv = std::iter::once("balancer".to_string()).chain(args.to_args());
        assert_eq!(<Cli as clap::Parser>::try_parse_from(argv).unwrap().balancer, args);
        let plain = BalancerArgs::new("t.yaml");
        assert_eq!(plain.to_args(), ["--topology", "t.yaml"]);
    }
}
