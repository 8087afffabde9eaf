//! The balancer's two listening sockets, bound once by the lab and passed to every balancer
//! process at fds 3 and 4. A crashed balancer's replacement, or a new one after a `balancer:`
//! edit, accepts from the same kernel queue: connections wait instead of being refused.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use anyhow::Context;
use command_fds::FdMapping;
use scalelab_balancer::sockets::{self, ADMIN_FD, LISTEN_FD};
use scalelab_topology::Topology;

/// The balancer's sockets and the addresses they are bound to.
#[derive(Debug)]
pub struct Sockets {
    pub listen_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    listen: TcpListener,
    admin: TcpListener,
}

impl Sockets {
    /// Binds `t`'s balancer addresses.
    pub fn bind(t: &Topology) -> anyhow::Result<Sockets> {
        let b = &t.balancer;
        let l = sockets::Listeners::bind(b.listen, b.admin)?;
        Ok(Sockets { listen_addr: b.listen, admin_addr: b.admin, listen: l.listen, admin: l.admin })
    }

    /// Sockets for `t`'s addresses, reusing ours where an address is unchanged (it is bound
    /// already, so binding it again would fail).
    pub fn rebind(&self, t: &Topology) -> anyhow::Result<Sockets> {
        let b = &t.balancer;
        let take = |addr: SocketAddr, what: &str| -> anyhow::Result<TcpListener> {
            if addr == self.listen_addr {
                return self.listen.try_clone().context("duplicating the client listener");
            }
            if addr == self.admin_addr {
                return self.admin.try_clone().context("duplicating the admin listener");
            }
            sockets::bind(addr).with_context(|| format!("balancer.{what}: cannot listen on {addr}"))
        };
        Ok(Sockets {
            listen_addr: b.listen,
            admin_addr: b.admin,
            listen: take(b.listen, "listen")?,
            admin: take(b.admin, "admin")?,
        })
    }

    /// Where the admin listener really is (the bound port, when the topology said 0).
    pub fn admin_local_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.admin_addr)
    }

    /// Mappings that place duplicates at fds 3 and 4 in a child.
    pub fn mappings(&self) -> anyhow::Result<Vec<FdMapping>> {
        let dup = |s: &TcpListener| -> anyhow::Result<OwnedFd> {
            Ok(s.try_clone().context("duplicating a listener")?.into())
        };
        Ok(vec![
            FdMapping { parent_fd: dup(&self.listen)?, child_fd: LISTEN_FD },
            FdMapping { parent_fd: dup(&self.admin)?, child_fd: ADMIN_FD },
        ])
    }
}
