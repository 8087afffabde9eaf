//! The live dashboard as a person sees it: headless Chromium keeps the page open on a real lab
//! under load, and the test asks its DOM what it shows: every node and worker with a rate
//! above zero, then, after a live edit of `workers`, the new workers and a change marker; a
//! second page opened late draws the minutes before it; and "balancer not reachable" once the
//! lab is gone. A screenshot is kept as a test artifact.
//!
//! The same check runs against the Docker Compose lab from scripts/test-docker.sh, through
//! the ignored test `compose_lab_dashboard` (it needs that lab's address and topology file).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::browser::LivePage;
use common::*;

/// The JavaScript that lists what the page shows, for failure messages.
const SHOWN: &str = "JSON.stringify({status: document.getElementById('status').textContent, \
    workers: [...document.querySelectorAll('.worker')].map(w => `${w.dataset.node}/${w.dataset.worker}=${w.dataset.rps}`), \
    changes: [...document.querySelectorAll('#changes li')].map(c => c.textContent)})";

/// The JavaScript that counts the samples the page has drawn.
const SAMPLES: &str = "parseInt(document.getElementById('chart-rps').dataset.samples || '0')";

/// True when the page shows every node in `nodes` with workers 1 to `workers`, each with a rate
/// above zero. A name may repeat: with DNS discovery (Compose) every container of a group is
/// a backend named after the group, so the page has one box per container, all with that
/// name; each of them must show every worker serving.
fn all_serving(nodes: &[String], workers: usize) -> String {
    let mut count = std::collections::BTreeMap::<&str, usize>::new();
    for n in nodes {
        *count.entry(n).or_default() += 1;
    }
    let count = serde_json::to_string(&count).unwrap();
    format!(
        "Object.entries({count}).every(([n, k]) => {{ \
         const boxes = [...document.querySelectorAll(`.node-workers[data-node=\"${{n}}\"]`)]; \
         return boxes.length === k && boxes.every(b => [...Array({workers}).keys()].every(i => {{ \
           const e = b.querySelector(`.worker[data-worker=\"${{i + 1}}\"]`); \
           return !!e && parseFloat(e.dataset.rps) > 0; }})); }})"
    )
}

/// Load in the background: 16 connections of a mix for `seconds`.
fn load(listen: SocketAddr, seconds: u32) -> std::thread::JoinHandle<scalelab_loadgen::Report> {
    let url = format!("http://{listen}");
    std::thread::spawn(move || {
        load_json(
            &[
                "--url",
                &url,
                "--mix",
                "op1=4,op2=1",
                "--connections",
                "16",
                "--duration",
                &format!("{seconds}s"),
            ],
            Duration::from_secs(seconds as u64 + 30),
        )
    })
}

/// Opens the dashboard at `admin`, checks it against a lab whose nodes are `nodes` with
/// `workers` each, has `edit` change workers to `workers + 1`, checks the page follows.
fn check_dashboard(
    admin: SocketAddr,
    nodes: &[String],
    workers: usize,
    edit: impl FnOnce(),
    shot: &str,
) -> LivePage {
    let mut page = LivePage::open(&format!("http://{admin}/"), 1280, 1600);
    page.wait_until(
        "the stream live",
        "document.getElementById('status').textContent === 'live'",
        SHOWN,
        Duration::from_secs(15),
    );
    page.wait_until(
        "every node and worker serving",
        &all_serving(nodes, workers),
        SHOWN,
        Duration::from_secs(20),
    );
    let theory = page.eval("document.getElementById('summary').textContent");
    assert!(theory.as_str().unwrap_or_default().contains("theory"), "{theory}");

    edit();
    let marker = format!("workers {workers}→{}", workers + 1);
    page.wait_until(
        "the edit as a change marker",
        &format!("[...document.querySelectorAll('#changes li')].some(c => (c.dataset.what || '').includes('{marker}')) \
                  && parseInt(document.getElementById('chart-rps').dataset.markers) >= 1"),
        SHOWN,
        Duration::from_secs(15),
    );
    // New workers get connections as the balancer's pooled ones age out (upstream.max_age_ms).
    page.wait_until(
        "the new workers serving",
        &all_serving(nodes, workers + 1),
        SHOWN,
        Duration::from_secs(25),
    );
    let canvases = page.eval("document.querySelectorAll('.chart canvas').length");
    assert!(canvases.as_u64().unwrap_or(0) >= 5, "every chart drawn: {canvases}");
    page.screenshot(shot);
    page
}

