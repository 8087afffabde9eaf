//! The seam between the supervisor and the operating system: how a child is started, and what
//! the supervisor may ask of a started one. [`Processes`] starts real processes (this very
//! executable as `scalelab node` or `scalelab balancer`); the supervisor's unit tests start
//! fakes instead, so that its decisions (apply, reap, respawn, hand over, scale) run under a
//! paused clock, without processes.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::Duration;

use nix::fcntl::OFlag;
use scalelab_balancer::BalancerArgs;
use scalelab_node::NodeArgs;

use crate::process::Proc;
use crate::sockets::Sockets;

/// Where a balancer finds the write end of its readiness pipe.
const READY_FD: i32 = 5;
/// How long a restarted node may take to serve (and be seen healthy by the balancer).
const SERVING_WAIT: Duration = Duration::from_secs(15);

/// A started child, as the supervisor sees it. Nothing here blocks but [`Process::wait`].
pub trait Process: Send {
    fn pid(&self) -> u32;
    /// Its exit status once it has exited (this reaps it); `None` while it runs.
    fn try_wait(&mut self) -> Option<ExitStatus>;
    /// Whether it said that it serves (a balancer writes a byte on its readiness pipe); a node
    /// says nothing and answers `false`.
    fn reported_ready(&mut self) -> bool;
    /// SIGTERM, once: it drains and exits by itself.
    fn terminate(&mut self);
    /// SIGKILL to its whole process group (a node's workers too).
    fn kill_group(&mut self);
    /// Waits for it to exit; for a last-resort cleanup after [`Process::kill_group`] only.
    fn wait(&mut self);
}

/// A future the supervisor runs on the side.
pub type Probe = Pin<Box<dyn Future<Output = bool> + Send>>;

/// How the supervisor starts children and looks at the machine.
pub trait Launcher: Send {
    /// Starts a node primary.
    fn node(&mut self, args: &NodeArgs) -> anyhow::Result<Box<dyn Process>>;
    /// Starts a balancer on `sockets`.
    fn balancer(&mut self, args: &BalancerArgs, sockets: &Sockets) -> anyhow::Result<Box<dyn Process>>;
    /// Whether a new listener could bind `addr` now (nothing listens there any more).
    fn port_free(&self, addr: SocketAddr) -> bool;
    /// Resolves to `true` once node `name` accepts on `addr` and the balancer at `admin` sees
    /// it healthy, or to `false` when that takes too long.
    fn serving(&self, name: &str, addr: SocketAddr, admin: SocketAddr) -> Probe;
}

/// Real processes: this executable's `node` and `balancer` subcommands.
pub struct Processes {
    pub exe: PathBuf,
    /// Environment added to every child (`RUST_LOG`).
    pub env: Vec<(&'static str, String)>,
}

impl Launcher for Processes {
    fn node(&mut self, args: &NodeArgs) -> anyhow::Result<Box<dyn Process>> {
        let mut argv = vec!["node".to_string()];
        argv.extend(args.to_args());
        Ok(Box::new(Proc::spawn(&self.exe, &argv, Vec::new(), &self.env, None)?))
    }

    fn balancer(&mut self, args: &BalancerArgs, sockets: &Sockets) -> anyhow::Result<Box<dyn Process>> {
        let mut args = args.clone();
        args.inherited = true;
        args.ready_fd = Some(READY_FD);
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| anyhow::anyhow!("readiness pipe: {e}"))?;
        let mut fds = sockets.mappings()?;
        fds.push(command_fds::FdMapping { parent_fd: write, child_fd: READY_FD });
        let mut argv = vec!["balancer".to_string()];
        argv.extend(args.to_args());
        Ok(Box::new(Proc::spawn(&self.exe, &argv, fds, &self.env, Some(read))?))
    }

    fn port_free(&self, addr: SocketAddr) -> bool {
        // std sets SO_REUSEADDR, as the nodes do: connections in TIME_WAIT do not count.
        TcpListener::bind(addr).is_ok()
    }

    fn serving(&self, name: &str, addr: SocketAddr, admin: SocketAddr) -> Probe {
        let name = name.to_string();
        Box::pin(async move {
            crate::ready::listening(&[addr], SERVING_WAIT).await.is_empty()
                && crate::ready::balancer_sees_healthy(admin, &name, SERVING_WAIT).await.is_ok()
        })
    }
}
