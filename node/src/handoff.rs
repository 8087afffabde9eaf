//! The round-robin handoff: a Unix stream socketpair between the primary and one worker, over
//! which the primary passes the connections it accepted (`SCM_RIGHTS`, as Node's `SCHED_RR`
//! passes handles), and the acknowledgements that come back.
//!
//! The wire, in both directions one byte per connection:
//!
//! ```text
//!   primary ── sendmsg("c" + SCM_RIGHTS[fd]) ──▶ worker     one message per connection
//!   primary ◀────────────── "a" ──────────────── worker     one byte per connection taken
//! ```
//!
//! Acknowledgements come back in the order the connections were sent. The primary keeps its
//! own copy of a connection until the worker has acknowledged it, because descriptors sent but
//! not yet received die with the receiver: a worker killed with connections still queued in
//! its socket would otherwise lose them. When the worker's end closes, whatever it did not
//! acknowledge was never read by it, and the primary hands those connections to another
//! worker. A worker acknowledges a connection before reading a byte of it, so a connection is
//! never served twice.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::Context;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;

/// Where a round-robin worker finds its end of the handoff.
pub const HANDOFF_FD: RawFd = 3;

/// The byte that carries a connection.
const CONN: u8 = b'c';
/// The byte that acknowledges one.
const ACK: u8 = b'a';
/// Connections a worker takes from its socket before it serves them and looks again.
const BATCH: usize = 64;

/// A new handoff: the primary's end and the worker's end, both close-on-exec (the worker's is
/// mapped to [`HANDOFF_FD`] explicitly), the primary's non-blocking.
pub fn pair() -> io::Result<(UnixStream, OwnedFd)> {
    let (primary, worker) = UnixStream::pair()?;
    primary.set_nonblocking(true)?;
    Ok((primary, worker.into()))
}

/// Sends `conn` to the worker at the other end of `handoff` (the primary's side). Fails with
/// `WouldBlock` when the worker's socket is full, with `EPIPE`/`ECONNRESET` when it is gone.
pub fn send(handoff: &tokio::net::UnixStream, conn: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [conn.as_raw_fd()];
    // Straight to the socket, not through tokio's readiness (unknown on a fresh stream): the
    // dispatcher never waits for writability, it moves on to the next worker.
    let sent = sendmsg::<()>(
        handoff.as_raw_fd(),
        &[IoSlice::new(&[CONN])],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    match sent {
        1 => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::WriteZero, "the connection byte was not sent")),
    }
}

/// What the primary read from a handoff.
#[derive(Debug, PartialEq, Eq)]
pub struct Acks {
    /// The worker took this many more connections (maybe 0: nothing to read yet).
    pub taken: usize,
    /// The worker's end is closed (after those acknowledgements): it takes nothing more, and
    /// what it has not acknowledged it never read.
    pub closed: bool,
}

/// Reads the acknowledgements waiting on `handoff` without blocking (the primary's side).
pub fn read_acks(handoff: &tokio::net::UnixStream) -> Acks {
    let mut acks = Acks { taken: 0, closed: false };
    let mut buf = [0u8; 256];
    loop {
        match handoff.try_read(&mut buf) {
            Ok(0) => {
                acks.closed = true;
                return acks;
            }
            Ok(n) => acks.taken += buf[..n].iter().filter(|&&b| b == ACK).count(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return acks,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "handoff read failed; treating it as closed");
                acks.closed = true;
                return acks;
            }
        }
    }
}

/// A worker's end of the handoff.
#[derive(Debug)]
pub struct Receiver {
    fd: AsyncFd<OwnedFd>,
}

