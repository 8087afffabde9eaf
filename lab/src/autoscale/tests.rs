//! The loop under a paused clock: a [`Feed`] of samples made from the topology in force and a
//! load the test sets, a [`Fleet`] that scales by publishing the new topology (as the
//! supervisor and the Compose scaler do) or refuses to, and one [`Autoscaler::step`] per
//! second of `tokio::time`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use scalelab_topology::AutoscaleMetric::InFlight;

use super::*;

/// What every listed node reports.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Cores used, and requests in flight.
    cpu: f64,
    in_flight: usize,
}

/// Samples of the topology in force: every node of the group listed, healthy since long ago,
/// under the load the test sets (`None`: the balancer does not answer).
#[derive(Clone)]
struct Feed {
    topology_rx: watch::Receiver<Topology>,
    load: Arc<Mutex<Option<Load>>>,
    polls: Arc<Mutex<usize>>,
}

impl Feed {
    fn set(&self, load: Option<Load>) {
        *self.load.lock().unwrap() = load;
    }
}

impl Source for Feed {
    async fn sample(&mut self) -> anyhow::Result<Sample> {
        *self.polls.lock().unwrap() += 1;
        let load = *self.load.lock().unwrap();
        let load = load.context("the balancer does not answer")?;
        let g = self.topology_rx.borrow().nodes[0].clone();
        let nodes: Vec<serde_json::Value> = (1..=g.replicas)
            .map(|i| {
                serde_json::json!({
                    "name": format!("node-{i}"), "addr": format!("127.0.0.1:{}", g.port as usize + i - 1),
                    "group": g.name, "healthy": true, "healthy_since": 0.0, "found_at": 0.0,
                    "rps": 10.0, "op2_rps": 0.0, "in_flight": load.in_flight, "p50_ms": 1.0,
                    "p99_ms": 2.0, "errors_per_s": 0.0, "retries_per_s": 0.0, "cpu": load.cpu,
                    "cpu_cap": g.cpus, "workers_configured": 1, "workers": []
                })
            })
            .collect();
        Ok(serde_json::from_value(serde_json::json!({
            "t": 1.0e9, "algorithm": "round_robin", "cores": 2, "op2_cpu_ms": 20, "theory_rps": 25.0,
            "rps": 0.0, "op2_rps": 0.0, "nodes": nodes, "changes": [], "last_error": null
        }))?)
    }
}

/// Scales by publishing the topology with the new count, or refuses while `refuse` is set.
struct Fleet {
    topology_tx: Arc<watch::Sender<Topology>>,
    refuse: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<usize>>>,
}

impl Scaler for Fleet {
    async fn scale(&mut self, group: &str, replicas: usize) -> anyhow::Result<()> {
        self.calls.lock().unwrap().push(replicas);
        if self.refuse.load(Ordering::Relaxed) {
            anyhow::bail!("no room for {replicas} nodes of {group}");
        }
        self.topology_tx.send_modify(|t| *t = t.with_replicas(group, replicas));
        Ok(())
    }
}

/// A lab of one group `node` (`cpus: 0.5`) with `replicas` nodes and the given `autoscale`
/// block (YAML flow mapping, or none).
struct Lab {
    auto: Autoscaler<Feed>,
    fleet: Fleet,
    feed: Feed,
    topology_tx: Arc<watch::Sender<Topology>>,
    /// Instants of `tokio::time` when the lab began: t = 0.
    start: Instant,
}

fn topology(replicas: usize, autoscale: Option<&str>) -> Topology {
    let block = autoscale.map_or(String::new(), |a| format!(", autoscale: {a}"));
    Topology::from_yaml(&format!(
        "balancer: {{ listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }}\n\
         nodes: [{{ name: node, replicas: {replicas}, workers: 1, cpus: 0.5, port: 8081{block} }}]\n"
    ))
    .unwrap()
}

impl Lab {
    fn new(replicas: usize, autoscale: Option<&str>, load: Load) -> Lab {
        let (tx, rx) = watch::channel(topology(replicas, autoscale));
        let topology_tx = Arc::new(tx);
        let feed = Feed {
            topology_rx: rx.clone(),
            load: Arc::new(Mutex::new(Some(load))),
            polls: Arc::new(Mutex::new(0)),
        };
        let fleet = Fleet { topology_tx: topology_tx.clone(), refuse: Arc::default(), calls: Arc::default() };
        let auto = Autoscaler::with_source(feed.clone(), rx, None);
        Lab { auto, fleet, feed, topology_tx, start: Instant::now() }
    }

