//! `Rig`: a balancer and the nodes behind it, started one process at a time on loopback, so a
//! test can kill, stop or restart any of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use scalelab_balancer::status::{BackendState, StateReport};

use super::*;

/// How long a node or the balancer may take to answer after starting.
pub const START: Duration = Duration::from_secs(15);
/// How long health, discovery or topology changes may take to show: a few health intervals
/// (200 ms), discovery (1 s) and file polling (500 ms), with room for a busy 2-core machine.
pub const SETTLE: Duration = Duration::from_secs(6);

/// A balancer and its nodes, all stopped (process groups) when dropped. (Not the `lab`
/// crate's `Lab`: this one is assembled by hand, so a test can stop, kill or restart any part.)
pub struct Rig {
    pub topology: TopologyFile,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// First node port; replica `i` (1-based) listens on `base + i - 1`.
    pub base: u16,
    /// Node processes by replica index - 1; `None` while one is down.
    pub nodes: Vec<Option<Proc>>,
    pub balancer: Proc,
}

impl Rig {
    /// `replicas` nodes named node-1.. on consecutive ports (room for `room` in all), then a
    /// balancer over them, waited for until every node is healthy.
    pub fn start(replicas: usize, room: u16) -> Rig {
        let lab = Rig::launch(replicas, room, "/health");
        lab.wait_state(&format!("{replicas} healthy backends"), |s| {
            s.len() == replicas && s.values().all(|b| b.healthy)
        });
        lab
    }

    /// Like `start`, with the balancer health-checking `health_path`, and without waiting for
    /// the health checks.
    pub fn launch(replicas: usize, room: u16, health_path: &str) -> Rig {
        let path = format!("path: {health_path}");
        Rig::launch_with(replicas, room, |y| y.replace("path: /health", &path), None)
    }

    /// `replicas` nodes and a balancer over them: `edit` changes the topology text first, and
    /// `nofile` lowers the balancer's open-file limit.
    pub fn launch_with(
        replicas: usize,
        room: u16,
        edit: impl Fn(String) -> String,
        nofile: Option<u64>,
    ) -> Rig {
        let base = free_port_run(room);
        let p = free_ports(2);
        let listen: SocketAddr = format!("127.0.0.1:{}", p[0]).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", p[1]).parse().unwrap();
        let topology = TopologyFile::new(&edit(yaml(listen, admin, replicas, 1, base)));
        let nodes = (1..=replicas).map(|i| Some(spawn_node(i, base))).collect();
        let args = ["balancer", "--topology", topology.path_str()];
        let balancer = match nofile {
            None => Proc::spawn_capturing(&args),
            Some(n) => Proc::spawn_with_nofile(&args, n),
        };
        let lab = Rig { topology, listen, admin, base, nodes, balancer };
        match nofile {
            None => drop(lab.balancer.wait_output("balancer listening on", START)),
            Some(_) => drop(wait_http(lab.admin, "/state", START)),
        }
        lab
    }

    pub fn port(&self, index: usize) -> u16 {
        self.base + index as u16 - 1
    }

    /// The balancer's `/state`, read as the balancer's own type.
    pub fn report(&self) -> StateReport {
        let body = get(self.admin, "/state").expect("GET /state").body;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not a /state document ({e}): {body}"))
    }

    /// The balancer's `/state` backends by name.
    pub fn state(&self) -> BTreeMap<String, BackendState> {
        self.report().backends.into_iter().map(|b| (b.name.clone(), b)).collect()
    }

    /// Its `/metrics` text.
    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics").expect("GET /metrics").body
    }

    /// Waits (up to `SETTLE`) until `/state` satisfies `ok`.
    pub fn wait_state(&self, what: &str, ok: impl Fn(&BTreeMap<String, BackendState>) -> bool) {
        wait_for(&format!("/state to show {what}"), SETTLE, || {
            let s = self.state();
            ok(&s).then_some(())
        });
    }

    /// SIGKILL to node `index`'s whole process group (primary and workers), then reap it.
    pub fn kill_node(&mut self, index: usize) {
        let mut node = self.nodes[index - 1].take().expect("node is running");
        unsafe { libc::kill(-node.pid(), libc::SIGKILL) };
        assert!(node.wait_exit(Duration::from_secs(5)).is_some(), "node-{index} survived SIGKILL");
    }

    pub fn restart_node(&mut self, index: usize) {
        assert!(self.nodes[index - 1].is_none(), "node-{index} is still running");
        self.nodes[index - 1] = Some(spawn_node(index, self.base));
    }

    /// GETs `/op1` through the balancer until node `name` answers (bounded by `SETTLE`).
    pub fn wait_served_by(&self, name: &str) {
        wait_for(&format!("{name} to serve through the balancer"), SETTLE, || {
            let r = get(self.listen, "/op1").ok()?;
            (r.status == 200 && r.header("x-node") == Some(name)).then_some(())
        });
    }
}

/// A topology with one group `node` of `replicas` replicas from port `base`.
pub fn yaml(listen: SocketAddr, admin: SocketAddr, replicas: usize, workers: usize, base: u16) -> String {
    let group =
        format!("  - name: node\n    replicas: {replicas}\n    workers: {workers}\n    port: {base}\n");
    topology_yaml(listen, admin, &group)
}

/// Starts `scalelab node` as replica `index` and waits for its health endpoint.
pub fn spawn_node(index: usize, base: u16) -> Proc {
    let addr = format!("127.0.0.1:{}", base + index as u16 - 1);
    let name = format!("node-{index}");
    // Slow requests (up to 2 s of CPU) are what some tests hold in flight.
    let node =
        Proc::spawn(&["node", "--name", &name, "--listen", &addr, "--workers", "1", "--max-cpu-ms", "2000"]);
    wait_http(&addr, "/health", START);
    node
}
