//! Reading a topology: bytes (bounded, UTF-8) → one YAML document → the types, with every
//! problem placed by field path, line and column; then [`crate::validate`]'s rules. Every
//! problem of a file is listed at once: [`crate::salvage`] reads past the ones serde stops at,
//! and the rules run on what it read. The types themselves are [`crate::model`]'s: this module
//! depends on both, neither depends on it.

use std::path::Path;

use crate::error::{Problem, TopologyError};
use crate::limits::MAX_FILE_BYTES;
use crate::model::Topology;
use crate::spans::Spans;

impl Topology {
    /// Parses and validates a YAML document; every problem is reported, with positions. A
    /// leading byte-order mark is allowed (editors on some systems write one).
    pub fn from_yaml(src: &str) -> Result<Topology, TopologyError> {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let invalid = |problems| TopologyError::Invalid { file: None, problems };
        // One pass of yaml-rust2 for positions and the document count; serde_yaml (and its
        // repairs, see `salvage`) for the values.
        let spans = Spans::index(src);
        if let Some(second) = spans.second_document() {
            return Err(invalid(vec![second]));
        }
        let salvage = crate::salvage::read(src, spans);
        let mut problems = salvage.problems.clone();
        if let Some(t) = &salvage.topology {
            let rules = crate::validate::problems(t, &salvage.spans);
            problems.extend(rules.into_iter().filter(|p| salvage.trusts(p)));
        }
        match salvage.topology {
            Some(topology) if salvage.is_clean() && problems.is_empty() => Ok(topology),
            _ => {
                // In the order of the file, whichever step found them.
                problems.sort_by_key(|p| (p.line, p.column));
                Err(invalid(problems))
            }
        }
    }

    /// Parses and validates the raw bytes of a topology file: at most
    /// [`MAX_FILE_BYTES`](crate::limits::MAX_FILE_BYTES) of UTF-8, then [`Topology::from_yaml`].
    /// A byte that is not UTF-8 is reported with its line and column.
    pub fn from_bytes(bytes: &[u8]) -> Result<Topology, TopologyError> {
        let invalid = |problem| TopologyError::Invalid { file: None, problems: vec![problem] };
        if bytes.len() > MAX_FILE_BYTES {
            return Err(invalid(Problem {
                path: String::new(),
                line: 1,
                column: 1,
                message: format!(
                    "expected a topology of at most {MAX_FILE_BYTES} bytes, found {} bytes",
                    bytes.len()
                ),
            }));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Topology::from_yaml(text),
            Err(e) => {
                let valid = &bytes[..e.valid_up_to()];
                let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
                let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
                let byte = bytes[e.valid_up_to()];
                Err(invalid(Problem {
                    path: String::new(),
                    line,
                    column,
                    message: format!("expected UTF-8 text, found byte 0x{byte:02x} that is not UTF-8"),
                }))
            }
        }
    }

    /// Reads, parses and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let bytes = read_bounded(path)?;
        Topology::from_bytes(&bytes).map_err(|e| e.in_file(path.to_path_buf()))
    }

    /// [`Topology::load`], also returning the file's text: for renderings that carry the file
    /// itself (the Kubernetes ConfigMap), read once so the text is the one validated.
    pub fn load_with_text(path: &Path) -> Result<(Topology, String), TopologyError> {
        let bytes = read_bounded(path)?;
        let topology = Topology::from_bytes(&bytes).map_err(|e| e.in_file(path.to_path_buf()))?;
        let text = String::from_utf8(bytes).expect("from_bytes accepts UTF-8 only");
        Ok((topology, text))
    }
}

