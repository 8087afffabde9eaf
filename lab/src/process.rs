//! One real child of a lab (the balancer or a node primary): how it is started so it can
//! never outlive the lab, and the non-blocking steps of stopping it (SIGTERM, then SIGKILL of
//! its process group). Deadlines are the supervisor's business, never a sleep here.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context;
use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::launch::Process;

/// A running child in its own process group (so a terminal's Ctrl-C reaches the lab's owner
/// alone, and the lab decides the order of shutdown).
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Whether SIGTERM was sent.
    terminated: bool,
    /// The read end of its readiness pipe (a balancer), until it reports.
    ready: Option<OwnedFd>,
}

impl Proc {
    /// Starts `exe ARGS...` with `fds` placed in the child and `env` added. If the lab's
    /// process dies, even by SIGKILL, the kernel sends the child SIGTERM, so nothing is left
    /// behind. `ready` is the read end of a pipe the child writes one byte to once it serves.
    pub fn spawn(
        exe: &Path,
        args: &[String],
        fds: Vec<FdMapping>,
        env: &[(&str, String)],
        ready: Option<OwnedFd>,
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
        Ok(Proc { child, terminated: false, ready })
    }
}

impl Process for Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!("cannot wait for pid {}: {e}", self.pid());
                None
            }
        }
    }

    fn reported_ready(&mut self) -> bool {
        let Some(fd) = &self.ready else { return false };
        let mut byte = [0u8; 1];
        let ready = matches!(nix::unistd::read(fd, &mut byte), Ok(1));
        if ready {
            self.ready = None;
        }
        ready
    }

    fn terminate(&mut self) {
        if !self.terminated {
            self.terminated = true;
            if let Err(e) = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM) {
                tracing::debug!("SIGTERM to {}: {e}", self.pid());
            }
        }
    }

    fn kill_group(&mut self) {
        if let Err(e) = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL) {
            tracing::debug!("SIGKILL to group {}: {e}", self.pid());
        }
    }

    fn wait(&mut self) {
        if let Err(e) = self.child.wait() {
            tracing::debug!("waiting for {}: {e}", self.pid());
        }
    }
}
