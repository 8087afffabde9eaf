//! The balancer against nodes and clients that misbehave, as real processes on loopback: a
//! node whose processes are stopped (SIGSTOP: its kernel still accepts connections) costs a
//! request at most the read timeout and one retry, and with every node stopped clients get
//! 504 instead of hanging; dashboard streams that never read cannot lock `/metrics` out of the
//! admin listener.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::rig::Rig;
use common::*;

/// The read timeout these tests configure.
const READ_TIMEOUT: Duration = Duration::from_millis(1000);

/// Two nodes and a balancer whose read timeout is [`READ_TIMEOUT`] (the workload's queue is
/// shrunk to fit it: 4 requests of at most 200 ms, and one more).
fn rig_with_read_timeout() -> Rig {
    let edit = |y: String| {
        y.replace("max_cpu_ms: 1000", "max_cpu_ms: 200\n  max_queue: 4").replace(
            "  algorithm: round_robin\n",
            &format!(
                "  algorithm: round_robin\n  upstream: {{ read_timeout_ms: {} }}\n",
                READ_TIMEOUT.as_millis()
            ),
        )
    };
    let rig = Rig::launch_with(2, 2, edit, None);
    rig.wait_state("2 healthy backends", |s| s.len() == 2 && s.values().all(|b| b.healthy));
    rig
}

/// Sends `signal` to node `index`'s whole process group (its primary and workers).
fn signal_node(rig: &Rig, index: usize, signal: i32) {
    let pid = rig.nodes[index - 1].as_ref().expect("node is running").pid();
    assert_eq!(unsafe { libc::kill(-pid, signal) }, 0, "signal {signal} to node-{index}");
}

/// One request by raw HTTP/1.1 on a fresh connection: its status (0: no answer within 30 s)
/// and how long it took.
fn timed(addr: SocketAddr, method: &str, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    let status = match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12]).ok().and_then(|c| c.parse().ok()).unwrap_or(0),
        Err(_) => 0,
    };
    (status, started.elapsed())
}

#[test]
fn a_stopped_node_costs_a_request_at_most_the_read_timeout_and_a_retry() {
    let rig = rig_with_read_timeout();

    // Four clients loop GET /op1 for ~4 s (bounded in count too); node-2 is stopped 1 s in.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, listen) = (stop.clone(), rig.listen);
            thread::spawn(move || {
                let mut seen = Vec::new();
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    seen.push(timed(listen, "GET", "/op1"));
                }
                seen
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    signal_node(&rig, 2, libc::SIGSTOP);
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<(u16, Duration)> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();

    let slowest = seen.iter().map(|(_, d)| *d).max().unwrap();
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    let waited = seen.iter().filter(|(_, d)| *d >= READ_TIMEOUT).count();
    println!(
        "{} requests, {} failed, {waited} waited out the read timeout, slowest {slowest:?}",
        seen.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "every GET retried on node-1: {failed:?}");
    // The timeout plus a retry on the live node, with room for a busy machine.
    assert!(slowest < READ_TIMEOUT + Duration::from_millis(1500), "slowest request took {slowest:?}");
    // The stopped node was really in the path: some requests waited for it.
    assert!(waited >= 1, "no request met the stopped node");
    let text = get(rig.admin, "/metrics").unwrap().body;
    let series =
        format!(r#"scalelab_balancer_upstream_timeouts_total{{backend="127.0.0.1:{}"}}"#, rig.base + 1);
    let timeouts = metric(&text, &series).unwrap_or(0.0);
    assert!(timeouts >= 1.0, "{series} = {timeouts}");

    // Every node stopped: the balancer fails open onto stopped nodes, and still answers, 504
    // after one retry for a GET, at once (no replay) for a POST.
    signal_node(&rig, 1, libc::SIGSTOP);
    let (status, took) = timed(rig.listen, "GET", "/op1");
    println!("GET with every node stopped: {status} after {took:?}");
    assert_eq!(status, 504);
    assert!(took >= READ_TIMEOUT && took < 2 * READ_TIMEOUT + Duration::from_millis(1500), "{took:?}");
    let (status, took) = timed(rig.listen, "POST", "/op1");
    println!("POST with every node stopped: {status} after {took:?}");
    assert_eq!(status, 504);
    assert!(took >= READ_TIMEOUT && took < READ_TIMEOUT + Duration::from_millis(1500), "{took:?}");

    // Resumed, both serve again.
    signal_node(&rig, 1, libc::SIGCONT);
    signal_node(&rig, 2, libc::SIGCONT);
    rig.wait_state("both healthy again", |s| s.values().all(|b| b.healthy));
}

#[test]
fn a_hundred_streams_that_never_read_leave_metrics_and_state_answering() {
    use scalelab_balancer::admin::MAX_EVENT_STREAMS;
    let rig = Rig::start(1, 1);
    // 100 dashboard streams whose clients send the request and never read a byte.
    let streams: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(rig.admin).expect("connect to the admin listener");
            s.write_all(b"GET /events HTTP/1.1\r\nHost: lab\r\n\r\n").unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    for path in ["/metrics", "/state", "/"] {
        let started = Instant::now();
        let r = get(rig.admin, path).unwrap_or_else(|e| panic!("{path} with 100 streams open: {e}"));
        let took = started.elapsed();
        println!("{path} with 100 streams open: {} in {took:?}", r.status);
        assert_eq!(r.status, 200, "{path}");
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    // The streams past the bound were answered 503 and closed, not left hanging.
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for mut s in streams {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        let status = match s.read_exact(&mut head) {
            Ok(()) => String::from_utf8_lossy(&head[9..12]).into_owned(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *statuses.entry(status).or_default() += 1;
    }
    println!("stream answers: {statuses:?}");
    assert_eq!(statuses.get("200"), Some(&MAX_EVENT_STREAMS), "{statuses:?}");
    assert_eq!(statuses.get("503"), Some(&(100 - MAX_EVENT_STREAMS)), "{statuses:?}");
}