/// Reads at most one byte more than a topology may have, so a huge file is refused without
/// reading it all.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, TopologyError> {
    use std::io::Read;
    let io = |error| TopologyError::Io { path: path.to_path_buf(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

#[cfg(test)]
/// Reading whole topologies: the types, their defaults, and every problem placed.
mod tests {
    use super::*;
    use crate::model::*;

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
        assert_eq!(p[0].line, line, "{p:#?}");
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
        let p = only_problem(&GOOD.replace("    cpus: 2.0\n", "    cpu: 2.0\n"), "nodes[0].cpu", 13);
        assert!(p.message.contains("unknown field `cpu`"), "{}", p.message);
        // A misspelt required field is unknown, and the field it meant is missing.
        let p = problems(&GOOD.replace("    workers: 1\n", "    worker: 1\n"));
        let found: Vec<_> = p.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(found, [("nodes[1]", 15), ("nodes[1].worker", 17)], "{p:#?}");
        assert!(p[0].message.contains("missing field `workers`"), "{p:#?}");
        assert!(p[1].message.contains("unknown field `worker`"), "{p:#?}");
    }

    #[test]
    fn bad_cpus_and_listen() {
        let p = only_problem(&GOOD.replace("cpus: 2.0", "cpus: -1"), "nodes[0].cpus", 13);
        assert!(p.message.contains("from 0.01 to 1024"), "{}", p.message);
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
    fn a_value_that_cannot_be_read_hides_only_the_rules_that_read_it() {
        // nodes[0].workers is no number: the process count, which reads it, waits; the port
        // clash with nodes[1], which does not, is listed.
        let src = GOOD.replace("workers: 4", "workers: lots").replace("port: 8091", "port: 8081");
        let p = problems(&src);
        let found: Vec<_> = p.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(found, [("nodes[0].workers", 12), ("nodes[1].port", 18)], "{p:#?}");
        assert!(p[0].message.contains("invalid type: string \"lots\", expected usize"), "{p:#?}");
        assert!(p[1].message.contains("clashes with nodes[0]"), "{p:#?}");
        // An empty file lacks both required sections.
        let p = problems("");
        assert_eq!(
            p.iter().map(|p| p.message.as_str()).collect::<Vec<_>>(),
            ["missing field `balancer`", "missing field `nodes`"]
        );
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
        assert!(p[0].line >= 1 && p[0].message.starts_with("YAML syntax"), "{p:#?}");
    }

    #[test]
    fn group_names_must_not_look_like_replicas() {
        let p = only_problem(&GOOD.replace("name: big", "name: big-2"), "nodes[0].name", 10);
        assert!(p.message.contains("'-<number>'"));
        only_problem(&GOOD.replace("name: small", "name: big"), "nodes[1].name", 15);
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let t = Topology::from_yaml(&format!("\u{feff}{GOOD}")).unwrap();
        assert_eq!(t, Topology::from_yaml(GOOD).unwrap());
    }

    #[test]
    fn non_utf8_bytes_are_placed() {
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("workers: 4").unwrap() + "workers: ".len();
        bytes[at] = 0xff;
        let p = Topology::from_bytes(&bytes).unwrap_err().problems().to_vec();
        assert_eq!((p[0].line, p[0].column), (12, 14), "{p:#?}");
        assert!(p[0].message.contains("0xff"), "{p:#?}");
    }

    #[test]
    fn a_second_document_is_placed() {
        let p = problems(&format!("{GOOD}---\n{GOOD}"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].line, 19, "{p:#?}");
        assert!(p[0].message.contains("expected one YAML document"), "{p:#?}");
    }

    #[test]
    fn empty_and_oversized_files_are_placed() {
        let p = problems("");
        assert!(p[0].line >= 1 && p[0].column >= 1, "{p:#?}");
        let big = format!("{GOOD}#{}\n", "x".repeat(MAX_FILE_BYTES));
        let p = Topology::from_bytes(big.as_bytes()).unwrap_err().problems().to_vec();
        assert!(p[0].message.contains("at most 1048576 bytes"), "{p:#?}");
    }

    #[test]
    fn limits_are_named_in_the_errors() {
        let cases = [
            (
                "algorithm: round_robin",
                "algorithm: round_robin\n  threads: 1000000",
                "balancer.threads",
                "per core",
            ),
            ("cpus: 2.0", "cpus: 1e-300", "nodes[0].cpus", "from 0.01"),
            (
                "interval_ms: 1000",
                "interval_ms: 18446744073709551615",
                "balancer.health_check.interval_ms",
                "50 to 300000 ms",
            ),
            ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:80", "balancer.listen", "allow_privileged_ports"),
            ("port: 8091", "port: 0", "nodes[1].port", "1024 to 65535, found 0"),
            ("max_cpu_ms: 1000", "max_cpu_ms: 60000", "workload.max_cpu_ms", "1 to 10000 ms"),
            ("path: /health", "path: \"/a b\"", "balancer.health_check.path", "URI path"),
            (
                "replicas: 1\n    workers: 4",
                "replicas: 64\n    workers: 63",
                "nodes",
                "at most 256 processes",
            ),
        ];
        for (from, to, path, words) in cases {
            let src = GOOD.replacen(from, to, 1);
            let p = problems(&src);
            let hit = p.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{to}: {p:#?}"));
            assert!(hit.message.contains(words), "{to}: {hit:#?}");
            assert!(hit.line >= 1 && hit.column >= 1, "{hit:#?}");
        }
        let allowed =
            format!("allow_privileged_ports: true\n{}", GOOD.replace("127.0.0.1:8080", "127.0.0.1:80"));
        assert!(Topology::from_yaml(&allowed).is_ok());
    }

    #[test]
    fn read_timeout_defaults_to_fit_a_full_queue_and_is_bounded() {
        let t = Topology::from_yaml(GOOD).unwrap();
        // max_queue 32 (default) x max_cpu_ms 1000: a full queue is 33 s of CPU, twice that.
        assert_eq!(t.workload.longest_queue_ms(), 33_000);
        assert_eq!(t.balancer.upstream.read_timeout_in_force(&t.workload).as_millis(), 66_000);
        // The default workload: 33 x 200 ms = 6.6 s, twice is 13.2 s.
        let w = Workload::default();
        assert_eq!(UpstreamConfig::default().read_timeout_in_force(&w).as_millis(), 13_200);
        // Small workloads still get 10 s.
        let small = Workload { max_queue: 1, ..w };
        assert_eq!(UpstreamConfig::default().read_timeout_in_force(&small).as_millis(), 10_000);
        let set = |ms: &str, queue: &str| {
            GOOD.replace("max_cpu_ms: 1000", &format!("max_cpu_ms: 200\n  max_queue: {queue}")).replace(
                "algorithm: round_robin",
                &format!("algorithm: round_robin\n  upstream: {{ read_timeout_ms: {ms} }}"),
            )
        };
        let t = Topology::from_yaml(&set("1500", "4")).unwrap();
        assert_eq!(t.balancer.upstream.read_timeout_in_force(&t.workload).as_millis(), 1500);
        let p = only_problem(&set("50", "4"), "balancer.upstream.read_timeout_ms", 5);
        assert!(p.message.contains("100 to 600000 ms"), "{p:#?}");
        let p = only_problem(&set("1500", "32"), "balancer.upstream.read_timeout_ms", 5);
        assert!(p.message.contains("at least 6600 ms") && p.message.contains("max_queue"), "{p:#?}");
    }

    const AUTOSCALED: &str = "\
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - name: node
    replicas: 1
    workers: 1
    cpus: 0.5
    port: 8081
    autoscale:
      min_replicas: 1
      max_replicas: 4
      metric: cpu
      target: 0.6
";

    #[test]
    fn autoscale_parses_with_hpa_defaults() {
        let t = Topology::from_yaml(AUTOSCALED).unwrap();
        let a = t.nodes[0].autoscale.clone().unwrap();
        assert_eq!((a.min_replicas, a.max_replicas, a.metric, a.target), (1, 4, AutoscaleMetric::Cpu, 0.6));
        assert_eq!((a.sync_ms, a.tolerance), (5000, 0.1));
        assert_eq!((a.scale_down_stabilization_ms, a.scale_up_stabilization_ms), (60_000, 0));
        assert_eq!(a.cpu_initialization_period_ms, 10_000);
        // Ports and processes are reserved for max_replicas.
        assert_eq!(t.nodes[0].max_replicas(), 4);
        assert_eq!(t.processes(), 1 + 4 * 2);
        assert_eq!(t.with_replicas("node", 3).replicas().len(), 3);
        assert_eq!(Topology::from_yaml(&t.to_yaml()).unwrap(), t);
    }

    #[test]
    fn autoscale_bounds_are_named() {
        let cases = [
            (
                "replicas: 1",
                "replicas: 5",
                "nodes[0].replicas",
                "expected min_replicas (1) to max_replicas (4)",
                4,
            ),
            (
                "min_replicas: 1",
                "min_replicas: 5",
                "nodes[0].autoscale.max_replicas",
                "expected min_replicas (5)",
                10,
            ),
            ("max_replicas: 4", "max_replicas: 65", "nodes[0].autoscale.max_replicas", "to 64 replicas", 10),
            (
                "target: 0.6",
                "target: 1.5",
                "nodes[0].autoscale.target",
                "0.05 to 1 of the node's CPU cap",
                12,
            ),
            (
                "target: 0.6",
                "target: 0.6\n      sync_ms: 100",
                "nodes[0].autoscale.sync_ms",
                "500 to 600000 ms",
                13,
            ),
            ("target: 0.6", "target: 0.6\n      tolerance: -1", "nodes[0].autoscale.tolerance", "0 to 1", 13),
            (
                "target: 0.6",
                "target: 0.6\n      scale_down_stabilization_ms: 3600001",
                "nodes[0].autoscale.scale_down_stabilization_ms",
                "0 to 3600000 ms",
                13,
            ),
            (
                "target: 0.6",
                "target: 0.6\n      cpu_initialization_period_ms: 600001",
                "nodes[0].autoscale.cpu_initialization_period_ms",
                "0 to 600000 ms",
                13,
            ),
            ("    cpus: 0.5\n", "", "nodes[0].autoscale.metric", "expected `cpus` on this group", 10),
            ("metric: cpu", "metric: queue", "nodes[0].autoscale.metric", "unknown variant `queue`", 11),
        ];
        for (from, to, path, words, line) in cases {
            let src = AUTOSCALED.replacen(from, to, 1);
            let p = problems(&src);
            let hit = p.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{to}: {p:#?}"));
            assert!(hit.message.contains(words), "{to}: {hit:#?}");
            assert_eq!(hit.line, line, "{to}: {hit:#?}");
        }
        // in_flight and rps need no cap, and have their own target ranges.
        let src = AUTOSCALED.replace("    cpus: 0.5\n", "").replace("metric: cpu", "metric: in_flight");
        assert!(Topology::from_yaml(&src.replace("target: 0.6", "target: 8")).is_ok());
        let p =
            problems(&src.replace("metric: in_flight", "metric: rps").replace("target: 0.6", "target: 0.01"));
        assert!(p[0].message.contains("requests per second per node"), "{p:#?}");
    }

    #[test]
    fn autoscale_reserves_ports_and_processes_for_max_replicas() {
        let src = AUTOSCALED.replace(
            "      target: 0.6\n",
            "      target: 0.6\n  - { name: other, replicas: 1, workers: 1, port: 8083 }\n",
        );
        let p = problems(&src);
        assert!(p.iter().any(|p| p.path == "nodes[1].port" && p.message.contains("8081..=8084")), "{p:#?}");
        let big =
            AUTOSCALED.replace("max_replicas: 4", "max_replicas: 64").replace("workers: 1", "workers: 4");
        let p = problems(&big);
        assert!(p.iter().any(|p| p.message.contains("at most 256 processes")), "{p:#?}");
    }

    #[test]
    fn thousands_of_groups_are_refused_quickly() {
        let mut src = String::from("balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\nnodes:\n");
        for i in 0..20_000 {
            src.push_str(&format!("  - {{ name: g{i}x, replicas: 1, workers: 1, port: 10000 }}\n"));
        }
        let started = std::time::Instant::now();
        let p = problems(&src);
        assert!(p.iter().any(|p| p.message.contains("at most 32 node groups")), "{:#?}", &p[..3]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn to_yaml_reads_back_equal() {
        let t = Topology::from_yaml(GOOD).unwrap();
        assert_eq!(Topology::from_yaml(&t.to_yaml()).unwrap(), t);
        assert_eq!(t.processes(), 1 + (4 + 1) + 3 * (1 + 1));
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
