//! `scalelab balancer` in front of real `scalelab node` processes on loopback: round robin
//! reaches every node, a killed node costs clients nothing and comes back when restarted,
//! topology edits change the backends live (and a bad edit changes nothing), malformed
//! requests get a 400, and SIGTERM stops the balancer cleanly within seconds. And the
//! hardening: slow and idle clients are closed and counted, the admin answers under
//! file-descriptor pressure and like a careful HTTP server, pipelined, Host-less and
//! absolute-form requests are handled as the nodes handle them, shed 503s are counted.
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

use common::rig::{spawn_node, yaml, Rig, SETTLE, START};
use common::*;

#[test]
fn round_robin_reaches_every_node() {
    let lab = Rig::start(3, 3);

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
    let info = get(lab.listen, "/info").expect("GET /info through the balancer").info();
    assert_eq!(info.forwarded_for.as_deref(), Some("127.0.0.1"), "{info:?}");
    let direct = get(format!("127.0.0.1:{}", lab.port(1)), "/info").unwrap().info();
    assert_eq!(direct.forwarded_for, None, "no proxy, no header: {direct:?}");

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
    let mut lab = Rig::start(3, 3);

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
    let mut lab = Rig::start(1, 2);
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
    let mut lab = Rig::start(1, 1);

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
    let mut lab = Rig::launch(2, 2, "/no-such-path");
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

#[test]
fn slow_and_idle_clients_are_closed_and_counted() {
    use std::io::{Read, Write};
    let lab = Rig::launch_with(
        1,
        1,
        |y| y.replace("  algorithm:", "  header_timeout_ms: 600\n  keepalive_timeout_ms: 900\n  algorithm:"),
        None,
    );
    lab.wait_state("node-1 healthy", |s| s.get("node-1").is_some_and(|b| b.healthy));

    // A head trickled one byte every 150 ms needs ~4 s: it gets 408 at the 0.6 s deadline.
    let mut slow = std::net::TcpStream::connect(lab.listen).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let head = b"GET /op1 HTTP/1.1\r\nHost: slow\r\nX-Trickle: aaaaaaaa\r\n\r\n";
    for &b in head.iter() {
        if slow.write_all(&[b]).is_err() || started.elapsed() > Duration::from_secs(3) {
            break;
        }
        thread::sleep(Duration::from_millis(150));
    }
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "slow head: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

    // One request, then silence: closed about 0.9 s later.
    let mut idle = std::net::TcpStream::connect(lab.listen).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET /op1 HTTP/1.1\r\nHost: idle\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let quiet = Instant::now();
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0, "the idle connection is closed");
    let waited = quiet.elapsed();
    assert!(
        (Duration::from_millis(700)..Duration::from_secs(3)).contains(&waited),
        "closed after {waited:?}"
    );

    // A client that keeps talking is never cut: 3 s of requests 300 ms apart on one connection.
    let mut chatty = std::net::TcpStream::connect(lab.listen).unwrap();
    chatty.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..10 {
        chatty.write_all(b"GET /op1 HTTP/1.1\r\nHost: chatty\r\n\r\n").unwrap();
        let n = chatty.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "chatty client cut off");
        thread::sleep(Duration::from_millis(300));
    }

    let metrics = lab.metrics();
    assert_eq!(metric(&metrics, "scalelab_balancer_header_timeouts_total"), Some(1.0), "{metrics}");
    assert!(metric(&metrics, "scalelab_balancer_idle_closed_total").unwrap() >= 1.0, "{metrics}");
}

#[test]
fn under_file_descriptor_pressure_the_admin_keeps_answering() {
    // 400 descriptors: the balancer holds at most (400 - 256) / 2 = 72 client connections.
    let lab = Rig::launch_with(1, 1, |y| y, Some(400));
    let report = lab.report();
    assert_eq!(report.settings.max_connections, 72, "{report:?}");
    let idle: Vec<std::net::TcpStream> =
        (0..300).filter_map(|_| std::net::TcpStream::connect(lab.listen).ok()).collect();
    assert!(idle.len() >= 250, "only {} connections were accepted by the kernel", idle.len());
    thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        assert_eq!(get(lab.admin, "/state").expect("admin answers").status, 200);
    }
    let metrics = lab.metrics();
    let refused = metric(&metrics, "scalelab_balancer_client_refused_total").unwrap();
    assert!(refused >= 150.0, "connections past the cap are closed at accept: {refused}\n{metrics}");
    assert!(metric(&metrics, "scalelab_balancer_client_connections").unwrap() <= 72.0, "{metrics}");
    drop(idle);
    wait_for("the proxy to serve again", SETTLE, || get(lab.listen, "/op1").ok().filter(|r| r.status == 200));
}

