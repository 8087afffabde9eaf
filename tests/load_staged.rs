//! `scalelab load` beyond a fixed load, against real `scalelab node` processes on loopback:
//! `--slo` thresholds and their exit status, bad `--stages`/`--slo` refused before a single
//! connection, a ramped rate offering what its stages say second by second, ramped
//! connections opening when their turn comes, `--hdr` read back against the JSON report, and
//! the sweep's `.hgrm` per point.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use scalelab_experiment::timeline::{Timeline, TIMELINE_CSV, TIMELINE_HTML, TIMELINE_JSON};
use scalelab_loadgen::{hgrm, Mode, Report, StageTarget};

/// No load run in these tests may take longer.
const DEADLINE: Duration = Duration::from_secs(60);

/// A node of `workers` workers on a free loopback port, ready.
fn start_node(workers: u32) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (listen, workers) = (addr.to_string(), workers.to_string());
    let node = Proc::spawn(&["node", "--name", "node-1", "--listen", &listen, "--workers", &workers]);
    wait_http(addr, "/health", Duration::from_secs(15));
    (node, addr)
}

/// `scalelab load --no-progress ARGS...`: (exit code, stdout, stderr).
fn load(args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["load", "--no-progress"];
    full.extend_from_slice(args);
    run_scalelab(&full, DEADLINE)
}

fn report(stdout: &str, stderr: &str) -> Report {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not a report ({e}):\n{stdout}\n{stderr}"))
}

#[test]
fn thresholds_pass_with_status_0_and_fail_with_status_3() {
    let (_node, addr) = start_node(2);
    let url = format!("http://{addr}");
    let common = ["--url", &url, "--connections", "4", "--requests", "400"];

    let pass =
        [&common[..], &["--slo", "p99<10s", "--slo", "errors<1%", "--slo", "rps>50%", "--json"]].concat();
    let (code, stdout, stderr) = load(&pass);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r = report(&stdout, &stderr);
    let verdicts: Vec<(&str, bool)> = r.thresholds.iter().map(|t| (t.slo.as_str(), t.passed)).collect();
    assert_eq!(verdicts, [("p99<10000ms", true), ("errors<1%", true), ("rps>50%", true)]);
    assert_eq!(r.thresholds[1].measured, Some(0.0), "no request failed");
    assert_eq!(r.thresholds[2].measured, Some(100.0), "400 of 400 sent got a 2xx");
    assert!(r.thresholds[0].measured.unwrap() > 0.0);

    // A median below a microsecond cannot be met: status 3, and the text says which failed.
    let fail = [&common[..], &["--slo", "p50<1us", "--slo", "errors<1%"]].concat();
    let (code, stdout, stderr) = load(&fail);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    let block =
        &stdout[stdout.find("Thresholds").unwrap_or_else(|| panic!("no Thresholds block:\n{stdout}"))..];
    assert!(block.starts_with("Thresholds  1 of 2 failed (exit status 3)"), "{block}");
    assert!(block.contains("✗ FAIL  p50<0.001ms") && block.contains("measured "), "{block}");
    assert!(block.contains("✓ pass  errors<1%"), "{block}");

    // Nothing answered at all: status 1 (the run failed), not 3.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, _, stderr) = load(&["--url", &closed, "--requests", "5", "--slo", "p99<1s"]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn bad_stages_and_thresholds_are_refused_before_anything_is_sent() {
    // Every run below points at this listener; none may connect to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hgrm_in_nowhere = "/nonexistent-scalelab-dir/run.hgrm";
    // Files nobody may create, root included: /proc takes no new files.
    let hgrm_unwritable = "/proc/scalelab-run.hgrm";
    let cases: [(&[&str], i32, &[&str]); 15] = [
        (&["--stages", "10s:x"], 2, &["--stages", "stage 1 `10s:x`", "not a target"]),
        (&["--stages", "10s:5,20q:5"], 2, &["--stages", "stage 2 `20q:5`", "not a duration"]),
        (&["--stages", "50m:5,20m:5"], 2, &["--stages", "at most 1h"]),
        (
            &["--stages", "18446744073709551615s:1"],
            2,
            &["--stages", "stage 1 `18446744073709551615s:1`: lasts", "at most 1h in all"],
        ),
        (&["--stages", "10s:0"], 2, &["--stages", "every target is 0"]),
        (&["--stages", "10s:20000000"], 2, &["--stages: stage 1", "above 10000000 req/s"]),
        (
            &["--stages", "10s:200000", "--stages-of", "connections"],
            2,
            &["--stages: stage 1", "100000 connections"],
        ),
        (
            &["--stages", "10s:4", "--stages-of", "connections", "--connections", "8"],
            2,
            &["--connections: not with --stages-of connections"],
        ),
        (&["--stages", "10s:5", "--rate", "10"], 2, &["--rate", "--stages"]),
        (&["--slo", "p98<1ms"], 2, &["--slo", "unknown metric `p98`"]),
        (&["--slo", "p99<250"], 2, &["--slo", "needs a unit"]),
        (&["--admin", "http://127.0.0.1:9"], 2, &["--timeline"]),
        (&["--hdr", hgrm_in_nowhere], 2, &["--hdr", "does not exist"]),
        (
            &["--hdr", hgrm_unwritable, "--slo", "p99<1s"],
            2,
            &["--hdr /proc/scalelab-run.hgrm: cannot write it"],
        ),
        (&["--timeline", "/proc/self"], 2, &["--timeline: cannot write /proc/self/timeline.json"]),
    ];
    for (args, want_code, want) in cases {
        let mut full = vec!["--url", url.as_str()];
        if !args.contains(&"--stages") {
            full.extend(["--duration", "1s"]); // --stages sets the duration itself
        }
        full.extend_from_slice(args);
        let (code, stdout, stderr) = load(&full);
        assert_eq!(code, want_code, "{args:?}:\n{stdout}\n{stderr}");
        for w in want {
            assert!(stderr.contains(w), "{args:?}: the error should say {w:?}:\n{stderr}");
        }
        assert!(stdout.is_empty(), "{args:?}: printed a report:\n{stdout}");
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a refused run connected to the target: {other:?}"),
    }
}

