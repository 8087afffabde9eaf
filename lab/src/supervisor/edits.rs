//! The supervisor's answers to edits: a topology from the user or an autoscaler's count
//! becomes the topology in force, and the plan between the two is carried out: nodes
//! started (or taken back while they still drain), retired, restarted on a new port at once
//! or on their own port one at a time, and a balancer handed over.

use anyhow::Context;
use scalelab_balancer::BalancerArgs;
use scalelab_topology::{Replica, Topology};
use tokio::time::Instant;

use super::{Note, Supervisor, RETIRE_DELAY};
use crate::child::{Child, Leaving, Role, Stage, State, BALANCER};
use crate::plan::{self, Plan};
use crate::sockets::Sockets;

impl Supervisor {
    /// Applies a valid topology from the user. Autoscaled groups keep their current count
    /// (within the new bounds); the others take `replicas` from the file.
    pub fn apply(&mut self, declared: Topology) -> anyhow::Result<Plan> {
        let in_force = crate::autoscale::in_force(&declared, &self.topology);
        let plan = self.apply_in_force(in_force)?;
        self.declared = declared;
        Ok(plan)
    }

    /// An autoscaler's decision: `group` at `replicas` (clamped to its bounds).
    pub fn scale(&mut self, group: &str, replicas: usize) -> anyhow::Result<Plan> {
        let g = self.declared.group(group).with_context(|| format!("no node group {group:?}"))?;
        let a = g.autoscale.as_ref().with_context(|| format!("node group {group:?} does not autoscale"))?;
        let replicas = replicas.clamp(a.min_replicas, a.max_replicas);
        self.apply_in_force(self.topology.with_replicas(group, replicas))
    }

    /// Makes `new` the topology in force: what can fail (the children's own checks, binding
    /// new balancer addresses, publishing) is done before anything changes.
    fn apply_in_force(&mut self, new: Topology) -> anyhow::Result<Plan> {
        crate::preflight(&new)?;
        let plan = plan::plan(&self.topology, &new);
        let sockets = if plan.restart_balancer { Some(self.sockets.rebind(&new)?) } else { None };
        if new != self.topology {
            self.snapshot.publish(&new)?;
            self.topology = new.clone();
            self.topology_tx.send_replace(new);
        }
        let now = Instant::now();
        for (r, _) in &plan.resize {
            self.set_replica(r);
        }
        for r in &plan.recap {
            let _ = self.cgroups_for(r);
            self.set_replica(r);
        }
        for r in &plan.stop {
            self.remove_node(&r.name, now);
        }
        for r in &plan.start {
            self.add_node(r, now);
        }
        for r in &plan.restart {
            self.restart_node(r, now);
        }
        if let Some(sockets) = sockets {
            self.hand_over(sockets, now);
        }
        Ok(plan)
    }

    /// Records a node's new settings (its primary applies workers and caps itself).
    fn set_replica(&mut self, r: &Replica) {
        if let Some(child) = self.children.get_mut(&r.name) {
            child.role = Role::Node(r.clone());
        }
    }

    /// Starts node `r`. A process of the same name still draining on the same port is taken
    /// back when it has not been told to stop yet; when it has, the new one waits for it to
    /// let go of the port.
    pub(super) fn add_node(&mut self, r: &Replica, now: Instant) {
        let child = self
            .children
            .entry(r.name.clone())
            .or_insert_with(|| Child::new(Role::Node(r.clone()), State::Removed));
        child.role = Role::Node(r.clone());
        if let Some(proc) = child.reclaim(r) {
            tracing::info!("{}: still serving; kept instead of starting another", r.name);
            child.state = State::Running { proc, since: now };
            let _ = self.cgroups_for(r);
            return;
        }
        child.state = State::WaitingForPort;
        if self.port_free_for(&self.children[&r.name], r.listen) {
            self.spawn_child(&r.name, now);
        }
    }