impl Receiver {
    /// Takes the handoff inherited at [`HANDOFF_FD`]; must run inside the worker's runtime.
    /// Fails (a boot failure) unless that descriptor is a Unix stream socket.
    pub fn take_inherited() -> anyhow::Result<Receiver> {
        // SAFETY: F_GETFD only reads the descriptor flags; it fails on a closed descriptor.
        if unsafe { libc::fcntl(HANDOFF_FD, libc::F_GETFD) } == -1 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("fd {HANDOFF_FD} is not open (no handoff from the primary)"));
        }
        // SAFETY: fd 3 is open (checked above) and stays open while borrowed here.
        check_handoff(unsafe { BorrowedFd::borrow_raw(HANDOFF_FD) })?;
        // SAFETY: the primary mapped the handoff to this descriptor for this process alone;
        // nothing else in the worker opens or owns it.
        Receiver::new(unsafe { OwnedFd::from_raw_fd(HANDOFF_FD) })
    }

    /// Wraps a worker's end (already known to be a Unix stream socket).
    pub fn new(fd: OwnedFd) -> anyhow::Result<Receiver> {
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .context("making the handoff non-blocking")?;
        // SAFETY: the `OwnedFd` keeps its descriptor open, unchanged, as long as the `AsyncFd`.
        let fd =
            unsafe { AsyncFd::register(fd) }.map_err(io::Error::from).context("registering the handoff")?;
        Ok(Receiver { fd })
    }

    /// Waits for connections and takes (and acknowledges) those queued, up to a batch. `None`
    /// once the primary closed its end.
    pub async fn next(&self) -> io::Result<Option<Vec<std::net::TcpStream>>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| receive(fd.get_ref().as_fd())) {
                Ok(Ok(Received { conns, messages, closed })) => {
                    self.acknowledge(messages).await?;
                    if !conns.is_empty() {
                        return Ok(Some(conns));
                    }
                    if closed {
                        return Ok(None);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Takes (and acknowledges) whatever is queued now, without waiting for more: the last
    /// look of a stopping worker before it closes the handoff.
    pub async fn take_queued(&self) -> io::Result<Vec<std::net::TcpStream>> {
        let mut all = Vec::new();
        loop {
            let Received { conns, messages, closed } = match receive(self.fd.get_ref().as_fd()) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            self.acknowledge(messages).await?;
            all.extend(conns);
            if closed || messages == 0 {
                break;
            }
        }
        Ok(all)
    }

    /// Writes `n` acknowledgements. The primary always reads them, so this waits only if its
    /// event loop is behind. A primary that is gone cannot hand the connections to anyone
    /// else: they are this worker's, and the lifeline stops it soon.
    async fn acknowledge(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        // `receive` takes at most BATCH messages at a time.
        let acks = &[ACK; BATCH][..n];
        let mut sent = 0;
        while sent < n {
            let mut guard = self.fd.writable().await?;
            let wrote = guard.try_io(|fd| {
                nix::sys::socket::send(
                    fd.get_ref().as_raw_fd(),
                    &acks[sent..],
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                )
                .map_err(io::Error::from)
            });
            match wrote {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// What one non-blocking look at the worker's end found.
struct Received {
    conns: Vec<std::net::TcpStream>,
    /// Messages consumed, each to be acknowledged: the primary counts acknowledgements
    /// against the connections it sent, in order.
    messages: usize,
    /// The primary's end is closed (after the connections, if any).
    closed: bool,
}

/// Receives up to [`BATCH`] connections without blocking; `WouldBlock` only if nothing at all
/// was there.
fn receive(fd: BorrowedFd<'_>) -> io::Result<Received> {
    let (mut conns, mut messages) = (Vec::new(), 0);
    while messages < BATCH {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        // One message carries one descriptor; the kernel never merges two messages' rights.
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EAGAIN) if messages > 0 => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if msg.bytes == 0 {
            return Ok(Received { conns, messages, closed: true });
        }
        messages += 1;
        let Ok(cmsgs) = msg.cmsgs() else {
            // The kernel closed what did not fit. It is still acknowledged, so the primary's
            // count stays in step (it then closes its copy: that client sees a reset).
            tracing::error!("a handoff message lost its descriptor (control data truncated)");
            continue;
        };
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in this process for us alone.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    conns.push(std::net::TcpStream::from(owned));
                }
            }
        }
    }
    Ok(Received { conns, messages, closed: false })
}

/// Checks that `fd` is a Unix stream socket: what a round-robin worker needs at fd 3.
fn check_handoff(fd: BorrowedFd<'_>) -> anyhow::Result<()> {
    let sock = socket2::SockRef::from(&fd);
    let domain = sock.domain().with_context(|| format!("fd {HANDOFF_FD} is not a socket (no handoff)"))?;
    let kind = sock.r#type().with_context(|| format!("reading the socket type of fd {HANDOFF_FD}"))?;
    if domain != socket2::Domain::UNIX || kind != socket2::Type::STREAM {
        anyhow::bail!(
            "fd {HANDOFF_FD} is a {domain:?} {kind:?} socket, not the Unix stream socket a \
             round-robin worker receives connections on"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// A connected pair on loopback: (client, server side).
    fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn connections_cross_in_order_and_are_acknowledged() {
        runtime().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let (primary, worker) = pair().unwrap();
            let primary = tokio::net::UnixStream::from_std(primary).unwrap();
            let receiver = Receiver::new(worker).unwrap();

            let mut clients = Vec::new();
            for i in 0..3u8 {
                let (mut client, server) = connection(&listener);
                client.write_all(&[i]).unwrap();
                send(&primary, server.as_fd()).unwrap();
                clients.push(client);
            }
            assert_eq!(read_acks(&primary), Acks { taken: 0, closed: false }, "nothing taken yet");

            let conns = receiver.next().await.unwrap().expect("the primary is there");
            assert_eq!(conns.len(), 3);
            for (i, mut conn) in conns.into_iter().enumerate() {
                let mut byte = [0u8; 1];
                conn.read_exact(&mut byte).unwrap();
                assert_eq!(byte[0], i as u8, "sent in order, received in order");
            }
            primary.readable().await.unwrap();
            assert_eq!(read_acks(&primary), Acks { taken: 3, closed: false });

            drop(primary);
            assert!(receiver.next().await.unwrap().is_none(), "EOF once the primary is gone");
        });
    }

    #[test]
    fn a_closed_worker_end_is_reported_and_unread_connections_survive() {
        runtime().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let (primary, worker) = pair().unwrap();
            let primary = tokio::net::UnixStream::from_std(primary).unwrap();
            let (mut client, server) = connection(&listener);
            send(&primary, server.as_fd()).unwrap();
            // The worker dies without reading: the copy in its queue goes with it.
            drop(worker);
            primary.readable().await.unwrap();
            assert_eq!(read_acks(&primary), Acks { taken: 0, closed: true });
            let e = send(&primary, server.as_fd()).unwrap_err();
            assert!(matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)), "{e}");
            // The primary's own copy still holds the connection open.
            let mut server = server;
            server.write_all(b"still here").unwrap();
            let mut got = [0u8; 10];
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"still here");
        });
    }

    #[test]
    fn acknowledgements_before_the_close_are_counted() {
        runtime().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let (primary, worker) = pair().unwrap();
            let primary = tokio::net::UnixStream::from_std(primary).unwrap();
            let receiver = Receiver::new(worker).unwrap();
            let (_client, server) = connection(&listener);
            send(&primary, server.as_fd()).unwrap();
            assert_eq!(receiver.next().await.unwrap().unwrap().len(), 1);
            // The worker took it, then died before the primary looked.
            drop(receiver);
            primary.readable().await.unwrap();
            assert_eq!(read_acks(&primary), Acks { taken: 1, closed: true });
        });
    }

    #[test]
    fn take_queued_does_not_wait() {
        runtime().block_on(async {
            let (primary, worker) = pair().unwrap();
            let _primary = tokio::net::UnixStream::from_std(primary).unwrap();
            let receiver = Receiver::new(worker).unwrap();
            assert!(receiver.take_queued().await.unwrap().is_empty());
        });
    }

    #[test]
    fn only_a_unix_stream_socket_is_a_handoff() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = check_handoff(tcp.as_fd()).unwrap_err();
        assert!(err.to_string().contains("not the Unix stream socket"), "{err}");
        let (a, _b) = UnixStream::pair().unwrap();
        check_handoff(a.as_fd()).unwrap();
    }
}