    /// Steps once a second until `t` seconds (inclusive) since the lab began.
    async fn run_until(&mut self, t: u64) {
        while self.start.elapsed() <= Duration::from_secs(t) {
            self.auto.step(&mut self.fleet).await;
            tokio::time::advance(POLL).await;
        }
    }

    fn state(&self) -> &AutoscaleState {
        &self.auto.controls["node"].state
    }

    fn replicas(&self) -> usize {
        self.topology_tx.borrow().nodes[0].replicas
    }

    /// Each decision as (seconds since the lab began, from, to).
    fn decisions(&self) -> Vec<(f64, usize, usize)> {
        let t0 = self.auto.clock.unix(self.start);
        self.state().decisions.iter().map(|d| (d.at - t0, d.from, d.to)).collect()
    }

    /// Edits the block, as a saved topology file would.
    fn edit(&self, autoscale: &str) {
        let replicas = self.replicas();
        self.topology_tx.send_replace(topology(replicas, Some(autoscale)));
    }
}

const HOT: Load = Load { cpu: 0.45, in_flight: 0 }; // 90% of the cap
const BUSY: Load = Load { cpu: 0.3, in_flight: 0 }; // 60%
const IDLE: Load = Load { cpu: 0.025, in_flight: 0 }; // 5%

#[tokio::test(start_paused = true)]
async fn samples_are_read_every_second_and_groups_synced_every_sync_ms() {
    let mut lab = Lab::new(2, Some("{ max_replicas: 4, target: 0.6, sync_ms: 2500 }"), BUSY);
    let mut synced = Vec::new();
    let t0 = lab.auto.clock.unix(lab.start);
    while lab.start.elapsed() <= Duration::from_secs(10) {
        lab.auto.step(&mut lab.fleet).await;
        if synced.last() != Some(&lab.state().synced_at) {
            synced.push(lab.state().synced_at);
        }
        tokio::time::advance(POLL).await;
    }
    // Taken at 0 s; then due every 2.5 s, on the first poll at or after it.
    let at: Vec<f64> = synced.iter().map(|s| s - t0).collect();
    assert_eq!(at, [0.0, 3.0, 6.0, 9.0]);
    assert_eq!(*lab.feed.polls.lock().unwrap(), 11);
    assert_eq!(lab.state().value, Some(0.6), "60% of the cap");

    // The loop itself polls on its 1 s tick.
    let lab = Lab::new(2, Some("{ max_replicas: 4, target: 0.6 }"), BUSY);
    let polls = lab.feed.polls.clone();
    let running = tokio::spawn(lab.auto.run(lab.fleet));
    tokio::time::sleep(Duration::from_millis(5500)).await;
    running.abort();
    assert_eq!(*polls.lock().unwrap(), 6, "at 0, 1, ..., 5 s");
}

#[tokio::test(start_paused = true)]
async fn a_target_edit_applies_at_the_next_sync() {
    let mut lab = Lab::new(2, Some("{ max_replicas: 4, target: 0.6, sync_ms: 3000 }"), BUSY);
    lab.run_until(4).await;
    assert_eq!((lab.replicas(), lab.decisions()), (2, vec![]), "60% against 60%");
    lab.edit("{ max_replicas: 4, target: 0.3, sync_ms: 3000 }");
    lab.run_until(5).await;
    assert_eq!(lab.state().target, 0.3, "the state follows the edit at once");
    assert_eq!(lab.replicas(), 2, "but the next sync is at 6 s");
    lab.run_until(6).await;
    assert_eq!(lab.decisions(), [(6.0, 2, 4)], "60% against 30%");
    assert!(lab.state().last_decision.as_ref().unwrap().reason.contains("(target 30%)"));
}

#[tokio::test(start_paused = true)]
async fn a_metric_edit_keeps_the_window_and_the_decisions() {
    let block = "{ max_replicas: 4, target: 0.6, sync_ms: 3000, scale_down_stabilization_ms: 60000 }";
    let mut lab = Lab::new(1, Some(block), Load { cpu: 0.9, in_flight: 0 });
    lab.run_until(3).await;
    assert_eq!(lab.decisions(), [(3.0, 1, 3)], "180% against 60%");
    lab.feed.set(Some(IDLE));
    lab.run_until(39).await;
    assert_eq!(lab.replicas(), 3, "held by the 60 s window");
    // cpu → in_flight (none in flight: the metric asks for the minimum).
    lab.edit(&block.replace("target: 0.6", "metric: in_flight, target: 5"));
    lab.run_until(62).await;
    assert_eq!(lab.state().metric, InFlight);
    assert_eq!(lab.replicas(), 3, "the 3 recommended at 3 s still holds");
    lab.run_until(69).await;
    // The 3 of 3 s leaves the window at 63 s, not 60 s after the edit; and the decision of
    // 3 s is still listed.
    assert_eq!(lab.decisions(), [(3.0, 1, 3), (63.0, 3, 1)]);
    assert_eq!(lab.state().decisions_total, 2);
}

