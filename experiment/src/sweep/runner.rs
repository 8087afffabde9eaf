//! Where a sweep's points run: natively, as a [`Lab`] of processes on this machine, or as a
//! Docker Compose project. Both take a topology per point, say when the balancer sees every
//! node healthy, and report the CPU each node used.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use scalelab_lab::{Lab, LabOptions};
use scalelab_topology::Topology;
use tokio::time::Instant;

/// How long a point may take to become ready (nodes started, balancer sees them healthy).
const READY_WAIT: Duration = Duration::from_secs(60);
/// The Compose project a `--compose` sweep runs as (never the user's own `scalelab`).
const PROJECT: &str = "scalelab-sweep";
/// How long one `docker compose` command may run.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(180);

/// A running lab that a sweep drives.
pub enum Runner {
    /// Processes on this machine.
    Native(Lab),
    /// A Compose project in `dir`.
    Compose(ComposeLab),
}

impl Runner {
    /// Starts a lab running `first` (natively, or with Docker Compose when `compose`) and
    /// waits until it is ready.
    pub async fn start(first: &Topology, compose: bool, work_dir: &Path) -> anyhow::Result<Runner> {
        if compose {
            let lab = ComposeLab::create(work_dir.join("compose-lab")).await?;
            let mut runner = Runner::Compose(lab);
            if let Err(e) = runner.apply(first).await {
                // `up` may have started some containers before it failed (a published port
                // already taken fails only the balancer's): the sweep leaves none behind.
                runner.shutdown().await;
                return Err(e);
            }
            return Ok(runner);
        }
        // The children log warnings only: the sweep's own progress is what the terminal shows.
        let options = LabOptions { log_filter: Some("warn".into()), ..LabOptions::current_exe()? };
        let lab = Lab::start(first, options).await?;
        lab.wait_ready(READY_WAIT).await.context("the lab did not become ready")?;
        Ok(Runner::Native(lab))
    }

    /// `native` or `compose`, for `results.json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Runner::Native(_) => "native",
            Runner::Compose(_) => "compose",
        }
    }

    /// Moves the lab to `t` and waits until the balancer sees every node healthy.
    pub async fn apply(&mut self, t: &Topology) -> anyhow::Result<()> {
        match self {
            Runner::Native(lab) => {
                lab.apply(t).await?;
                lab.wait_ready(READY_WAIT).await.context("the lab did not become ready")?;
                Ok(())
            }
            Runner::Compose(lab) => lab.apply(t).await,
        }
    }

    /// CPU time each node has used so far (only differences between two readings mean
    /// anything); empty when it cannot be read.
    pub async fn cpu_used(&self) -> BTreeMap<String, Duration> {
        match self {
            Runner::Native(lab) => lab.cpu_usage().await,
            Runner::Compose(lab) => lab.cpu_used().await,
        }
    }

    /// CPU every container of a Compose lab has used so far, the balancer's too: what the
    /// sweep counts as inside the lab besides its own process tree. Zero natively, where the
    /// lab is that tree.
    pub async fn containers_cpu(&self) -> Duration {
        match self {
            Runner::Native(_) => Duration::ZERO,
            Runner::Compose(lab) => lab.containers_cpu().await,
        }
    }

    /// Stops everything the lab started.
    pub async fn shutdown(self) {
        match self {
            Runner::Native(lab) => lab.shutdown(std::future::pending()).await,
            Runner::Compose(lab) => lab.down().await,
        }
    }
}

/// Stops whatever a start that was interrupted may have left: a Compose project outlives the
/// dropped future that started it (a native lab's processes die with it).
pub async fn abandon(compose: bool, work_dir: &Path) {
    if compose {
        let lab = ComposeLab { dir: work_dir.join("compose-lab"), exe: PathBuf::new(), admin: None };
        lab.down().await;
    }
}

/// A Compose project in a directory of its own: the point's `topology.yaml` and the
/// `compose.yaml` rendered from it.
pub struct ComposeLab {
    dir: PathBuf,
    exe: PathBuf,
    /// The admin address published on the host, once up.
    admin: Option<SocketAddr>,
}

