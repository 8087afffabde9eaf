//! The node's front door in each distribution mode: what the primary binds, what a worker gets
//! at fd 3, and what changes when workers start, stop and die.
//!
//! | mode          | the primary holds                   | a worker's fd 3      | who accepts |
//! |---------------|-------------------------------------|----------------------|-------------|
//! | `shared`      | one listening socket                | that socket          | the workers |
//! | `reuseport`   | one `SO_REUSEPORT` socket per slot  | its slot's socket    | the workers |
//! | `round_robin` | one listening socket, one handoff   | its handoff (a Unix  | the primary |
//! |               | socketpair per worker               | stream socket)       |             |
//!
//! Whatever the mode, the primary keeps the port bound for the node's whole life, so a
//! connection that arrives while workers restart waits instead of being refused.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::Command;

use command_fds::FdMapping;
use scalelab_topology::Distribution;
use socket2::Socket;
use tokio::sync::mpsc::UnboundedSender;

use crate::handoff::{self, HANDOFF_FD};
use crate::listener;
use crate::reuseport::ReuseportGroup;
use crate::round_robin::{self, Roster};

/// One worker process, as the front sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its slot.
    pub id: usize,
    pub pid: u32,
    /// Serving and not told to stop: it may be given new connections.
    pub running: bool,
}

/// How connections reach the workers.
#[derive(Debug)]
pub enum Front {
    /// Every worker accepts on the one socket.
    Shared(Socket),
    /// Every slot has its own socket; the kernel picks one per connection.
    Reuseport(ReuseportGroup),
    /// The primary accepts and hands each connection to the next running worker.
    RoundRobin(RoundRobin),
}

/// The primary's side of round-robin distribution, before and after its dispatcher starts.
#[derive(Debug)]
pub struct RoundRobin {
    addr: SocketAddr,
    /// The listening socket, until the dispatcher takes it.
    socket: Option<Socket>,
    /// The running dispatcher.
    roster_tx: Option<UnboundedSender<Roster>>,
    /// Workers told to the dispatcher and not yet told to leave.
    joined: BTreeSet<u32>,
}

impl Front {
    /// Binds `addr` for `distribution` (port 0 picks a free port).
    pub fn bind(distribution: Distribution, addr: SocketAddr) -> io::Result<Front> {
        Ok(match distribution {
            Distribution::Shared => Front::Shared(listener::bind(addr)?),
            Distribution::Reuseport => Front::Reuseport(ReuseportGroup::bind(addr)?),
            Distribution::RoundRobin => {
                let socket = listener::bind(addr)?;
                let addr = listener::local_addr(&socket)?;
                Front::RoundRobin(RoundRobin {
                    addr,
                    socket: Some(socket),
                    roster_tx: None,
                    joined: BTreeSet::new(),
                })
            }
        })
    }

    pub fn distribution(&self) -> Distribution {
        match self {
            Front::Shared(_) => Distribution::Shared,
            Front::Reuseport(_) => Distribution::Reuseport,
            Front::RoundRobin(_) => Distribution::RoundRobin,
        }
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Front::Shared(socket) => listener::local_addr(socket),
            Front::Reuseport(group) => Ok(group.local_addr()),
            Front::RoundRobin(rr) => Ok(rr.addr),
        }
    }

    /// Starts what runs on the primary's event loop (the round-robin dispatcher); call it from
    /// inside the loop.
    pub fn start(&mut self) -> io::Result<()> {
        if let Front::RoundRobin(rr) = self {
            if let Some(socket) = rr.socket.take() {
                rr.roster_tx = Some(round_robin::start(socket)?);
            }
        }
        Ok(())
    }

    /// Prepares fd 3 of a new worker of slot `id` on `cmd`: the mapping to install, and the
    /// primary's end of its handoff (round robin), for [`Front::opened`].
    pub fn door(&mut self, id: usize, cmd: &mut Command) -> io::Result<(FdMapping, Option<UnixStream>)> {
        match self {
            Front::Shared(socket) => Ok((listener::pass_to_child(socket, cmd)?, None)),
            Front::Reuseport(group) => Ok((listener::pass_to_child(group.socket(id)?, cmd)?, None)),
            Front::RoundRobin(_) => {
                listener::clear_listen_env(cmd);
                let (primary, worker) = handoff::pair()?;
                Ok((FdMapping { parent_fd: worker, child_fd: HANDOFF_FD }, Some(primary)))
            }
        }
    }

    /// Worker `id` started as process `pid` with the door from [`Front::door`]: from now on it
    /// is given connections.
    pub fn opened(&mut self, id: usize, pid: u32, handoff: Option<UnixStream>) {
        let (Front::RoundRobin(rr), Some(handoff)) = (self, handoff) else { return };
        let Some(roster_tx) = &rr.roster_tx else {
            tracing::error!(worker = id, pid, "round-robin dispatcher not started; worker gets nothing");
            return;
        };
        if roster_tx.send(Roster::Join { id, pid, handoff }).is_ok() {
            rr.joined.insert(pid);
        }
    }

    /// Brings the front in line with the workers, after any of them started, was told to stop
    /// or exited: only `running` members get new connections, and the sockets of slots above
    /// `desired` with no process left are closed.
    pub fn sync(&mut self, members: &[Member], desired: usize) {
        match self {
            Front::Shared(_) => {}
            Front::Reuseport(group) => {
                let running: BTreeSet<usize> = members.iter().filter(|m| m.running).map(|m| m.id).collect();
                let present: BTreeSet<usize> = members.iter().map(|m| m.id).collect();
                let retired: Vec<usize> =
                    group.slots().filter(|&slot| slot > desired && !present.contains(&slot)).collect();
                group.reconcile(&running, &retired);
            }
            Front::RoundRobin(rr) => {
                let running: BTreeSet<u32> = members.iter().filter(|m| m.running).map(|m| m.pid).collect();
                let left: Vec<u32> = rr.joined.difference(&running).copied().collect();
                for pid in left {
                    rr.joined.remove(&pid);
                    let sent = rr.roster_tx.as_ref().map(|tx| tx.send(Roster::Leave { pid }));
                    if let Some(Err(e)) = sent {
                        // The dispatcher only ends with the primary's loop.
                        tracing::debug!(pid, "round-robin dispatcher gone: {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: usize, running: bool) -> Member {
        Member { id, pid: 1000 + id as u32, running }
    }

    #[test]
    fn a_removed_slot_keeps_its_socket_until_its_worker_is_gone() {
        let mut front = Front::bind(Distribution::Reuseport, "127.0.0.1:0".parse().unwrap()).unwrap();
        for id in 1..=3 {
            front.door(id, &mut Command::new("true")).unwrap();
        }
        let Front::Reuseport(group) = &front else { unreachable!() };
        assert_eq!(group.slots().collect::<Vec<_>>(), vec![1, 2, 3]);

        // Down to 2 workers: worker 3 drains; its socket stays while the process is there.
        front.sync(&[member(1, true), member(2, true), member(3, false)], 2);
        let Front::Reuseport(group) = &front else { unreachable!() };
        assert_eq!(group.slots().collect::<Vec<_>>(), vec![1, 2, 3]);

        // Worker 3 exited; worker 2 crashed and waits for its respawn: only slot 3 goes.
        front.sync(&[member(1, true)], 2);
        let Front::Reuseport(group) = &front else { unreachable!() };
        assert_eq!(group.slots().collect::<Vec<_>>(), vec![1, 2]);
    }
}
