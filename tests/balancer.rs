//! `scalelab balancer` in front of real `scalelab node` processes on loopback: round robin
//! reaches every node, a killed node costs clients nothing and comes back when restarted,
//! topology edits change the backends live (and a bad edit changes nothing), malformed
//! requests get a 400, and SIGTERM stops the balancer cleanly within seconds.
//!
//! Not covered here: `X-Forwarded-For` reaching the node. The node does not echo request
//! headers, so only the balancer's composition of the value is tested (unit test in
//! `balancer/src/proxy.rs`).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long a node or the balancer may take to answer after starting.
const START: Duration = Duration::from_secs(15);
/// How long health, discovery or topology changes may take to show: a few health intervals
/// (200 ms), discovery (1 s) and file polling (500 ms), with room for a busy 2-core machine.
const SETTLE: Duration = Duration::from_secs(6);

/// A balancer and its nodes, all stopped (process groups) when dropped.
struct Lab {
    topology: TopologyFile,
    listen: SocketAddr,
    admin: SocketAddr,
    /// First node port; replica `i` (1-based) listens on `base + i - 1`.
    base: u16,
    /// Node processes by replica index - 1; `None` while one is down.
    nodes: Vec<Option<Proc>>,
    balancer: Proc,
}

impl Lab {
    /// `replicas` nodes named node-1.. on consecutive ports (room for `room` in all), then a
    /// balancer over them, waited for until every node is healthy.
    fn start(replicas: usize, room: u16) -> Lab {
        let lab = Lab::launch(replicas, room, "/health");
        lab.wait_state(&format!("{replicas} healthy backends"), |s| {
            s.len() == replicas && s.values().all(|b| b.healthy)
        });
        lab
    }

    /// Like `start`, with the balancer health-checking `health_path`, and without waiting for
    /// the health checks.
    fn launch(replicas: usize, room: u16, health_path: &str) -> Lab {
        let base = free_port_run(room);
        let p = free_ports(2);
        let listen: SocketAddr = format!("127.0.0.1:{}", p[0]).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", p[1]).parse().unwrap();
        let yaml =
            yaml(listen, admin, replicas, 1, base).replace("path: /health", &format!("path: {health_path}"));
        let topology = TopologyFile::new(&yaml);
        let nodes = (1..=replicas).map(|i| Some(spawn_node(i, base))).collect();
        let balancer = Proc::spawn_capturing(&["balancer", "--topology", topology.path_str()]);
        let lab = Lab { topology, listen, admin, base, nodes, balancer };
        lab.balancer.wait_output("balancer listening on", START);
        lab
    }

    fn port(&self, index: usize) -> u16 {
        self.base + index as u16 - 1
    }

    /// The balancer's `/state` backends by name.
    fn state(&self) -> BTreeMap<String, Backend> {
        let state = get(self.admin, "/state").expect("GET /state").json();
        state["backends"]
            .as_array()
            .expect("backends array")
            .iter()
            .map(|b| {
                let backend = Backend {
                    addr: b["addr"].as_str().unwrap().to_string(),
                    healthy: b["healthy"].as_bool().unwrap(),
                    requests: b["requests"].as_u64().unwrap(),
                };
                (b["name"].as_str().unwrap().to_string(), backend)
            })
            .collect()
    }

    /// Waits (up to `SETTLE`) until `/state` satisfies `ok`.
    fn wait_state(&self, what: &str, ok: impl Fn(&BTreeMap<String, Backend>) -> bool) {
        wait_for(&format!("/state to show {what}"), SETTLE, || {
            let s = self.state();
            ok(&s).then_some(())
        });
    }

    /// SIGKILL to node `index`'s whole process group (primary and workers), then reap it.
    fn kill_node(&mut self, index: usize) {
        let mut node = self.nodes[index - 1].take().expect("node is running");
        unsafe { libc::kill(-node.pid(), libc::SIGKILL) };
        assert!(node.wait_exit(Duration::from_secs(5)).is_some(), "node-{index} survived SIGKILL");
    }

    fn restart_node(&mut self, index: usize) {
        assert!(self.nodes[index - 1].is_none(), "node-{index} is still running");
        self.nodes[index - 1] = Some(spawn_node(index, self.base));
    }

    /// GETs `/op1` through the balancer until node `name` answers (bounded by `SETTLE`).
    fn wait_served_by(&self, name: &str) {
        wait_for(&format!("{name} to serve through the balancer"), SETTLE, || {
            let r = get(self.listen, "/op1").ok()?;
            (r.status == 200 && r.header("x-node") == Some(name)).then_some(())
        });
    }
}

