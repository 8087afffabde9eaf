//! What a node's `/stats` reports about its own CPU: the time its processes used and its cap,
//! read from the cgroups it runs in. Natively those are the directories `scalelab up` made
//! it join (`--cgroup`); in a container, the container's own cgroup, which Docker mounts at
//! the root of `/sys/fs/cgroup`. A node in neither (run by hand, uncapped) reports nothing
//! rather than the whole machine's CPU.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where this node's CPU is accounted: the directories to read, possibly none.
pub fn own_cgroups(joined: &[PathBuf]) -> Vec<PathBuf> {
    if !joined.is_empty() {
        return joined.to_vec();
    }
    if in_container() {
        let root = Path::new("/sys/fs/cgroup");
        return [root.join("cpuacct"), root.join("cpu"), root.join("cpu,cpuacct"), root.to_path_buf()]
            .into_iter()
            .filter(|d| d.is_dir())
            .collect();
    }
    Vec::new()
}

/// Docker (and podman) leave these behind in every container.
fn in_container() -> bool {
    Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists()
}

/// CPU time used by everything in `dirs`' cgroup: `cpuacct.usage` (v1, ns) or `cpu.stat`'s
/// `usage_usec` (v2).
pub fn cpu_used(dirs: &[PathBuf]) -> Option<Duration> {
    dirs.iter().find_map(|d| {
        if let Ok(ns) = fs::read_to_string(d.join("cpuacct.usage")) {
            return ns.trim().parse().ok().map(Duration::from_nanos);
        }
        let stat = fs::read_to_string(d.join("cpu.stat")).ok()?;
        let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
        Some(Duration::from_micros(usec))
    })
}

/// The cgroup's CPU cap in cores: `cpu.cfs_quota_us` / `cpu.cfs_period_us` (v1) or `cpu.max`
/// (v2); `None` when uncapped.
pub fn cpu_cap(dirs: &[PathBuf]) -> Option<f64> {
    dirs.iter().find_map(|d| {
        let read = |f: &str| fs::read_to_string(d.join(f)).ok();
        if let (Some(quota), Some(period)) = (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
            let (q, p): (i64, f64) = (quota.trim().parse().ok()?, period.trim().parse().ok()?);
            return (q > 0 && p > 0.0).then(|| q as f64 / p);
        }
        let max = read("cpu.max")?;
        let mut parts = max.split_whitespace();
        let (q, p) = (parts.next()?, parts.next()?.parse::<f64>().ok()?);
        q.parse::<f64>().ok().map(|q| q / p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("v1");
        let v2 = dir.path().join("v2");
        fs::create_dir_all(&v1).unwrap();
        fs::create_dir_all(&v2).unwrap();
        fs::write(v1.join("cpuacct.usage"), "2500000000\n").unwrap();
        fs::write(v1.join("cpu.cfs_quota_us"), "50000\n").unwrap();
        fs::write(v1.join("cpu.cfs_period_us"), "100000\n").unwrap();
        fs::write(v2.join("cpu.stat"), "usage_usec 1500000\nuser_usec 1\n").unwrap();
        fs::write(v2.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cpu_used(std::slice::from_ref(&v1)), Some(Duration::from_millis(2500)));
        assert_eq!(cpu_cap(&[v1]), Some(0.5));
        assert_eq!(cpu_used(std::slice::from_ref(&v2)), Some(Duration::from_millis(1500)));
        assert_eq!(cpu_cap(&[v2]), None);
        assert_eq!(cpu_used(&[]), None);
    }
}
