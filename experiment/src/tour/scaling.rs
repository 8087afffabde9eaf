//! Steps 2, 3 and 5: sweeps, run in-process exactly as `scalelab sweep` runs them (their
//! results.json and report.html stay in the step's directory). Vertical: one node's workers
//! under a 1.5-core cap. Horizontal: the same 1.5 cores as 1 to 3 nodes. Slow node: round
//! robin against peak-EWMA with one node at a tenth of a core.

use std::path::Path;

use anyhow::{bail, Context};

use super::setup::{self, Pace, Setup};
use super::Step;
use crate::report::charts;
use crate::results::{Point, Results, Series};
use crate::sweep::{self, plan::Plan, SweepArgs};

/// The load of steps 2 and 3: closed loop, enough connections to keep 3 workers busy.
const CONNECTIONS: u32 = 16;

/// Runs a sweep of `vary` on the topology `setup` into `dir`; `rate` makes it open loop.
pub(super) async fn sweep_in(
    dir: &Path,
    setup: Setup,
    vary: &[&str],
    rate: Option<f64>,
    pace: Pace,
) -> anyhow::Result<Results> {
    let (_, topology) = setup::topology(dir, setup.0, setup.1)?;
    let args = SweepArgs {
        topology,
        vary: vary.iter().map(|v| v.parse()).collect::<Result<_, _>>().context("the tour's --vary")?,
        grid: false,
        path: "/op2".into(),
        mix: None,
        connections: if rate.is_some() { 64 } else { CONNECTIONS },
        rate,
        arrivals: None,
        duration: pace.round(),
        warmup: pace.warmup(),
        rounds: pace.rounds(),
        pause: pace.pause(),
        out: dir.to_path_buf(),
        compose: false,
    };
    let plan = Plan::new(&args)?;
    let outcome = sweep::sweep(&args, &plan).await?;
    sweep::write_outputs(dir, &outcome.results)?;
    match outcome.stopped.as_deref() {
        // The sweep saw Ctrl-C before the tour did: the tour stops the same way.
        Some("interrupted") => return Err(Interrupted.into()),
        Some(why) => bail!("the sweep stopped early: {why}"),
        None => {}
    }
    Ok(outcome.results)
}

/// The sweep's only series, when it measured something.
pub(super) fn series(results: &Results) -> anyhow::Result<&Series> {
    match results.series.first() {
        Some(s) if !s.points.is_empty() => Ok(s),
        _ => bail!("the sweep measured nothing"),
    }
}

/// The points of the sweep's only series.
fn points(results: &Results) -> anyhow::Result<&[Point]> {
    Ok(&series(results)?.points)
}

/// `Throughput: 1 worker(s): 99 req/s, 2 worker(s): 149 req/s (×1.51), ...`: each point's
/// rate, and after the first its ratio to the first.
fn throughput(points: &[Point], unit: &str) -> String {
    let first = &points[0];
    let each = points.iter().map(|p| {
        if std::ptr::eq(p, first) || first.rps <= 0.0 {
            format!("{} {unit}: {:.0} req/s", p.n, p.rps)
        } else {
            format!("{} {unit}: {:.0} req/s (×{:.2})", p.n, p.rps, p.rps / first.rps)
        }
    });
    format!("Throughput: {}.", each.collect::<Vec<_>>().join(", "))
}

/// The percentage of the point's responses that `node` served.
fn share(p: &Point, node: &str) -> f64 {
    let total = p.by_node.values().sum::<u64>().max(1) as f64;
    100.0 * p.by_node.get(node).copied().unwrap_or(0) as f64 / total
}