#[test]
fn a_ramped_rate_offers_what_its_stages_say_second_by_second() {
    let (_node, addr) = start_node(2);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("timeline");
    let url = format!("http://{addr}");
    // 0 → 100 req/s over 2 s, then 100 req/s for 2 s: 25, 75, 100 and 100 requests a second.
    let args = ["--url", &url, "--stages", "2s:100,2s:100", "--connections", "8", "--json"];
    let args = [&args[..], &["--timeline", dir.to_str().unwrap()]].concat();
    let (code, stdout, stderr) = load(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r = report(&stdout, &stderr);
    assert_eq!(r.mode, Mode::Open);
    let stages = r.stages.as_ref().expect("the report names its stages");
    assert_eq!((stages.of, stages.stages.len()), (StageTarget::Rate, 2));
    let schedule = r.schedule.expect("open loop keeps a schedule");
    assert_eq!(schedule.planned, 300, "{r:?}");
    assert!(schedule.sent >= 290 && r.errors == 0, "{schedule:?}, {} errors", r.errors);
    // Each stage on its own: the ramp's 100 planned requests, then the plateau's 200.
    let by: Vec<(usize, u32, u32, u64)> =
        r.by_stage.iter().map(|s| (s.stage, s.from_s, s.to_s, s.ok)).collect();
    assert_eq!(by.len(), 2, "{by:?}");
    assert_eq!((by[0].1, by[0].2, by[1].1, by[1].2), (0, 2, 2, 4), "{by:?}");
    assert_eq!(by[0].3 + by[1].3, r.ok, "{by:?}");
    assert!(r.by_stage.iter().all(|s| s.p99_ms.is_some()), "{:?}", r.by_stage);

    let t: Timeline =
        serde_json::from_str(&std::fs::read_to_string(dir.join(TIMELINE_JSON)).unwrap()).unwrap();
    let offered: Vec<u64> = t.seconds.iter().map(|s| s.load.offered).collect();
    assert_eq!(offered, [25, 75, 100, 100], "the schedule's offer, second by second");
    for s in &t.seconds {
        let l = &s.load;
        assert!(l.sent.abs_diff(l.offered) <= 6, "second {}: sent {} of {} offered", l.t, l.sent, l.offered);
        assert!(l.p50_ms.is_some() && l.p99_ms >= l.p50_ms, "{l:?}");
    }
    let served: u64 = t.seconds.iter().map(|s| s.load.ok).sum();
    assert_eq!(served, r.ok, "every 2xx response is in exactly one second");
    assert!(t.admin.is_none() && t.seconds.iter().all(|s| s.admin.is_none()), "no --admin, no admin data");
    let csv = std::fs::read_to_string(dir.join(TIMELINE_CSV)).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    assert!(csv.lines().nth(2).unwrap().starts_with("1,75,"), "{csv}");
    assert!(dir.join(TIMELINE_HTML).exists());
}

#[test]
fn ramped_connections_open_when_their_turn_comes() {
    // A server that accepts and never answers: each active connection holds one request
    // open, so the accepts show when each connection started.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let start = Instant::now();
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept() {
                accepted.lock().unwrap().push(start.elapsed());
                held.push(conn);
            }
        });
    }
    // One connection for 2 s, then a step to three for 2 s.
    let (code, stdout, stderr) = load(&[
        "--url",
        &url,
        "--stages",
        "0s:1,2s:1,0s:3,2s:3",
        "--stages-of",
        "connections",
        "--timeout",
        "30s",
        "--json",
    ]);
    assert_eq!(code, 1, "nothing answered: {stderr}");
    let r = report(&stdout, &stderr);
    assert_eq!((r.mode, r.connections, r.in_flight_at_end), (Mode::Closed, 3, 3), "{r:?}");
    let times = accepted.lock().unwrap().clone();
    assert_eq!(times.len(), 3, "three connections in all: {times:?}");
    let (first, later) = (times[0], &times[1..]);
    for t in later {
        let gap = t.saturating_sub(first);
        assert!(
            gap >= Duration::from_millis(1800),
            "a connection opened {gap:?} after the first, before its turn"
        );
    }
    assert!(r.duration_s < 6.0, "the run lasts as long as its stages: {} s", r.duration_s);
}

