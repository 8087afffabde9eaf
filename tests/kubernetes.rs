//! Kubernetes: `scalelab compose` writes `kubernetes.yaml`, and what can be checked of it
//! without a cluster is checked here and in `podman_kube.rs`, with real tools (no cluster can
//! run on these machines).
//!
//! - Round trip (every run): the manifest, read back with its own serde types (which deny
//!   unknown fields), against the topology it came from: replicas, CPU, ports, probes, the
//!   command lines parsed back by the node's and balancer's own flags, the HPAs' bounds,
//!   targets and windows, the hardening; then the topology is edited and the manifest follows,
//!   and `--check` says when it is stale.
//! - Schema (ignored; `scripts/test-kubernetes.sh` installs PyPI's `kubernetes-validate` and
//!   runs it): every document against the Kubernetes OpenAPI schemas, strict (unknown fields
//!   are errors), at 1.37.0 and, for what older clusters get, 1.25.0.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use common::kubernetes::{compose, Manifest, ADAPTER_METRICS, TWO_GROUPS};
use common::{repo_path, run_scalelab, TopologyFile};
use scalelab::render::kubernetes::objects::Object;
use scalelab::render::kubernetes::quantity;
use scalelab_balancer::{BalancerArgs, Discovery};
use scalelab_node::NodeArgs;
use scalelab_topology::{AutoscaleMetric, Topology};

const T: Duration = Duration::from_secs(30);

fn node_flags(argv: &[String]) -> NodeArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }
    assert_eq!(argv[0], "node", "{argv:?}");
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")).node
}

fn balancer_flags(argv: &[String]) -> BalancerArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        balancer: BalancerArgs,
    }
    assert_eq!(argv[0], "balancer", "{argv:?}");
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")).balancer
}

