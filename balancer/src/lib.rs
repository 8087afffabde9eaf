//! The scalelab balancer: a pingora reverse proxy that spreads requests over the topology's
//! nodes (round robin or random), ejects the ones that fail their health checks, follows
//! edits of the topology file at run time and reports itself on an admin listener.
//!
//! # Layout
//! - [`discovery`]: `TopologyDiscovery`, the pingora `ServiceDiscovery` that turns the current
//!   topology into backends, and `TopologyWatcher`, which swaps in valid edits of the file.
//! - [`state`]: `Roster`, the name and request count of every discovered backend, shared by
//!   discovery, the proxy and the admin app.
//! - [`health`]: the active HTTP health check built from `balancer.health_check`.
//! - [`proxy`]: `Balancer`, the `ProxyHttp` implementation: selection, failover, headers,
//!   metrics.
//! - [`metrics`]: the Prometheus registry and the metric handles the proxy updates.
//! - [`admin`]: the admin HTTP app: `GET /metrics` and `GET /state`.
//! - [`server`]: assembling the pingora `Server` (services, shutdown settings) and running it.

pub mod admin;
pub mod discovery;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use scalelab_topology::{DiscoveryMode, Topology};

/// Flags of `scalelab balancer`.
#[derive(Debug, Clone, clap::Args)]
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
}

/// The `--discovery` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Discovery {
    /// One backend per replica at 127.0.0.1:port+i-1.
    Local,
    /// One DNS name per group, re-resolved every second.
    Dns,
}

impl BalancerArgs {
    /// The discovery mode the flags ask for.
    pub fn discovery_mode(&self) -> DiscoveryMode {
        match self.discovery {
            Discovery::Local => DiscoveryMode::Local,
            Discovery::Dns => DiscoveryMode::Dns { prefix: self.dns_prefix.clone() },
        }
    }
}

/// Runs the balancer until SIGTERM (graceful, a few seconds) or SIGINT (immediate).
pub fn run(args: BalancerArgs) -> anyhow::Result<()> {
    let topology = Topology::load(&args.topology).context("--topology")?;
    let settings = server::Settings::new(&args, &topology);
    settings.check_listeners()?;
    server::serve(settings, topology)
}