/// One backend as `/state` reports it.
#[derive(Debug, Clone)]
struct Backend {
    addr: String,
    healthy: bool,
    requests: u64,
}

/// A topology with one group `node` of `replicas` replicas from port `base`.
fn yaml(listen: SocketAddr, admin: SocketAddr, replicas: usize, workers: usize, base: u16) -> String {
    let group =
        format!("  - name: node\n    replicas: {replicas}\n    workers: {workers}\n    port: {base}\n");
    topology_yaml(listen, admin, &group)
}

/// Starts `scalelab node` as replica `index` and waits for its health endpoint.
fn spawn_node(index: usize, base: u16) -> Proc {
    let addr = format!("127.0.0.1:{}", base + index as u16 - 1);
    let name = format!("node-{index}");
    let node = Proc::spawn(&["node", "--name", &name, "--listen", &addr, "--workers", "1"]);
    wait_http(&addr, "/health", START);
    node
}

#[test]
fn round_robin_reaches_every_node() {
    let lab = Lab::start(3, 3);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        let r = get(lab.listen, "/op1").expect("GET /op1 through the balancer");
        assert_eq!(r.status, 200, "{r:?}");
        let node = r.header("x-node").expect("x-node header").to_string();
        let index: usize = node.strip_prefix("node-").unwrap().parse().unwrap();
        let upstream = format!("127.0.0.1:{}", lab.port(index));
        assert_eq!(r.header("x-upstream"), Some(upstream.as_str()), "x-upstream of {node}");
        *seen.entry(node).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "every node answers: {seen:?}");
    for (node, n) in &seen {
        assert!((9..=11).contains(n), "{node} answered {n} of 30 sequential requests: {seen:?}");
    }

    // The node sees who the client was.
    let info = get(lab.listen, "/info").expect("GET /info through the balancer").json();
    assert_eq!(info["forwarded_for"], "127.0.0.1", "{info}");
    let direct = get(format!("127.0.0.1:{}", lab.port(1)), "/info").unwrap().json();
    assert!(direct["forwarded_for"].is_null(), "no proxy, no header: {direct}");

    let state = lab.state();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["node-1", "node-2", "node-3"]);
    for (name, b) in &state {
        assert!(b.healthy, "{name} healthy");
        assert!(b.requests >= 9, "{name} counted {} requests", b.requests);
    }

    let metrics = get(lab.admin, "/metrics").expect("GET /metrics");
    assert_eq!(metrics.status, 200);
    for i in 1..=3 {
        let series =
            format!(r#"scalelab_balancer_requests_total{{backend="127.0.0.1:{}",code="200"}}"#, lab.port(i));
        assert!(metrics.body.contains(&series), "{series} missing from:\n{}", metrics.body);
        let health = format!(
            r#"scalelab_balancer_backend_healthy{{backend="127.0.0.1:{}",name="node-{i}"}} 1"#,
            lab.port(i)
        );
        assert!(metrics.body.contains(&health), "{health} missing from:\n{}", metrics.body);
    }
    assert!(metrics.body.contains("scalelab_balancer_request_duration_seconds_bucket"));

    assert_eq!(get(lab.admin, "/nope").unwrap().status, 404);
}

#[test]
fn killed_node_costs_clients_nothing_and_is_readmitted() {
    let mut lab = Lab::start(3, 3);

    // Three clients for ~4 s; node-2 dies (SIGKILL, no goodbye) one second in.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, listen) = (stop.clone(), lab.listen);
            thread::spawn(move || {
                let (mut ok, mut failures) = (0usize, Vec::new());
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match get(listen, "/op1") {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failures.push(format!("status {}: {}", r.status, r.body)),
                        Err(e) => failures.push(e),
                    }
                }
                (ok, failures)
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let killed_at = Instant::now();
    lab.kill_node(2);
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failures) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.join().unwrap();
        ok += o;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    assert!(ok > 50, "only {ok} requests in 4 s");

    // Ejected by the health checks (interval 200 ms, unhealthy after 1 failure).
    lab.wait_state("node-2 unhealthy", |s| s.get("node-2").is_some_and(|b| !b.healthy));
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    assert!(lab.state().iter().filter(|(n, _)| *n != "node-2").all(|(_, b)| b.healthy));
    for _ in 0..10 {
        let r = get(lab.listen, "/op1").unwrap();
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-node"), Some("node-2"));
    }

    // Back on the same port: readmitted without touching the balancer.
    lab.restart_node(2);
    lab.wait_state("node-2 healthy again", |s| s.get("node-2").is_some_and(|b| b.healthy));
    lab.wait_served_by("node-2");
}