/// Everything the manifest says, checked against the topology `text` (read from `file_name`),
/// every pod running `image`.
fn assert_follows(m: &Manifest, text: &str, file_name: &str, image: &str) {
    let t = Topology::from_yaml(text).unwrap();
    let mut want = vec![
        "ConfigMap/scalelab-topology".to_string(),
        "Deployment/balancer".into(),
        "Service/balancer".into(),
    ];
    for g in &t.nodes {
        want.push(format!("Deployment/{}", g.name));
        want.push(format!("Service/{}", g.name));
        if g.autoscale.is_some() {
            want.push(format!("HorizontalPodAutoscaler/{}", g.name));
        }
    }
    assert_eq!(m.ids(), want);
    let Object::ConfigMap(cm) = &m.objects[0] else { unreachable!() };
    assert_eq!(
        cm.data,
        BTreeMap::from([(file_name.to_string(), text.to_string())]),
        "the ConfigMap holds the file as it is"
    );
    let cfg = format!("/lab/{file_name}");

    let b = m.deployment("balancer");
    assert_eq!(b.spec.replicas, Some(1));
    let c = &b.spec.template.spec.containers[0];
    let flags = balancer_flags(&c.args);
    assert_eq!(flags.discovery, Discovery::Dns);
    assert_eq!(flags.dns_prefix, "", "group Services resolve by their bare name in the namespace");
    assert_eq!(flags.topology, PathBuf::from(&cfg));
    assert_eq!(flags.listen, Some(SocketAddr::from(([0, 0, 0, 0], t.balancer.listen.port()))));
    assert_eq!(flags.admin, Some(SocketAddr::from(([0, 0, 0, 0], t.balancer.admin.port()))));
    let ports: Vec<_> =
        m.service("balancer").spec.ports.iter().map(|p| (p.name.as_str(), p.port, p.target_port)).collect();
    let (lp, ap) = (t.balancer.listen.port(), t.balancer.admin.port());
    assert_eq!(ports, [("traffic", lp, lp), ("admin", ap, ap)]);
    assert_eq!(m.service("balancer").spec.cluster_ip, None);

    for g in &t.nodes {
        let d = m.deployment(&g.name);
        let replicas = if g.autoscale.is_some() { None } else { Some(g.replicas as u32) };
        assert_eq!(d.spec.replicas, replicas, "{}: replicas, none when an HPA owns the count", g.name);
        let c = &d.spec.template.spec.containers[0];
        let flags = node_flags(&c.args);
        assert_eq!(flags.name, format!("{}@{{hostname}}", g.name));
        assert_eq!(flags.listen, SocketAddr::from(([0, 0, 0, 0], g.port)));
        assert_eq!(flags.topology, Some(PathBuf::from(&cfg)));
        assert_eq!(flags.group.as_deref(), Some(g.name.as_str()));
        assert_eq!(flags.distribution, g.distribution);
        assert!(!c.args.contains(&"--workers".to_string()), "workers come from the ConfigMap: {:?}", c.args);
        match g.cpus {
            Some(cpus) => {
                let r = c.resources.as_ref().expect("resources with cpus");
                let millis = |q: &str| {
                    q.strip_suffix('m')
                        .map_or_else(|| q.parse::<f64>().unwrap() * 1000.0, |m| m.parse().unwrap())
                };
                assert_eq!(
                    millis(&r.limits.cpu),
                    (cpus * 1000.0).round(),
                    "{}: the CPU limit is cpus",
                    g.name
                );
                assert_eq!(r.requests.cpu, r.limits.cpu, "{}: request = limit", g.name);
            }
            None => assert!(c.resources.is_none()),
        }
        for p in [&c.readiness_probe, &c.liveness_probe] {
            let get = p.http_get.as_ref().expect("HTTP probes");
            assert_eq!((get.path.as_str(), get.port), ("/health", g.port));
        }
        let s = m.service(&g.name);
        assert_eq!(s.spec.cluster_ip.as_deref(), Some("None"), "{}: headless", g.name);
        assert_eq!(s.spec.ports[0].port, g.port);
        assert_eq!(
            s.spec.selector, d.spec.selector.match_labels,
            "the Service selects the Deployment's pods"
        );
        assert!(
            s.spec.selector.iter().all(|(k, v)| d.spec.template.metadata.labels.get(k) == Some(v)),
            "the pods carry the selector's labels"
        );
        match (&g.autoscale, m.hpa(&g.name)) {
            (None, None) => {}
            (Some(a), Some(h)) => {
                let s = &h.spec;
                assert_eq!(
                    (s.scale_target_ref.kind.as_str(), s.scale_target_ref.name.as_str()),
                    ("Deployment", g.name.as_str())
                );
                assert_eq!((s.min_replicas, s.max_replicas), (a.min_replicas as u32, a.max_replicas as u32));
                let metric = &s.metrics[0];
                match a.metric {
                    AutoscaleMetric::Cpu => {
                        let r = metric.resource.as_ref().expect("a Resource metric");
                        assert_eq!(
                            (metric.kind.as_str(), r.name.as_str(), r.target.kind.as_str()),
                            ("Resource", "cpu", "Utilization")
                        );
                        assert_eq!(r.target.average_utilization, Some((a.target * 100.0).round() as u32));
                    }
                    _ => {
                        let p = metric.pods.as_ref().expect("a Pods metric");
                        assert_eq!(metric.kind, "Pods");
                        assert_eq!(p.target.average_value.as_deref(), Some(quantity(a.target).as_str()));
                    }
                }
                let secs = |ms: u64| ms.div_ceil(1000) as u32;
                assert_eq!(
                    s.behavior.scale_down.stabilization_window_seconds,
                    secs(a.scale_down_stabilization_ms)
                );
                assert_eq!(
                    s.behavior.scale_up.stabilization_window_seconds,
                    secs(a.scale_up_stabilization_ms)
                );
            }
            (a, h) => panic!("{}: autoscale {a:?} but HPA {h:?}", g.name),
        }
    }

    for name in std::iter::once("balancer").chain(t.nodes.iter().map(|g| g.name.as_str())) {
        let pod = &m.deployment(name).spec.template.spec;
        assert!(!pod.automount_service_account_token, "{name}: no service-account token");
        let sc = &pod.security_context;
        assert!(sc.run_as_non_root && sc.run_as_user == 10001 && sc.run_as_group == 10001, "{name}: {sc:?}");
        let c = &pod.containers[0];
        assert_eq!((c.image.as_str(), c.image_pull_policy.as_str()), (image, "IfNotPresent"));
        let csc = &c.security_context;
        assert!(csc.read_only_root_filesystem && !csc.allow_privilege_escalation, "{name}: {csc:?}");
        assert_eq!(csc.capabilities.drop, ["ALL"]);
        assert_eq!(
            c.volume_mounts[0].mount_path, "/lab",
            "{name}: the ConfigMap as a directory (no subPath)"
        );
        assert_eq!(pod.volumes[0].config_map.name, "scalelab-topology");
    }
}

#[test]
fn the_committed_renderings_are_fresh() {
    let (code, stdout, stderr) =
        run_scalelab(&["compose", "--check", "--topology", repo_path("topology.yaml").to_str().unwrap()], T);
    assert_eq!(code, 0, "run `scalelab compose`:\n{stdout}{stderr}");
    assert!(stdout.contains("kubernetes.yaml is up to date"), "{stdout}");
    let text = fs::read_to_string(repo_path("topology.yaml")).unwrap();
    assert_follows(
        &Manifest::parse(&fs::read_to_string(repo_path("kubernetes.yaml")).unwrap()),
        &text,
        "topology.yaml",
        "scalelab:latest",
    );
}