/// A step stopped by Ctrl-C or SIGTERM (which its sweep saw first).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Step 2.
pub async fn vertical(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    let results = sweep_in(dir, setup::VERTICAL, &["workers=1,2,3"], None, pace).await?;
    let points = points(&results)?;
    let last = points.last().expect("not empty");
    Ok(Step {
        setup: format!(
            "One node capped at 1.5 cores, 1, 2 and 3 worker processes sharing its port (added \
             live); {CONNECTIONS} connections ask for /op2 (10 ms of CPU each) back to back. The \
             balancer renews its kept-alive connections to the node every half second, so that a \
             worker added live gets its share at once: a connection stays with the worker that \
             accepted it."
        ),
        lesson: vec![
            throughput(points, "worker(s)"),
            format!(
                "One worker is one process on one core: at most 100 of these requests a second. A \
                 second worker adds the rest of the cap, half a core; a third has nothing left to \
                 use: the cgroup allows 1.5 cores whatever the count, 150 req/s in theory, and 3 \
                 workers served {:.0}. This is scaling up (vertical): more processes on one machine \
                 pay only while there are cores for them.",
                last.rps
            ),
        ],
        charts: vec![("Throughput against workers".into(), charts::throughput::draw(&results)?)],
        details: Some("2-vertical/report.html".into()),
        ..blank()
    })
}

/// Step 3.
pub async fn horizontal(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    let results = sweep_in(dir, setup::HORIZONTAL, &["replicas=1,2,3"], None, pace).await?;
    let points = points(&results)?;
    let last = points.last().expect("not empty");
    let per_node: Vec<String> = last.by_node.keys().map(|n| format!("{n} {:.0}%", share(last, n))).collect();
    Ok(Step {
        setup: format!(
            "1, 2 and 3 nodes of one worker, each capped at half a core, behind the round-robin \
             balancer; {CONNECTIONS} connections ask for /op2 back to back."
        ),
        lesson: vec![
            throughput(points, "node(s)"),
            format!(
                "Each node adds its half core: 50 req/s more in theory. Three nodes hold the same \
                 1.5 cores as step 2's capped node, and the balancer spread the requests over them \
                 ({}). This is scaling out (horizontal): on a real cluster each node is another \
                 machine, and the ceiling moves with the count of machines instead of the size of one.",
                per_node.join(", ")
            ),
        ],
        charts: vec![("Throughput against nodes".into(), charts::throughput::draw(&results)?)],
        details: Some("3-horizontal/report.html".into()),
        ..blank()
    })
}

/// Step 5.
pub async fn slow_node(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    const RATE: f64 = 60.0;
    let results =
        sweep_in(dir, setup::SLOW_NODE, &["algorithm=round_robin,peak_ewma"], Some(RATE), pace).await?;
    let points = points(&results)?;
    let line = |p: &Point| {
        format!(
            "{}: the slow node answered {:.0}% of the responses, p99 {:.0} ms, {} error(s)",
            p.label.as_deref().unwrap_or("?"),
            share(p, "slow-1"),
            p.latency_ms.p99,
            p.errors
        )
    };
    Ok(Step {
        setup: format!(
            "Two fast nodes (half a core each) and a slow one (a tenth of a core: 10 requests a \
             second) take {RATE:.0} /op2 requests a second, first with round robin, then with \
             peak-EWMA (the node with the lowest latency average, weighted by its requests in flight)."
        ),
        lesson: vec![
            format!("{}; {}.", line(&points[0]), points.get(1).map(line).unwrap_or_default()),
            "Round robin sends every node a third whatever it can do: 20 a second to a node that \
             serves 10, so its queue grows for as long as the load lasts (what still waits in it \
             when the round ends is not among the responses), and every request sent there waits \
             behind it. Peak-EWMA sees that node's latency rise and sends it little or nothing: the \
             same capacity, and the slowest requests come back in a fraction of the time. On a \
             cluster of unequal machines, or beside a noisy neighbour, the algorithm matters as much \
             as the count."
                .into(),
        ],
        charts: vec![
            ("Latency percentiles per algorithm".into(), charts::latency::draw(&results)?),
            ("Who served what".into(), charts::share::draw(&results)?),
        ],
        details: Some("5-slow-node/report.html".into()),
        ..blank()
    })
}

/// A step with nothing in it yet (the tour fills number, title and time).
pub(super) fn blank() -> Step {
    Step {
        number: 0,
        title: String::new(),
        setup: String::new(),
        lesson: Vec::new(),
        charts: Vec::new(),
        details: None,
        took: std::time::Duration::ZERO,
    }
}
