//! Reuseport distribution, the primary's side: one `SO_REUSEPORT` listening socket per worker
//! slot, all on the node's port, so the kernel picks a socket (a worker) for each new
//! connection (nginx `listen ... reuseport`).
//!
//! The primary binds a slot's socket when the slot is first needed and keeps it across that
//! slot's restarts, passing it to each of its workers at fd 3. So the port stays bound while
//! workers restart, and connections that reach a restarting slot wait in its queue.
//!
//! **Steering.** Left alone, the kernel spreads connections over every socket of the group,
//! including one whose worker is dead, restarting, or being removed. The primary therefore
//! attaches a classic BPF program to the group (`SO_ATTACH_REUSEPORT_CBPF`, no privilege
//! needed) that spreads new connections at random over the sockets of *running* workers only,
//! and detaches it when every socket has one (the kernel's own hash then decides). The program
//! returns an index into the kernel's array of the group's sockets, so the group mirrors that
//! array: a socket is appended when it starts listening and, when it is shut down, the last
//! one takes its place.
//!
//! **Removing a slot** (fewer workers). Closing a listening socket resets the connections
//! queued on it, unless `net.ipv4.tcp_migrate_req=1` (Linux 5.14+, system-wide, not set here)
//! moves them to a sibling. So a slot is removed in three steps:
//! 1. the program stops sending it new connections (before its worker is told to stop);
//! 2. the worker, on SIGTERM, accepts what is already queued before it closes its copy
//!    (see `worker`), and serves it while draining;
//! 3. once the worker has exited, the primary shuts the socket down (`retire`).
//!
//! What can still be reset: a connection whose handshake was in flight at step 1 and that is
//! queued after the worker's last accept (on loopback, microseconds); everything queued when
//! the worker dies instead of draining (SIGKILL); and, without steering (the program could
//! not be attached: see the log), everything routed to the socket while its worker drained.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::mem;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::listener::{self, BACKLOG};

/// `SO_ATTACH_REUSEPORT_CBPF` and `SO_DETACH_REUSEPORT_BPF` from `asm-generic/socket.h`, the
/// values of every architecture scalelab is built for (the `libc` crate has them for Android
/// only).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

/// Where new connections of the group go, as last told to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Steering {
    /// Unknown (nothing attached yet, or the array changed under the program).
    Stale,
    /// No program: the kernel hashes each connection over every socket.
    Hash,
    /// A program spreads connections at random over these kernel indices.
    Among(Vec<u32>),
    /// Attaching failed once; the kernel's hash decides from then on.
    Unavailable,
}

/// The per-slot `SO_REUSEPORT` sockets of one node.
#[derive(Debug)]
pub struct ReuseportGroup {
    /// The group's address, with the port resolved (every socket binds exactly this).
    addr: SocketAddr,
    sockets: BTreeMap<usize, Socket>,
    /// The kernel's array of the group's listening sockets, as slots: the index a steering
    /// program returns picks the socket of `order[index]`.
    order: Vec<usize>,
    steering: Steering,
}

impl ReuseportGroup {
    /// Binds the group on `addr` with the socket of slot 1. Fails like a plain bind if anything
    /// already listens on the port, even an `SO_REUSEPORT` socket of the same user that a
    /// reuseport bind would silently join (another node started on the same port).
    pub fn bind(addr: SocketAddr) -> io::Result<ReuseportGroup> {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
        let addr = listener::local_addr(&probe)?;
        drop(probe);
        let mut group =
            ReuseportGroup { addr, sockets: BTreeMap::new(), order: Vec::new(), steering: Steering::Stale };
        group.socket(1)?;
        Ok(group)
    }

    /// The address every socket of the group is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The socket of `slot`, bound and listening now if it was not yet.
    pub fn socket(&mut self, slot: usize) -> io::Result<&Socket> {
        if !self.sockets.contains_key(&slot) {
            let socket = bind_member(self.addr)?;
            // listen() is what adds a socket to the kernel's array, at the end.
            self.order.push(slot);
            self.sockets.insert(slot, socket);
        }
        Ok(&self.sockets[&slot])
    }

