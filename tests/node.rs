//! `scalelab node` as real processes on loopback: a primary, its re-executed workers sharing one
//! port, and what happens to them under load, signals, topology edits and crashes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::{
    alive, burst, free_ports, get, proc_stat, raw_exchange, topology_yaml, wait_for, wait_http, Proc,
    TopologyFile,
};

/// A running node: its primary and the address its workers share.
struct Node {
    proc: Proc,
    addr: String,
}

impl Node {
    /// Starts `scalelab node --name node-1` on a free port with `workers` workers and waits
    /// until it answers and all workers run.
    fn start(workers: usize, extra: &[&str]) -> Node {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let workers_arg = workers.to_string();
        let mut args = vec!["node", "--name", "node-1", "--listen", &addr, "--workers", &workers_arg];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(&args);
        let node = Node { proc, addr };
        wait_http(&node.addr, "/health", Duration::from_secs(10));
        node.wait_workers(workers);
        node
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Live worker processes of the primary.
    fn workers(&self) -> Vec<i32> {
        live_children(self.pid())
    }

    /// Waits until the primary has exactly `n` live workers; returns their pids.
    fn wait_workers(&self, n: usize) -> Vec<i32> {
        wait_for(&format!("{n} live workers"), Duration::from_secs(5), || {
            let pids = self.workers();
            (pids.len() == n).then_some(pids)
        })
    }
}

/// `(x-worker, x-pid)` of one response.
fn identity(resp: &common::Response) -> (usize, i32) {
    let worker = resp.header("x-worker").expect("x-worker header").parse().expect("x-worker is a number");
    let pid = resp.header("x-pid").expect("x-pid header").parse().expect("x-pid is a number");
    (worker, pid)
}

/// What a batch of concurrent clients saw.
#[derive(Debug, Default)]
struct Spread {
    /// Responses per `x-worker`.
    per_worker: BTreeMap<usize, usize>,
    /// Pids seen per `x-worker`.
    pids: BTreeMap<usize, BTreeSet<i32>>,
    failed: usize,
}

/// `threads` clients each send `per_thread` GETs of `path`, each on a fresh connection.
fn spread(addr: &str, path: &str, threads: usize, per_thread: usize) -> Spread {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, path) = (addr.to_string(), path.to_string());
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut failed = 0;
                for _ in 0..per_thread {
                    match get(&addr, &path) {
                        Ok(r) if r.status == 200 => seen.push(identity(&r)),
                        _ => failed += 1,
                    }
                }
                (seen, failed)
            })
        })
        .collect();
    let mut out = Spread::default();
    for h in handles {
        let (seen, failed) = h.join().expect("client thread");
        out.failed += failed;
        for (worker, pid) in seen {
            *out.per_worker.entry(worker).or_default() += 1;
            out.pids.entry(worker).or_default().insert(pid);
        }
    }
    out
}

/// Sends concurrent batches until every worker id in `1..=n` has answered (or panics).
fn wait_all_workers_serve(addr: &str, n: usize) -> Spread {
    let want: BTreeSet<usize> = (1..=n).collect();
    wait_for(&format!("workers 1..={n} to answer"), Duration::from_secs(5), || {
        let s = spread(addr, "/op2?cpu_ms=2", 2 * n, 4);
        let got: BTreeSet<usize> = s.per_worker.keys().copied().collect();
        (got == want).then_some(s)
    })
}

/// Live (non-zombie) children of `parent`.
fn live_children(parent: i32) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((state, ppid)) if ppid == parent && state != 'Z'))
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
fn every_worker_serves_under_concurrency() {
    let node = Node::start(3, &[]);
    let pids = node.workers();

    let resp = get(&node.addr, "/op1").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-node"), Some("node-1"));
    let (worker, pid) = identity(&resp);
    let body = resp.json();
    assert_eq!(body["node"], "node-1");
    assert_eq!(body["worker"].as_u64(), Some(worker as u64));
    assert_eq!(body["pid"].as_i64(), Some(pid as i64));
    assert!((1..=3).contains(&worker), "x-worker {worker}");
    assert!(pids.contains(&pid), "x-pid {pid} is not a worker of the primary ({pids:?})");

    // 9 clients, fresh connections, each request burning 5 ms of a worker's CPU.
    let s = spread(&node.addr, "/op2?cpu_ms=5", 9, 25);
    let total: usize = s.per_worker.values().sum();
    println!(
        "distribution over 3 workers of {total} /op2 requests: {:?} (failed {})",
        s.per_worker, s.failed
    );
    assert_eq!(s.failed, 0);
    assert_eq!(s.per_worker.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3], "{s:?}");
    for (worker, count) in &s.per_worker {
        // A fair share is a third; a worker starved by a greedy sibling would get almost none.
        assert!(*count * 10 >= total, "worker {worker} served only {count} of {total}: {:?}", s.per_worker);
    }
    let distinct: BTreeSet<i32> = s.pids.values().flatten().copied().collect();
    assert_eq!(distinct.len(), 3, "one pid per worker: {:?}", s.pids);
    assert!(distinct.iter().all(|p| pids.contains(p)), "{distinct:?} vs {pids:?}");
}

