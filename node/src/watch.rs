//! Applying the topology file to this node: its group's `workers` and the `workload`.
//!
//! Only what changed in the file is reported, so editing another group (or the balancer) does
//! not undo a SIGTTIN/SIGTTOU adjustment. An invalid file or a missing group changes nothing.

use std::path::PathBuf;

use scalelab_topology::{Topology, TopologyWatch, Workload};

/// The CPU costs workers run with, as the topology's `workload` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    pub op2_cpu_ms: u64,
    pub max_cpu_ms: u64,
}

impl From<&Workload> for Costs {
    fn from(w: &Workload) -> Costs {
        Costs { op2_cpu_ms: w.op2_cpu_ms, max_cpu_ms: w.max_cpu_ms }
    }
}

/// What an edit asks this node to change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    /// The group's new `workers`.
    pub workers: Option<usize>,
    /// The new workload.
    pub costs: Option<Costs>,
}

/// Watches the topology file on behalf of one group.
#[derive(Debug)]
pub struct NodeWatch {
    watch: TopologyWatch,
    group: String,
    /// Last `workers` of the group seen in a valid file.
    seen_workers: Option<usize>,
    /// Last workload seen in a valid file.
    seen_costs: Option<Costs>,
}

impl NodeWatch {
    /// Follows group `group` of the topology at `path`.
    pub fn new(path: PathBuf, group: String) -> NodeWatch {
        NodeWatch { watch: TopologyWatch::new(path), group, seen_workers: None, seen_costs: None }
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
        let costs = Costs::from(&topology.workload);
        if self.seen_costs != Some(costs) {
            self.seen_costs = Some(costs);
            change.costs = Some(costs);
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
