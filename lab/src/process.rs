//! One supervised child of a lab (the balancer or a node primary): how it is started so it
//! can never outlive the lab, and the non-blocking steps of stopping it (SIGTERM, a deadline,
//! SIGKILL of its process group). Waiting is the supervisor's loop's business, never a sleep
//! here.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A running child in its own process group (so a terminal's Ctrl-C reaches the lab's owner
/// alone, and the lab decides the order of shutdown).
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// When SIGTERM was sent, if it was.
    stopping: Option<Instant>,
}

impl Proc {
    /// Starts `exe ARGS...` with `fds` placed in the child and `env` added. If the lab's
    /// process dies, even by SIGKILL, the kernel sends the child SIGTERM, so nothing is left
    /// behind.
    pub fn spawn(
        exe: &Path,
        args: &[String],
        fds: Vec<FdMapping>,
        env: &[(&str, String)],
    ) -> anyhow::Result<Proc> {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::null()).process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.fd_mappings(fds).context("mapping the child's descriptors")?;
        scalelab_node::lifeline::arm_parent_death_signal(&mut cmd);
        let child =
            cmd.spawn().with_context(|| format!("cannot start {} {}", exe.display(), args.join(" ")))?;
        Ok(Proc { child, stopping: None })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!("cannot wait for pid {}: {e}", self.pid());
                None
            }
        }
    }

    /// Sends SIGTERM once; the child drains and exits by itself.
    pub fn terminate(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            if let Err(e) = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM) {
                tracing::debug!("SIGTERM to {}: {e}", self.pid());
            }
        }
    }

    /// True once SIGTERM was sent more than `grace` ago.
    pub fn overdue(&self, grace: Duration) -> bool {
        self.stopping.is_some_and(|t| t.elapsed() > grace)
    }

    /// Waits for the child to exit (after a SIGKILL this is immediate); for a last-resort
    /// cleanup only.
    pub fn wait(&mut self) {
        if let Err(e) = self.child.wait() {
            tracing::debug!("waiting for {}: {e}", self.pid());
        }
    }

    /// SIGKILLs the child's whole process group (its workers too).
    pub fn kill_group(&mut self) {
        if let Err(e) = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL) {
            tracing::debug!("SIGKILL to group {}: {e}", self.pid());
        }
    }
}