#[test]
fn the_hgrm_file_reads_back_to_the_json_percentiles() {
    let (_node, addr) = start_node(2);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("run.hgrm");
    let url = format!("http://{addr}");
    let (code, stdout, stderr) = load(&[
        "--url",
        &url,
        "--mix",
        "op1=9,op2=1",
        "--connections",
        "4",
        "--requests",
        "1500",
        "--hdr",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let r = report(&stdout, &stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
    let d = hgrm::parse(&text).unwrap();
    assert_eq!(d.total_count, r.responses);
    assert_eq!(d.lines.last().unwrap().total_count, r.responses);
    assert!((d.max - r.latency_ms.max).abs() < 1e-9, "max {} against {}", d.max, r.latency_ms.max);
    assert!((d.mean - r.latency_ms.mean).abs() < 0.0006, "mean {} against {}", d.mean, r.latency_ms.mean);
    assert_eq!(d.sub_buckets, 2048, "3 significant digits");
    let l = &r.latency_ms;
    for (q, json) in [(0.5, l.p50), (0.9, l.p90), (0.99, l.p99), (0.999, l.p999)] {
        let (before, at) = (d.value_before(q).unwrap_or(0.0), d.value_at(q).unwrap());
        assert!(
            before <= json && json <= at,
            "p{q}: the JSON's {json} ms lies outside the file's {before}..{at}"
        );
    }
}

/// A base of one node of one worker on free ports.
fn base() -> TopologyFile {
    let p = free_ports(2);
    let node = free_port_run(2);
    TopologyFile::new(&format!(
        "balancer:\n  listen: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\n  health_check: {{ interval_ms: 200, timeout_ms: 2000 }}\n\
         workload:\n  op2_cpu_ms: 5\nnodes:\n  - name: node\n    replicas: 1\n    workers: 1\n    port: {node}\n",
        p[0], p[1]
    ))
}

#[test]
fn a_sweep_keeps_one_hgrm_per_point() {
    let t = base();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let args = ["sweep", "--topology", t.path_str(), "--vary", "workers=1,2", "--connections", "4"];
    let args =
        [&args[..], &["--duration", "1s", "--rounds", "2", "--warmup", "0s", "--pause", "100ms"]].concat();
    let args = [&args[..], &["--out", dir.to_str().unwrap()]].concat();
    let (code, stdout, stderr) = run_scalelab(&args, Duration::from_secs(120));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let results = read_results(&dir);
    for p in &results.series[0].points {
        let file = dir.join(format!("workers={}.hgrm", p.value));
        let d = hgrm::parse(&read(&file)).unwrap();
        // Both rounds merged: every response of the point, each attributed to a worker.
        let responses: u64 = p.by_worker.values().sum();
        assert!(
            responses > 0 && d.total_count == responses,
            "{}: {} in the file, {responses} served",
            file.display(),
            d.total_count
        );
        let worst = p.rounds.iter().map(|r| r.latency_ms.max).fold(0.0, f64::max);
        assert!((d.max - worst).abs() < 1e-9, "the file's max {} is the worst round's {worst}", d.max);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The stage table counts a request in the stage that sent it, with its outcome whenever it
/// came: a backlog that a busy stage leaves to a quiet one is the busy stage's, and no stage
/// shows more answers than it sent.
#[test]
fn each_stage_counts_the_outcomes_of_the_requests_it_sent() {
    let (_node, addr) = start_node(1);
    let url = format!("http://{addr}");
    // One worker serves about 25 of these a second: the first stage offers 60 a second and
    // leaves a queue (up to the node's 32), answered while the second stage sends 2 a second.
    let (code, stdout, stderr) = load(&[
        "--url",
        &url,
        "--path",
        "/op2?cpu_ms=40",
        "--stages",
        "0s:60,2s:60,0s:2,2s:2",
        "--connections",
        "64",
        "--json",
    ]);
    assert!(code == 0 || code == 1, "{stdout}\n{stderr}");
    let r = report(&stdout, &stderr);
    let by: Vec<(usize, u64, u64, u64)> =
        r.by_stage.iter().map(|s| (s.stage, s.sent, s.ok, s.errors)).collect();
    assert_eq!(by.iter().map(|b| b.0).collect::<Vec<_>>(), [2, 4], "{by:?}");
    for &(stage, sent, ok, errors) in &by {
        assert!(ok + errors <= sent, "stage {stage}: {ok} ok and {errors} errors of {sent} sent: {by:?}");
    }
    assert!(by[0].1 >= 100 && by[1].1 <= 6, "{by:?}");
    let finished: u64 = r.by_stage.iter().map(|s| s.ok + s.errors).sum();
    assert_eq!(finished, r.requests, "every finished request is in the stage that sent it: {by:?}");
}

/// Stages at 0 at the end are a quiet period the run still lasts through and records, in
/// both load models.
#[test]
fn zero_target_stages_at_the_end_still_run() {
    let (_node, addr) = start_node(1);
    let url = format!("http://{addr}");
    for of in ["rate", "connections"] {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("timeline");
        let stages = if of == "rate" { "0s:20,1s:20,0s:0,2s:0" } else { "0s:2,1s:2,0s:0,2s:0" };
        let started = Instant::now();
        let (code, stdout, stderr) = load(&[
            "--url",
            &url,
            "--stages",
            stages,
            "--stages-of",
            of,
            "--timeline",
            dir.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, 0, "{of}: {stdout}\n{stderr}");
        let r = report(&stdout, &stderr);
        assert!(started.elapsed() >= Duration::from_secs(3), "{of}: over after {:?}", started.elapsed());
        assert!((2.95..4.0).contains(&r.duration_s), "{of}: the run lasted {} s of 3", r.duration_s);
        let quiet = r.by_stage.last().expect("a stage table");
        assert_eq!(
            (quiet.stage, quiet.from_s, quiet.to_s, quiet.sent),
            (4, 1, 3, 0),
            "{of}: {:?}",
            r.by_stage
        );
        let t: Timeline =
            serde_json::from_str(&std::fs::read_to_string(dir.join(TIMELINE_JSON)).unwrap()).unwrap();
        let sent: Vec<u64> = t.seconds.iter().map(|s| s.load.sent).collect();
        assert_eq!(sent.len(), 3, "{of}: a row for every second of the stages: {sent:?}");
        assert!(sent[0] > 0 && sent[1..] == [0, 0], "{of}: {sent:?}");
    }
}

/// The warning about --connections counts the requests they held back, and is not given when
/// none was.
#[test]
fn only_requests_that_found_every_connection_busy_blame_the_connections() {
    let (_node, addr) = start_node(1);
    let url = format!("http://{addr}");
    // 64 connections for 50 quick requests a second: a connection is always free.
    let args = ["--url", &url, "--stages", "0s:50,2s:50", "--connections", "64"];
    let (code, stdout, stderr) = load(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stdout.contains("connections busy") && !stdout.contains("--connections"), "{stdout}");
    let (_, stdout, stderr) = load(&[&args[..], &["--json"]].concat());
    let schedule = report(&stdout, &stderr).schedule.expect("open loop");
    assert_eq!((schedule.waited, schedule.missed), (0, 0), "{schedule:?}");

    // One connection for 40 requests a second of 50 ms each: most requests wait for it.
    let args = ["--url", &url, "--path", "/op2?cpu_ms=50", "--stages", "0s:40,2s:40", "--connections", "1"];
    let (_, stdout, stderr) = load(&[&args[..], &["--json"]].concat());
    let s = report(&stdout, &stderr).schedule.expect("open loop");
    assert!(s.waited > 10 && s.waited <= s.late, "{s:?}");
    // In text, the warning says how many (this run's own count: it has no --json to compare).
    let (_, stdout, _) = load(&args);
    assert!(stdout.contains("requests found all 1 connections busy when they were due"), "{stdout}");
}
