//! Round-robin distribution, the primary's side (Node's `SCHED_RR`): the primary accepts every
//! connection itself and hands it to the next running worker over that worker's handoff (see
//! `handoff`).
//!
//! The dispatcher is one task on the primary's event loop. It accepts only while some worker
//! takes connections; otherwise connections wait in the kernel backlog, as in `shared` mode
//! while every worker restarts. Tokio's cooperative budget makes it yield to the supervisor
//! loop (signals, reaping) even under a flood of connections.
//!
//! The rotation is plain: each connection goes to the next running worker in slot order,
//! whatever it is doing, so over any run of connections every worker's share is equal to
//! within one. Node's `RoundRobinHandle` differs: a worker that has not yet acknowledged its
//! last connection is skipped, which steers connections away from a worker blocked by CPU
//! work. Here acknowledgements only decide when the primary may let go of a connection.
//!
//! ```text
//!   accept ─▶ pending ─▶ lane 1 ─▶ lane 2 ─▶ lane 3 ─▶ lane 1 ...   (lanes that take connections)
//!                ▲          │ closed with unacknowledged connections
//!                └──────────┘ they go back to the front of `pending`, for the next lane
//! ```

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::task::Poll;
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::handoff::{self, Acks};

/// What the supervisor tells the dispatcher about its workers.
#[derive(Debug)]
pub enum Roster {
    /// Worker `id` (process `pid`) runs and takes connections over `handoff`.
    Join { id: usize, pid: u32, handoff: UnixStream },
    /// Worker `pid` is stopping or gone: it gets no new connection. Whatever it has not
    /// acknowledged when its handoff closes goes to another worker.
    Leave { pid: u32 },
}

/// Starts the dispatcher on the current runtime, accepting on `socket` (a bound, listening
/// socket). The dispatcher runs until the returned sender is dropped.
pub fn start(socket: Socket) -> io::Result<UnboundedSender<Roster>> {
    socket.set_nonblocking(true)?;
    // SAFETY: the `Socket` keeps its descriptor open, unchanged, as long as the `AsyncFd`.
    let listener = unsafe { AsyncFd::register(socket) }?;
    let (roster_tx, roster_rx) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher {
        listener,
        roster_rx,
        lanes: Vec::new(),
        pending: VecDeque::new(),
        last: None,
        joined: 0,
    };
    tokio::spawn(dispatcher.run());
    Ok(roster_tx)
}

/// One worker's handoff, as the dispatcher sees it.
#[derive(Debug)]
struct Lane {
    id: usize,
    pid: u32,
    /// Join order: tells apart an outgoing worker and its replacement in the same slot.
    seq: u64,
    handoff: tokio::net::UnixStream,
    /// Connections sent and not yet acknowledged, oldest first. The primary's copies keep
    /// them alive until the worker has them.
    unacked: VecDeque<OwnedFd>,
    /// Takes new connections; false once the worker leaves (it is still read until EOF).
    open: bool,
}

impl Lane {
    /// Its place in the rotation.
    fn key(&self) -> (usize, u64) {
        (self.id, self.seq)
    }
}

struct Dispatcher {
    listener: AsyncFd<Socket>,
    roster_rx: UnboundedReceiver<Roster>,
    lanes: Vec<Lane>,
    /// Accepted connections waiting for a lane, oldest first.
    pending: VecDeque<OwnedFd>,
    /// The lane that got the last connection; the next one goes to the lane after it.
    last: Option<(usize, u64)>,
    joined: u64,
}

impl Dispatcher {
    async fn run(mut self) {
        loop {
            self.dispatch();
            // Accept only when the connection can go somewhere at once: otherwise it is better
            // off in the kernel backlog, where a client's connect still succeeds.
            let accepting = self.pending.is_empty() && self.lanes.iter().any(|l| l.open);
            tokio::select! {
                roster = self.roster_rx.recv() => match roster {
                    Some(roster) => self.apply(roster),
                    None => break,
                },
                accepted = accept(&self.listener), if accepting => match accepted {
                    Ok(conn) => self.pending.push_back(conn),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        if crate::listener::is_resource_exhaustion(&e) {
                            // Out of fds or memory: retrying at once would spin.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                },
                i = readable_lane(&self.lanes) => self.read_acks(i),
            }
        }
        if !self.pending.is_empty() {
            tracing::info!(
                connections = self.pending.len(),
                "dispatcher stopped with connections no worker took"
            );
        }
    }

    fn apply(&mut self, roster: Roster) {
        match roster {
            Roster::Join { id, pid, handoff } => {
                let handoff = match tokio::net::UnixStream::from_std(handoff) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::error!(worker = id, pid, "cannot register the handoff: {e}");
                        return;
                    }
                };
                self.joined += 1;
                let lane = Lane { id, pid, seq: self.joined, handoff, unacked: VecDeque::new(), open: true };
                let at = self.lanes.partition_point(|l| l.key() < lane.key());
                self.lanes.insert(at, lane);
            }
            Roster::Leave { pid } => {
                for lane in self.lanes.iter_mut().filter(|l| l.pid == pid) {
                    lane.open = false;
                }
            }
        }
    }