#[test]
fn pipelined_hostless_and_absolute_form_requests_are_answered_as_the_nodes_answer() {
    let lab = Rig::start(1, 1);
    let node = format!("127.0.0.1:{}", lab.port(1));

    // Three pipelined requests: three answers, in order.
    let pipelined = b"GET /op1?n=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /info HTTP/1.1\r\nHost: a\r\n\r\n\
                      GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let reply = raw_exchange(lab.listen, pipelined);
    let statuses: Vec<&str> = reply.match_indices("HTTP/1.1 200").map(|(_, s)| s).collect();
    assert_eq!(statuses.len(), 3, "three answers: {reply}");
    let (op1, info, health) =
        (reply.find("\"worker\"").unwrap(), reply.find("uptime_s").unwrap(), reply.find("\"ok\"").unwrap());
    assert!(op1 < info && info < health, "answers in request order: {reply}");

    // HTTP/1.0 without Host: forwarded with one (the address the client reached).
    let reply = raw_exchange(lab.listen, b"GET /info HTTP/1.0\r\n\r\n");
    assert!(reply.contains(&format!("\"host\":\"{}\"", lab.listen)), "{reply}");

    // HTTP/1.1 without Host: 400 (RFC 9112 §3.2), where HTTP/1.0 may omit it.
    let reply = raw_exchange(lab.listen, b"GET /info HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");

    // Absolute form: the same answer from the balancer and from a node.
    for (request, status) in [
        ("GET http://example.com/op1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", "200"),
        ("GET http://example.com/op1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n", "400"),
    ] {
        for (tier, addr) in [("balancer", lab.listen.to_string()), ("node", node.clone())] {
            let reply = raw_exchange(addr.as_str(), request.as_bytes());
            assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{tier}: {request:?} -> {reply}");
        }
    }
}

#[test]
fn the_admin_listener_is_read_only_and_answers_every_request() {
    let lab = Rig::start(1, 1);
    let head = raw_exchange(lab.admin, b"HEAD /state HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");
    for method in ["POST", "PUT", "DELETE"] {
        let req = format!(
            "{method} /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let reply = raw_exchange(lab.admin, req.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 405"), "{method}: {reply}");
        assert!(reply.to_ascii_lowercase().contains("allow: get, head"), "{method}: {reply}");
    }
    let reply = raw_exchange(lab.admin, b"GARBAGE\x01 / HTTP/9\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "malformed: {reply:?}");
    assert_eq!(get(lab.admin, "/nope").unwrap().status, 404);
    assert_eq!(get(lab.admin, "/state").unwrap().status, 200, "still answering");
}

