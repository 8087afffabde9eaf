//! One supervised child of `scalelab up` (the balancer or a node primary): how it is started
//! so it can never outlive `up`, and how it is stopped (SIGTERM, deadline, SIGKILL).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A running child in its own process group (so a terminal's Ctrl-C reaches `up` alone, and
/// `up` decides the order of shutdown).
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// When the current stop began (SIGTERM sent), and its deadline for SIGKILL.
    stopping: Option<Instant>,
}

impl Proc {
    /// Starts `scalelab ARGS...` (this same binary). If `up` dies, even by SIGKILL, the kernel
    /// sends the child SIGTERM (PR_SET_PDEATHSIG), so nothing is left behind.
    pub fn spawn(args: &[String]) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("cannot find the scalelab executable")?;
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::null()).process_group(0);
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot start scalelab {}", args.join(" ")))?;
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

    /// SIGKILLs the child's whole process group (its workers too).
    pub fn kill_group(&mut self) {
        if let Err(e) = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL) {
            tracing::debug!("SIGKILL to group {}: {e}", self.pid());
        }
    }

    /// Stops the child and waits for it: SIGTERM, then SIGKILL of its group after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.terminate();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if self.overdue(grace) {
                self.kill_group();
                return self.child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
