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
