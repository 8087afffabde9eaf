//! What the tour runs: its built-in topologies (each on a block of free loopback ports, so a
//! tour runs beside `scalelab up` and beside another tour) and how long each measurement lasts
//! in full and quick mode.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use scalelab_topology::Topology;

/// Ports a step's lab may use: the balancer's two, then up to 8 per node group.
const BLOCK: u16 = 20;
/// Where blocks are looked for: above the usual service ports, below the ephemeral range.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// How long the tour's measurements last.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub quick: bool,
}

impl Pace {
    pub fn new(quick: bool) -> Pace {
        Pace { quick }
    }

    /// What the whole tour should take on a 2-core machine.
    pub fn expected(self) -> Duration {
        Duration::from_secs(if self.quick { 75 } else { 180 })
    }

    /// Step 1: each of its three phases.
    pub fn phase(self) -> Duration {
        self.pick(2_000, 4_000)
    }

    /// A sweep point's measured round.
    pub fn round(self) -> Duration {
        self.pick(1_000, 2_500)
    }

    /// Rounds per sweep point: two show the noise; quick mode has no time for it.
    pub fn rounds(self) -> u32 {
        if self.quick {
            1
        } else {
            2
        }
    }

    /// Unmeasured load before a sweep point's first round.
    pub fn warmup(self) -> Duration {
        self.pick(300, 800)
    }

    /// Idle time between rounds.
    pub fn pause(self) -> Duration {
        self.pick(200, 300)
    }

    /// Step 4's loads, as fractions of the lab's theoretical capacity.
    pub fn loads(self) -> &'static str {
        if self.quick {
            "0.3,0.7,0.9"
        } else {
            "0.3,0.6,0.8,0.9,0.95"
        }
    }

    /// Step 6: the load, with the node killed a third of the way in.
    pub fn failover(self) -> Duration {
        self.pick(4_500, 7_500)
    }

    /// Step 7: a quiet start, a step up, a hold, a step down, a quiet end (k6-style stages,
    /// req/s), and the autoscaler's scale-down window (a lab-sized one: Kubernetes' is 300 s).
    pub fn stages(self) -> (&'static str, u64) {
        if self.quick {
            ("3s:10,2s:60,9s:60,2s:10,8s:10", 4_000)
        } else {
            ("6s:10,3s:60,18s:60,3s:10,14s:10", 6_000)
        }
    }

    fn pick(self, quick_ms: u64, full_ms: u64) -> Duration {
        Duration::from_millis(if self.quick { quick_ms } else { full_ms })
    }
}