#[test]
fn the_manifest_follows_the_topology_and_its_edits() {
    let f = TopologyFile::new(TWO_GROUPS);
    let (text, _) = compose(&f.path, &[]);
    assert_follows(&Manifest::parse(&text), TWO_GROUPS, "topology.yaml", "scalelab:latest");

    // An edit of replicas, cpus, a window and a new group: stale until rendered, then followed.
    let edited = TWO_GROUPS
        .replace(
            "{ name: node, replicas: 2, workers: 2, cpus: 0.5, port: 8081 }",
            "{ name: node, replicas: 3, workers: 2, cpus: 0.75, port: 8081 }",
        )
        .replace("scale_down_stabilization_ms: 90500", "scale_down_stabilization_ms: 300000")
        + "  - { name: extra, replicas: 1, workers: 1, port: 8101, distribution: reuseport }\n";
    f.write(&edited);
    let (code, _, stderr) = run_scalelab(&["compose", "--check", "--topology", f.path_str()], T);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("kubernetes.yaml is out of date"), "{stderr}");
    let (text, _) = compose(&f.path, &[]);
    let m = Manifest::parse(&text);
    assert_follows(&m, &edited, "topology.yaml", "scalelab:latest");
    assert_eq!(m.deployment("node").spec.replicas, Some(3));
    assert_eq!(m.hpa("big").unwrap().spec.behavior.scale_down.stabilization_window_seconds, 300);
    let (code, stdout, _) = run_scalelab(&["compose", "--check", "--topology", f.path_str()], T);
    assert_eq!(code, 0, "{stdout}");

    // A workers edit changes the ConfigMap only: no Deployment changes, so no pod restarts;
    // the nodes follow the file.
    let before = m;
    let more_workers = edited.replace("workers: 3", "workers: 5");
    f.write(&more_workers);
    let after = Manifest::parse(&compose(&f.path, &[]).0);
    assert_follows(&after, &more_workers, "topology.yaml", "scalelab:latest");
    assert_ne!(before.objects[0], after.objects[0]);
    assert_eq!(before.objects[1..], after.objects[1..]);
}

#[test]
fn the_image_flag_names_every_files_image_and_is_checked() {
    let f = TopologyFile::new(TWO_GROUPS);
    let image = "registry.example:5000/team/scalelab:1.2";
    let (text, _) = compose(&f.path, &["--image", image]);
    assert_follows(&Manifest::parse(&text), TWO_GROUPS, "topology.yaml", image);
    for file in ["compose.yaml", "stack.yaml"] {
        let y = fs::read_to_string(f.path.with_file_name(file)).unwrap();
        assert!(y.contains(&format!("image: {image}")) && !y.contains("scalelab:latest"), "{file}");
    }
    let (code, _, stderr) =
        run_scalelab(&["compose", "--topology", f.path_str(), "--image", "Scalelab:latest"], T);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--image") && stderr.contains("\"Scalelab\" is not a path component"),
        "{stderr}"
    );
}

#[test]
fn metrics_kubernetes_does_not_measure_name_their_adapter() {
    let f = TopologyFile::new(ADAPTER_METRICS);
    let (text, stderr) = compose(&f.path, &[]);
    let m = Manifest::parse(&text);
    assert_follows(&m, ADAPTER_METRICS, "topology.yaml", "scalelab:latest");
    for (group, metric, value) in [
        ("busy", "scalelab_balancer_in_flight", "2500m"),
        ("fast", "scalelab_balancer_requests_per_second", "150"),
    ] {
        let spec = &m.hpa(group).unwrap().spec;
        let pods = spec.metrics[0].pods.as_ref().unwrap();
        assert_eq!((pods.metric.name.as_str(), pods.target.kind.as_str()), (metric, "AverageValue"));
        assert_eq!(pods.target.average_value.as_deref(), Some(value));
        assert!(
            stderr.contains(&format!("group {group} autoscales on")) && stderr.contains(metric),
            "{stderr}"
        );
        // The comment right above the HPA says what it needs.
        let above = text
            .split(&format!("kind: HorizontalPodAutoscaler\nmetadata:\n  name: {group}\n"))
            .next()
            .unwrap();
        let comment = above.rsplit("---\n").next().unwrap();
        assert!(
            comment.contains("NEEDS A METRICS ADAPTER") && comment.contains("FailedGetPodsMetric"),
            "{comment}"
        );
    }
    // A tolerance other than Kubernetes' 0.1 is written per direction; the default is not.
    let busy = &m.hpa("busy").unwrap().spec.behavior;
    assert_eq!(
        (busy.scale_up.tolerance.as_deref(), busy.scale_down.tolerance.as_deref()),
        (Some("50m"), Some("50m"))
    );
    assert_eq!(m.hpa("fast").unwrap().spec.behavior.scale_up.tolerance, None);
}

