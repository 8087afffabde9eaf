//! `scalelab node --distribution shared|reuseport|round_robin` as real processes on loopback:
//! in every mode each worker serves, a killed worker comes back under the same id with no
//! connection refused meanwhile, a live resize loses nothing, and SIGTERM drains in-flight
//! requests; round robin also splits connections evenly.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::{alive, burst, get, proc_stat, wait_for, wait_http, Proc};

/// A running node: its primary and the address its workers serve.
struct Node {
    proc: Proc,
    addr: String,
}

impl Node {
    /// Starts `scalelab node --distribution MODE` with `workers` workers on a free port and
    /// waits until it answers and all workers run.
    fn start(mode: &str, workers: usize) -> Node {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let workers_arg = workers.to_string();
        let proc = Proc::spawn(&[
            "node",
            "--name",
            "node-1",
            "--listen",
            &addr,
            "--workers",
            &workers_arg,
            "--distribution",
            mode,
            "--grace-ms",
            "3000",
            "--max-cpu-ms",
            "1000",
        ]);
        let node = Node { proc, addr };
        let info = wait_http(&node.addr, "/info", Duration::from_secs(10)).info();
        assert_eq!(info.distribution.as_str(), mode, "{info:?}");
        node.wait_workers(workers);
        node
    }

    /// Live worker processes of the primary.
    fn workers(&self) -> Vec<i32> {
        let parent = self.proc.pid();
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&pid| matches!(proc_stat(pid), Some((state, ppid)) if ppid == parent && state != 'Z'))
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Waits until the primary has exactly `n` live workers; returns their pids.
    fn wait_workers(&self, n: usize) -> Vec<i32> {
        wait_for(&format!("{n} live workers"), Duration::from_secs(5), || {
            let pids = self.workers();
            (pids.len() == n).then_some(pids)
        })
    }

    /// The pid of worker `id`, from the answers of `/op1`.
    fn pid_of(&self, id: usize) -> i32 {
        wait_for(&format!("worker {id} to answer"), Duration::from_secs(5), || {
            let (worker, pid) = identity(&get(&self.addr, "/op1").ok()?);
            (worker == id).then_some(pid)
        })
    }
}

/// `(x-worker, x-pid)` of one response.
fn identity(resp: &common::Response) -> (usize, i32) {
    let worker = resp.header("x-worker").expect("x-worker header").parse().expect("x-worker is a number");
    let pid = resp.header("x-pid").expect("x-pid header").parse().expect("x-pid is a number");
    (worker, pid)
}

/// Responses per worker id.
fn tally(workers: &[usize]) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for &w in workers {
        *counts.entry(w).or_default() += 1;
    }
    counts
}

/// Client threads sending `/op2?cpu_ms=3` on fresh connections until stopped (at most 10 s).
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<Outcome>>,
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
struct Outcome {
    ok: usize,
    /// Connections refused: the port was not listening.
    refused: usize,
    /// Every failed request, refused ones included.
    failed: usize,
    errors: Vec<String>,
}

