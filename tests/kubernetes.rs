//! Kubernetes: `scalelab compose` writes `kubernetes.yaml`, and what can be checked of it
//! without a cluster is checked here, with real tools (no cluster can run on these machines).
//!
//! - Round trip (every run): the manifest, read back with its own serde types (which deny
//!   unknown fields), against the topology it came from: replicas, CPU, ports, probes, the
//!   command lines parsed back by the node's and balancer's own flags, the HPAs' bounds,
//!   targets and windows, the hardening; then the topology is edited and the manifest follows,
//!   and `--check` says when it is stale.
//! - Schema (ignored; `scripts/test-kubernetes.sh` installs PyPI's `kubernetes-validate` and
//!   runs it): every document against the Kubernetes OpenAPI schemas, strict (unknown fields
//!   are errors), at 1.37.0 and, for what older clusters get, 1.25.0.
//! - A real engine (ignored; the same script, as root): `podman kube play` runs the
//!   ConfigMap and the Deployments on this machine (`common::podman`): every node pod starts,
//!   answers `/health` and `/op1`, runs its workers, has its CPU limit in force in the kernel
//!   and its hardening in force; a ConfigMap update made as kubelet makes it reaches the
//!   nodes; `podman kube down` leaves nothing. Podman implements no Services and no HPAs:
//!   those are left to the schema check and the round trip.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use common::podman::{ContainerInfo, Podman, NETWORK, SUBNET};
use common::{bin, get, repo_path, run_scalelab, wait_for, TopologyFile};
use scalelab::render::kubernetes::objects::{self, Deployment, HorizontalPodAutoscaler, Object, Service};
use scalelab::render::kubernetes::quantity;
use scalelab_balancer::{BalancerArgs, Discovery};
use scalelab_node::NodeArgs;
use scalelab_topology::{AutoscaleMetric, Topology};

const T: Duration = Duration::from_secs(30);

/// Two groups: a fixed one, and one autoscaled on CPU with its own windows and a
/// distribution mode, so every field has a value that is not its default somewhere.
const TWO_GROUPS: &str = "\
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - { name: node, replicas: 2, workers: 2, cpus: 0.5, port: 8081 }
  - name: big
    replicas: 2
    workers: 3
    cpus: 1.0
    port: 8091
    distribution: round_robin
    autoscale:
      min_replicas: 1
      max_replicas: 3
      metric: cpu
      target: 0.6
      scale_down_stabilization_ms: 90500
      scale_up_stabilization_ms: 15000
";

/// Groups autoscaled on the metrics Kubernetes does not measure, one with a tolerance
/// other than Kubernetes' default.
const ADAPTER_METRICS: &str = "\
balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }
nodes:
  - name: busy
    replicas: 1
    workers: 1
    port: 8081
    autoscale: { max_replicas: 4, metric: in_flight, target: 2.5, tolerance: 0.05 }
  - name: fast
    replicas: 1
    workers: 1
    port: 8091
    autoscale: { max_replicas: 2, metric: rps, target: 150 }
";

/// `scalelab compose` on `topology` (extra flags after), which must succeed; returns the
/// rendered kubernetes.yaml and the command's stderr.
fn compose(topology: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["compose", "--topology", topology.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_scalelab(&args, T);
    assert_eq!(code, 0, "scalelab {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    (fs::read_to_string(topology.with_file_name("kubernetes.yaml")).unwrap(), stderr)
}

/// The manifest's objects, by kind and name.
struct Manifest {
    objects: Vec<Object>,
}

impl Manifest {
    fn parse(text: &str) -> Manifest {
        Manifest { objects: objects::parse_all(text).unwrap_or_else(|e| panic!("{e:#}\n{text}")) }
    }

    fn ids(&self) -> Vec<String> {
        self.objects.iter().map(Object::id).collect()
    }

    fn deployment(&self, name: &str) -> &Deployment {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Deployment(d) if d.metadata.name == name => Some(d),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Deployment {name}"))
    }

    fn service(&self, name: &str) -> &Service {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Service(s) if s.metadata.name == name => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Service {name}"))
    }

    fn hpa(&self, name: &str) -> Option<&HorizontalPodAutoscaler> {
        self.objects.iter().find_map(|o| match o {
            Object::HorizontalPodAutoscaler(h) if h.metadata.name == name => Some(h),
            _ => None,
        })
    }
}

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

// ---- podman kube play ----------------------------------------------------------------------

/// Processes running in a container.
fn process_count(podman: &Podman, container: &str) -> usize {
    podman.run(&["top", container, "pid"]).lines().skip(1).filter(|l| !l.trim().is_empty()).count()
}

/// Updates a ConfigMap volume's file as kubelet's atomic writer does: the content goes into a
/// new timestamped directory, `..data` is switched to it by a rename, and the file's name is a
/// symlink through `..data`. (The first call turns podman's plain file into that layout.)
fn kubelet_update(volume: &Path, file: &str, text: &str, generation: u32) {
    let stamp = format!("..2026_01_01_00_00_{generation:02}.000000001");
    let dir = volume.join(&stamp);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(file), text).unwrap();
    fs::set_permissions(dir.join(file), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&stamp, volume.join("..data_tmp")).unwrap();
    fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    if !volume.join(file).is_symlink() {
        symlink(format!("..data/{file}"), volume.join("link.tmp")).unwrap();
        fs::rename(volume.join("link.tmp"), volume.join(file)).unwrap();
    }
    for e in fs::read_dir(volume).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("..2") && name != stamp {
            fs::remove_dir_all(e.path()).unwrap();
        }
    }
}

