//! The published topology: the last valid topology a lab runs, written to a file of the lab's
//! own that every node and the balancer watch. Children only ever read a topology the lab
//! accepted, so an invalid edit of the user's file is reported once (by whoever owns the lab)
//! and cannot reach them, and a lab started from a topology in memory (`scalelab sweep`) needs
//! no user file at all.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use scalelab_topology::Topology;

/// The lab's private directory and the topology file in it; both are removed on drop.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    path: PathBuf,
}

impl Snapshot {
    /// A fresh private directory under the system's temporary directory.
    pub fn create() -> anyhow::Result<Snapshot> {
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scalelab-lab-{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create the lab directory {}", dir.display()))?;
        Ok(Snapshot { path: dir.join("topology.yaml"), dir })
    }

    /// The lab's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file children watch.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `t`, atomically (write a sibling, rename over), so a watcher
    /// never reads half a topology.
    pub fn publish(&self, t: &Topology) -> anyhow::Result<()> {
        let tmp = self.dir.join("topology.yaml.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(b"# The topology this lab runs, published by scalelab; edit the original.\n")?;
            f.write_all(t.to_yaml().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("cannot publish the topology to {}", self.path.display()))
    }
}

impl Snapshot {
    /// Notes why an edit was refused, beside the published file, where the balancer's
    /// watcher reads it for the dashboard (`rejected.txt`).
    pub fn note_rejected(&self, why: &str) -> anyhow::Result<()> {
        let file = self.dir.join("rejected.txt");
        let tmp = self.dir.join("rejected.txt.tmp");
        fs::write(&tmp, why)
            .and_then(|()| fs::rename(&tmp, &file))
            .with_context(|| format!("cannot write {}", file.display()))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove the lab directory {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_topologies_read_back_and_the_directory_goes_with_the_snapshot() {
        let t = Topology::from_yaml(
            "balancer: { listen: 127.0.0.1:8080, admin: 127.0.0.1:9090 }\n\
             nodes: [{ name: node, replicas: 2, workers: 3, cpus: 0.5, port: 8081 }]\n",
        )
        .unwrap();
        let snapshot = Snapshot::create().unwrap();
        snapshot.publish(&t).unwrap();
        assert_eq!(Topology::load(snapshot.path()).unwrap(), t);
        let dir = snapshot.path().parent().unwrap().to_path_buf();
        drop(snapshot);
        assert!(!dir.exists());
    }
}
