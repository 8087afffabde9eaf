//! The autoscaler on a real lab: `scalelab up` with an autoscaled group of quarter-core nodes,
//! open-loop `/op2` load above one node's capacity, then none. The group grows from 1 to at
//! least 3, obeys a live edit of `max_replicas`, fails no request (503s from a full queue are
//! the documented back-pressure), comes back to `min_replicas` only after its scale-down
//! window, and leaves no process or cgroup behind. The dashboard, kept open in Chromium, draws
//! the replicas and the decisions.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::browser::LivePage;
use common::*;
use scalelab_balancer::status::{AutoscaleState, StateReport};

/// The scale-down stabilization window of the test's group.
const WINDOW: Duration = Duration::from_secs(8);

fn yaml(listen: SocketAddr, admin: SocketAddr, port: u16, max: usize) -> String {
    topology_yaml(
        listen,
        admin,
        &format!(
            "  - name: node\n    replicas: 1\n    workers: 1\n    cpus: 0.25\n    port: {port}\n    \
             autoscale:\n      min_replicas: 1\n      max_replicas: {max}\n      metric: cpu\n      \
             target: 0.5\n      sync_ms: 1000\n      scale_down_stabilization_ms: {}\n",
            WINDOW.as_millis()
        ),
    )
}

fn state(admin: SocketAddr) -> Option<StateReport> {
    serde_json::from_value(get(admin, "/state").ok()?.json()).ok()
}

fn autoscale(admin: SocketAddr) -> Option<(usize, AutoscaleState)> {
    let s = state(admin)?;
    let g = s.groups.into_iter().find(|g| g.name == "node")?;
    Some((g.replicas, g.autoscale?))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Every process below `root` (its children, their children, ...), found in /proc.
fn descendants(root: i32) -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            Some((pid, proc_stat(pid)?.1))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

#[test]
fn the_autoscaler_follows_load_obeys_edits_and_scales_down_after_its_window() {
    let p = free_ports(2);
    let listen: SocketAddr = format!("127.0.0.1:{}", p[0]).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", p[1]).parse().unwrap();
    let port = free_port_run(5);
    let file = TopologyFile::new(&yaml(listen, admin, port, 5));
    let mut up = Proc::spawn_capturing_env(&["up", "--topology", file.path_str()], &[("RUST_LOG", None)]);
    up.wait_output("Ctrl-C stops everything", Duration::from_secs(30));
    if !cgroups_enforced(&up.output()) {
        return; // the CPU metric needs caps; the skip is printed (and fails where they are required)
    }
    assert!(up.output().contains("autoscale: node runs 1 of 1..5 replicas"), "{}", up.output());
    let mut page = LivePage::open(&format!("http://{admin}/"), 1280, 1500);

    // High: 40 req/s of /op2 against 12.5 req/s per node.
    let url = format!("http://{listen}");
    let high = std::thread::spawn(move || {
        load_json(
            &["--url", &url, "--path", "/op2", "--rate", "40", "--connections", "64", "--duration", "24s"],
            Duration::from_secs(60),
        )
    });
    let (grown, _) = wait_for("the group to grow to 3", Duration::from_secs(20), || {
        autoscale(admin).filter(|(replicas, _)| *replicas >= 3)
    });
    // A live edit of the ceiling: obeyed at once, and never exceeded while load stays high.
    file.write(&yaml(listen, admin, port, 3));
    wait_for("max_replicas 3 in force", Duration::from_secs(5), || {
        autoscale(admin).filter(|(r, a)| a.max_replicas == 3 && *r <= 3)
    });
    let mut peak = 0;
    while !high.is_finished() {
        if let Some((replicas, _)) = autoscale(admin) {
            peak = peak.max(replicas);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let ended = unix_now();
    let report = high.join().unwrap();
    assert!(peak <= 3, "replicas {peak} above the edited max_replicas 3");
    let shed = report.status.get(&503).copied().unwrap_or(0);
    assert_eq!(report.errors - shed, 0, "only 503s (shed by full queues) may fail: {:?}", report.error_kinds);
    assert!(report.ok > 200, "{report:?}");

    // Low: nothing. Back to min_replicas, but not before the window has passed.
    let (_, calm) = wait_for("the group back at 1", WINDOW + Duration::from_secs(20), || {
        autoscale(admin).filter(|(replicas, _)| *replicas == 1)
    });
    let first_down =
        calm.decisions.iter().find(|d| d.to < d.from && d.at > ended - 30.0).expect("a scale-down");
    assert!(
        first_down.at >= ended + WINDOW.as_secs_f64() - 1.0,
        "scaled down {:.1} s after the load ended, inside the {WINDOW:?} window: {:#?}",
        first_down.at - ended,
        calm.decisions
    );
    assert!(calm.decisions.iter().any(|d| d.from == 1 && d.to >= 2), "{:#?}", calm.decisions);
    let out = up.output();
    let printed = out.lines().filter(|l| l.starts_with("scalelab up: node: replicas")).count();
    assert_eq!(printed as u64, calm.decisions_total, "each decision printed once:\n{out}");
    assert!(
        out.contains("of the 0.25-core cap (target 50%)"),
        "the reason names the cap and the target:\n{out}"
    );
    let _ = grown;

    // The dashboard drew the replicas and a marker per decision.
    page.wait_until(
        "the autoscaling charts",
        &format!(
            "!document.getElementById('autoscaling').hidden && \
             document.querySelectorAll('#chart-replicas svg, #chart-replicas canvas').length > 0 && \
             document.querySelectorAll('#chart-metric canvas').length > 0 && \
             parseInt(document.getElementById('chart-replicas').dataset.decisions) >= {}",
            calm.decisions.len()
        ),
        "document.getElementById('autoscaling').outerHTML.slice(0, 600)",
        Duration::from_secs(10),
    );
    page.screenshot("autoscale-dashboard.png");

    // Stop: nothing is left behind.
    let children = descendants(up.pid());
    let cgroups = lab_cgroups(up.pid());
    assert!(children.len() >= 2 && !cgroups.is_empty(), "{children:?} {cgroups:?}");
    up.signal(libc::SIGINT);
    up.wait_exit(Duration::from_secs(20)).expect("up stops");
    let started = Instant::now();
    wait_for("every child to exit", Duration::from_secs(5), || {
        children.iter().all(|&p| !alive(p)).then_some(())
    });
    assert!(cgroups.iter().all(|d| !d.exists()), "cgroups left after {:?}: {cgroups:?}", started.elapsed());
}
