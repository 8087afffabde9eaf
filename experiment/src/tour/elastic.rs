//! Step 7: the autoscaler (Kubernetes' HPA rules) following a staged load: quiet, a step up to
//! more than one node can serve, a hold, a step down. It adds nodes when their CPU runs over
//! the target and removes them once the scale-down window has passed.

use std::path::Path;
use std::time::Instant;

use scalelab_loadgen::{BaseUrl, StageList, StageTarget, Stages};

use super::blocking::{load, start, url};
use super::scaling::blank;
use super::setup::{self, Pace};
use super::Step;
use crate::timeline::{self, admin::AdminPoller, Timeline};

/// The most requests in flight the load keeps.
const CONNECTIONS: u32 = 64;

/// Step 7.
pub async fn run(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    let (stages, window_ms) = pace.stages();
    let body = setup::AUTOSCALE.1.replace("{window}", &window_ms.to_string());
    let (t, _) = setup::topology(dir, setup::AUTOSCALE.0, &body)?;
    let list: StageList = stages.parse().map_err(|e| anyhow::anyhow!("the tour's stages: {e}"))?;
    let lab = start(&t).await?;
    let mut decisions = lab.decisions();
    let admin: BaseUrl = format!("http://{}", t.balancer.admin).parse()?;
    let mut cfg = load(&url(&t), "/op2", CONNECTIONS, None, list.duration())?;
    cfg.stages = Some(Stages { of: StageTarget::Rate, stages: list.0.clone() });
    cfg.validate()?;
    let poller = AdminPoller::start(&admin).await?;
    let started = Instant::now();
    let run = scalelab_loadgen::run_load_full(cfg, false).await?;
    let record = poller.finish().await;
    lab.shutdown(std::future::pending()).await;
    let mut seen = Vec::new();
    while let Ok(d) = decisions.try_recv() {
        seen.push(d.to_string());
    }

    let tl = Timeline::new(&run, Some(record));
    timeline::write(dir, &tl)?;
    let charts = timeline::charts::draw(&tl)?;
    let timed: Vec<String> = tl
        .admin
        .as_ref()
        .map(|a| {
            a.decisions
                .iter()
                .map(|d| format!("{} → {} at {:.0} s", d.decision.from, d.decision.to, d.t))
                .collect()
        })
        .unwrap_or_default();
    // The group's replicas, second by second.
    let replicas: Vec<usize> =
        tl.seconds.iter().filter_map(|s| s.admin.as_ref()?.replicas.get("node").copied()).collect();
    let most = replicas.iter().copied().max().unwrap_or(1);
    let node_seconds: usize = replicas.iter().sum();
    let r = &run.report;
    let mut lesson = vec![format!(
        "The autoscaler decided {} time(s): {}. It ran at most {most} node(s), {node_seconds} \
         node-seconds in {:.0} s, where a lab sized for the peak would have paid {}. {} requests, \
         {} answered 2xx, {} turned away with 503 by a full queue (back-pressure while the nodes \
         were too few), p99 {:.0} ms over the run.",
        timed.len(),
        if timed.is_empty() { "none".to_string() } else { timed.join(", ") },
        started.elapsed().as_secs_f64(),
        4 * tl.seconds.len(),
        r.requests,
        r.ok,
        r.status.get(&503).copied().unwrap_or(0),
        r.latency_ms.p99
    )];
    if let Some(first) = seen.first() {
        lesson.push(format!("Its first decision, as `scalelab up` prints it: {first}."));
    }
    lesson.push(format!(
        "Elastic capacity follows the load, but late: the controller reads CPU once a second \
         here (Kubernetes: every 15 s), a new node needs a moment to start, and until then the \
         requests queue, so the step up costs latency that a fixed, oversized lab would not pay. \
         Scaling down waits for the load to stay low for the whole window ({window_ms} ms here, \
         Kubernetes' default is 5 minutes), so that a dip does not make it flap."
    ));
    Ok(Step {
        setup: format!(
            "One node of half a core (25 /op2 requests a second at 20 ms each), autoscaled from 1 to 4 \
             nodes on CPU with a target of 60% of the cap, under an open-loop staged load ({stages}: \
             duration:req/s, each stage ramping from the previous target)."
        ),
        lesson,
        charts: [
            Some(("Offered and served, per second".to_string(), charts.rate)),
            charts.replicas.map(|c| ("Nodes the autoscaler ran, with its decisions".to_string(), c)),
            charts.cpu.map(|c| ("CPU per node against its cap".to_string(), c)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        details: Some("7-autoscale/timeline.html".into()),
        ..blank()
    })
}
