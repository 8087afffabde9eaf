//! `scalelab load` against real `scalelab node` processes on loopback: request counts, who
//! served what, the two load models, the request mix, errors as data, and `scripts/load.sh`.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{free_port, repo_path, wait_http, Proc};
use serde_json::Value;

/// No `scalelab load` in these tests may run longer than this; past it the test fails.
const LOAD_DEADLINE: Duration = Duration::from_secs(60);

/// A node with `workers` workers on a free loopback port, ready to serve.
fn start_node(workers: u32, extra: &[&str]) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (listen, workers) = (addr.to_string(), workers.to_string());
    let mut args = vec!["node", "--name", "node-1", "--listen", &listen, "--workers", &workers];
    args.extend_from_slice(extra);
    let node = Proc::spawn(&args);
    wait_http(addr, "/health", Duration::from_secs(15));
    (node, addr)
}

/// A finished load run.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// Runs `program args...` in its own process group, killing the group after [`LOAD_DEADLINE`].
fn run_bounded(mut cmd: Command) -> Run {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start the load run");
    let pgid = child.id() as i32;
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(LOAD_DEADLINE) {
        Ok(out) => {
            let out = out.expect("wait for the load run");
            Run {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                elapsed: start.elapsed(),
            }
        }
        Err(_) => {
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            panic!("load run still going after {LOAD_DEADLINE:?}");
        }
    }
}

