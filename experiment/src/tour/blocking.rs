//! Step 1: the lesson Node.js's cluster module starts from. One worker process serves
//! requests one at a time on one event loop, so /op1 (no work) waits whenever /op2 (50 ms of
//! CPU) holds the loop. A second worker gives /op1 somewhere else to go.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scalelab_lab::{Lab, LabOptions};
use scalelab_loadgen::{LoadConfig, Report};
use scalelab_topology::Topology;

use super::charts::{latency_bars, Phase};
use super::scaling::blank;
use super::setup::{self, Pace};
use super::Step;

/// /op1's open-loop rate: a trickle of cheap requests, the ones a user would notice waiting.
const OP1_RATE: f64 = 20.0;
/// How long a lab may take to become ready.
pub(super) const READY: Duration = Duration::from_secs(30);

/// Starts a lab of `t` (children log warnings only) and waits until it is ready.
pub(super) async fn start(t: &Topology) -> anyhow::Result<Lab> {
    let options = LabOptions { log_filter: Some("warn".into()), ..LabOptions::current_exe()? };
    let lab = Lab::start(t, options).await?;
    lab.wait_ready(READY).await?;
    static SAID: AtomicBool = AtomicBool::new(false);
    if let Some(Err(why)) = lab.view().await.map(|v| v.caps) {
        if !SAID.swap(true, Ordering::Relaxed) {
            println!(
                "note: CPU caps cannot be enforced on this machine ({why}): steps 2, 3, 5 and 7 run \
                 their nodes uncapped, and their numbers will not show the caps they describe\n"
            );
        }
    }
    Ok(lab)
}

/// The balancer's URL.
pub(super) fn url(t: &Topology) -> String {
    format!("http://{}", t.balancer.listen)
}

/// A run of `path` for `d`: open loop at `rate` over `connections`, or closed loop.
pub(super) fn load(
    url: &str,
    path: &str,
    connections: u32,
    rate: Option<f64>,
    d: Duration,
) -> anyhow::Result<LoadConfig> {
    let mut cfg = LoadConfig::new(url, path, connections, 1)?;
    (cfg.requests, cfg.duration, cfg.rate) = (None, Some(d), rate);
    cfg.validate()?;
    Ok(cfg)
}

/// /op1 at [`OP1_RATE`] for `d`, with /op2 back to back on one connection meanwhile when
/// `busy`: /op1's report and /op2's.
async fn phase(url: &str, d: Duration, busy: bool) -> anyhow::Result<(Report, Option<Report>)> {
    let op1 = scalelab_loadgen::run_load(load(url, "/op1", 4, Some(OP1_RATE), d)?);
    if !busy {
        return Ok((op1.await?, None));
    }
    let op2 = scalelab_loadgen::run_load(load(url, "/op2", 1, None, d)?);
    let (op1, op2) = tokio::join!(op1, op2);
    Ok((op1?, Some(op2?)))
}

/// Step 1.
pub async fn run(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    let (t, _) = setup::topology(dir, setup::BLOCKING.0, setup::BLOCKING.1)?;
    let url = url(&t);
    let lab = start(&t).await?;
    let d = pace.phase();
    let (alone, _) = phase(&url, d, false).await?;
    let (behind, op2_one) = phase(&url, d, true).await?;
    let mut two = t.clone();
    two.nodes[0].workers = 2;
    lab.apply(&two).await?;
    lab.wait_ready(READY).await?;
    // The second worker starts once the node reads the edit: give it a moment to listen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (beside, op2_two) = phase(&url, d, true).await?;
    lab.shutdown(std::future::pending()).await;

    let op2_rps = |r: &Option<Report>| r.as_ref().map_or(0.0, |r| r.ok_rps);
    let phase_of =
        |label: &str, r: &Report| Phase { label: label.into(), p50: r.latency_ms.p50, p99: r.latency_ms.p99 };
    let phases = [
        phase_of("1 worker, /op1 alone", &alone),
        phase_of("1 worker, /op2 running", &behind),
        phase_of("2 workers, /op2 running", &beside),
    ];
    let errors = alone.errors + behind.errors + beside.errors;
    Ok(Step {
        setup: format!(
            "One node, one worker process. /op1 answers at once; /op2 burns 50 ms of CPU. /op1 is \
             asked {OP1_RATE:.0} times a second, first alone, then while one client asks for /op2 \
             back to back, then the same with a second worker (the topology edited live)."
        ),
        lesson: vec![
            format!(
                "/op1 alone: p50 {:.1} ms, p99 {:.1} ms. With /op2 running on the one worker: p50 \
                 {:.1} ms, p99 {:.1} ms ({:.0} /op2 a second). With 2 workers: p50 {:.1} ms, p99 \
                 {:.1} ms ({:.0} /op2 a second). {errors} error(s) in all.",
                alone.latency_ms.p50,
                alone.latency_ms.p99,
                behind.latency_ms.p50,
                behind.latency_ms.p99,
                op2_rps(&op2_one),
                beside.latency_ms.p50,
                beside.latency_ms.p99,
                op2_rps(&op2_two),
            ),
            "A worker is one process with one event loop, like a Node.js server: while it burns CPU \
             for /op2 it answers nothing else, so a request that needs no work at all waits for the \
             /op2 in progress, and at times for the next one too (50 ms each). A second worker \
             sharing the port (Node's cluster.fork(); here a primary that starts, watches and \
             restarts its workers) takes the cheap requests while the first one is busy, and /op1 \
             is back near what it was alone."
                .into(),
        ],
        charts: vec![("/op1 latency in each phase".into(), latency_bars(&phases)?)],
        details: None,
        ..blank()
    })
}
