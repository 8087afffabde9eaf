//! `scalelab check`: a valid topology passes; a broken one names the field, line and
//! expectation, and exits non-zero without a panic.

mod common;

use std::time::Duration;

use common::{repo_path, run_scalelab, TopologyFile};

const T: Duration = Duration::from_secs(20);

#[test]
fn the_committed_topology_is_valid() {
    let file = repo_path("topology.yaml");
    let (code, stdout, stderr) = run_scalelab(&["check", file.to_str().unwrap()], T);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("is valid: 2 node(s)"), "{stdout}");
}

#[test]
fn every_problem_is_named_with_its_line() {
    let f = TopologyFile::new(
        "balancer:\n  listen: 127.0.0.1:8080\n  admin: 127.0.0.1:9090\n\
         nodes:\n  - name: node\n    replicas: 2\n    workers: 0\n    cpus: -0.5\n    port: 8081\n",
    );
    let (code, stdout, stderr) = run_scalelab(&["check", f.path_str()], T);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(
        stderr.contains("line 7 column 5: nodes[0].workers: expected 1 to 64 workers, found 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 8 column 5: nodes[0].cpus: expected a number of cores from 0.01 to 1024"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_fields_bad_addresses_and_broken_yaml_are_reported() {
    let cases = [
        ("balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\nnodes: [{ name: n, replicas: 1, wrkers: 1, port: 8081 }]\n",
         "unknown field `wrkers`"),
        ("balancer: { listen: nowhere, admin: 127.0.0.1:9090 }\nnodes: [{ name: n, replicas: 1, workers: 1, port: 8081 }]\n",
         "balancer.listen: invalid socket address"),
        ("balancer:\n  listen: [127.0.0.1:8080\nnodes: []\n", "YAML syntax"),
        ("balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\nnodes:\n  - { name: a, replicas: 2, workers: 1, port: 8081 }\n  - { name: b, replicas: 1, workers: 1, port: 8082 }\n",
         "nodes[1].port: expected ports that do not overlap"),
    ];
    for (yaml, expected) in cases {
        let f = TopologyFile::new(yaml);
        let (code, _, stderr) = run_scalelab(&["check", f.path_str()], T);
        assert_eq!(code, 1, "{yaml}\n{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let (code, _, stderr) = run_scalelab(&["check", "/nonexistent/topology.yaml"], T);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read topology"), "{stderr}");
}

#[test]
fn every_limit_is_named_with_its_bound_and_position() {
    let base = "balancer:\n  listen: 127.0.0.1:8080\n  admin: 127.0.0.1:9090\n  threads: 1\n\
                nodes:\n  - name: node\n    replicas: 2\n    workers: 2\n    cpus: 1.0\n    port: 8081\n";
    let cases = [
        ("threads: 1", "threads: 1000000", "line 4 column 3: balancer.threads: expected 1 to"),
        ("cpus: 1.0", "cpus: 1e-300", "line 9 column 5: nodes[0].cpus: expected a number of cores from 0.01"),
        ("port: 8081", "port: 80", "line 10 column 5: nodes[0].port: expected a port from 1024 to 65535, found 80"),
        ("replicas: 2\n    workers: 2", "replicas: 64\n    workers: 64", "expected at most 256 processes in the whole lab (each node is a primary plus its workers, plus one balancer), found 4161"),
        ("threads: 1", "threads: 1\n  health_check: { interval_ms: 18446744073709551615 }", "balancer.health_check.interval_ms: expected 50 to 300000 ms"),
        ("threads: 1", "threads: 1\n  health_check: { path: \"/a b\" }", "balancer.health_check.path: expected a URI path"),
    ];
    for (from, to, expected) in cases {
        let f = TopologyFile::new(&base.replacen(from, to, 1));
        let (code, _, stderr) = run_scalelab(&["check", f.path_str()], T);
        assert_eq!(code, 1, "{to}\n{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
}

#[test]
fn bom_multiple_documents_and_bytes_that_are_not_utf8() {
    let good = "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
                nodes: [{ name: node, replicas: 1, workers: 1, port: 8081 }]\n";
    let bom = TopologyFile::new(&format!("\u{feff}{good}"));
    let (code, stdout, stderr) = run_scalelab(&["check", bom.path_str()], T);
    assert_eq!(code, 0, "a byte-order mark is fine: {stdout}{stderr}");

    let two = TopologyFile::new(&format!("{good}---\n{good}"));
    let (code, _, stderr) = run_scalelab(&["check", two.path_str()], T);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 3 column 1: expected one YAML document, found 2"), "{stderr}");

    let latin1 = TopologyFile::new(good);
    let mut bytes = good.as_bytes().to_vec();
    bytes[good.find("node,").unwrap()] = 0xe9;
    std::fs::write(&latin1.path, bytes).unwrap();
    let (code, _, stderr) = run_scalelab(&["check", latin1.path_str()], T);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 2 column 17: expected UTF-8 text, found byte 0xe9"), "{stderr}");
}

/// Four mistakes of four kinds in three sections: one run lists them all, each with its line.
#[test]
fn four_mistakes_of_different_kinds_are_listed_in_one_run() {
    let f = TopologyFile::new(
        "balancer:\n  listen: 127.0.0.1:8080\n  admin: 127.0.0.1:9090\n  algorithm: fastest\n\
         workload:\n  op2_cpu_ms: 20\n  max_cpu_ms: 60000\n\
         nodes:\n  - name: node\n    replicas: 2\n    wrokers: 2\n    workers: 2\n    cpus: -1\n    port: 8081\n",
    );
    let (code, stdout, stderr) = run_scalelab(&["check", f.path_str()], T);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("(4 problems)"), "{stderr}");
    for want in [
        "line 4 column 3: balancer.algorithm: unknown variant `fastest`, expected one of `round_robin`",
        "line 7 column 3: workload.max_cpu_ms: expected 1 to 10000 ms, found 60000",
        "line 11 column 5: nodes[0].wrokers: unknown field `wrokers`",
        "line 13 column 5: nodes[0].cpus: expected a number of cores from 0.01 to 1024",
    ] {
        assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
    }
}

/// A syntax error ends the reading: it says so, and what came before it is still checked.
#[test]
fn a_syntax_error_says_the_rest_is_unread_and_problems_before_it_are_listed() {
    let f = TopologyFile::new(
        "balancer:\n  listen: 127.0.0.1:8080\n  admin: 127.0.0.1:9090\n  threads: 0\n\
         workload: { op2_cpu_ms: 5\n\
         nodes:\n  - name: node\n    replicas: 1\n    workers: 0\n    port: 8081\n",
    );
    let (code, stdout, stderr) = run_scalelab(&["check", f.path_str()], T);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("(2 problems)"), "{stderr}");
    assert!(stderr.contains("line 4 column 3: balancer.threads: expected 1 to"), "{stderr}");
    assert!(stderr.contains("YAML syntax: did not find expected ',' or '}'"), "{stderr}");
    assert!(
        stderr.contains("the rest of the file, from line 5 on, could not be read"),
        "the syntax error says what was not read:\n{stderr}"
    );
    assert!(!stderr.contains("workers"), "nothing past the syntax error is listed:\n{stderr}");
}