impl Load {
    fn start(addr: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (addr, stop) = (addr.to_string(), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut out = Outcome::default();
                    let end = Instant::now() + Duration::from_secs(10);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        match get(&addr, "/op2?cpu_ms=3") {
                            Ok(r) if r.status == 200 => out.ok += 1,
                            other => {
                                let why = match other {
                                    Ok(r) => format!("status {}: {}", r.status, r.body),
                                    Err(e) => e,
                                };
                                out.refused += why.to_lowercase().contains("refused") as usize;
                                out.failed += 1;
                                out.errors.push(why);
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        Load { stop, clients }
    }

    fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Outcome::default();
        for c in self.clients {
            let out = c.join().expect("client thread");
            all.ok += out.ok;
            all.refused += out.refused;
            all.failed += out.failed;
            all.errors.extend(out.errors);
        }
        all
    }
}

/// The promises every mode keeps, on one node of 3 workers.
fn serves_respawns_resizes_and_drains(mode: &str) {
    const CLIENTS: usize = 4;
    let mut node = Node::start(mode, 3);

    // Every worker serves a burst of fresh connections.
    let seen = wait_for("every worker to serve a burst", Duration::from_secs(10), || {
        let counts = tally(&burst(&node.addr, 24, "/op2?cpu_ms=5"));
        (counts.len() == 3).then_some(counts)
    });
    println!("{mode}: a burst of 24 connections over 3 workers: {seen:?}");

    // SIGKILL worker 2 under load: it comes back under id 2, and no connection is refused.
    let load = Load::start(&node.addr, CLIENTS);
    sleep(Duration::from_millis(300));
    let victim = node.pid_of(2);
    let killed = Instant::now();
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let (new_pid, after) = wait_for("a new worker 2", Duration::from_secs(5), || {
        let (worker, pid) = identity(&get(&node.addr, "/op1").ok()?);
        (worker == 2 && pid != victim).then(|| (pid, killed.elapsed()))
    });
    sleep(Duration::from_millis(500));
    let out = load.finish();
    println!(
        "{mode}: worker 2 pid {victim} killed, pid {new_pid} serving after {after:?}; \
         load meanwhile: {} ok, {} failed ({} refused) {:?}",
        out.ok, out.failed, out.refused, out.errors
    );
    assert!(!alive(victim));
    assert!(node.wait_workers(3).contains(&new_pid), "the new worker 2 is a child of the primary");
    assert!(out.ok > 0);
    assert_eq!(out.refused, 0, "{:?}", out.errors);
    // Only what the killed worker had taken may fail: at most one request per client.
    assert!(out.failed <= CLIENTS, "{:?}", out.errors);

    // Live resize under load, 3 -> 2 -> 3: a removed worker drains, nothing is lost.
    let load = Load::start(&node.addr, CLIENTS);
    sleep(Duration::from_millis(200));
    let third = node.pid_of(3);
    node.proc.signal(libc::SIGTTOU);
    wait_for("worker 3 to exit", Duration::from_secs(5), || (!alive(third)).then_some(()));
    sleep(Duration::from_millis(300));
    node.proc.signal(libc::SIGTTIN);
    node.wait_workers(3);
    sleep(Duration::from_millis(300));
    let out = load.finish();
    println!(
        "{mode}: load across 3 -> 2 -> 3 workers: {} ok, {} failed {:?}",
        out.ok, out.failed, out.errors
    );
    assert!(out.ok > 0);
    assert_eq!(out.failed, 0, "{:?}", out.errors);
    wait_for("worker 3 to serve again", Duration::from_secs(5), || {
        tally(&burst(&node.addr, 12, "/op2?cpu_ms=2")).contains_key(&3).then_some(())
    });

    // SIGTERM with one slow request per worker in flight: all are answered, exit 0.
    let pids = node.workers();
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let addr = node.addr.clone();
            thread::spawn(move || get(&addr, "/op2?cpu_ms=300"))
        })
        .collect();
    let port: u16 = node.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // Connected, and taken by a worker (or the primary) unless they wait on a reuseport
    // worker's own socket: two may hash to one busy worker, which takes its queue when it stops.
    wait_for("the slow requests to reach the node", Duration::from_secs(5), || {
        let s = common::port_sockets(port);
        (s.clients >= 3 && (s.queued == 0 || mode == "reuseport")).then_some(())
    });
    let signalled = Instant::now();
    let status = node.proc.terminate(Duration::from_secs(6)).expect("primary exits after SIGTERM");
    println!("{mode}: primary exited with {status} {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{status}");
    for request in in_flight {
        let resp = request.join().expect("client thread").expect("the in-flight request is answered");
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(resp.json()["cpu_ms"].as_f64().unwrap() >= 300.0, "{}", resp.body);
    }
    wait_for("every worker to be gone", Duration::from_secs(1), || {
        pids.iter().all(|&p| !alive(p)).then_some(())
    });
}

#[test]
fn shared_serves_respawns_resizes_and_drains() {
    serves_respawns_resizes_and_drains("shared");
}

#[test]
fn reuseport_serves_respawns_resizes_and_drains() {
    serves_respawns_resizes_and_drains("reuseport");
}

#[test]
fn round_robin_serves_respawns_resizes_and_drains() {
    serves_respawns_resizes_and_drains("round_robin");
}

