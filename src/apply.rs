//! `scalelab apply`: after an edit of `topology.yaml`, bring the Compose lab in line with it:
//! re-render `compose.yaml` (and `stack.yaml`, `kubernetes.yaml`), then `docker compose up -d
//! --remove-orphans`.
//! Compose recreates only what changed: replica counts scale, a `cpus` edit recreates that
//! group's containers, and a worker-count edit changes neither file (the nodes follow the
//! mounted topology themselves), so no container restarts for it.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

/// Renders, then runs compose in the topology's directory.
pub fn run(topology: &Path, image: &crate::render::Image) -> anyhow::Result<ExitCode> {
    crate::render::run(topology, false, image)?;
    let dir = topology.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let args = ["compose", "-f", "compose.yaml", "up", "-d", "--remove-orphans"];
    println!("scalelab apply: docker {}", args.join(" "));
    let status = Command::new("docker")
        .args(args)
        .current_dir(dir)
        .status()
        .context("cannot run `docker compose` (is Docker installed?)")?;
    if !status.success() {
        bail!("docker compose up failed ({status})");
    }
    Ok(ExitCode::SUCCESS)
}