#[tokio::test(start_paused = true)]
async fn a_block_added_to_a_running_group_holds_its_count_for_the_window() {
    // 3 idle nodes; a block with a 60 s scale-down window is added at 0 s. Its first sync
    // (3 s) records the 3 it found, so the scale-down waits until 63 s.
    let mut lab = Lab::new(3, None, IDLE);
    lab.run_until(1).await;
    assert!(lab.auto.controls.is_empty());
    lab.start = Instant::now();
    lab.edit("{ max_replicas: 4, target: 0.6, sync_ms: 3000, scale_down_stabilization_ms: 60000 }");
    lab.run_until(62).await;
    assert_eq!((lab.replicas(), lab.decisions()), (3, vec![]));
    lab.run_until(63).await;
    assert_eq!(lab.decisions(), [(63.0, 3, 1)]);
    let reason = &lab.state().decisions[0].reason;
    assert_eq!(reason, "cpu 5% of the 0.50-core cap (target 60%)");
}

#[tokio::test(start_paused = true)]
async fn a_failed_scale_is_not_a_decision() {
    let mut lab = Lab::new(1, Some("{ max_replicas: 4, target: 0.6, sync_ms: 3000 }"), HOT);
    let mut decided = lab.auto.decisions().subscribe();
    lab.fleet.refuse.store(true, Ordering::Relaxed);
    lab.run_until(4).await;
    assert_eq!(*lab.fleet.calls.lock().unwrap(), [2], "asked at 3 s");
    assert_eq!((lab.replicas(), lab.decisions(), lab.state().decisions_total), (1, vec![], 0));
    assert_eq!(lab.state().current, 1);
    assert!(decided.try_recv().is_err(), "nothing broadcast");
    lab.fleet.refuse.store(false, Ordering::Relaxed);
    lab.run_until(6).await;
    assert_eq!(*lab.fleet.calls.lock().unwrap(), [2, 2], "asked again at the next sync");
    assert_eq!(lab.decisions(), [(6.0, 1, 2)]);
    assert_eq!(decided.try_recv().unwrap().decision.to, 2);
}

#[tokio::test(start_paused = true)]
async fn the_decision_list_keeps_the_newest() {
    // One node is hot, two are idle: with no window the group flips at every sync. Steps
    // 1.5 s apart, so each 1 s span holds only the newest sample.
    let block = "{ max_replicas: 2, target: 0.6, sync_ms: 500, scale_down_stabilization_ms: 0 }";
    let mut lab = Lab::new(1, Some(block), HOT);
    let n = MAX_DECISIONS as u64 + 5;
    for _ in 0..2 * n {
        lab.feed.set(Some(if lab.replicas() == 1 { HOT } else { IDLE }));
        lab.auto.step(&mut lab.fleet).await;
        tokio::time::advance(Duration::from_millis(1500)).await;
    }
    let s = lab.state();
    assert!(s.decisions_total >= n, "{} decisions", s.decisions_total);
    assert_eq!(s.decisions.len(), MAX_DECISIONS);
    assert_eq!(s.decisions.last(), s.last_decision.as_ref());
    // The newest are kept, in order: the first kept is the last minus 49.
    let all = lab.decisions();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");
    let expected_first = if (s.decisions_total - MAX_DECISIONS as u64) % 2 == 0 { (1, 2) } else { (2, 1) };
    assert_eq!(
        (all[0].1, all[0].2),
        expected_first,
        "decision {} of {}",
        s.decisions_total - 49,
        s.decisions_total
    );
}

#[tokio::test(start_paused = true)]
async fn no_sample_no_change_and_no_memory() {
    // The balancer stops answering: syncs go on, change nothing and record nothing.
    let block = "{ max_replicas: 4, target: 0.6, sync_ms: 3000, scale_down_stabilization_ms: 30000 }";
    let mut lab = Lab::new(4, Some(block), BUSY);
    lab.run_until(3).await;
    lab.feed.set(None);
    lab.run_until(40).await;
    assert_eq!((lab.replicas(), lab.state().value), (4, None));
    // Back, idle: the window holds only what was measured, and the 4 of 3 s has expired.
    lab.feed.set(Some(IDLE));
    lab.run_until(45).await;
    assert_eq!(lab.decisions(), [(42.0, 4, 1)]);
}
