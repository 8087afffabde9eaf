//! The topology types, as `topology.yaml` spells them, and what follows from them: the
//! replicas a group expands to and the addresses the balancer should send traffic to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Problem, TopologyError};
use crate::spans::Spans;

/// The whole lab: one balancer, the work the nodes do, and the node groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub balancer: BalancerConfig,
    #[serde(default)]
    pub workload: Workload,
    pub nodes: Vec<NodeGroup>,
}

/// The balancer's listeners and policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerConfig {
    /// Where client traffic arrives.
    pub listen: SocketAddr,
    /// Where `/metrics` and `/state` are served.
    pub admin: SocketAddr,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// Proxy worker threads.
    #[serde(default = "one")]
    pub threads: usize,
}

/// How the balancer picks a backend among the healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    Random,
}

impl Algorithm {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Random => "random",
        }
    }
}

/// Active HTTP health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path probed with GET; any 200 counts as healthy.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Milliseconds between probes of each backend.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Milliseconds a probe may take (connect and read) before it counts as a failure.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures that eject a backend.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: usize,
    /// Consecutive successes that readmit it.
    #[serde(default = "one")]
    pub healthy_after: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: default_health_path(),
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            unhealthy_after: default_unhealthy_after(),
            healthy_after: 1,
        }
    }
}

/// What the endpoints cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// CPU milliseconds one `/op2` request burns.
    #[serde(default = "default_op2_cpu_ms")]
    pub op2_cpu_ms: u64,
    /// Cap on the per-request `?cpu_ms=` override, in milliseconds.
    #[serde(default = "default_max_cpu_ms")]
    pub max_cpu_ms: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload { op2_cpu_ms: default_op2_cpu_ms(), max_cpu_ms: default_max_cpu_ms() }
    }
}

/// A group of identical nodes; replicas are named `<name>-1`, `<name>-2`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    pub name: String,
    /// How many nodes (horizontal scaling).
    pub replicas: usize,
    /// Worker processes per node (vertical scaling).
    pub workers: usize,
    /// CPU cap per replica in (fractional) cores; `None` leaves it uncapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// First port: natively replica `i` listens on `port + i - 1`; in containers every
    /// replica listens on `port`.
    pub port: u16,
}

/// One node process as the lab runs it natively.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// The group it belongs to.
    pub group: String,
    /// `<group>-<index>`.
    pub name: String,
    /// 1-based position in its group.
    pub index: usize,
    pub listen: SocketAddr,
    pub workers: usize,
    pub cpus: Option<f64>,
}

/// How the balancer turns node groups into backend addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DiscoveryMode {
    /// Natively: one loopback address per replica.
    #[default]
    Local,
    /// In containers: the DNS name `<prefix><group>` resolves to every replica
    /// (`prefix` is `tasks.` under Docker Swarm).
    Dns { prefix: String },
}

/// Something the balancer resolves into backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTarget {
    /// Replica name (local) or group name (DNS).
    pub name: String,
    /// `host:port` to resolve.
    pub addr: String,
}

/// Native nodes listen on loopback only: the lab never exposes them beyond this machine.
pub const NODE_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl Topology {
    /// Parses and validates a YAML document; every problem is reported, with positions.
    pub fn from_yaml(src: &str) -> Result<Topology, TopologyError> {
        let invalid = |problems| TopologyError::Invalid { file: None, problems };
        let value: serde_yaml::Value =
            serde_yaml::from_str(src).map_err(|e| invalid(vec![syntax_problem(&e)]))?;
        let spans = Spans::index(src);
        let topology: Topology = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = clean_path(&e.path().to_string());
            let (line, column) = spans.find(&path).unzip();
            invalid(vec![Problem { path, line, column, message: e.into_inner().to_string() }])
        })?;
        let problems = crate::validate::problems(&topology, &spans);
        if problems.is_empty() {
            Ok(topology)
        } else {
            Err(invalid(problems))
        }
    }

    /// Reads, parses and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let src = std::fs::read_to_string(path)
            .map_err(|error| TopologyError::Io { path: path.to_path_buf(), error })?;
        Topology::from_yaml(&src).map_err(|e| e.in_file(path.to_path_buf()))
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&NodeGroup> {
        self.nodes.iter().find(|g| g.name == name)
    }

    /// Every node process of the native layout, group by group.
    pub fn replicas(&self) -> Vec<Replica> {
        self.nodes
            .iter()
            .flat_map(|g| {
                (1..=g.replicas).map(move |i| Replica {
                    group: g.name.clone(),
                    name: format!("{}-{i}", g.name),
                    index: i,
                    listen: SocketAddr::new(NODE_HOST, g.port + (i as u16 - 1)),
                    workers: g.workers,
                    cpus: g.cpus,
                })
            })
            .collect()
    }

    /// What the balancer resolves to find the nodes.
    pub fn backend_targets(&self, mode: &DiscoveryMode) -> Vec<BackendTarget> {
        match mode {
            DiscoveryMode::Local => self
                .replicas()
                .into_iter()
                .map(|r| BackendTarget { name: r.name, addr: r.listen.to_string() })
                .collect(),
            DiscoveryMode::Dns { prefix } => self
                .nodes
                .iter()
                .map(|g| BackendTarget {
                    name: g.name.clone(),
                    addr: format!("{prefix}{}:{}", g.name, g.port),
                })
                .collect(),
        }
    }

    /// Total workers over all replicas.
    pub fn total_workers(&self) -> usize {
        self.nodes.iter().map(|g| g.replicas * g.workers).sum()
    }
}

