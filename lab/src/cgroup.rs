//! CPU caps and CPU accounting for native nodes: one Linux cgroup per replica, its quota set
//! from the topology's `cpus`, its usage read back for reports. Works on cgroup v2 (`cpu.max`,
//! `cpu.stat`) and on v1, where the quota (`cpu`) and the accounting (`cpuacct`) may be
//! separate hierarchies; a node joins one directory per hierarchy.
//!
//! Each lab owns a directory `scalelab-<pid>-<n>` in each hierarchy. A lab that was killed
//! (`kill -9` of `up`) cannot remove its own; the next lab removes every such directory whose
//! pid is gone. Without the rights, `CpuCaps::detect` says why, and the lab runs uncapped
//! rather than pretending.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use scalelab_node::cgroup_stats::cpu_used;

/// CFS period for every cap: 100 ms, the kernel's default.
const PERIOD_US: u64 = 100_000;

/// Which cgroup interface holds the cpu controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The cgroup directories owned by this lab: one per hierarchy, each holding a child cgroup
/// per replica.
#[derive(Debug)]
pub struct CpuCaps {
    version: Version,
    /// Where quotas are written (`cpu` on v1, the unified tree on v2).
    quota_root: PathBuf,
    /// Where usage is read (`cpuacct` on v1, when it is a separate hierarchy).
    usage_root: Option<PathBuf>,
}

impl CpuCaps {
    /// Finds a writable cpu controller, clears what killed labs left behind, and creates this
    /// lab's cgroup.
    pub fn detect() -> anyhow::Result<CpuCaps> {
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let name = format!("scalelab-{}-{}", std::process::id(), LABS.fetch_add(1, Ordering::Relaxed));
        for unified in [Path::new("/sys/fs/cgroup"), Path::new("/sys/fs/cgroup/unified")] {
            if has_cpu_controller(unified) {
                // Child cgroups may use the cpu controller only if every ancestor delegates it.
                enable_cpu_delegation(unified)?;
                remove_stale(unified);
                let root = create(&unified.join(&name))?;
                enable_cpu_delegation(&root)?;
                return Ok(CpuCaps { version: Version::V2, quota_root: root, usage_root: None });
            }
        }
        let cpu = Path::new("/sys/fs/cgroup/cpu");
        if !cpu.join("cpu.cfs_quota_us").exists() {
            bail!("no cgroup cpu controller found under /sys/fs/cgroup");
        }
        let quota_parent = cpu.join(own_v1_path("cpu")?.trim_start_matches('/'));
        remove_stale(&quota_parent);
        let quota_root = create(&quota_parent.join(&name))?;
        let acct = Path::new("/sys/fs/cgroup/cpuacct");
        let usage_root = if acct.join("cpuacct.usage").exists() && !same_dir(acct, cpu) {
            let parent = acct.join(own_v1_path("cpuacct")?.trim_start_matches('/'));
            remove_stale(&parent);
            Some(create(&parent.join(&name))?)
        } else {
            None
        };
        Ok(CpuCaps { version: Version::V1, quota_root, usage_root })
    }

    /// `v1` or `v2`, for the start-up message.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The cgroups of one replica (one per hierarchy), created if needed, with its quota set
    /// to `cpus` cores (`None`: no quota). The node primary joins them with `--cgroup`.
    pub fn replica(&self, replica: &str, cpus: Option<f64>) -> anyhow::Result<Vec<PathBuf>> {
        let mut dirs = vec![self.quota_root.join(replica)];
        dirs.extend(self.usage_root.as_ref().map(|r| r.join(replica)));
        for dir in &dirs {
            if !dir.exists() {
                fs::create_dir(dir).with_context(|| format!("cannot create cgroup {}", dir.display()))?;
            }
        }
        self.set_quota(&dirs[0], cpus)?;
        Ok(dirs)
    }

    /// Changes a replica's quota in place (a `cpus` edit needs no restart).
    fn set_quota(&self, dir: &Path, cpus: Option<f64>) -> anyhow::Result<()> {
        let quota = cpus.map(|c| ((c * PERIOD_US as f64).round() as u64).max(1000));
        let (file, value) = match (self.version, quota) {
            (Version::V2, Some(q)) => ("cpu.max", format!("{q} {PERIOD_US}")),
            (Version::V2, None) => ("cpu.max", format!("max {PERIOD_US}")),
            (Version::V1, q) => {
                write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                ("cpu.cfs_quota_us", q.map_or_else(|| "-1".to_string(), |q| q.to_string()))
            }
        };
        write(&dir.join(file), &value)
    }

    /// CPU time the replica's processes have used since its cgroup was created (read the way
    /// the node reads its own, for `/stats`).
    pub fn usage(&self, replica: &str) -> Option<Duration> {
        let accounting = match self.version {
            Version::V2 => &self.quota_root,
            Version::V1 => self.usage_root.as_ref().unwrap_or(&self.quota_root),
        };
        cpu_used(&[accounting.join(replica)])
    }

    /// Removes a replica's cgroups once its processes are gone.
    pub fn remove_replica(&self, replica: &str) {
        for root in self.roots() {
            let dir = root.join(replica);
            if dir.exists() {
                if let Err(e) = fs::remove_dir(&dir) {
                    tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
                }
            }
        }
    }

    /// Removes every replica cgroup and the lab's own (call after all nodes exited).
    pub fn cleanup(&self) {
        for root in self.roots() {
            remove_tree(root);
        }
    }

    fn roots(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.quota_root).chain(self.usage_root.as_ref())
    }
}

/// Creates a cgroup directory.
fn create(dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir(dir).with_context(|| format!("cannot create cgroup {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Removes `dir`'s child cgroups, then `dir` (empty cgroups only: the kernel refuses others).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            if let Err(err) = fs::remove_dir(e.path()) {
                tracing::warn!("cannot remove cgroup {}: {err}", e.path().display());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
    }
}

/// Removes the lab cgroups under `parent` whose owning process is gone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!("removing cgroup {} left by a lab that is gone", e.path().display());
            remove_tree(&e.path());
        }
    }
}

/// The pid in a lab cgroup's name: `scalelab-<pid>` or `scalelab-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("scalelab-")?;
    let pid = rest.split('-').next()?;
    let tail_ok = rest[pid.len()..].strip_prefix('-').is_none_or(|n| n.parse::<u32>().is_ok());
    tail_ok.then(|| pid.parse().ok()).flatten()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn has_cpu_controller(mount: &Path) -> bool {
    fs::read_to_string(mount.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
}

fn enable_cpu_delegation(dir: &Path) -> anyhow::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    write(&control, "+cpu")
}

/// This process's path in the v1 hierarchy of `controller`, from `/proc/self/cgroup`
/// (`N:cpu,cpuacct:/x`).
fn own_v1_path(controller: &str) -> anyhow::Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .next()
        .with_context(|| format!("no {controller} controller in /proc/self/cgroup"))
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_come_from_lab_names_only() {
        assert_eq!(owner_pid("scalelab-4242"), Some(4242));
        assert_eq!(owner_pid("scalelab-4242-3"), Some(4242));
        assert_eq!(owner_pid("scalelab-x"), None);
        assert_eq!(owner_pid("scalelab-42-x"), None);
        assert_eq!(owner_pid("docker"), None);
    }
}