impl ComposeLab {
    async fn create(dir: PathBuf) -> anyhow::Result<ComposeLab> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        docker(&["image", "inspect", "--format", "{{.Id}}", scalelab_image()])
            .await
            .context("the image scalelab:latest is missing: build it (docker build -t scalelab:latest . or scripts/docker-image.sh)")?;
        let exe = std::env::current_exe().context("cannot find the scalelab executable")?;
        Ok(ComposeLab { dir, exe, admin: None })
    }

    /// Writes the topology, renders `compose.yaml` from it, brings the project in line
    /// (`up -d`: replicas scale, a cpus change recreates that group; nodes follow `workers`
    /// from the mounted file) and waits until the balancer sees every replica healthy.
    async fn apply(&mut self, t: &Topology) -> anyhow::Result<()> {
        let file = self.dir.join("topology.yaml");
        std::fs::write(&file, t.to_yaml()).with_context(|| format!("cannot write {}", file.display()))?;
        let rendered = tokio::process::Command::new(&self.exe)
            .args(["compose", "--topology"])
            .arg(&file)
            .output()
            .await
            .context("cannot run scalelab compose")?;
        if !rendered.status.success() {
            bail!("scalelab compose failed: {}", String::from_utf8_lossy(&rendered.stderr));
        }
        let compose = self.dir.join("compose.yaml");
        let compose = compose.to_string_lossy();
        docker(&["compose", "-p", PROJECT, "-f", &compose, "up", "-d", "--no-build", "--remove-orphans"])
            .await?;
        let admin = SocketAddr::from(([127, 0, 0, 1], t.balancer.admin.port()));
        self.admin = Some(admin);
        let want: usize = t.nodes.iter().map(|g| g.replicas).sum();
        let end = Instant::now() + READY_WAIT;
        loop {
            let seen = scalelab_lab::get_state(admin).await;
            match &seen {
                Ok(s) if s.backends.len() == want && s.healthy_backends == want => return Ok(()),
                _ if Instant::now() >= end => {
                    bail!("the compose lab did not show {want} healthy replicas within {READY_WAIT:?}: {seen:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// CPU used by each node container, from its cgroup (v1 `cpuacct.usage` or v2
    /// `cpu.stat`), by the node's own name (`node@<hostname>`).
    async fn cpu_used(&self) -> BTreeMap<String, Duration> {
        let Ok(ids) = docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
        ])
        .await
        else {
            return BTreeMap::new();
        };
        let mut used = BTreeMap::new();
        for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Ok(name) = docker(&[
                "inspect",
                "--format",
                "{{.Config.Hostname}} {{index .Config.Labels \"com.docker.compose.service\"}}",
                id,
            ])
            .await
            else {
                continue;
            };
            let mut parts = name.split_whitespace();
            let (hostname, service) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            if service == "balancer" || service == "load" {
                continue;
            }
            // Keyed as the node names itself in `x-node` (`<group>@<hostname>`, see compose.rs),
            // so CPU lines up with who served what.
            if let Some(d) = container_cpu(id) {
                used.insert(format!("{service}@{hostname}"), d);
            }
        }
        used
    }

    /// CPU used by every container of the project, from their cgroups.
    async fn containers_cpu(&self) -> Duration {
        let filter = format!("label=com.docker.compose.project={PROJECT}");
        let Ok(ids) = docker(&["ps", "-q", "--no-trunc", "--filter", &filter]).await else {
            return Duration::ZERO;
        };
        ids.lines().map(str::trim).filter(|l| !l.is_empty()).filter_map(container_cpu).sum()
    }

    async fn down(self) {
        let compose = self.dir.join("compose.yaml");
        if !compose.exists() {
            return; // never rendered, so never brought up
        }
        let compose = compose.to_string_lossy();
        if let Err(e) =
            docker(&["compose", "-p", PROJECT, "-f", &compose, "down", "--remove-orphans", "--timeout", "10"])
                .await
        {
            tracing::error!("docker compose down failed: {e:#}");
        }
    }
}

fn scalelab_image() -> &'static str {
    "scalelab:latest"
}

/// A container's CPU time from the cgroup files Docker's drivers use.
fn container_cpu(id: &str) -> Option<Duration> {
    let v1 = [
        format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope/cpuacct.usage"),
    ];
    for path in v1 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.trim().parse().ok().map(Duration::from_nanos);
        }
    }
    let v2 = [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
    ];
    for path in v2 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
            return Some(Duration::from_micros(usec));
        }
    }
    None
}

/// Runs `docker ARGS` (bounded in time) and returns its stdout; the error has its stderr.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(DOCKER_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("docker {} took over {DOCKER_TIMEOUT:?}", args.join(" ")))?
        .with_context(|| format!("cannot run docker {} (is Docker installed?)", args.join(" ")))?;
    if !out.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