#[test]
fn a_burst_of_connections_is_shared_by_all_workers() {
    const ROUNDS: usize = 3;
    const CONNECTIONS: usize = 24;
    let node = Node::start(3, &[]);
    // A worker that accepted everything queued before serving any of it would take nearly
    // every connection of a burst while its siblings idle.
    let mut worst = 0;
    let mut total: BTreeMap<usize, usize> = BTreeMap::new();
    for round in 0..ROUNDS {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for worker in burst(&node.addr, CONNECTIONS, "/op2?cpu_ms=10") {
            *counts.entry(worker).or_default() += 1;
            *total.entry(worker).or_default() += 1;
        }
        println!("burst {round} of {CONNECTIONS} connections over 3 workers: {counts:?}");
        worst += counts.values().max().copied().unwrap_or(0);
    }
    println!("bursts in total: {total:?}; busiest worker per burst took {worst} of {}", ROUNDS * CONNECTIONS);
    assert_eq!(total.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3], "{total:?}");
    // Even is a third per burst; 60% leaves room for a loaded machine.
    assert!(
        worst * 10 <= ROUNDS * CONNECTIONS * 6,
        "one worker dominated the bursts: {worst} of {}",
        ROUNDS * CONNECTIONS
    );
}

#[test]
fn op2_burns_cpu_and_bad_requests_get_4xx() {
    let node = Node::start(1, &["--op2-cpu-ms", "15", "--max-cpu-ms", "200"]);
    let before = identity(&get(&node.addr, "/op1").unwrap());

    let start = Instant::now();
    let resp = get(&node.addr, "/op2?cpu_ms=50").unwrap();
    let wall = start.elapsed();
    assert_eq!(resp.status, 200);
    let body = resp.json();
    let cpu_ms = body["cpu_ms"].as_f64().expect("cpu_ms");
    println!("/op2?cpu_ms=50 burned {cpu_ms} ms CPU in {wall:?} wall");
    assert!((50.0..60.0).contains(&cpu_ms), "{body}");
    assert!(wall >= Duration::from_millis(50), "{wall:?}");
    assert_eq!(body["requested_cpu_ms"], 50);

    let body = get(&node.addr, "/op2").unwrap().json();
    assert_eq!(body["requested_cpu_ms"], 15, "{body}");
    assert!(body["cpu_ms"].as_f64().unwrap() >= 15.0, "{body}");

    for (path, status) in [("/op2?cpu_ms=201", 400), ("/op2?cpu_ms=abc", 400), ("/nope", 404)] {
        let resp = get(&node.addr, path).unwrap();
        assert_eq!(resp.status, status, "{path}: {}", resp.body);
        assert!(resp.json()["error"].is_string(), "{path}: {}", resp.body);
        assert_eq!(resp.header("x-node"), Some("node-1"), "{path}");
        assert!(resp.header("x-worker").is_some() && resp.header("x-pid").is_some(), "{path}");
    }
    let answer = raw_exchange(
        &node.addr,
        b"POST /op1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");

    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /op1 HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
        b"GET /op1 HTTP/9.9\r\n\x01\x02\r\n\r\n",
    ] {
        let answer = raw_exchange(&node.addr, garbage);
        assert!(answer.starts_with("HTTP/1.1 4"), "{:?} got {answer:?}", String::from_utf8_lossy(garbage));
    }

    // The same worker process is still there and still serving.
    let resp = wait_http(&node.addr, "/info", Duration::from_secs(2));
    assert_eq!(identity(&resp), before);
    let info = resp.json();
    assert!(info["requests"].as_u64().unwrap() >= 7, "{info}");
    assert!(info["uptime_s"].as_f64().unwrap() > 0.0, "{info}");
}