    /// Slots that have a socket.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.sockets.keys().copied()
    }

    /// Shuts down the sockets of `retired` (their workers are gone and the slots unwanted),
    /// then steers new connections to the sockets of `running` slots.
    pub fn reconcile(&mut self, running: &BTreeSet<usize>, retired: &[usize]) {
        for &slot in retired {
            let Some(i) = self.order.iter().position(|&s| s == slot) else { continue };
            // Shutting down index i moves the last socket to i. While the program still
            // names the old indices, keep it off the socket that moves, so no connection is
            // sent to the retired socket or past the end of the shorter array.
            if let Some(&moved) = self.order.last().filter(|&&m| m != slot) {
                let others: BTreeSet<usize> =
                    running.iter().copied().filter(|&s| s != moved && s != slot).collect();
                if !others.is_empty() {
                    self.steer(&others);
                }
            }
            let socket = self.sockets.remove(&slot).expect("every slot in order has a socket");
            match queued(&socket) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    slot,
                    "closing the socket of removed worker {slot} resets {n} queued connections"
                ),
                Err(e) => tracing::debug!(slot, error = %e, "cannot read the queue length"),
            }
            // shutdown, not just close: a copy held by a child between fork and exec must not
            // keep the socket in the group.
            if let Err(e) = socket.shutdown(Shutdown::Both) {
                tracing::warn!(slot, error = %e, "shutting down the socket of removed worker {slot}");
            }
            self.order.swap_remove(i);
            if self.steering != Steering::Unavailable {
                self.steering = Steering::Stale;
            }
        }
        self.steer(running);
    }

    /// Sends new connections to the sockets of `running` slots only (every socket when none
    /// or all of them run).
    fn steer(&mut self, running: &BTreeSet<usize>) {
        if self.steering == Steering::Unavailable {
            return;
        }
        let indices: Vec<u32> =
            (0..self.order.len()).filter(|&i| running.contains(&self.order[i])).map(|i| i as u32).collect();
        let want = if indices.is_empty() || indices.len() == self.order.len() {
            Steering::Hash
        } else {
            Steering::Among(indices)
        };
        if want == self.steering {
            return;
        }
        let Some(any) = self.order.first().map(|slot| &self.sockets[slot]) else { return };
        let done = match &want {
            Steering::Among(indices) => attach(any, &spread_program(indices)),
            _ => detach(any),
        };
        match done {
            Ok(()) => self.steering = want,
            Err(e) => {
                tracing::warn!(
                    "cannot steer the reuseport group ({e}); the kernel spreads connections over \
                     every worker's socket, including restarting and removed ones"
                );
                self.steering = Steering::Unavailable;
            }
        }
    }
}

/// One member socket: `SO_REUSEADDR` (restarts next to TIME_WAIT) and `SO_REUSEPORT`, bound to
/// `addr`, listening, close-on-exec.
fn bind_member(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// Connections waiting in the accept queue of the listening `socket` (for a listener, Linux
/// reports the queue length as `tcpi_unacked`).
pub fn queued(socket: &Socket) -> io::Result<u32> {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.tcpi_unacked)
}

/// A classic BPF program for a reuseport group that picks one of `indices` at random:
///
/// ```text
///   A = random            ld  rand
///   A = A % n             mod #n
///   A == 0 ? ret i0       jeq #0      (then) ret #i0
///   A == 1 ? ret i1       jeq #1      (then) ret #i1
///   ...
///   ret i(n-1)
/// ```
///
/// When `indices` is `0..n` the table collapses to `ret A`.
fn spread_program(indices: &[u32]) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let n = indices.len() as u32;
    let mut prog = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32),
        stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n),
    ];
    if indices.iter().enumerate().all(|(j, &i)| i == j as u32) {
        prog.push(stmt(libc::BPF_RET | libc::BPF_A, 0));
        return prog;
    }
    let (last, table) = indices.split_last().expect("steering needs at least one socket");
    for (j, &index) in table.iter().enumerate() {
        // Equal: fall through to the `ret` below; not equal: skip it.
        prog.push(libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: j as u32,
        });
        prog.push(stmt(libc::BPF_RET | libc::BPF_K, index));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, *last));
    prog
}