/// `scalelab load ARGS...`.
fn load(args: &[&str]) -> Run {
    let mut cmd = Command::new(common::bin());
    cmd.arg("load").args(args);
    run_bounded(cmd)
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn counts_every_request_and_who_served_it() {
    let (_node, addr) = start_node(2, &[]);
    let run =
        load(&["--url", &url(addr), "--path", "/op1", "--connections", "4", "--requests", "400", "--json"]);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.json();

    assert_eq!(u(&r["requests"]), 400, "{r}");
    assert_eq!(u(&r["ok"]), 400, "{r}");
    assert_eq!(u(&r["errors"]), 0, "{r}");
    assert_eq!(r["by_node"], serde_json::json!({"node-1": 400}));
    let by_worker = r["by_worker"].as_object().unwrap();
    assert!(!by_worker.is_empty());
    for key in by_worker.keys() {
        assert!(key == "node-1/1" || key == "node-1/2", "unexpected worker {key} in {r}");
    }
    assert_eq!(by_worker.values().map(u).sum::<u64>(), 400);
    assert_eq!(u(&r["status"]["200"]), 400);

    let l = &r["latency_ms"];
    let ps = [f(&l["p50"]), f(&l["p90"]), f(&l["p99"]), f(&l["p999"]), f(&l["max"])];
    assert!(ps[0] > 0.0, "{l}");
    assert!(ps.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {l}");
    assert!(f(&r["rps"]) > 0.0);
}

#[test]
fn text_summary_shows_the_served_by_table() {
    let (_node, addr) = start_node(2, &[]);
    let run = load(&["--url", &url(addr), "--connections", "2", "--requests", "100"]);
    assert!(run.status.success(), "{}", run.stderr);
    let out = &run.stdout;
    for want in ["Throughput", "p99.9", "Served by", "node-1 ", "node-1/", "%"] {
        assert!(out.contains(want), "summary lacks {want:?}:\n{out}");
    }
    // No terminal: no progress bar on stderr.
    assert!(!run.stderr.contains("req/s"), "{}", run.stderr);
}

#[test]
fn closed_loop_stops_at_the_duration() {
    let (_node, addr) = start_node(2, &[]);
    let run = load(&["--url", &url(addr), "--connections", "2", "--duration", "2s", "--json"]);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.json();
    assert_eq!(r["mode"], "closed");
    assert!(f(&r["rps"]) > 0.0, "{r}");
    assert!(u(&r["requests"]) > 0);
    let d = f(&r["duration_s"]);
    assert!((1.9..3.0).contains(&d), "duration_s {d}");
    assert!(run.elapsed < Duration::from_secs(6), "took {:?}", run.elapsed);
}

#[test]
fn open_loop_keeps_the_rate() {
    let (_node, addr) = start_node(2, &[]);
    let run =
        load(&["--url", &url(addr), "--connections", "4", "--rate", "200", "--duration", "2s", "--json"]);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.json();
    assert_eq!(r["mode"], "open");
    let n = u(&r["requests"]);
    assert!((360..=440).contains(&n), "{n} requests at 200/s for 2 s: {r}");
    assert_eq!(u(&r["errors"]), 0, "{r}");
    assert_eq!(u(&r["schedule"]["planned"]), 400, "{r}");
    let d = f(&r["duration_s"]);
    assert!((1.9..3.0).contains(&d), "duration_s {d}");
}

#[test]
fn mix_splits_requests_by_weight() {
    // Cheap /op2 so the mix test measures the split, not the CPU burn.
    let (_node, addr) = start_node(2, &["--op2-cpu-ms", "1"]);
    let run = load(&[
        "--url",
        &url(addr),
        "--mix",
        "op1=3,op2=1",
        "--connections",
        "4",
        "--requests",
        "400",
        "--json",
    ]);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.json();
    assert_eq!(r["by_path"], serde_json::json!({"/op1": 300, "/op2": 100}), "{r}");
    assert_eq!(u(&r["errors"]), 0, "{r}");
    assert_eq!(u(&r["by_node"]["node-1"]), 400);
}

#[test]
fn a_closed_port_is_counted_as_connect_errors() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let run = load(&["--url", &url(addr), "--connections", "2", "--requests", "20", "--json"]);
    assert!(!run.status.success(), "nothing succeeded, yet exit 0");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let r = run.json();
    assert!(u(&r["error_kinds"]["connect"]) > 0, "{r}");
    assert_eq!(u(&r["error_kinds"]["connect"]), u(&r["requests"]), "{r}");
    assert_eq!(u(&r["ok"]), 0);
}

#[test]
fn a_silent_server_is_counted_as_timeouts() {
    // The kernel completes connections into the listen backlog; nobody ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let run =
        load(&["--url", &url(addr), "--connections", "2", "--requests", "4", "--timeout", "200ms", "--json"]);
    assert!(!run.status.success());
    let r = run.json();
    assert_eq!(u(&r["error_kinds"]["timeout"]), 4, "{r}");
    assert_eq!(u(&r["requests"]), 4, "{r}");
    assert!(run.elapsed < Duration::from_secs(10), "took {:?}", run.elapsed);
}

#[test]
fn the_duration_cuts_off_requests_in_flight() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let run =
        load(&["--url", &url(addr), "--connections", "2", "--duration", "1s", "--timeout", "30s", "--json"]);
    let r = run.json();
    assert_eq!(u(&r["in_flight_at_end"]), 2, "{r}");
    assert_eq!(u(&r["requests"]), 0, "{r}");
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
}

#[test]
fn bad_flags_are_named() {
    let run = load(&["--mix", "op1=9,op2=x"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--mix") && run.stderr.contains("op2=x"), "{}", run.stderr);

    let run = load(&["--url", "https://127.0.0.1:1", "--requests", "1"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--url"), "{}", run.stderr);

    let run = load(&["--path", "/op1", "--mix", "op1=1", "--requests", "1"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
}

#[test]
fn load_script_passes_arguments_through() {
    let (_node, addr) = start_node(1, &[]);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_path("scripts/load.sh"))
        .args(["--url", &url(addr), "--requests", "50", "--connections", "2", "--json"])
        .env("SCALELAB_BIN", common::bin());
    let run = run_bounded(cmd);
    assert!(run.status.success(), "{}", run.stderr);
    let r = run.json();
    assert_eq!(u(&r["requests"]), 50, "{r}");
    assert_eq!(r["url"], url(addr).as_str());
    assert_eq!(u(&r["by_node"]["node-1"]), 50, "{r}");
}