#[test]
#[ignore = "needs root and podman: scripts/test-kubernetes.sh installs it and runs this"]
fn podman_kube_play_runs_the_manifest() {
    let started = Instant::now();
    let podman = Podman::start(bin());
    let f = TopologyFile::new(TWO_GROUPS);
    let (text, _) = compose(&f.path, &[]);
    let manifest = f.path.with_file_name("kubernetes.yaml");
    let m = Manifest::parse(&text);
    let t = Topology::from_yaml(TWO_GROUPS).unwrap();

    let play = podman.run(&["kube", "play", "--network", NETWORK, manifest.to_str().unwrap()]);
    eprintln!(
        "podman kube play: {} pods; Services and HPAs are not podman's (it skips them)",
        play.matches("Pod:").count()
    );

    // One pod per replica, `<deployment>-pod-<i>`; a Deployment without replicas (an HPA's)
    // gets one, as Kubernetes gives it before the HPA acts.
    let mut want: Vec<String> = Vec::new();
    for o in &m.objects {
        if let Object::Deployment(d) = o {
            want.extend((0..d.spec.replicas.unwrap_or(1)).map(|i| format!("{}-pod-{i}", d.metadata.name)));
        }
    }
    want.sort();
    let pods = wait_for("every pod running", T, || {
        let pods = podman.pods();
        let mut running: Vec<String> =
            pods.iter().filter(|p| p.status == "Running").map(|p| p.name.clone()).collect();
        running.sort();
        (running == want).then_some(pods)
    });
    for p in &pods {
        assert!(p.containers.iter().all(|c| c.status == "running"), "{p:?}");
        let instance = p.labels.get("app.kubernetes.io/instance").expect("the template's labels");
        assert!(p.name.starts_with(&format!("{instance}-pod-")), "{p:?}");
    }

    let mut node_containers: Vec<(String, ContainerInfo)> = Vec::new();
    for g in &t.nodes {
        for p in pods.iter().filter(|p| p.labels.get("app.kubernetes.io/instance") == Some(&g.name)) {
            let c = podman.inspect(&format!("{}-node", p.name));
            let addr = format!("{}:{}", c.ip(), g.port);
            assert!(c.ip().starts_with(SUBNET.trim_end_matches("0/24")), "{addr} outside {SUBNET}");
            common::wait_http(&addr, "/health", T);
            let op1 = get(&addr, "/op1").unwrap();
            assert_eq!(op1.status, 200, "{addr}/op1: {op1:?}");
            assert_eq!(
                op1.json()["node"],
                format!("{}@{}", g.name, c.config.hostname),
                "x-node names the pod"
            );
            let info = get(&addr, "/info").unwrap().json();
            assert_eq!(info["distribution"], serde_json::json!(g.distribution), "{addr}");
            // The primary and its workers, from the ConfigMap's `workers`.
            let workers = g.workers;
            wait_for(&format!("{} with {workers} workers", c.name), T, || {
                (process_count(&podman, &c.name) == workers + 1).then_some(())
            });
            // The CPU limit, as the runtime set it, as the kernel enforces it, and as the node
            // reads it from inside its container.
            let cpus = g.cpus.unwrap();
            assert_eq!(c.host_config.cpu_quota as f64 / c.host_config.cpu_period as f64, cpus, "{}", c.name);
            let kernel = c
                .kernel_cpu_cap()
                .unwrap_or_else(|| panic!("{}: no CPU quota in its cgroup {}", c.name, c.state.cgroup_path));
            assert!((kernel - cpus).abs() < 1e-9, "{}: the kernel's cap is {kernel}, cpus is {cpus}", c.name);
            let stats = get(&addr, "/stats").unwrap().json();
            assert_eq!(stats["cpu_cap"], serde_json::json!(cpus), "{addr}/stats: {stats}");
            // Hardening in force: uid 10001, no capability, no new privileges, seccomp on,
            // read-only root.
            assert_eq!(c.config.user, "10001:10001");
            assert!(c.proc_status("Uid").split_whitespace().all(|u| u == "10001"), "{}", c.name);
            assert_eq!(c.proc_status("CapEff"), "0000000000000000", "{}", c.name);
            assert_eq!(c.proc_status("CapBnd"), "0000000000000000", "{}", c.name);
            assert_eq!(c.proc_status("NoNewPrivs"), "1", "{}", c.name);
            assert_eq!(c.proc_status("Seccomp"), "2", "{}", c.name);
            assert!(
                c.host_config.readonly_rootfs && c.root_mount_options().split(',').any(|o| o == "ro"),
                "{}",
                c.name
            );
            // podman runs a livenessProbe as its healthcheck (the readinessProbe it does not
            // implement): the probe's URL and timings arrive. It would run it as `curl` in a
            // shell, which the image does not have, from systemd timers, which this machine
            // does not run: the requests above are the probe.
            let hc = c.config.healthcheck.as_ref().expect("the livenessProbe as a healthcheck");
            let probe = &m.deployment(&g.name).spec.template.spec.containers[0].liveness_probe;
            assert!(hc.test.iter().any(|a| a == &format!("http://localhost:{}/health", g.port)), "{hc:?}");
            assert_eq!(
                (hc.interval, hc.timeout),
                (probe.period_seconds as u64 * 1_000_000_000, probe.timeout_seconds as u64 * 1_000_000_000)
            );
            assert_eq!(hc.retries, probe.failure_threshold);
            eprintln!(
                "{}: {addr}, {} workers, cpu quota {}/{} us ({kernel} cores), /stats cap {}",
                c.name, workers, c.host_config.cpu_quota, c.host_config.cpu_period, stats["cpu_cap"]
            );
            node_containers.push((g.name.clone(), c));
        }
    }

    // The balancer starts under the same hardening and serves; with no Services in podman its
    // groups' names do not resolve, so it has no backends here.
    let b = podman.inspect("balancer-pod-0-balancer");
    let admin = format!("{}:{}", b.ip(), t.balancer.admin.port());
    let state = common::wait_http(&admin, "/state", T).json();
    assert_eq!(
        (state["discovery"].as_str(), state["listen"].as_str()),
        (Some("dns"), Some("0.0.0.0:8080")),
        "{state}"
    );
    assert_eq!(b.proc_status("CapEff"), "0000000000000000");
    let traffic =
        get(format!("{}:{}", b.ip(), t.balancer.listen.port()), "/op1").expect("the balancer answers");
    eprintln!(
        "balancer: /state lists {} backends; /op1 answers {}",
        state["backends"].as_array().map_or(0, Vec::len),
        traffic.status
    );

    // An edit of the ConfigMap, delivered as kubelet delivers it, reaches every node of the
    // group; the other group keeps its workers.
    let volume = podman.volume_dir("scalelab-topology");
    assert_eq!(fs::read_to_string(volume.join("topology.yaml")).unwrap(), TWO_GROUPS, "the ConfigMap's file");
    kubelet_update(&volume, "topology.yaml", TWO_GROUPS, 1);
    let edited = TWO_GROUPS.replace("workers: 2, cpus: 0.5", "workers: 3, cpus: 0.5");
    kubelet_update(&volume, "topology.yaml", &edited, 2);
    for (group, c) in &node_containers {
        let want = if group == "node" { 4 } else { t.group(group).unwrap().workers + 1 };
        wait_for(&format!("{} at {} processes after the ConfigMap edit", c.name, want), T, || {
            (process_count(&podman, &c.name) == want).then_some(())
        });
    }

    // `podman kube down` stops and removes every pod and container. Podman 4.3 keeps the
    // volume it made for the ConfigMap (kube down --force, which removes it, came in 4.4):
    // that and nothing else is left, and the test removes it.
    let down = podman.run(&["kube", "down", manifest.to_str().unwrap()]);
    assert!(pods.iter().all(|p| down.contains(&p.id)), "kube down should name every pod it removed: {down}");
    assert!(podman.pods().is_empty(), "pods left: {:?}", podman.pods());
    assert_eq!(podman.run(&["ps", "--all", "--quiet"]).trim(), "", "containers left");
    assert_eq!(podman.volumes(), ["scalelab-topology"], "volumes left besides the ConfigMap's");
    podman.run(&["volume", "rm", "scalelab-topology"]);
    assert!(podman.volumes().is_empty());
    assert_eq!(podman.leases(), Vec::<String>::new(), "addresses still leased");
    for (_, c) in &node_containers {
        let addr: SocketAddr = format!("{}:8081", c.ip()).parse().unwrap();
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "{addr} still answers"
        );
    }
    drop(podman);
    eprintln!("podman kube play checks: {:.1} s", started.elapsed().as_secs_f64());
}