#[test]
fn killed_worker_is_respawned_with_the_same_id() {
    const CLIENTS: usize = 4;
    let node = Node::start(2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, stop) = (node.addr.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut ok, mut failed) = (0usize, 0usize);
                let end = Instant::now() + Duration::from_secs(6);
                for _ in 0..5000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= end {
                        break;
                    }
                    match get(&addr, "/op2?cpu_ms=3") {
                        Ok(r) if r.status == 200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    sleep(Duration::from_millis(500));
    let victim = wait_for("worker 1 to answer", Duration::from_secs(5), || {
        let (worker, pid) = identity(&get(&node.addr, "/op1").ok()?);
        (worker == 1).then_some(pid)
    });
    let killed_at = Instant::now();
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let (new_pid, after) = wait_for("a new worker 1", Duration::from_secs(3), || {
        let (worker, pid) = identity(&get(&node.addr, "/op1").ok()?);
        (worker == 1 && pid != victim).then(|| (pid, killed_at.elapsed()))
    });
    println!("worker 1: pid {victim} killed, pid {new_pid} serving after {after:?}");
    assert!(after < Duration::from_millis(1500), "respawn took {after:?}");
    assert!(node.workers().contains(&new_pid), "new worker is a child of the primary");
    assert!(!alive(victim));

    sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.join().expect("client thread");
        ok += o;
        failed += f;
    }
    println!("load during the kill: {ok} ok, {failed} failed ({CLIENTS} clients)");
    assert!(ok > 0);
    // Only requests the killed worker had in flight may fail: at most one per client.
    assert!(failed <= CLIENTS, "{failed} failed requests");
    node.wait_workers(2);
}

#[test]
fn ttin_ttou_and_hup_change_the_workers() {
    let node = Node::start(2, &[]);
    node.proc.signal(libc::SIGTTIN);
    node.wait_workers(3);
    wait_all_workers_serve(&node.addr, 3);

    node.proc.signal(libc::SIGTTOU);
    node.wait_workers(2);
    let s = spread(&node.addr, "/op2?cpu_ms=2", 4, 5);
    assert!(s.per_worker.keys().all(|w| *w <= 2), "worker 3 was removed: {s:?}");

    node.proc.signal(libc::SIGTTOU);
    node.wait_workers(1);
    // Never below one worker.
    node.proc.signal(libc::SIGTTOU);
    sleep(Duration::from_millis(600));
    assert_eq!(node.workers().len(), 1);
    let s = spread(&node.addr, "/op1", 3, 5);
    assert_eq!(s.failed, 0);
    assert_eq!(s.per_worker.keys().copied().collect::<Vec<_>>(), vec![1], "{s:?}");

    // SIGHUP replaces the worker (new one first), keeping its id.
    let old = s.pids[&1].iter().copied().next().unwrap();
    node.proc.signal(libc::SIGHUP);
    let new = wait_for("worker 1 to be replaced", Duration::from_secs(3), || {
        let (worker, pid) = identity(&get(&node.addr, "/op1").ok()?);
        (worker == 1 && pid != old).then_some(pid)
    });
    assert_eq!(node.wait_workers(1), vec![new]);
}

#[test]
fn topology_edits_change_workers_and_workload() {
    let port = common::free_port();
    let ports = free_ports(2);
    let balancer = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let admin = format!("127.0.0.1:{}", ports[1]).parse().unwrap();
    let group = |workers: usize| {
        format!("  - name: node\n    replicas: 1\n    workers: {workers}\n    port: {port}\n")
    };
    let file = TopologyFile::new(&topology_yaml(balancer, admin, &group(2)));

    // The file's count (2) wins over --workers 1; the group is `node`, from the name node-1.
    let addr = format!("127.0.0.1:{port}");
    let proc = Proc::spawn(&[
        "node",
        "--name",
        "node-1",
        "--listen",
        &addr,
        "--workers",
        "1",
        "--topology",
        file.path_str(),
    ]);
    let node = Node { proc, addr };
    wait_http(&node.addr, "/health", Duration::from_secs(10));
    node.wait_workers(2);

    file.write(&topology_yaml(balancer, admin, &group(3)));
    node.wait_workers(3);
    let s = wait_all_workers_serve(&node.addr, 3);
    let pids: BTreeSet<i32> = s.pids.values().flatten().copied().collect();

    // An invalid edit changes nothing.
    file.write(&topology_yaml(balancer, admin, &group(0)));
    sleep(Duration::from_millis(800));
    assert_eq!(node.workers().into_iter().collect::<BTreeSet<_>>(), pids);

    // Down to one worker, and a new op2 cost: workers are replaced to apply it.
    let yaml = topology_yaml(balancer, admin, &group(1)).replace("op2_cpu_ms: 20", "op2_cpu_ms: 7");
    assert!(yaml.contains("op2_cpu_ms: 7"));
    file.write(&yaml);
    node.wait_workers(1);
    let body = wait_for("op2 to cost 7 ms", Duration::from_secs(5), || {
        let body = get(&node.addr, "/op2").ok()?.json();
        (body["requested_cpu_ms"] == 7).then_some(body)
    });
    assert_eq!(body["worker"], 1, "{body}");
    assert!(!pids.contains(&(body["pid"].as_i64().unwrap() as i32)), "worker 1 was replaced: {body}");
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let mut node = Node::start(2, &["--grace-ms", "3000", "--max-cpu-ms", "1000"]);
    let pids = node.workers();
    let addr = node.addr.clone();
    let in_flight = thread::spawn(move || {
        let start = Instant::now();
        (get(&addr, "/op2?cpu_ms=500"), start.elapsed())
    });
    sleep(Duration::from_millis(250));

    let signalled = Instant::now();
    let status = node.proc.terminate(Duration::from_secs(6)).expect("primary exits after SIGTERM");
    let took = signalled.elapsed();
    println!("primary exited with {status} {took:?} after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_millis(3000 + 1000), "{took:?}");

    let (resp, wall) = in_flight.join().expect("client thread");
    let resp = resp.expect("the in-flight request is answered");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.json()["cpu_ms"].as_f64().unwrap() >= 500.0, "{}", resp.body);
    assert!(wall >= Duration::from_millis(500));
    wait_for("every worker to be gone", Duration::from_secs(1), || {
        pids.iter().all(|&p| !alive(p)).then_some(())
    });
}

