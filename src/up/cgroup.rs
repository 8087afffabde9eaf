//! CPU caps for native nodes: one Linux cgroup per replica, its CPU quota set from the
//! topology's `cpus`. Works on cgroup v2 (`cpu.max`) and on v1 (`cpu.cfs_quota_us`), whichever
//! holds the cpu controller. Without the rights, `CpuCaps::detect` says why, and the lab runs
//! uncapped rather than pretending.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// CFS period for every cap: 100 ms, the kernel's default.
const PERIOD_US: u64 = 100_000;

/// Which cgroup interface holds the cpu controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A cgroup directory owned by this `scalelab up`, holding one child cgroup per replica.
#[derive(Debug)]
pub struct CpuCaps {
    version: Version,
    /// `.../scalelab-<pid>`: created by us, removed by `cleanup`.
    root: PathBuf,
}

impl CpuCaps {
    /// Finds a writable cpu controller and creates this run's cgroup under it.
    pub fn detect() -> anyhow::Result<CpuCaps> {
        let name = format!("scalelab-{}", std::process::id());
        let unified = Path::new("/sys/fs/cgroup");
        if has_cpu_controller(unified) {
            return CpuCaps::create_v2(unified, &name);
        }
        let hybrid = Path::new("/sys/fs/cgroup/unified");
        if has_cpu_controller(hybrid) {
            return CpuCaps::create_v2(hybrid, &name);
        }
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let parent = v1.join(own_v1_cpu_path()?.trim_start_matches('/'));
            let root = parent.join(&name);
            fs::create_dir(&root).with_context(|| format!("cannot create cgroup {}", root.display()))?;
            return Ok(CpuCaps { version: Version::V1, root });
        }
        bail!("no cgroup cpu controller found under /sys/fs/cgroup")
    }

    fn create_v2(mount: &Path, name: &str) -> anyhow::Result<CpuCaps> {
        // Child cgroups may use the cpu controller only if every ancestor delegates it.
        enable_cpu_delegation(mount)?;
        let root = mount.join(name);
        fs::create_dir(&root).with_context(|| format!("cannot create cgroup {}", root.display()))?;
        let caps = CpuCaps { version: Version::V2, root };
        enable_cpu_delegation(&caps.root)?;
        Ok(caps)
    }

    /// `v1` or `v2`, for the start-up message.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The cgroup of one replica, created if needed, with its quota set to `cpus` cores
    /// (`None`: no quota). The node primary joins it with `--cgroup`.
    pub fn replica(&self, replica: &str, cpus: Option<f64>) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(replica);
        if !dir.exists() {
            fs::create_dir(&dir).with_context(|| format!("cannot create cgroup {}", dir.display()))?;
        }
        self.set_quota(&dir, cpus)?;
        Ok(dir)
    }

    /// Changes a replica's quota in place (a `cpus` edit needs no restart).
    pub fn set_quota(&self, dir: &Path, cpus: Option<f64>) -> anyhow::Result<()> {
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

    /// Removes a replica's cgroup once its processes are gone.
    pub fn remove_replica(&self, replica: &str) {
        let dir = self.root.join(replica);
        if dir.exists() {
            if let Err(e) = fs::remove_dir(&dir) {
                tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
            }
        }
    }

    /// Removes every replica cgroup and the run's own (call after all nodes exited).
    pub fn cleanup(&self) {
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                if let Err(err) = fs::remove_dir(e.path()) {
                    tracing::warn!("cannot remove cgroup {}: {err}", e.path().display());
                }
            }
        }
        if let Err(e) = fs::remove_dir(&self.root) {
            tracing::warn!("cannot remove cgroup {}: {e}", self.root.display());
        }
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

/// This process's path in the v1 cpu hierarchy, from `/proc/self/cgroup` (`N:cpu,cpuacct:/x`).
fn own_v1_cpu_path() -> anyhow::Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "cpu").then(|| path.to_string())
        })
        .next()
        .context("no cpu controller in /proc/self/cgroup")
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value:?} to {}", path.display()))
}