/// Clients that connect, pause 20-50 ms, then send, on fresh connections, while the primary
/// gets a SIGHUP (a rolling restart of every worker) three times: every request is answered.
/// A drain that closed the connections whose client had not spoken yet lost 10-18 requests
/// per SIGHUP.
fn a_rolling_restart_answers_every_connection_it_accepted(mode: &str) {
    use std::io::Write;
    const CLIENTS: usize = 8;
    let node = Node::start(mode, 2);
    let before = node.workers();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, stop) = (node.addr.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut answered, mut lost) = (0usize, Vec::new());
                for i in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let pause = Duration::from_millis(20 + ((c * 7 + i * 13) % 31) as u64);
                    let outcome = std::net::TcpStream::connect(&addr)
                        .map_err(|e| format!("connect: {e}"))
                        .and_then(|mut s| {
                            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            sleep(pause);
                            s.write_all(b"GET /op1 HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
                                .map_err(|e| format!("send after {pause:?}: {e}"))?;
                            let mut answer = String::new();
                            s.read_to_string(&mut answer)
                                .map_err(|e| format!("read after {pause:?}: {e}"))?;
                            if answer.starts_with("HTTP/1.1 200") {
                                Ok(())
                            } else {
                                Err(format!("after a {pause:?} pause: {:?}", answer.lines().next()))
                            }
                        });
                    match outcome {
                        Ok(()) => answered += 1,
                        Err(e) => lost.push(e),
                    }
                }
                (answered, lost)
            })
        })
        .collect();
    for _ in 0..3 {
        sleep(Duration::from_millis(700));
        node.proc.signal(libc::SIGHUP);
    }
    sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut lost) = (0, Vec::new());
    for c in clients {
        let (a, l) = c.join().expect("client thread");
        answered += a;
        lost.extend(l);
    }
    let after = node.wait_workers(2);
    println!(
        "{mode}: 3 SIGHUPs, workers {before:?} -> {after:?}: {answered} answered, {} lost {lost:?}",
        lost.len()
    );
    assert!(after.iter().all(|p| !before.contains(p)), "every worker was replaced: {before:?} -> {after:?}");
    assert!(answered > 50, "only {answered} answered");
    assert!(lost.is_empty(), "{} of {} unanswered: {lost:?}", lost.len(), answered + lost.len());
}

#[test]
fn shared_rolling_restart_answers_clients_that_pause_before_sending() {
    a_rolling_restart_answers_every_connection_it_accepted("shared");
}

#[test]
fn reuseport_rolling_restart_answers_clients_that_pause_before_sending() {
    a_rolling_restart_answers_every_connection_it_accepted("reuseport");
}

#[test]
fn round_robin_rolling_restart_answers_clients_that_pause_before_sending() {
    a_rolling_restart_answers_every_connection_it_accepted("round_robin");
}

#[test]
fn round_robin_gives_every_worker_an_equal_share() {
    const PER_WORKER: usize = 10;
    let node = Node::start("round_robin", 3);
    for (path, round) in [("/op1", "at once"), ("/op2?cpu_ms=5", "one by one")] {
        let workers = if round == "at once" {
            burst(&node.addr, 3 * PER_WORKER, path)
        } else {
            (0..3 * PER_WORKER).flat_map(|_| burst(&node.addr, 1, path)).collect()
        };
        let counts = tally(&workers);
        println!("round robin, {} connections {round} ({path}): {counts:?}", 3 * PER_WORKER);
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3], "{counts:?}");
        assert!(counts.values().all(|&n| n.abs_diff(PER_WORKER) <= 1), "{counts:?}");
    }
}

/// Starts `scalelab worker` as its primary would for `distribution`, but with a plain TCP
/// listening socket at fd 3 (and a lifeline at fd 4 whose write end this test holds). Returns
/// whether it was still running after `watch`, then its exit code (once the lifeline is cut)
/// and its stderr.
fn worker_with_a_plain_socket(distribution: &str, watch: Duration) -> (bool, Option<i32>, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut pipe = [0; 2];
    assert_eq!(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read_end, write_end) = (pipe[0], pipe[1]);
    let workload = serde_json::to_string(&scalelab_topology::Workload::default()).unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.arg("worker")
        .env("SCALELAB_WORKER_ID", "1")
        .env("SCALELAB_NODE", "node-1")
        .env("SCALELAB_WORKLOAD", workload)
        .env("SCALELAB_GRACE_MS", "1000")
        .env("SCALELAB_LIFELINE_FD", "4")
        .env("SCALELAB_DISTRIBUTION", distribution)
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: fcntl and dup2 are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first: either descriptor may already be 3 or 4.
            let high = [socket_fd, read_end].map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10));
            for (from, to) in high.into_iter().zip([3, 4]) {
                if from == -1 || libc::dup2(from, to) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start scalelab worker");
    unsafe { libc::close(read_end) };
    sleep(watch);
    let running = child.try_wait().unwrap().is_none();
    unsafe { libc::close(write_end) };
    let end = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
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
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (running, status.expect("the worker exits by itself").code(), stderr)
}

#[test]
fn a_worker_without_what_its_distribution_needs_fails_to_boot() {
    for (distribution, why) in
        [("round_robin", "not the Unix stream socket"), ("reuseport", "not an SO_REUSEPORT socket")]
    {
        let (_, code, stderr) = worker_with_a_plain_socket(distribution, Duration::from_millis(300));
        assert_eq!(code, Some(scalelab_node::EXIT_BOOT_FAILED), "{distribution}: {stderr}");
        assert!(stderr.contains(why), "{distribution}: {stderr}");
    }
    // The same socket is what a shared worker needs: it serves until its lifeline is cut.
    let (running, code, stderr) = worker_with_a_plain_socket("shared", Duration::from_millis(300));
    assert!(running, "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
}
