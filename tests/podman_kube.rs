//! `kubernetes.yaml` on a real engine that runs Kubernetes YAML: `podman kube play` runs the
//! ConfigMap and the Deployments on this machine, in a podman of its own (`common::podman`).
//! Every node pod starts, answers `/health` and `/op1`, runs its workers, has its CPU limit in
//! force in the kernel and its hardening in force; a ConfigMap update made as kubelet makes it
//! reaches the nodes; `podman kube down` leaves nothing. Podman implements no Services and no
//! HPAs: those are left to the schema check and the round trip (`kubernetes.rs`).
//!
//! Ignored: it needs root and podman. `scripts/test-kubernetes.sh` installs podman and runs it.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kubernetes::{compose, Manifest, TWO_GROUPS};
use common::podman::{ContainerInfo, Podman, NETWORK, SUBNET};
use common::{bin, get, wait_for, TopologyFile};
use scalelab::render::kubernetes::objects::Object;
use scalelab_topology::Topology;

const T: Duration = Duration::from_secs(30);

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
