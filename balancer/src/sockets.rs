//! The balancer's two listening sockets (client traffic and admin): bound here, or inherited
//! from the supervisor that started this process (`scalelab up` binds them once and hands the
//! same sockets to every balancer it starts, as a node primary does for its workers). A
//! replacement balancer then accepts from the very queue its predecessor did: during a
//! restart, connections wait in the backlog instead of being refused.
//!
//! pingora binds its own listeners, except for addresses already in its table of
//! transferred descriptors (its zero-downtime upgrade path); [`WithListener`] puts ours there.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use anyhow::{bail, Context};
use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use socket2::{Domain, Protocol, Socket, Type};

/// Where an inherited client listener sits (systemd's first `LISTEN_FDS` descriptor).
pub const LISTEN_FD: RawFd = 3;
/// Where an inherited admin listener sits.
pub const ADMIN_FD: RawFd = 4;

/// Connections the kernel queues while no balancer accepts (a restart, a burst).
const BACKLOG: i32 = 4096;

/// Binds and listens on `addr`, with `SO_REUSEADDR` so a restarted lab can bind while old
/// connections linger in TIME_WAIT. Close-on-exec: a child gets a copy only on purpose.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The two listeners a balancer serves on.
#[derive(Debug)]
pub struct Listeners {
    /// Client traffic.
    pub listen: TcpListener,
    /// `/metrics`, `/state`, the dashboard.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses; the error names the one that failed.
    pub fn bind(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<Listeners> {
        if listen == admin {
            bail!("the client listener and the admin listener are both {listen}");
        }
        Ok(Listeners {
            listen: bind(listen).with_context(|| format!("balancer.listen: cannot listen on {listen}"))?,
            admin: bind(admin).with_context(|| format!("balancer.admin: cannot listen on {admin}"))?,
        })
    }

    /// Takes the sockets a supervisor placed at [`LISTEN_FD`] and [`ADMIN_FD`], checking that
    /// each is a listening TCP socket bound where the topology says.
    pub fn inherited(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<Listeners> {
        let take = |fd: RawFd, want: SocketAddr, what: &str| -> anyhow::Result<TcpListener> {
            // SAFETY: the supervisor placed these descriptors for this process; nothing else in
            // it opens or owns fds 3 and 4 before this runs (it is the first thing `run` does).
            let socket = unsafe { Socket::from_raw_fd(fd) };
            let bound = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .with_context(|| format!("inherited {what} socket (fd {fd}) is not an IP socket"))?;
            if !socket.is_listener().unwrap_or(false) {
                bail!("inherited {what} socket (fd {fd}) is not listening");
            }
            if bound != want {
                bail!("inherited {what} socket (fd {fd}) is bound to {bound}, expected {want}");
            }
            socket.set_cloexec(true).with_context(|| format!("fd {fd}: close-on-exec"))?;
            Ok(socket.into())
        };
        Ok(Listeners { listen: take(LISTEN_FD, listen, "client")?, admin: take(ADMIN_FD, admin, "admin")? })
    }
}

/// A pingora service whose listener for `addr` is a socket we already hold: on start, the
/// socket goes into pingora's table of transferred descriptors, where pingora looks before it
/// binds.
pub struct WithListener<S> {
    inner: S,
    /// pingora's key for the address: the exact string given to `add_tcp`.
    addr: String,
    socket: Option<TcpListener>,
}

impl<S> WithListener<S> {
    /// `inner`, set up with `add_tcp(addr)`, will serve on `socket`.
    pub fn new(inner: S, addr: SocketAddr, socket: TcpListener) -> Self {
        WithListener { inner, addr: addr.to_string(), socket: Some(socket) }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for WithListener<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let (Some(table), Some(socket)) = (&fds, self.socket.take()) {
            // pingora hands the descriptor to tokio as it is: it must not block. (O_NONBLOCK is
            // shared by every process holding the socket; all of them want it.)
            if let Err(e) = socket.set_nonblocking(true) {
                tracing::error!("cannot make the listener on {} non-blocking: {e}", self.addr);
            }
            // pingora takes ownership of the descriptor number from here on.
            let fd = socket.as_raw_fd();
            std::mem::forget(socket);
            table.lock().add(self.addr.clone(), fd);
        }
        self.inner.start_service(fds, shutdown, listeners_per_fd, ready_notifier).await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_a_taken_address_names_it() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = taken.local_addr().unwrap();
        let free = "127.0.0.1:0".parse().unwrap();
        let err = Listeners::bind(addr, free).unwrap_err();
        assert!(format!("{err:#}").contains(&format!("balancer.listen: cannot listen on {addr}")), "{err:#}");
    }
}