#[test]
fn the_dashboard_follows_a_live_lab_and_its_edits() {
    let p = free_ports(2);
    let (listen, admin): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{}", p[0]).parse().unwrap(), format!("127.0.0.1:{}", p[1]).parse().unwrap());
    let base = free_port_run(2);
    let yaml = |workers: usize| {
        topology_yaml(
            listen,
            admin,
            &format!(
                "  - name: node\n    replicas: 2\n    workers: {workers}\n    cpus: 1.0\n    port: {base}\n"
            ),
        )
        .replace("  algorithm: round_robin\n", "  algorithm: round_robin\n  upstream: { max_age_ms: 1000 }\n")
    };
    let t = TopologyFile::new(&yaml(1));
    let mut up = Proc::spawn_capturing(&["up", "--topology", t.path_str()]);
    up.wait_output("Ctrl-C stops everything", Duration::from_secs(30));
    assert!(up.output().contains(&format!("dashboard: http://{admin}/")), "{}", up.output());
    let running = load(listen, 25);
    let nodes = ["node-1".to_string(), "node-2".to_string()];
    let mut page = check_dashboard(admin, &nodes, 1, || t.write(&yaml(2)), "dashboard.png");
    let report = running.join().unwrap();
    assert_eq!(report.errors, 0, "{report:#?}");

    // The load's end cut off the requests it had in flight: the page shows them as clients
    // gone (nginx's 499), apart from the nodes' errors, which stay at zero.
    let labels = page.eval("JSON.stringify(state.charts['chart-errors'].series.map(s => s.label))");
    let labels = labels.as_str().unwrap_or_default();
    for label in ["node-1 errors", "node-2 timeouts", "node-1 retries", "clients gone (499)"] {
        assert!(labels.contains(label), "the errors chart names {label}: {labels}");
    }
    page.wait_until(
        "the cut-off requests as clients gone",
        "state.aborts.some(v => v > 0)",
        "JSON.stringify(state.aborts.slice(-10))",
        Duration::from_secs(5),
    );
    let node_errors = page.eval(
        "Math.max(0, ...[...state.nodes.values()].flatMap(s => s.errors.concat(s.timeouts).filter(v => v !== null)))",
    );
    assert_eq!(node_errors.as_f64(), Some(0.0), "no node errors or timeouts drawn");

    // A page opened late draws what happened before it: the stream starts with the balancer's
    // recent samples, the edit's marker among them.
    let drawn = page.eval(SAMPLES).as_u64().unwrap_or(0);
    assert!(drawn >= 8, "the first page drew {drawn} samples");
    let mut late = LivePage::open(&format!("http://{admin}/"), 1280, 900);
    late.wait_until(
        "the history and the edit on a page opened late",
        &format!(
            "{SAMPLES} >= {drawn} && parseInt(document.getElementById('chart-rps').dataset.markers) >= 1"
        ),
        SHOWN,
        Duration::from_secs(5),
    );
    drop(late);

    // A rejected edit shows on the page, with its line.
    t.write(&yaml(2).replace("workers: 2", "workers: 0"));
    page.wait_until(
        "the rejected edit",
        "!document.getElementById('last-error').hidden && document.getElementById('last-error').textContent.includes('nodes[0].workers')",
        "document.getElementById('last-error').textContent",
        Duration::from_secs(10),
    );

    // The lab goes away: the page says so instead of freezing on old numbers.
    up.terminate(Duration::from_secs(20)).expect("up stops");
    page.wait_until(
        "the balancer unreachable",
        "document.getElementById('status').textContent.includes('not reachable')",
        SHOWN,
        Duration::from_secs(10),
    );
}

/// The dashboard of the Docker Compose lab that scripts/test-docker.sh runs: its admin address
/// is `SCALELAB_COMPOSE_ADMIN`, its topology file `SCALELAB_COMPOSE_TOPOLOGY` (one group
/// `node` with `SCALELAB_COMPOSE_WORKERS` workers per container), its traffic address
/// `SCALELAB_COMPOSE_LISTEN`.
#[test]
#[ignore = "needs the compose lab of scripts/test-docker.sh"]
fn compose_lab_dashboard() {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run from scripts/test-docker.sh"))
    };
    let admin: SocketAddr = var("SCALELAB_COMPOSE_ADMIN").parse().unwrap();
    let listen: SocketAddr = var("SCALELAB_COMPOSE_LISTEN").parse().unwrap();
    let file = std::path::PathBuf::from(var("SCALELAB_COMPOSE_TOPOLOGY"));
    let workers: usize = var("SCALELAB_COMPOSE_WORKERS").parse().unwrap();
    let state: scalelab_balancer::status::StateReport =
        serde_json::from_str(&get(admin, "/state").unwrap().body).unwrap();
    let sample: serde_json::Value = serde_json::from_str(&get(admin, "/live").unwrap().body).unwrap();
    let nodes: Vec<String> =
        sample["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    // One backend per container address, every one healthy, and the page's nodes are those.
    let mut shown: Vec<&str> =
        sample["nodes"].as_array().unwrap().iter().map(|n| n["addr"].as_str().unwrap()).collect();
    let mut healthy: Vec<&str> =
        state.backends.iter().filter(|b| b.healthy).map(|b| b.addr.as_str()).collect();
    shown.sort_unstable();
    healthy.sort_unstable();
    assert_eq!(shown, healthy, "/live against /state: {sample}");
    assert_eq!(healthy.len(), state.backends.len(), "every backend healthy: {state:?}");
    // The page follows in about 5 s (2 node containers, a 2-core machine): 15 s is 3 times that.
    const LOAD_S: u32 = 15;
    let started = std::time::Instant::now();
    let running = load(listen, LOAD_S);
    let original = std::fs::read_to_string(&file).unwrap();
    let edit = || {
        let edited =
            original.replacen(&format!("workers: {workers}"), &format!("workers: {}", workers + 1), 1);
        let tmp = file.with_extension("yaml.tmp");
        std::fs::write(&tmp, edited).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    let _page = check_dashboard(admin, &nodes, workers, edit, "dashboard-compose.png");
    eprintln!("the page followed the lab and its edit within {:.1?} of a {LOAD_S} s load", started.elapsed());
    let report = running.join().unwrap();
    assert_eq!(report.errors, 0, "{report:#?}");
}