#[test]
fn topology_edits_change_backends_live() {
    let mut lab = Lab::start(1, 2);
    let node1_addr = format!("127.0.0.1:{}", lab.port(1));
    assert_eq!(lab.state()["node-1"].addr, node1_addr);

    // 1 -> 2 replicas: node-2 is started by the test, the balancer finds it from the file.
    lab.nodes.push(Some(spawn_node(2, lab.base)));
    lab.topology.write(&yaml(lab.listen, lab.admin, 2, 1, lab.base));
    lab.wait_state("node-1 and node-2 healthy", |s| s.len() == 2 && s.values().all(|b| b.healthy));
    lab.wait_served_by("node-2");
    lab.wait_served_by("node-1");

    // An invalid edit (workers: 0) changes nothing: both keep serving.
    lab.topology.write(&yaml(lab.listen, lab.admin, 1, 0, lab.base));
    thread::sleep(Duration::from_millis(2_500)); // > 2 file polls + 2 discovery passes
    let state = lab.state();
    assert_eq!(state.len(), 2, "invalid edit must keep the backends: {state:?}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let r = get(lab.listen, "/op1").unwrap();
        assert_eq!(r.status, 200);
        seen.insert(r.header("x-node").unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both nodes still serve after the invalid edit: {seen:?}");
    assert!(
        lab.balancer.output().contains("topology edit rejected"),
        "the invalid edit is logged with its reason"
    );

    // 2 -> 1: node-2 leaves the backends (its process keeps running, unused).
    lab.topology.write(&yaml(lab.listen, lab.admin, 1, 1, lab.base));
    lab.wait_state("only node-1", |s| s.keys().eq(["node-1"]));
    for _ in 0..6 {
        let r = get(lab.listen, "/op1").unwrap();
        assert_eq!((r.status, r.header("x-node")), (200, Some("node-1")));
    }
}

#[test]
fn malformed_request_gets_400_no_backend_503_and_sigterm_exits_cleanly() {
    let mut lab = Lab::start(1, 1);

    let reply = raw_exchange(lab.listen, b"GARBAGE\x01 / HTTP/9\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "malformed request: {reply:?}");
    assert_eq!(get(lab.listen, "/op1").unwrap().status, 200, "still serving after a malformed request");

    // The only node gone: an error status promptly, never a hang.
    lab.kill_node(1);
    lab.wait_state("node-1 unhealthy", |s| !s["node-1"].healthy);
    let started = Instant::now();
    let r = get(lab.listen, "/op1").expect("a response even without backends");
    assert!([502, 503].contains(&r.status), "no backend: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(get(lab.admin, "/state").unwrap().status, 200);

    let stopping = Instant::now();
    let status =
        lab.balancer.terminate(Duration::from_secs(5)).expect("balancer exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status:?} after {:?}", stopping.elapsed());
}

#[test]
fn with_every_node_marked_down_the_balancer_fails_open() {
    // The health checks ask for a path the nodes answer 404, so both are marked down while
    // both still serve: what a saturated lab looks like when /health answers too late.
    let mut lab = Lab::launch(2, 2, "/no-such-path");
    lab.wait_state("both nodes unhealthy", |s| s.len() == 2 && s.values().all(|b| !b.healthy));

    let served: Vec<String> = (0..6)
        .map(|_| {
            let r = get(lab.listen, "/op1").expect("GET /op1");
            assert_eq!(r.status, 200, "fail open serves: {r:?}");
            r.header("x-node").unwrap().to_string()
        })
        .collect();
    assert!(served.contains(&"node-1".to_string()) && served.contains(&"node-2".to_string()), "{served:?}");
    let metrics = get(lab.admin, "/metrics").unwrap().body;
    let fail_open: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scalelab_balancer_fail_open_total "))
        .expect("fail_open metric")
        .trim()
        .parse()
        .unwrap();
    assert!(fail_open >= 6, "every request counted as fail open: {fail_open}\n{metrics}");

    // A node that is really gone refuses the connection; the request fails over to the other.
    lab.kill_node(1);
    for _ in 0..6 {
        let r = get(lab.listen, "/op1").expect("GET /op1");
        assert_eq!(r.status, 200, "failed over to node-2: {r:?}");
        assert_eq!(r.header("x-node"), Some("node-2"));
    }
}