    /// Hands pending connections to lanes in turn, until none is pending or no lane can take
    /// one now.
    fn dispatch(&mut self) {
        // Lanes whose socket is full for now: skipped until the next pass.
        let mut full: Vec<(usize, u64)> = Vec::new();
        while let Some(conn) = self.pending.front() {
            let Some(i) = self.next_lane(&full) else { break };
            let lane = &mut self.lanes[i];
            match handoff::send(&lane.handoff, conn.as_fd()) {
                Ok(()) => {
                    self.last = Some(lane.key());
                    let conn = self.pending.pop_front().expect("front exists");
                    lane.unacked.push_back(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tracing::debug!(worker = lane.id, pid = lane.pid, "handoff full; trying the next worker");
                    full.push(lane.key());
                }
                Err(e) => {
                    tracing::debug!(worker = lane.id, pid = lane.pid, error = %e, "handoff closed");
                    self.close_lane(i);
                }
            }
        }
    }

    /// The open lane after `last` in slot order (wrapping), skipping `full`.
    fn next_lane(&self, full: &[(usize, u64)]) -> Option<usize> {
        let candidates = || {
            self.lanes.iter().enumerate().filter(|(_, l)| l.open && !full.contains(&l.key())).map(|(i, _)| i)
        };
        let after_last = candidates().find(|&i| self.last.is_none_or(|last| self.lanes[i].key() > last));
        after_last.or_else(|| candidates().next())
    }

    fn read_acks(&mut self, i: usize) {
        let Acks { taken, closed } = handoff::read_acks(&self.lanes[i].handoff);
        let lane = &mut self.lanes[i];
        if taken > lane.unacked.len() {
            tracing::warn!(
                worker = lane.id,
                pid = lane.pid,
                "worker acknowledged {taken} connections, {} were outstanding",
                lane.unacked.len()
            );
        }
        // The worker holds them now; the primary's copies can go. Those it took before it
        // died are lost with it (their requests may have been read): never sent again.
        lane.unacked.drain(..taken.min(lane.unacked.len()));
        if closed {
            self.close_lane(i);
        }
    }

    /// Forgets lane `i` (its worker is gone or stopped taking connections); what it had not
    /// acknowledged goes back to the front of the queue, in order, for the next lanes.
    fn close_lane(&mut self, i: usize) {
        let lane = self.lanes.remove(i);
        if !lane.unacked.is_empty() {
            tracing::info!(
                worker = lane.id,
                pid = lane.pid,
                "worker {} left {} connections unread; handing them to the next worker",
                lane.id,
                lane.unacked.len()
            );
        }
        for conn in lane.unacked.into_iter().rev() {
            self.pending.push_front(conn);
        }
    }
}

/// Accepts one connection (close-on-exec; the worker makes it non-blocking).
async fn accept(listener: &AsyncFd<Socket>) -> io::Result<OwnedFd> {
    loop {
        let mut guard = listener.readable().await?;
        match guard.try_io(|l| l.get_ref().accept()) {
            Ok(accepted) => return accepted.map(|(socket, _peer)| socket.into()),
            Err(_would_block) => continue,
        }
    }
}

/// Resolves with the index of a lane that has something to read (acknowledgements or EOF).
async fn readable_lane(lanes: &[Lane]) -> usize {
    std::future::poll_fn(|cx| {
        for (i, lane) in lanes.iter().enumerate() {
            if lane.handoff.poll_read_ready(cx).is_ready() {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::handoff::Receiver;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    fn listening() -> (Socket, std::net::SocketAddr) {
        let socket = crate::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = crate::listener::local_addr(&socket).unwrap();
        (socket, addr)
    }

    /// A fake worker `id`: its receiver, after joining the dispatcher.
    fn join(roster_tx: &UnboundedSender<Roster>, id: usize) -> Receiver {
        let (primary, worker) = handoff::pair().unwrap();
        roster_tx.send(Roster::Join { id, pid: id as u32 * 100, handoff: primary }).unwrap();
        Receiver::new(worker).unwrap()
    }

    /// Connects and sends a tag byte, so the receiving side can tell the connections apart.
    fn connect(addr: std::net::SocketAddr, tag: u8) -> TcpStream {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[tag]).unwrap();
        c
    }

    async fn take(receiver: &Receiver, n: usize) -> Vec<u8> {
        let mut tags = Vec::new();
        while tags.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(5), receiver.next())
                .await
                .expect("a connection within 5 s")
                .unwrap()
                .expect("the dispatcher is there");
            for mut conn in batch {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut tag = [0u8; 1];
                conn.read_exact(&mut tag).expect("a connection whose tag was not read yet");
                tags.push(tag[0]);
            }
        }
        tags
    }

    #[test]
    fn connections_go_to_each_worker_in_turn() {
        runtime().block_on(async {
            let (socket, addr) = listening();
            let roster_tx = start(socket).unwrap();
            // Joined out of slot order: the rotation still follows slots.
            let w2 = join(&roster_tx, 2);
            let w1 = join(&roster_tx, 1);
            let w3 = join(&roster_tx, 3);
            tokio::task::yield_now().await;
            let _clients: Vec<TcpStream> = (0..9).map(|i| connect(addr, i)).collect();
            let (a, b, c) = (take(&w1, 3).await, take(&w2, 3).await, take(&w3, 3).await);
            // Whichever worker came first, each got every third connection.
            let mut all = [a.clone(), b.clone(), c.clone()].concat();
            all.sort_unstable();
            assert_eq!(all, (0..9).collect::<Vec<u8>>(), "{a:?} {b:?} {c:?}");
            for tags in [&a, &b, &c] {
                assert!(tags.windows(2).all(|w| w[1] == w[0] + 3), "{a:?} {b:?} {c:?}");
            }
        });
    }

    #[test]
    fn a_leaving_worker_gets_nothing_and_a_dead_ones_connections_move_on() {
        runtime().block_on(async {
            let (socket, addr) = listening();
            let roster_tx = start(socket).unwrap();
            let w1 = join(&roster_tx, 1);
            let w2 = join(&roster_tx, 2);
            roster_tx.send(Roster::Leave { pid: 100 }).unwrap();
            tokio::task::yield_now().await;
            let _clients: Vec<TcpStream> = (0..3).map(|i| connect(addr, i)).collect();
            assert_eq!(take(&w2, 3).await, vec![0, 1, 2], "worker 1 left");
            assert!(w1.take_queued().await.unwrap().is_empty());

            // Worker 3 joins and dies without reading: its connections go to worker 2.
            let (primary, worker) = handoff::pair().unwrap();
            roster_tx.send(Roster::Join { id: 3, pid: 300, handoff: primary }).unwrap();
            tokio::task::yield_now().await;
            let _more: Vec<TcpStream> = (3..7).map(|i| connect(addr, i)).collect();
            // Let the dispatcher hand out all four (two reach worker 3) before it dies.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int through the pointer.
            assert_eq!(unsafe { libc::ioctl(worker.as_raw_fd(), libc::FIONREAD, &mut queued) }, 0);
            assert_eq!(queued, 2, "worker 3 was sent every other connection");
            drop(worker);
            let mut got = take(&w2, 4).await;
            got.sort_unstable();
            assert_eq!(got, vec![3, 4, 5, 6], "nothing lost");
        });
    }

    #[test]
    fn a_connection_a_dead_worker_took_is_not_sent_again() {
        runtime().block_on(async {
            let (socket, addr) = listening();
            let roster_tx = start(socket).unwrap();
            let w1 = join(&roster_tx, 1);
            let _first = connect(addr, 0);
            assert_eq!(take(&w1, 1).await, vec![0]);
            // Worker 1 read the request and dies before the dispatcher saw its acknowledgement.
            drop(w1);
            let w2 = join(&roster_tx, 2);
            let _second = connect(addr, 1);
            assert_eq!(take(&w2, 1).await, vec![1]);
            let more = tokio::time::timeout(Duration::from_millis(200), w2.next()).await;
            assert!(more.is_err(), "worker 2 was sent worker 1's connection again");
        });
    }

    #[test]
    fn without_workers_connections_wait_in_the_backlog() {
        runtime().block_on(async {
            let (socket, addr) = listening();
            let roster_tx = start(socket).unwrap();
            let _client = connect(addr, 7);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let w1 = join(&roster_tx, 1);
            assert_eq!(take(&w1, 1).await, vec![7]);
        });
    }
}
