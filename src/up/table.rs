//! What `scalelab up` prints: the nodes it runs (name, address, workers, CPU cap, pid), each
//! autoscaler's bounds, the URLs to use, and whether CPU caps are enforced.

use std::fmt::Write;
use std::path::Path;

use scalelab_lab::cgroup::Version;
use scalelab_lab::View;

/// `1.0`, or `-` when uncapped.
pub fn cpus(c: Option<f64>) -> String {
    c.map_or_else(|| "-".to_string(), |c| format!("{c:?}"))
}

/// The topology file as the user knows it: relative to the working directory when it is
/// inside it (`topology.yaml`), absolute otherwise.
fn shown(file: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    file.strip_prefix(&cwd).unwrap_or(file).display().to_string()
}

fn pid(p: Option<u32>) -> String {
    p.map_or_else(|| "(restarting)".to_string(), |p| p.to_string())
}

/// The table and URLs, for the lab running `file`.
pub fn render(file: &Path, v: &View) -> String {
    let b = &v.topology.balancer;
    let mut out = String::new();
    let workers: usize = v.nodes.iter().map(|n| n.replica.workers).sum();
    let _ =
        writeln!(out, "scalelab lab from {}: {} node(s), {workers} worker(s)", shown(file), v.nodes.len());
    let _ = writeln!(out, "  {:<12} {:<22} {:>7} {:>5}  PID", "NODE", "ADDRESS", "WORKERS", "CPUS");
    for n in &v.nodes {
        let r = &n.replica;
        let _ = writeln!(
            out,
            "  {:<12} {:<22} {:>7} {:>5}  {}",
            r.name,
            r.listen,
            r.workers,
            cpus(r.cpus),
            pid(n.pid)
        );
    }
    let balancer = match v.successor_pid {
        Some(next) => format!("{} (handing over to {next})", pid(v.balancer_pid)),
        None => pid(v.balancer_pid),
    };
    let _ = writeln!(out, "  {:<12} {:<22} {:>7} {:>5}  {balancer}", "balancer", b.listen, "", "");
    for g in &v.topology.nodes {
        if let Some(a) = &g.autoscale {
            let _ = writeln!(
                out,
                "autoscale: {} runs {} of {}..{} replicas, {} target {} (decides every {:.1} s, scale-down window {:.0} s)",
                g.name,
                g.replicas,
                a.min_replicas,
                a.max_replicas,
                a.metric.as_str(),
                a.target,
                a.sync_ms as f64 / 1000.0,
                a.scale_down_stabilization_ms as f64 / 1000.0
            );
        }
    }
    let _ = writeln!(out, "traffic:   http://{}/op1  http://{}/op2", b.listen, b.listen);
    let _ = writeln!(out, "dashboard: http://{}/", b.admin);
    let _ = writeln!(out, "admin:     http://{}/metrics  http://{}/state", b.admin, b.admin);
    match &v.caps {
        Ok(Version::V1) => out.push_str("CPU caps: enforced with cgroup v1 (cpu.cfs_quota_us)\n"),
        Ok(Version::V2) => out.push_str("CPU caps: enforced with cgroup v2 (cpu.max)\n"),
        Err(why) => {
            let _ = writeln!(out, "CPU caps: NOT enforced, nodes run uncapped ({why})");
        }
    }
    let _ = write!(out, "Edit {} to change the lab live; Ctrl-C stops everything.", shown(file));
    out
}