/// serde_path_to_error writes `nodes[0].workers` already; the root is `.`.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// A YAML syntax error, with serde_yaml's own position.
fn syntax_problem(e: &serde_yaml::Error) -> Problem {
    let loc = e.location();
    let mut message = e.to_string();
    // serde_yaml appends " at line L column C" to its message; the Problem carries it already.
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(pos) = message.find(&suffix) {
            message.replace_range(pos..pos + suffix.len(), "");
        }
    }
    Problem {
        path: String::new(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message: format!("YAML syntax: {message}"),
    }
}

fn one() -> usize {
    1
}
fn default_health_path() -> String {
    "/health".into()
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_unhealthy_after() -> usize {
    2
}
fn default_op2_cpu_ms() -> u64 {
    20
}
fn default_max_cpu_ms() -> u64 {
    1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
balancer:
  listen: 127.0.0.1:8080
  admin: 127.0.0.1:9090
  algorithm: round_robin
  health_check: { path: /health, interval_ms: 1000, unhealthy_after: 2, healthy_after: 1 }
workload:
  op2_cpu_ms: 20
  max_cpu_ms: 1000
nodes:
  - name: big
    replicas: 1
    workers: 4
    cpus: 2.0
    port: 8081
  - name: small
    replicas: 3
    workers: 1
    port: 8091
";

    fn problems(src: &str) -> Vec<Problem> {
        Topology::from_yaml(src).expect_err("should be invalid").problems().to_vec()
    }

    /// The only problem of `src`, checked to name `path` at `line`.
    fn only_problem(src: &str, path: &str, line: usize) -> Problem {
        let p = problems(src);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, path, "{p:#?}");
        assert_eq!(p[0].line, Some(line), "{p:#?}");
        p[0].clone()
    }

    #[test]
    fn parses_groups_and_expands_replicas() {
        let t = Topology::from_yaml(GOOD).unwrap();
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.total_workers(), 7);
        let r = t.replicas();
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["big-1", "small-1", "small-2", "small-3"]);
        assert_eq!(r[3].listen, "127.0.0.1:8093".parse().unwrap());
        assert_eq!(r[0].cpus, Some(2.0));
    }

    #[test]
    fn backend_targets_per_mode() {
        let t = Topology::from_yaml(GOOD).unwrap();
        let local = t.backend_targets(&DiscoveryMode::Local);
        assert_eq!(local.len(), 4);
        assert_eq!(local[1], BackendTarget { name: "small-1".into(), addr: "127.0.0.1:8091".into() });
        let dns = t.backend_targets(&DiscoveryMode::Dns { prefix: "tasks.".into() });
        assert_eq!(dns[1].addr, "tasks.small:8091");
    }

    #[test]
    fn defaults_fill_optional_sections() {
        let t = Topology::from_yaml(
            "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
             nodes: [{ name: n, replicas: 1, workers: 1, port: 8081 }]\n",
        )
        .unwrap();
        assert_eq!(t.workload, Workload::default());
        assert_eq!(t.balancer.health_check.path, "/health");
        assert_eq!(t.balancer.algorithm, Algorithm::RoundRobin);
    }

    #[test]
    fn zero_workers_names_field_and_line() {
        let p = only_problem(&GOOD.replace("workers: 4", "workers: 0"), "nodes[0].workers", 12);
        assert!(p.message.contains("expected 1 to 64 workers, found 0"), "{}", p.message);
    }

    #[test]
    fn unknown_field_is_named() {
        let p = only_problem(&GOOD.replace("    workers: 1\n", "    worker: 1\n"), "nodes[1].worker", 17);
        assert!(p.message.contains("unknown field `worker`"), "{}", p.message);
    }

    #[test]
    fn bad_cpus_and_listen() {
        let p = only_problem(&GOOD.replace("cpus: 2.0", "cpus: -1"), "nodes[0].cpus", 13);
        assert!(p.message.contains("greater than 0"));
        let p = only_problem(
            &GOOD.replace("listen: 127.0.0.1:8080", "listen: localhost:80x"),
            "balancer.listen",
            2,
        );
        assert!(p.message.contains("socket address"), "{}", p.message);
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let src = GOOD
            .replace("workers: 4", "workers: 0")
            .replace("port: 8091", "port: 8081")
            .replace("cpus: 2.0", "cpus: 0");
        let p = problems(&src);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["nodes[0].workers", "nodes[0].cpus", "nodes[1].port"], "{p:#?}");
        assert!(p[2].message.contains("clashes with nodes[0]"));
    }

    #[test]
    fn node_port_on_balancer_port_clashes() {
        let p = only_problem(&GOOD.replace("port: 8091", "port: 8078"), "nodes[1].port", 18);
        assert!(p.message.contains("balancer.listen"), "{}", p.message);
    }

    #[test]
    fn broken_yaml_has_a_position() {
        let p = problems("balancer:\n  listen: [127.0.0.1\nnodes: []\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].line.is_some() && p[0].message.starts_with("YAML syntax"), "{p:#?}");
    }

    #[test]
    fn group_names_must_not_look_like_replicas() {
        let p = only_problem(&GOOD.replace("name: big", "name: big-2"), "nodes[0].name", 10);
        assert!(p.message.contains("'-<number>'"));
        only_problem(&GOOD.replace("name: small", "name: big"), "nodes[1].name", 15);
    }

    #[test]
    fn error_display_lists_file_line_and_field() {
        let err = Topology::from_yaml(&GOOD.replace("workers: 4", "workers: 0"))
            .unwrap_err()
            .in_file("topology.yaml".into());
        let text = err.to_string();
        assert!(
            text.contains(
                "topology.yaml: line 12 column 5: nodes[0].workers: expected 1 to 64 workers, found 0"
            ),
            "{text}"
        );
    }
}