    /// Retires node `name`: it serves on until the balancer has dropped it, then drains.
    fn remove_node(&mut self, name: &str, now: Instant) {
        self.rolling.queue.retain(|r| r.name != name);
        if self.rolling.now.as_ref().is_some_and(|(n, _)| n == name) {
            self.rolling.now = None;
        }
        if let Some(child) = self.children.get_mut(name) {
            child.send_off(State::Removed, Some(now + RETIRE_DELAY), now);
        }
    }

    /// A node's address or distribution changed. On a new port the new process starts at once
    /// and the old one retires like a removed node; on the same port nodes restart one at a
    /// time (see [`Rolling`]).
    fn restart_node(&mut self, r: &Replica, now: Instant) {
        let Some(child) = self.children.get_mut(&r.name) else { return self.add_node(r, now) };
        let same_port = child.replica().is_some_and(|o| o.listen == r.listen);
        if same_port {
            self.rolling.queue.retain(|q| q.name != r.name);
            if matches!(child.state, State::WaitingForPort) {
                child.role = Role::Node(r.clone()); // not started yet: it starts with this edit
            } else {
                self.rolling.queue.push_back(r.clone());
            }
            return;
        }
        child.send_off(State::WaitingForPort, Some(now + RETIRE_DELAY), now);
        child.role = Role::Node(r.clone());
        if self.port_free_for(&self.children[&r.name], r.listen) {
            self.spawn_child(&r.name, now);
        }
    }

    /// Moves the rolling restart along: once the node restarting now serves again, the next
    /// one stops and waits for its port.
    pub(super) fn advance_rolling(&mut self, now: Instant) {
        if let Some((name, probing)) = self.rolling.now.clone() {
            let child = self.children.get(&name).filter(|c| c.wanted());
            match child.map(|c| (matches!(c.state, State::Running { .. }), c.replica().map(|r| r.listen))) {
                None => self.rolling.now = None, // removed meanwhile
                Some((true, Some(addr))) if !probing => {
                    let probe = self.launcher.serving(&name, addr, self.sockets.admin_local_addr());
                    let tx = self.notes_tx.clone();
                    self.rolling.now = Some((name.clone(), true));
                    tokio::spawn(async move {
                        let ok = probe.await;
                        let _ = tx.send(Note::Serving(name, ok));
                    });
                }
                Some(_) => {}
            }
            if self.rolling.now.is_some() {
                return;
            }
        }
        while let Some(r) = self.rolling.queue.pop_front() {
            let Some(child) = self.children.get_mut(&r.name).filter(|c| c.wanted()) else { continue };
            child.send_off(State::WaitingForPort, None, now);
            child.role = Role::Node(r.clone());
            self.rolling.now = Some((r.name.clone(), false));
            if self.port_free_for(&self.children[&r.name], r.listen) {
                self.spawn_child(&r.name, now);
            }
            return;
        }
    }

    /// Starts a balancer with the new settings beside the running one; it takes over once it
    /// reports ready.
    fn hand_over(&mut self, sockets: Sockets, now: Instant) {
        let Some(child) = self.children.get_mut(BALANCER) else { return };
        let current = match std::mem::replace(&mut child.state, State::WaitingForPort) {
            State::HandingOver { proc, mut next, .. } => {
                next.terminate();
                child.leaving.push(Leaving {
                    proc: next,
                    replica: None,
                    stage: Stage::Stopping { since: now },
                });
                Some(proc)
            }
            State::Starting { proc, .. } | State::Running { proc, .. } => Some(proc),
            other => {
                // Not running: it starts on the new sockets when its backoff is over.
                child.state = other;
                None
            }
        };
        let Some(proc) = current else {
            self.sockets = sockets;
            return;
        };
        match self.launcher.balancer(&BalancerArgs::new(self.snapshot.path()), &sockets) {
            Ok(next) => child.state = State::HandingOver { proc, next, sockets, since: now },
            Err(e) => {
                tracing::error!("cannot start the new balancer; the running one stays: {e:#}");
                child.state = State::Running { proc, since: now };
            }
        }
    }
}
