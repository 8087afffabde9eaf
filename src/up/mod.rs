//! `scalelab up`: the whole lab on one machine, until Ctrl-C. A [`Lab`] (from the `lab`
//! crate) runs the processes; this adds what a person at a terminal needs: signals, a watch on
//! the topology file that applies each valid edit live and reports an invalid one (once, here:
//! the children only ever see the lab's accepted copy), and the table of what runs.

mod table;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use scalelab_lab::{Lab, LabOptions, NotReady, Plan};
use scalelab_topology::{Topology, TopologyWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::broadcast;

use crate::cli::UpArgs;

/// How long start-up waits for the balancer to see every node healthy before it shows the
/// table anyway (and says what is missing).
const READY_WAIT: Duration = Duration::from_secs(10);
/// How often the topology file is read.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Runs the lab until Ctrl-C or SIGTERM; `log_filter` is what the children log at.
pub fn run(args: UpArgs, log_filter: String) -> anyhow::Result<ExitCode> {
    let file = std::path::absolute(&args.topology)
        .with_context(|| format!("bad topology path {}", args.topology.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the supervisor runtime")?;
    runtime.block_on(supervise(file, log_filter))?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, as one stream of "stop" requests.
struct StopSignals {
    int: Signal,
    term: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

async fn supervise(file: PathBuf, log_filter: String) -> anyhow::Result<()> {
    let mut stop = StopSignals::install()?;
    // The first poll reads the file the lab starts from; an edit saved while the lab starts
    // differs from it and is applied by the loop below.
    let mut watch = TopologyWatch::new(&file);
    let topology = match watch.poll() {
        Some(result) => result?,
        None => unreachable!("a first poll always reports the file"),
    };
    let options = LabOptions { log_filter: Some(log_filter), ..LabOptions::current_exe()? };
    let lab = tokio::select! {
        lab = Lab::start(&topology, options) => lab?,
        () = stop.next() => return Ok(()), // dropping the half-started lab stops what it started
    };
    let ready = tokio::select! {
        ready = lab.wait_ready(READY_WAIT) => Some(ready),
        () = stop.next() => None,
    };
    if let Some(ready) = ready {
        if let Err(e) = ready {
            eprintln!("scalelab up: {e}");
        }
        show(&file, &lab).await;
        follow_edits(&file, &lab, &mut watch, &mut stop).await;
    }
    println!("scalelab up: stopping");
    lab.shutdown(stop.next()).await;
    println!("scalelab up: stopped");
    Ok(())
}

/// How long `up` waits for restarted or added nodes to serve before it reprints the table.
const SETTLE_WAIT: Duration = Duration::from_secs(15);

/// The wait for an edit's restarted nodes to be healthy again, after which the table is reprinted.
type Settling<'a> = Pin<Box<dyn Future<Output = Result<(), NotReady>> + 'a>>;

/// Applies each valid edit and prints each autoscaler decision, until a stop signal. After an
/// edit that starts or restarts nodes, the table is printed again once the balancer sees them
/// all healthy, so the last table on the screen is what runs.
async fn follow_edits(file: &Path, lab: &Lab, watch: &mut TopologyWatch, stop: &mut StopSignals) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let mut decisions = lab.decisions();
    let mut settling: Option<Settling<'_>> = None;
    let mut declared = lab.view().await.map(|v| v.topology);
    loop {
        tokio::select! {
            () = stop.next() => return,
            decided = decisions.recv() => {
                match decided {
                    Ok(d) => println!("scalelab up: {d}"),
                    Err(broadcast::error::RecvError::Lagged(n)) => println!("scalelab up: ({n} autoscaler decisions not shown)"),
                    Err(broadcast::error::RecvError::Closed) => {}
                }
                continue;
            }
            ready = async { settling.as_mut().expect("guarded").await }, if settling.is_some() => {
                settling = None;
                if let Err(e) = ready {
                    eprintln!("scalelab up: {e}");
                }
                show(file, lab).await;
                continue;
            }
            _ = tick.tick() => {}
        }
        match watch.poll() {
            None => {}
            Some(Err(e)) => {
                eprintln!("scalelab up: {e}\nscalelab up: keeping the running topology");
                lab.reject(e.to_string()).await;
            }
            Some(Ok(t)) => {
                let autoscale_edits =
                    declared.as_ref().map(|old| autoscale_changes(old, &t)).unwrap_or_default();
                match lab.apply(&t).await {
                    Ok(plan) => {
                        for line in &autoscale_edits {
                            println!("scalelab up: {line}");
                        }
                        declared = Some(t);
                        if plan.is_empty() {
                            continue;
                        }
                        report(&plan);
                        show(file, lab).await;
                        if !plan.start.is_empty() || !plan.restart.is_empty() {
                            settling = Some(Box::pin(lab.wait_ready(SETTLE_WAIT)));
                        }
                    }
                    Err(e) => eprintln!(
                        "scalelab up: cannot apply the edit: {e:#}\nscalelab up: keeping the running topology"
                    ),
                }
            }
        }
    }
}

/// The `autoscale` blocks an edit changed, in words (`autoscale 1..6 on cpu node (target 0.5)`).
fn autoscale_changes(old: &Topology, new: &Topology) -> Vec<String> {
    scalelab_topology::diff::changes(old, new).into_iter().filter(|c| c.starts_with("autoscale")).collect()
}

/// One line per change an edit made.
fn report(plan: &Plan) {
    for (r, old) in &plan.resize {
        println!("scalelab up: {}: workers {old} -> {}", r.name, r.workers);
    }
    for r in &plan.recap {
        println!("scalelab up: {}: cpus -> {}", r.name, table::cpus(r.cpus));
    }
    for r in &plan.start {
        println!("scalelab up: {}: started on {}", r.name, r.listen);
    }
    for r in &plan.restart {
        // A port or a distribution change: the node starts again with its new sockets.
        println!(
            "scalelab up: {}: restarting on {} with {} distribution",
            r.name,
            r.listen,
            r.distribution.as_str()
        );
    }
    for r in &plan.stop {
        println!("scalelab up: {}: removed; stopping after the balancer drops it", r.name);
    }
    if plan.restart_balancer {
        println!("scalelab up: balancer settings changed; a new balancer takes over on the same sockets");
    }
}

async fn show(file: &Path, lab: &Lab) {
    if let Some(view) = lab.view().await {
        println!("{}", table::render(file, &view));
    }
}