/// A block of [`BLOCK`] consecutive free loopback ports: the first is the balancer's.
pub fn free_ports() -> anyhow::Result<u16> {
    let span = PORTS.end - PORTS.start - BLOCK;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for attempt in 0..64u32 {
        let base = PORTS.start + ((seed.wrapping_add(attempt.wrapping_mul(7_919)) % u32::from(span)) as u16);
        let all_free = (base..base + BLOCK).all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    bail!("no {BLOCK} consecutive free loopback ports between {} and {}", PORTS.start, PORTS.end)
}

/// A step's topology: `body` is everything after the `balancer:` block, with `{node}` and
/// `{node2}` standing for the first and second node group's ports. Written to
/// `dir/topology.yaml` (the step's record of what it ran) and parsed.
pub fn topology(dir: &Path, balancer_extra: &str, body: &str) -> anyhow::Result<(Topology, PathBuf)> {
    let base = free_ports()?;
    let text = format!(
        "# What this step of `scalelab tour` ran (its ports were free ones when it ran).\n\
         balancer:\n  listen: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\n{balancer_extra}\
         \n{}",
        base,
        base + 1,
        body.replace("{node}", &(base + 2).to_string()).replace("{node2}", &(base + 11).to_string())
    );
    let path = dir.join("topology.yaml");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let t = Topology::from_yaml(&text).map_err(|e| anyhow::anyhow!("the built-in topology: {e}"))?;
    Ok((t, path))
}

/// The `balancer:` lines of [`HEALTH`], as a literal for `concat!`.
macro_rules! health {
    () => {
        "  health_check: { path: /health, interval_ms: 200, timeout_ms: 1000, unhealthy_after: 1 }\n"
    };
}

/// The health checks every step's balancer runs: quick, so a dead node leaves in a fraction
/// of a second and a started one joins as fast.
pub const HEALTH: &str = health!();

/// [`HEALTH`], and kept-alive connections to the nodes renewed every half second: a
/// connection stays with the worker that accepted it, so a worker added live gets requests
/// only on connections made after it started (the lab's default renews them every 5 s).
const RENEWED: &str = concat!(health!(), "  upstream: { max_age_ms: 500 }\n");

/// A topology without its ports: (lines for the `balancer:` block, everything after it).
pub type Setup = (&'static str, &'static str);

/// Step 1: one worker; /op2 burns 50 ms, long enough to see /op1 wait behind it.
pub const BLOCKING: Setup = (
    RENEWED,
    "workload:\n  op2_cpu_ms: 50\n\nnodes:\n  - name: node\n    replicas: 1\n    workers: 1\n    port: {node}\n",
);

/// Step 2: one node capped at 1.5 cores; the sweep varies its workers.
pub const VERTICAL: Setup = (
    RENEWED,
    "workload:\n  op2_cpu_ms: 10\n\nnodes:\n  - name: node\n    replicas: 1\n    workers: 1\n    cpus: 1.5\n    port: {node}\n",
);

/// Step 3: the same 1.5 cores as three nodes of half a core; the sweep varies the replicas.
pub const HORIZONTAL: Setup = (
    HEALTH,
    "workload:\n  op2_cpu_ms: 10\n\nnodes:\n  - name: node\n    replicas: 1\n    workers: 1\n    cpus: 0.5\n    port: {node}\n",
);

/// Step 4: one worker, uncapped, so the models see one server (M/D/1) and the load
/// generator and balancer have the other core; a queue long enough that nothing is shed.
pub const KNEE: Setup = (
    HEALTH,
    "workload:\n  op2_cpu_ms: 5\n  max_queue: 1024\n\nnodes:\n  - name: node\n    replicas: 1\n    workers: 1\n    port: {node}\n",
);

/// Step 5: two fast nodes of half a core and one slow one of a tenth.
pub const SLOW_NODE: Setup = (
    HEALTH,
    "workload:\n  op2_cpu_ms: 10\n  max_queue: 1024\n\nnodes:\n  - name: fast\n    replicas: 2\n    workers: 1\n    cpus: 0.5\n    port: {node}\n  - name: slow\n    replicas: 1\n    workers: 1\n    cpus: 0.1\n    port: {node2}\n",
);

/// Step 6: three nodes of one worker.
pub const FAILOVER: Setup = (
    HEALTH,
    "workload:\n  op2_cpu_ms: 5\n\nnodes:\n  - name: node\n    replicas: 3\n    workers: 1\n    port: {node}\n",
);

/// Step 7: one node of half a core that the autoscaler grows to four (`{window}` is the
/// scale-down stabilization window, ms).
pub const AUTOSCALE: Setup = (
    HEALTH,
    "workload:\n  op2_cpu_ms: 20\n\nnodes:\n  - name: node\n    replicas: 1\n    workers: 1\n    cpus: 0.5\n    port: {node}\n    autoscale:\n      min_replicas: 1\n      max_replicas: 4\n      metric: cpu\n      target: 0.6\n      sync_ms: 1000\n      scale_down_stabilization_ms: {window}\n",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_of_ports_is_free_when_found() {
        let base = free_ports().unwrap();
        assert!(PORTS.contains(&base) && base + BLOCK <= PORTS.end);
        let held: Vec<_> =
            (base..base + BLOCK).map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p))).collect();
        assert!(held.iter().all(Result::is_ok));
    }

    #[test]
    fn every_built_in_topology_passes_check() {
        let dir = tempfile::tempdir().unwrap();
        for (extra, body) in [BLOCKING, VERTICAL, HORIZONTAL, KNEE, SLOW_NODE, FAILOVER, AUTOSCALE] {
            let (t, path) = topology(dir.path(), extra, &body.replace("{window}", "4000")).unwrap();
            assert!(path.exists());
            assert!(!t.nodes.is_empty());
        }
    }
}
