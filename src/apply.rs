//! `scalelab apply`: after an edit of `topology.yaml`, bring the Compose lab in line with it:
//! re-render `compose.yaml` (and `stack.yaml`, `kubernetes.yaml`), then `docker compose up -d
//! --remove-orphans`.
//! Compose recreates only what changed: replica counts scale, a `cpus` edit recreates that
//! group's containers, and a worker-count edit changes neither file (the nodes follow the
//! mounted topology themselves), so no container restarts for it.
//!
//! `scalelab apply --watch` keeps doing so on every save, as `scalelab up` does natively, and
//! runs the lab's autoscaler against the Compose project: a decision is `docker compose up -d
//! --no-recreate --scale GROUP=N`, and every later `up` passes the autoscaled groups' current
//! counts, so an edit does not reset them to the file's starting `replicas`. Its state goes to
//! `autoscale.json` beside the topology, in the directory the balancer container mounts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use scalelab_lab::autoscale::{self, Autoscaler, Scaler};
use scalelab_topology::{Topology, TopologyWatch};
use tokio::process::Command;
use tokio::sync::{broadcast, watch};

use crate::render::Image;

/// How often `--watch` reads the topology file.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Renders, then runs compose in the topology's directory; with `watch`, follows edits and
/// autoscales until Ctrl-C.
pub fn run(topology: &Path, image: &Image, watch: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for docker compose")?;
    runtime.block_on(async {
        let project = Project::new(topology, image.clone());
        if !watch {
            project.up(&BTreeMap::new(), false).await?;
            return Ok(ExitCode::SUCCESS);
        }
        follow(project).await.map(|()| ExitCode::SUCCESS)
    })
}

/// The Compose project of a topology file.
#[derive(Clone)]
struct Project {
    topology: PathBuf,
    dir: PathBuf,
    image: Image,
    /// One `docker compose` at a time: an edit and a decision must not interleave.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Project {
    fn new(topology: &Path, image: Image) -> Project {
        let dir =
            topology.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        Project { topology: topology.to_path_buf(), dir, image, lock: Arc::default() }
    }

    /// Re-renders the files, then `docker compose up -d --remove-orphans`, with `--scale` for
    /// each group in `scale` (`--no-recreate` too when only counts change).
    async fn up(&self, scale: &BTreeMap<String, usize>, only_scale: bool) -> anyhow::Result<()> {
        let _one = self.lock.lock().await;
        if !only_scale {
            crate::render::run(&self.topology, false, &self.image)?;
        }
        let mut args: Vec<String> =
            ["compose", "-f", "compose.yaml", "up", "-d", "--remove-orphans"].map(String::from).to_vec();
        if only_scale {
            args.push("--no-recreate".into());
        }
        for (group, n) in scale {
            args.extend(["--scale".to_string(), format!("{group}={n}")]);
        }
        println!("scalelab apply: docker {}", args.join(" "));
        let status = Command::new("docker")
            .args(&args)
            .current_dir(&self.dir)
            .status()
            .await
            .context("cannot run `docker compose` (is Docker installed?)")?;
        if !status.success() {
            bail!("docker compose up failed ({status})");
        }
        Ok(())
    }
}

/// The counts `--scale` must keep: every autoscaled group at its count in force.
fn autoscaled(t: &Topology) -> BTreeMap<String, usize> {
    t.nodes.iter().filter(|g| g.autoscale.is_some()).map(|g| (g.name.clone(), g.replicas)).collect()
}

/// The Compose project as the autoscaler's [`Scaler`]: a decision scales one group, keeping
/// the others where they are, and becomes the topology in force.
struct ComposeScaler {
    project: Project,
    in_force: Arc<watch::Sender<Topology>>,
}

impl Scaler for ComposeScaler {
    async fn scale(&mut self, group: &str, replicas: usize) -> anyhow::Result<()> {
        let next = self.in_force.borrow().with_replicas(group, replicas);
        self.project.up(&autoscaled(&next), true).await?;
        self.in_force.send_replace(next);
        Ok(())
    }
}

/// Where the balancer's admin listener is published on this machine (loopback).
fn admin_addr(t: &Topology) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), t.balancer.admin.port())
}

/// `--watch`: apply now, then every valid edit; autoscale; stop on Ctrl-C.
async fn follow(project: Project) -> anyhow::Result<()> {
    let mut file = TopologyWatch::new(&project.topology);
    let declared = match file.poll() {
        Some(result) => result?,
        None => unreachable!("a first poll always reports the file"),
    };
    project.up(&autoscaled(&declared), false).await?;
    let (tx, in_force_rx) = watch::channel(declared.clone());
    let in_force = Arc::new(tx);
    let status = project.dir.join(scalelab_balancer::discovery::AUTOSCALE_FILE);
    let autoscaler = Autoscaler::new(admin_addr(&declared), in_force_rx, Some(status.clone()));
    let mut decisions = autoscaler.decisions().subscribe();
    let scaler = ComposeScaler { project: project.clone(), in_force: in_force.clone() };
    let controller = tokio::spawn(autoscaler.run(scaler));
    println!(
        "scalelab apply: watching {} (edits apply on save, autoscaled groups follow their metric); \
         Ctrl-C stops watching and leaves the lab running",
        project.topology.display()
    );
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            decided = decisions.recv() => match decided {
                Ok(d) => println!("scalelab apply: {d}"),
                Err(broadcast::error::RecvError::Lagged(n)) => println!("scalelab apply: ({n} decisions not shown)"),
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = tick.tick() => match file.poll() {
                None => {}
                Some(Err(e)) => eprintln!("scalelab apply: {e}\nscalelab apply: keeping the running topology"),
                Some(Ok(declared)) => {
                    let running = in_force.borrow().clone();
                    let next = autoscale::in_force(&declared, &running);
                    match project.up(&autoscaled(&next), false).await {
                        Ok(()) => {
                            in_force.send_replace(next);
                        }
                        Err(e) => eprintln!("scalelab apply: {e:#}\nscalelab apply: keeping the running topology"),
                    }
                }
            },
        }
    }
    controller.abort();
    if let Err(e) = std::fs::remove_file(&status) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("scalelab apply: cannot remove {}: {e}", status.display());
        }
    }
    println!(
        "scalelab apply: stopped watching; the Compose lab keeps running (`docker compose down` stops it)"
    );
    Ok(())
}