/// Attaches `prog` to the reuseport group of `socket`, replacing any program.
fn attach(socket: &Socket, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: the kernel copies the program out of `prog` during the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches the program of the reuseport group of `socket`, if any (Linux 5.3+).
fn detach(socket: &Socket) -> io::Result<()> {
    let unused: libc::c_int = 0;
    // SAFETY: the option takes no value; the pointer is valid for the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_DETACH_REUSEPORT_BPF,
            (&unused as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => Ok(()), // nothing was attached
            e => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    /// Runs a program of [`spread_program`] with `A` loaded as `random`.
    fn run(prog: &[libc::sock_filter], random: u32) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let insn = &prog[pc];
            pc += 1;
            match insn.code as u32 {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = random,
                c if c == libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K => a %= insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += if a == insn.k { insn.jt } else { insn.jf } as usize;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                c if c == libc::BPF_RET | libc::BPF_A => return a,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn the_program_picks_every_running_index_equally() {
        for indices in [vec![0], vec![2], vec![0, 1, 2], vec![1, 3], vec![4, 0, 2]] {
            let prog = spread_program(&indices);
            let mut picked: Vec<u32> = (0..indices.len() as u32 * 10).map(|r| run(&prog, r)).collect();
            picked.sort_unstable();
            let mut want: Vec<u32> = indices.iter().flat_map(|&i| [i; 10]).collect();
            want.sort_unstable();
            assert_eq!(picked, want, "{indices:?}");
        }
        assert_eq!(spread_program(&[0, 1, 2]).len(), 3, "a prefix needs no table");
    }

    /// Accepts everything queued on `socket` without waiting; returns how many.
    fn drain(socket: &Socket) -> usize {
        socket.set_nonblocking(true).unwrap();
        std::iter::from_fn(|| socket.accept().ok()).count()
    }

    fn group_of_three() -> ReuseportGroup {
        let mut group = ReuseportGroup::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        group.socket(2).unwrap();
        group.socket(3).unwrap();
        group
    }

    fn connect(group: &ReuseportGroup, n: usize) -> Vec<TcpStream> {
        (0..n).map(|_| TcpStream::connect(group.local_addr()).unwrap()).collect()
    }

    #[test]
    fn connections_reach_running_slots_only() {
        let mut group = group_of_three();
        group.reconcile(&BTreeSet::from([1, 3]), &[]);
        let _clients = connect(&group, 60);
        let counts: Vec<usize> = [1, 2, 3].map(|slot| drain(&group.sockets[&slot])).into();
        assert_eq!(counts[1], 0, "slot 2 is not running: {counts:?}");
        assert_eq!(counts[0] + counts[2], 60, "{counts:?}");
        assert!(counts[0] > 10 && counts[2] > 10, "spread at random: {counts:?}");

        // All running again: the kernel's hash reaches every socket.
        group.reconcile(&BTreeSet::from([1, 2, 3]), &[]);
        assert_eq!(group.steering, Steering::Hash);
        let _clients = connect(&group, 60);
        let counts: Vec<usize> = [1, 2, 3].map(|slot| drain(&group.sockets[&slot])).into();
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }

    #[test]
    fn retiring_a_middle_slot_keeps_the_mirror_right() {
        //   kernel array:  [1, 2, 3]  --retire 2-->  [1, 3]  (3 moved to index 1)
        let mut group = group_of_three();
        group.socket(4).unwrap();
        //   [1, 2, 3, 4] --retire 2--> [1, 4, 3]
        group.reconcile(&BTreeSet::from([1, 3]), &[2]);
        assert_eq!(group.order, vec![1, 4, 3]);
        assert_eq!(group.slots().collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(group.steering, Steering::Among(vec![0, 2]));
        let _clients = connect(&group, 60);
        let counts: Vec<usize> = [1, 3, 4].map(|slot| drain(&group.sockets[&slot])).into();
        assert_eq!(counts[2], 0, "slot 4 is not running: {counts:?}");
        assert_eq!(counts[0] + counts[1], 60, "none reached the retired socket: {counts:?}");
    }

    #[test]
    fn the_port_is_refused_to_a_second_group() {
        let group = group_of_three();
        let err = ReuseportGroup::bind(group.local_addr()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }

    #[test]
    fn queued_counts_the_accept_queue() {
        let group = group_of_three();
        let only = ReuseportGroup::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let _clients: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect(only.local_addr()).unwrap()).collect();
        assert_eq!(queued(&only.sockets[&1]).unwrap(), 3);
        assert_eq!(queued(&group.sockets[&1]).unwrap(), 0);
    }
}