#[test]
fn workers_exit_when_the_primary_is_killed() {
    let mut node = Node::start(2, &[]);
    let pids = node.workers();
    node.proc.signal(libc::SIGKILL);
    node.proc.wait_exit(Duration::from_secs(2)).expect("primary is gone");
    let killed = Instant::now();
    wait_for("orphaned workers to exit", Duration::from_secs(2), || {
        pids.iter().all(|&p| !alive(p)).then_some(())
    });
    println!("workers {pids:?} exited {:?} after the primary", killed.elapsed());
}

/// Runs `scalelab ARGS` that should exit by itself; kills it if it is still running after
/// `deadline`. Returns the exit status (`None` if it had to be killed) and its stderr.
fn run_to_exit(args: &[&str], deadline: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(common::bin())
        .args(args)
        .env_remove("SCALELAB_WORKER_ID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scalelab");
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break Some(status);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

#[test]
fn a_worker_that_cannot_boot_exits_with_the_boot_failure_code() {
    let (status, stderr) = run_to_exit(&["worker"], Duration::from_secs(5));
    let status = status.expect("a worker without its primary's environment gives up");
    assert_eq!(status.code(), Some(scalelab_node::EXIT_BOOT_FAILED), "{stderr}");
    assert!(stderr.contains("SCALELAB_WORKER_ID"), "{stderr}");
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let listen = format!("127.0.0.1:{}", common::free_port());
    for (extra, flag) in [
        (&["--workers", "0"][..], "--workers"),
        (&["--op2-cpu-ms", "2000", "--max-cpu-ms", "1000"], "--op2-cpu-ms"),
        (&["--cgroup", "/nonexistent/scalelab-cgroup"], "--cgroup"),
    ] {
        let mut args = vec!["node", "--listen", &listen];
        args.extend_from_slice(extra);
        let (status, stderr) = run_to_exit(&args, Duration::from_secs(5));
        let status = status.unwrap_or_else(|| panic!("{extra:?} was accepted: the node kept running"));
        assert!(!status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(flag), "{extra:?}: {stderr}");
    }
}

#[test]
fn requests_whose_clients_left_cost_no_cpu() {
    // Thirty clients ask for 150 ms of the one worker's CPU each and hang up at once (as a
    // balancer does when its own client gives up). Burning for them would keep the worker busy
    // for 4.5 s; skipping them leaves it free at once.
    let node = Node::start(1, &["--max-cpu-ms", "1000"]);
    for _ in 0..30 {
        let mut s = TcpStream::connect(&node.addr).unwrap();
        s.write_all(b"GET /op2?cpu_ms=150 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        drop(s);
    }
    sleep(Duration::from_millis(300));
    let started = Instant::now();
    let health = get(&node.addr, "/health").expect("the worker answers");
    assert_eq!(health.status, 200);
    assert!(started.elapsed() < Duration::from_millis(800), "answered after {:?}", started.elapsed());
    let info = get(&node.addr, "/info").unwrap().json();
    assert_eq!(info["queued"], 0, "{info}");
}