#[test]
fn a_full_worker_queue_is_shed_with_retry_after_and_counted() {
    let base = free_port_run(1);
    let p = free_ports(2);
    let (listen, admin): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{}", p[0]).parse().unwrap(), format!("127.0.0.1:{}", p[1]).parse().unwrap());
    let addr = format!("127.0.0.1:{base}");
    let _node =
        Proc::spawn(&["node", "--name", "node-1", "--listen", &addr, "--workers", "1", "--max-queue", "2"]);
    wait_http(&addr, "/health", START);
    let topology = TopologyFile::new(&yaml(listen, admin, 1, 1, base));
    let balancer = Proc::spawn_capturing(&["balancer", "--topology", topology.path_str()]);
    balancer.wait_output("balancer listening on", START);

    // Twelve clients at once, each asking for 100 ms of the one worker's CPU: it can hold one
    // burning and two waiting; the rest are told to come back later, at once. The first burst
    // opens the balancer's twelve connections to the node (new connections are accepted one
    // per burn, so it may shed nothing); on the second the requests arrive on those open
    // connections, where the bound applies.
    let burst = || -> Vec<(Response, Duration)> {
        (0..12)
            .map(|_| {
                thread::spawn(move || {
                    let started = Instant::now();
                    (get(listen, "/op2?cpu_ms=100").expect("an answer"), started.elapsed())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    };
    let first = burst().iter().filter(|(r, _)| r.status == 503).count();
    let replies = burst();
    let shed: Vec<&(Response, Duration)> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    let served = replies.iter().filter(|(r, _)| r.status == 200).count();
    assert!(served >= 2, "the queue's worth is served: {served}");
    assert!(!shed.is_empty(), "statuses: {:?}", replies.iter().map(|(r, _)| r.status).collect::<Vec<_>>());
    for (r, took) in &shed {
        assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
        assert!(r.body.contains("max_queue"), "{}", r.body);
        assert!(*took < Duration::from_millis(900), "shed at once, not after waiting: {took:?}");
    }
    let metrics = get(admin, "/metrics").unwrap().body;
    let series = format!(r#"scalelab_balancer_shed_total{{backend="{addr}"}}"#);
    let total = (first + shed.len()) as f64;
    assert_eq!(metric(&metrics, &series), Some(total), "{metrics}");
    let info = get(&addr, "/info").unwrap().info();
    assert_eq!(info.shed as f64, total, "{info:?}");
}

/// `n` requests for `path` to `listen`, each sent at once from a thread of its own; join the
/// threads for the responses.
fn in_background(
    listen: SocketAddr,
    n: usize,
    path: &'static str,
) -> Vec<thread::JoinHandle<Result<Response, String>>> {
    (0..n).map(|_| thread::spawn(move || get(listen, path))).collect()
}

/// `scalelab_balancer_in_flight{backend, name}` for each node, from `/metrics`.
fn in_flight(lab: &Rig, nodes: usize) -> Vec<f64> {
    let text = lab.metrics();
    (1..=nodes)
        .map(|i| {
            let series = format!(
                r#"scalelab_balancer_in_flight{{backend="127.0.0.1:{}",name="node-{i}"}}"#,
                lab.port(i)
            );
            metric(&text, &series).unwrap_or(0.0)
        })
        .collect()
}

#[test]
fn in_flight_counts_go_back_to_zero_after_errors_and_aborts_and_survive_an_edit() {
    let mut lab =
        Rig::launch_with(2, 3, |y| y.replace("algorithm: round_robin", "algorithm: least_conn"), None);
    lab.wait_state("2 healthy backends", |s| s.len() == 2 && s.values().all(|b| b.healthy));
    let url = format!("http://{}", lab.listen);

    // Errors (400s for a cost over max_cpu_ms), then clients that give up (a 30 ms timeout on
    // 80 ms requests).
    let errors = load_json(
        &["--url", &url, "--path", "/op2?cpu_ms=99999", "--connections", "8", "--duration", "1s"],
        Duration::from_secs(30),
    );
    assert!(errors.error_kinds.status > 0, "errors relayed: {errors:#?}");
    let aborts = load_json(
        &[
            "--url",
            &url,
            "--path",
            "/op2?cpu_ms=80",
            "--connections",
            "12",
            "--duration",
            "2s",
            "--timeout",
            "30ms",
        ],
        Duration::from_secs(30),
    );
    assert!(aborts.error_kinds.timeout > 0, "clients aborted: {aborts:#?}");
    wait_for("every in-flight count back to 0", SETTLE, || (in_flight(&lab, 2) == [0.0; 2]).then_some(()));
    // A worker swamped by the aborted requests may have missed a health check meanwhile.
    lab.wait_state("both nodes healthy again", |s| s.values().all(|b| b.healthy));

    // Four slow requests held across a topology edit that rebuilds the selector (a third node
    // joins): least_conn spread them two per node, and the counts are still there after.
    let _node3 = spawn_node(3, lab.base);
    let edited = std::fs::read_to_string(&lab.topology.path).unwrap();
    let slow = in_background(lab.listen, 4, "/op2?cpu_ms=1500");
    wait_for("four requests in flight, two per node", SETTLE, || {
        (in_flight(&lab, 2) == [2.0; 2]).then_some(())
    });
    lab.topology.write(&edited.replace("replicas: 2", "replicas: 3"));
    lab.wait_state("node-3 joined", |s| s.len() == 3);
    let counts = in_flight(&lab, 2);
    assert!(counts.iter().sum::<f64>() >= 2.0, "counts survive the rebuild: {counts:?}");
    for t in slow {
        assert_eq!(t.join().unwrap().expect("an answer").status, 200);
    }
    wait_for("counts back to 0", SETTLE, || (in_flight(&lab, 3) == [0.0; 3]).then_some(()));

    // A node killed with requests in flight: its count is released too.
    let slow = in_background(lab.listen, 4, "/op2?cpu_ms=900");
    wait_for("four requests in flight", SETTLE, || {
        (in_flight(&lab, 3).iter().sum::<f64>() == 4.0).then_some(())
    });
    lab.kill_node(1);
    for t in slow {
        let _ = t.join().unwrap();
    }
    wait_for("counts back to 0 after the kill", SETTLE, || (in_flight(&lab, 3) == [0.0; 3]).then_some(()));
}

#[test]
fn least_conn_and_p2c_steer_around_a_node_busy_with_slow_requests() {
    for algorithm in ["least_conn", "p2c"] {
        // A single worker burning 1.5 s answers its health check late: give checks time, so no
        // node is ejected (an ejected node is skipped whatever its load).
        let edit = |y: String| {
            y.replace("algorithm: round_robin", &format!("algorithm: {algorithm}"))
                .replace("unhealthy_after: 1,", "unhealthy_after: 1, timeout_ms: 5000,")
        };
        let lab = Rig::launch_with(2, 2, edit, None);
        lab.wait_state("2 healthy backends", |s| s.len() == 2 && s.values().all(|b| b.healthy));
        // Three slow requests: least-loaded picks put two on one node, one on the other, so the
        // next fast requests go to the less loaded node until the counts even out.
        let slow = in_background(lab.listen, 3, "/op2?cpu_ms=1500");
        wait_for("three requests in flight", SETTLE, || {
            (in_flight(&lab, 2).iter().sum::<f64>() == 3.0).then_some(())
        });
        for _ in 0..10 {
            let counts = in_flight(&lab, 2);
            let r = get(lab.listen, "/op1").unwrap();
            let chosen = r.header("x-node").unwrap().strip_prefix("node-").unwrap().parse::<usize>().unwrap();
            let other = 3 - chosen;
            assert!(
                counts[chosen - 1] <= counts[other - 1],
                "{algorithm} sent a request to node-{chosen} with in flight {counts:?}"
            );
        }
        for t in slow {
            t.join().unwrap().expect("an answer");
        }
    }
}
