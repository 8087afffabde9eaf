//! One child of a lab, under its name (`balancer`, `node-1`, ...), and the stages of its life.
//! A name outlives its processes: a node removed from the topology keeps its entry while its
//! last process drains, so re-adding it finds that process (and takes it back, or waits for
//! its port); a node restarted on another port has its old process drain beside the new one.
//!
//! ```text
//!                spawn                 exit                 backoff over
//!   (new) ───────────────► Running ───────────► Crashed ─────────────────► Running
//!            balancer: Starting ──ready──► Running ──edit──► HandingOver ──ready──► Running
//!   restart on the same port: WaitingForPort ──port free──► Running
//!   removed: Removed, its process in `leaving` (Retiring ──delay──► Stopping ──exit──► gone)
//! ```

use std::net::SocketAddr;

use scalelab_node::backoff::{Backoff, Policy};
use scalelab_topology::Replica;
use tokio::time::Instant;

use crate::launch::Process;
use crate::sockets::Sockets;

/// The name of the balancer's entry (a node's name always ends in `-<number>`).
pub const BALANCER: &str = "balancer";

/// What a child runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Balancer,
    /// A node primary, with the replica it runs now.
    Node(Replica),
}

/// One name in the lab.
pub struct Child {
    pub role: Role,
    /// Where its life is now.
    pub state: State,
    /// Its crash-loop state (the lab's [`Policy::LAB`]).
    pub backoff: Backoff,
    /// Earlier processes under this name that have not exited yet.
    pub leaving: Vec<Leaving>,
}

/// The stage of a child's life.
pub enum State {
    /// Started; it has not said that it serves yet (a balancer, until its readiness byte).
    Starting { proc: Box<dyn Process>, since: Instant },
    /// Serving.
    Running { proc: Box<dyn Process>, since: Instant },
    /// A new balancer, started on `sockets` beside `proc` after a `balancer:` edit, takes
    /// over once it serves.
    HandingOver { proc: Box<dyn Process>, next: Box<dyn Process>, sockets: Sockets, since: Instant },
    /// Exited, or could not start: started again at `at`.
    Crashed { at: Instant },
    /// Restarted on its own port: starts once the process before it let go of the port.
    WaitingForPort,
    /// Removed from the topology; its last process drains in `leaving`.
    Removed,
}

/// A process on its way out.
pub struct Leaving {
    pub proc: Box<dyn Process>,
    /// What it ran (a node's port and distribution); `None` for a balancer.
    pub replica: Option<Replica>,
    pub stage: Stage,
}

/// How far a leaving process is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Still serving until `until`, so the balancer drops it before it stops accepting.
    Retiring { until: Instant },
    /// Sent SIGTERM at `since`; SIGKILLed (by group) if it outlasts the grace period.
    Stopping { since: Instant },
    /// SIGKILLed; gone at its next reap.
    Killed,
}

impl Child {
    /// A child with no process yet (the caller starts it).
    pub fn new(role: Role, state: State) -> Child {
        Child { role, state, backoff: Backoff::new(Policy::LAB), leaving: Vec::new() }
    }

    /// The replica, for a node.
    pub fn replica(&self) -> Option<&Replica> {
        match &self.role {
            Role::Node(r) => Some(r),
            Role::Balancer => None,
        }
    }

    /// False once removed from the topology.
    pub fn wanted(&self) -> bool {
        !matches!(self.state, State::Removed)
    }

    /// Its serving process, if one runs (a balancer being replaced: the old one).
    pub fn proc(&self) -> Option<&dyn Process> {
        match &self.state {
            State::Starting { proc, .. } | State::Running { proc, .. } | State::HandingOver { proc, .. } => {
                Some(proc.as_ref())
            }
            State::Crashed { .. } | State::WaitingForPort | State::Removed => None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc().map(|p| p.pid())
    }

    /// Moves its state to `next` and returns the process(es) that ran: the serving one, and a
    /// successor balancer still starting.
    pub fn take(&mut self, next: State) -> Vec<Box<dyn Process>> {
        match std::mem::replace(&mut self.state, next) {
            State::Starting { proc, .. } | State::Running { proc, .. } => vec![proc],
            State::HandingOver { proc, next, .. } => vec![proc, next],
            State::Crashed { .. } | State::WaitingForPort | State::Removed => Vec::new(),
        }
    }

    /// Sends its running process(es) on their way out: retiring until `until`, or stopping
    /// now (SIGTERM) when `until` is `None`. Its state becomes `next`.
    pub fn send_off(&mut self, next: State, until: Option<Instant>, now: Instant) {
        let replica = self.replica().cloned();
        for mut proc in self.take(next) {
            let stage = match until {
                Some(until) => Stage::Retiring { until },
                None => {
                    proc.terminate();
                    Stage::Stopping { since: now }
                }
            };
            self.leaving.push(Leaving { proc, replica: replica.clone(), stage });
        }
    }

    /// Takes back a leaving process that still serves `r` as it is (the same port and
    /// distribution) and has not been sent SIGTERM: a node removed and re-added in time.
    pub fn reclaim(&mut self, r: &Replica) -> Option<Box<dyn Process>> {
        let same = |l: &Leaving| {
            matches!(l.stage, Stage::Retiring { .. })
                && l.replica
                    .as_ref()
                    .is_some_and(|o| o.listen == r.listen && o.distribution == r.distribution)
        };
        let i = self.leaving.iter().position(same)?;
        Some(self.leaving.remove(i).proc)
    }

    /// Whether one of its leaving processes may still hold `addr`.
    pub fn holds(&self, addr: SocketAddr) -> bool {
        self.leaving.iter().any(|l| l.replica.as_ref().is_some_and(|r| r.listen == addr))
    }

    /// Every process it has, serving or leaving (for a last-resort SIGKILL).
    pub fn all_procs(&mut self) -> impl Iterator<Item = &mut Box<dyn Process>> {
        let current: Vec<&mut Box<dyn Process>> = match &mut self.state {
            State::Starting { proc, .. } | State::Running { proc, .. } => vec![proc],
            State::HandingOver { proc, next, .. } => vec![proc, next],
            State::Crashed { .. } | State::WaitingForPort | State::Removed => Vec::new(),
        };
        current.into_iter().chain(self.leaving.iter_mut().map(|l| &mut l.proc))
    }
}