#[test]
fn a_group_named_like_the_balancer_is_refused_before_writing() {
    let f = TopologyFile::new(&TWO_GROUPS.replace("name: big", "name: balancer"));
    let (code, _, stderr) = run_scalelab(&["compose", "--topology", f.path_str()], T);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nodes[1].name: \"balancer\" is the name of the balancer's service"), "{stderr}");
    assert!(
        !f.path.with_file_name("kubernetes.yaml").exists() && !f.path.with_file_name("compose.yaml").exists()
    );
}

// ---- the schema ----------------------------------------------------------------------------

/// `kubernetes-validate --strict -k VERSION FILE`: (passed, its output).
fn validate(file: &Path, version: &str) -> (bool, String) {
    let dir = std::env::var("SCALELAB_KUBERNETES_VALIDATE")
        .expect("SCALELAB_KUBERNETES_VALIDATE: where PyPI's kubernetes-validate is installed (scripts/test-kubernetes.sh)");
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .arg(file)
        .env("PYTHONPATH", dir)
        .output()
        .expect("run python3 -m kubernetes_validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every object of `file` passes at `version`, each named in the validator's output.
fn assert_valid(file: &Path, version: &str) {
    let (ok, out) = validate(file, version);
    assert!(ok, "{} against {version}:\n{out}", file.display());
    let major_minor = version.rsplit_once('.').unwrap().0;
    for id in Manifest::parse(&fs::read_to_string(file).unwrap()).ids() {
        let line = format!("passed for resource {} against version {major_minor}", id.to_lowercase());
        assert!(out.contains(&line), "no {line:?} in:\n{out}");
    }
}

#[test]
#[ignore = "needs PyPI's kubernetes-validate: scripts/test-kubernetes.sh installs it and runs this"]
fn every_document_passes_the_kubernetes_schema() {
    let committed = fs::read_to_string(repo_path("topology.yaml")).unwrap();
    for (what, yaml, extra) in [
        ("the committed topology", committed.as_str(), vec![]),
        (
            "two groups, one autoscaled on cpu",
            TWO_GROUPS,
            vec!["--image", "registry.example:5000/team/scalelab:1.2"],
        ),
    ] {
        let f = TopologyFile::new(yaml);
        compose(&f.path, &extra);
        let file = f.path.with_file_name("kubernetes.yaml");
        for version in ["1.37.0", "1.25.0"] {
            assert_valid(&file, version);
        }
        eprintln!("{what}: valid against 1.37.0 and 1.25.0");
    }
    // Metrics through an adapter, and a tolerance of their own, which Kubernetes has had since
    // 1.33: valid there and after, rejected before (as the comment above such an HPA says).
    let f = TopologyFile::new(ADAPTER_METRICS);
    compose(&f.path, &[]);
    let file = f.path.with_file_name("kubernetes.yaml");
    for version in ["1.37.0", "1.33.0"] {
        assert_valid(&file, version);
    }
    let (ok, out) = validate(&file, "1.32.0");
    assert!(!ok && out.contains("'tolerance' was unexpected"), "1.32.0 should refuse the tolerance:\n{out}");

    // The check can fail: a misspelt field and a wrong type are caught in every kind written.
    let text = fs::read_to_string(&file).unwrap();
    for (from, to, error) in [
        (
            "      readOnlyRootFilesystem: true",
            "      readOnlyRootFileSystem: true",
            "'readOnlyRootFileSystem' was unexpected",
        ),
        ("  clusterIP: None\n", "  clusterIP: None\n  clusterIp: None\n", "'clusterIp' was unexpected"),
        ("  maxReplicas: 4\n", "  maxReplicas: '4'\n", "'4' is not of type 'integer'"),
        ("    name: scalelab-topology\n", "    name: scalelab-topology\n  bogus: 1\n", "was unexpected"),
    ] {
        assert!(text.contains(from), "{from:?} not in the manifest");
        let bad = f.path.with_file_name("bad.yaml");
        fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = validate(&bad, "1.37.0");
        assert!(!ok && out.contains(error), "{to:?} should fail with {error:?}:\n{out}");
    }
}
