//! Reaping, one child at a time: what an exit, a readiness byte or a deadline means for the
//! stage a child is in, and for a process on its way out.

use tokio::time::Instant;

use super::{HANDOVER_WAIT, STOP_GRACE};
use crate::child::{Child, Leaving, Stage, State};
use crate::sockets::Sockets;

/// Looks at `child`'s serving process (and a successor balancer): a crash schedules the
/// respawn, a readiness byte completes a start or a handover. Returns the sockets of a
/// successor balancer that took over.
pub(super) fn reap_current(name: &str, child: &mut Child, now: Instant) -> Option<Sockets> {
    let (state, mut promoted) = match std::mem::replace(&mut child.state, State::Removed) {
        State::Starting { mut proc, since } => match proc.try_wait() {
            Some(status) => (crashed(name, child, since, status, now), None),
            None if proc.reported_ready() => (State::Running { proc, since }, None),
            None => (State::Starting { proc, since }, None),
        },
        State::Running { mut proc, since } => match proc.try_wait() {
            Some(status) => (crashed(name, child, since, status, now), None),
            None => (State::Running { proc, since }, None),
        },
        State::HandingOver { mut proc, mut next, sockets, since } => {
            if let Some(status) = next.try_wait() {
                tracing::error!("the new balancer exited before serving ({status}); the running one stays");
                (State::Running { proc, since }, None)
            } else if next.reported_ready() {
                proc.terminate();
                child.leaving.push(Leaving { proc, replica: None, stage: Stage::Stopping { since: now } });
                tracing::info!("the new balancer took over");
                (State::Running { proc: next, since: now }, Some(sockets))
            } else if now.duration_since(since) > HANDOVER_WAIT {
                tracing::error!(
                    "the new balancer did not become ready within {HANDOVER_WAIT:?}; the running one stays"
                );
                next.kill_group();
                child.leaving.push(Leaving {
                    proc: next,
                    replica: None,
                    stage: Stage::Stopping { since: now },
                });
                (State::Running { proc, since }, None)
            } else if let Some(status) = proc.try_wait() {
                tracing::warn!(
                    "the balancer exited ({status}) while a new one starts; the new one takes over"
                );
                (State::Starting { proc: next, since: now }, Some(sockets))
            } else {
                (State::HandingOver { proc, next, sockets, since }, None)
            }
        }
        other => (other, None),
    };
    child.state = state;
    promoted.take()
}

/// The state after a serving child exited: a respawn after its backoff.
fn crashed(
    name: &str,
    child: &mut Child,
    since: Instant,
    status: std::process::ExitStatus,
    now: Instant,
) -> State {
    let delay = child.backoff.record_death(now.duration_since(since), now.into_std());
    let when = if delay.is_zero() { "now".to_string() } else { format!("in {delay:.1?}") };
    tracing::warn!("{name} exited ({status}); restarting {when}");
    State::Crashed { at: now + delay }
}

/// Moves a leaving process along (retiring → stopping → SIGKILL past the grace); true once
/// it has exited.
pub(super) fn reap_leaving(name: &str, l: &mut Leaving, now: Instant) -> bool {
    match l.stage {
        Stage::Retiring { until } if now >= until => {
            l.proc.terminate();
            l.stage = Stage::Stopping { since: now };
        }
        Stage::Stopping { since } if now.duration_since(since) > STOP_GRACE => {
            tracing::warn!("{name} (pid {}) still draining after {STOP_GRACE:?}; SIGKILL", l.proc.pid());
            l.proc.kill_group();
            l.stage = Stage::Killed;
        }
        _ => {}
    }
    match l.proc.try_wait() {
        Some(status) => {
            tracing::info!("{name} (pid {}) stopped ({status})", l.proc.pid());
            true
        }
        None => false,
    }
}
