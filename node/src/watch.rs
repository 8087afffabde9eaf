//! Applying the topology file to this node: its group's `workers` and the `workload`.
//!
//! Only what changed in the file is reported, so editing another group (or the balancer) does
//! not undo a SIGTTIN/SIGTTOU adjustment. An invalid file or a missing group changes nothing.

use std::path::PathBuf;

use scalelab_topology::{Topology, TopologyWatch, Workload};

/// What an edit asks this node to change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    /// The group's new `workers`.
    pub workers: Option<usize>,
    /// The new workload.
    pub workload: Option<Workload>,
}

/// Watches the topology file on behalf of one group.
#[derive(Debug)]
pub struct NodeWatch {
    watch: TopologyWatch,
    group: String,
    /// Last `workers` of the group seen in a valid file.
    seen_workers: Option<usize>,
    /// Last workload seen in a valid file.
    seen_workload: Option<Workload>,
}

impl NodeWatch {
    /// Follows group `group` of the topology at `path`.
    pub fn new(path: PathBuf, group: String) -> NodeWatch {
        NodeWatch { watch: TopologyWatch::new(path), group, seen_workers: None, seen_workload: None }
    }

    /// The group followed.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Reads the file if it changed; returns what this node should change (logs the rest).
    pub fn poll(&mut self) -> Option<Change> {
        match self.watch.poll()? {
            Ok(topology) => self.diff(&topology),
            Err(e) => {
                tracing::warn!("topology edit ignored, keeping the current workers: {e}");
                None
            }
        }
    }

    fn diff(&mut self, topology: &Topology) -> Option<Change> {
        let mut change = Change::default();
        if self.seen_workload != Some(topology.workload) {
            self.seen_workload = Some(topology.workload);
            change.workload = Some(topology.workload);
        }
        match topology.group(&self.group) {
            Some(group) => {
                if self.seen_workers != Some(group.workers) {
                    self.seen_workers = Some(group.workers);
                    change.workers = Some(group.workers.max(1));
                }
            }
            None => {
                tracing::warn!(
                    "group {:?} is not in {}; keeping the current workers",
                    self.group,
                    self.watch.path().display()
                );
                self.seen_workers = None;
            }
        }
        (change != Change::default()).then_some(change)
    }
}
