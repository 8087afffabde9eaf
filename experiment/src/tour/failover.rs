//! Step 6: a node dies under load (SIGKILL to its whole process group: primary and workers, no
//! goodbye). The balancer retries what was in flight on another node, its health checks take
//! the dead one out, and the lab starts it again; the client sees no error.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use scalelab_lab::Lab;
use scalelab_loadgen::BaseUrl;

use super::blocking::{load, start, url};
use super::scaling::blank;
use super::setup::{self, Pace};
use super::Step;
use crate::timeline::{self, admin::AdminPoller, Timeline};

/// The open-loop rate: a third of what three 5 ms workers serve.
const RATE: f64 = 100.0;
/// The node that dies.
const VICTIM: &str = "node-2";

/// How long the victim may take to serve again.
const BACK_WITHIN: Duration = Duration::from_secs(20);

/// When the killed node was back, from its kill.
struct Back {
    /// The lab had a new process for it.
    restarted: Duration,
    /// The balancer saw the new process healthy.
    healthy: Duration,
    /// Whether the balancer marked it unhealthy in between.
    ejected: bool,
}

/// Watches [`VICTIM`] after its process `old` was killed at `killed`: when the lab starts a new
/// one, and when the balancer's health checks see it healthy (after having seen it down, or
/// after two more checks that found it up). `None` past [`BACK_WITHIN`].
async fn back_in_service(lab: &Lab, admin: SocketAddr, old: u32, killed: Instant) -> Option<Back> {
    let (mut restarted, mut ejected) = (None, false);
    while killed.elapsed() < BACK_WITHIN {
        if restarted.is_none() {
            let pid = lab.view().await?.nodes.into_iter().find(|n| n.replica.name == VICTIM)?.pid;
            if pid.is_some_and(|p| p != old) {
                restarted = Some(killed.elapsed());
            }
        }
        // An admin listener that does not answer says nothing about the node: ask again.
        if let Ok(state) = scalelab_lab::get_state(admin).await {
            let healthy = state.backends.iter().any(|b| b.name == VICTIM && b.healthy);
            ejected |= !healthy;
            if let (Some(r), true) = (restarted, healthy) {
                // Two checks of 200 ms since the restart: a node never seen down is known up.
                if ejected || killed.elapsed() > r + Duration::from_millis(400) {
                    return Some(Back { restarted: r, healthy: killed.elapsed(), ejected });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Step 6.
pub async fn run(dir: &Path, pace: Pace) -> anyhow::Result<Step> {
    let (t, _) = setup::topology(dir, setup::FAILOVER.0, setup::FAILOVER.1)?;
    let lab = start(&t).await?;
    let admin: BaseUrl = format!("http://{}", t.balancer.admin).parse()?;
    let retries_before = scalelab_lab::get_state(t.balancer.admin).await.map_or(0, |s| s.retries);
    let d = pace.failover();
    let poller = AdminPoller::start(&admin).await?;
    let run = scalelab_loadgen::run_load_full(load(&url(&t), "/op2", 32, Some(RATE), d)?, false);
    let kill = async {
        tokio::time::sleep(d / 3).await;
        let view = lab.view().await.context("the lab is not running")?;
        let pid = view.nodes.iter().find(|n| n.replica.name == VICTIM).and_then(|n| n.pid);
        let pid = pid.with_context(|| format!("{VICTIM} has no process"))?;
        // The node's primary leads its own process group: the whole node dies at once.
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
            .with_context(|| format!("SIGKILL to {VICTIM}'s process group {pid}"))?;
        let killed = Instant::now();
        let back = back_in_service(&lab, t.balancer.admin, pid, killed).await;
        anyhow::Ok((pid, back))
    };
    let (run, killed) = tokio::join!(run, kill);
    let (run, (pid, back)) = (run?, killed?);
    let record = poller.finish().await;
    let retries = scalelab_lab::get_state(t.balancer.admin)
        .await
        .map_or(0, |s| s.retries)
        .saturating_sub(retries_before);
    lab.shutdown(std::future::pending()).await;

    let tl = Timeline::new(&run, Some(record));
    timeline::write(dir, &tl)?;
    let charts = timeline::charts::draw(&tl)?;
    let r = &run.report;
    let share: Vec<String> = r.by_node.iter().map(|(n, c)| format!("{n} {c}")).collect();
    let ejected = back.as_ref().is_none_or(|b| b.ejected);
    let back = match back {
        Some(b) => format!(
            "the lab had a new {VICTIM} running {:.2} s after the kill, and the balancer's health checks \
             {} {:.2} s after it",
            b.restarted.as_secs_f64(),
            if b.ejected {
                "took it out, then let it back in"
            } else {
                "never saw it down: they found it healthy again"
            },
            b.healthy.as_secs_f64()
        ),
        None => format!("{VICTIM} was not serving again within {BACK_WITHIN:?}"),
    };
    Ok(Step {
        setup: format!(
            "Three nodes of one worker take {RATE:.0} /op2 requests a second for {:.1} s. A third of \
             the way in, {VICTIM} (process group {pid}) is killed with SIGKILL: no drain, no goodbye.",
            d.as_secs_f64()
        ),
        lesson: vec![
            format!(
                "{} requests, {} error(s), p99 {:.1} ms. The balancer retried {retries} request(s) on \
                 another node; {back}. Responses by node: {}.",
                r.requests,
                r.errors,
                r.latency_ms.p99,
                share.join(", ")
            ),
            format!(
                "Requests in flight on the dead node fail on their connection, and the balancer sends \
                 them again to a live node (they are idempotent GETs). {} Redundancy is the other \
                 reason to scale out: with one node this would have been an outage.",
                if ejected {
                    "Its health checks, every 200 ms here, stopped routing to the node until the lab's \
                     supervisor had started a new one on the same port and a check found it healthy."
                } else {
                    "Here the lab's supervisor started a new node on the same port before a health check \
                     (every 200 ms) could find the port closed; where a start takes longer, the checks \
                     stop routing to the node meanwhile, and let the new one in once it answers."
                }
            ),
        ],
        charts: vec![
            (
                format!(
                    "Requests per second through the kill ({VICTIM} killed at {:.1} s)",
                    (d / 3).as_secs_f64()
                ),
                charts.rate,
            ),
            ("Latency per second".into(), charts.latency),
        ],
        details: Some("6-failover/timeline.html".into()),
        ..blank()
    })
}
