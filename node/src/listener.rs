//! Listening sockets: bound by the primary, inherited by a worker as fd 3 (the systemd
//! `LISTEN_FDS` convention).
//!
//! In `shared` distribution every worker gets the node's one socket and accepts on it (Node's
//! `SCHED_NONE`); in `reuseport` each worker gets its slot's own socket (see `reuseport`). The
//! primary never accepts on them; it only keeps them open, so connections queue in the kernel
//! backlog while a worker restarts and none is refused. (In `round_robin` the primary accepts
//! on the one socket itself; see `round_robin`.)

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::process::Command;

use anyhow::Context;
use command_fds::FdMapping;
use socket2::{Domain, Protocol, Socket, Type};

/// Whether an `accept` failed for want of descriptors or memory: the acceptor pauses before
/// trying again, instead of spinning on an error the next call would repeat.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Where a worker finds the listening socket (the first `LISTEN_FDS` descriptor).
pub const LISTEN_FD: RawFd = 3;

/// Pending connections the kernel queues for the workers; covers a burst while every worker
/// is busy burning `/op2` CPU.
pub const BACKLOG: i32 = 1024;

/// Binds and listens on `addr` (close-on-exec; workers get an explicit copy).
pub fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted node must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// The address `socket` is bound to (resolves port 0).
pub fn local_addr(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

/// Removes the `LISTEN_FDS` convention's variables from `cmd`: a child that inherits no
/// listening socket must not believe it does.
pub fn clear_listen_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID").env_remove("LISTEN_FDS_FIRST_FD")
}

/// A mapping that places a duplicate of `socket` at [`LISTEN_FD`] in a child, and the
/// environment that tells the child it is there.
pub fn pass_to_child(socket: &Socket, cmd: &mut Command) -> io::Result<FdMapping> {
    clear_listen_env(cmd).env("LISTEN_FDS", "1");
    let parent_fd: OwnedFd = socket.try_clone()?.into();
    Ok(FdMapping { parent_fd, child_fd: LISTEN_FD })
}

/// Takes the inherited socket in a worker and registers it with the current tokio runtime.
/// With `reuse_port`, the socket must be an `SO_REUSEPORT` one (a slot's own socket).
pub fn take_inherited(reuse_port: bool) -> anyhow::Result<tokio::net::TcpListener> {
    let std_listener = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .context("fd 3 is not a TCP listening socket")?
        .context("no inherited listening socket (LISTEN_FDS is not set)")?;
    if reuse_port {
        let set =
            socket2::SockRef::from(&std_listener).reuse_port().context("reading SO_REUSEPORT of fd 3")?;
        anyhow::ensure!(set, "fd 3 is not an SO_REUSEPORT socket, as reuseport distribution needs");
    }
    // O_NONBLOCK is shared by every process holding the socket; all of them want it.
    std_listener.set_nonblocking(true).context("making the inherited socket non-blocking")?;
    tokio::net::TcpListener::from_std(std_listener).context("registering the inherited socket")
}
