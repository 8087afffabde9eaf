//! A worker's CPU, as `/op2` sees it: one burn at a time, in arrival order, behind a bounded
//! queue. A request that finds the queue full is shed at once (503 with `Retry-After`) instead
//! of waiting behind work it cannot overtake: back-pressure, the lesson of a server that knows
//! its capacity.
//!
//! The burn still blocks the worker's only thread, as a slow handler blocks a Node.js event
//! loop. Between two burns the burner yields until the event loop has read every request that
//! arrived meanwhile on the worker's open connections: `/op1` is answered at once, `/op2`
//! joins the queue or is shed. Without that, those requests would sit unread in socket
//! buffers, a queue nobody bounds or sees.
//!
//! New connections are not drained the same way: the worker still accepts one at a time (see
//! `worker`), so a busy worker leaves the shared backlog to idle siblings. Connections not yet
//! accepted wait in the kernel's listen backlog; the balancer keeps its connections to a node
//! open, so its requests arrive on accepted connections and meet the bound.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::cpu;

/// What the burner reports for one job: the CPU time used, or why the clock failed.
pub type BurnResult = nix::Result<Duration>;

/// The socket of the connection a request came on: a request whose client has hung up is
/// not worth its CPU. (A balancer in front closes its connection when its own client leaves;
/// without this check a node would burn through a backlog of requests nobody waits for, and
/// answer its health checks seconds late.)
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket(pub std::os::fd::RawFd);

impl ClientSocket {
    /// True when the peer has closed its side: a peek without waiting reads end-of-file.
    fn gone(self) -> bool {
        let mut byte = [0u8; 1];
        // SAFETY: the connection task that owns this descriptor is awaiting this very request,
        // so the descriptor is open and still this connection's; the peek reads nothing out.
        let n =
            unsafe { libc::recv(self.0, byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n == 0
    }
}

/// One `/op2` waiting for the CPU.
struct Job {
    budget: Duration,
    client: Option<ClientSocket>,
    /// The CPU used, or `None` when the client was gone by its turn.
    reply_tx: oneshot::Sender<Option<BurnResult>>,
}

/// The admission side, shared by every connection of one worker. The worker is single-threaded,
/// so the count is never raced; it is atomic only because connection tasks must be `Send`.
#[derive(Clone)]
pub struct CpuQueue {
    job_tx: mpsc::UnboundedSender<Job>,
    /// Jobs admitted and not yet started: the queue length the bound applies to.
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
    /// Counts the `/op2` requests read (queued or shed); the burner yields until it stops
    /// moving.
    intake: Arc<AtomicUsize>,
}

/// Why a job was not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `waiting` jobs were already queued, the bound.
    Full { waiting: usize },
    /// The client hung up before its turn came; nothing was burned.
    ClientGone,
    /// The burner is gone (the worker is shutting down).
    Closed,
}

impl std::fmt::Debug for CpuQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuQueue")
            .field("waiting", &self.waiting())
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

impl CpuQueue {
    /// A queue of at most `max_queue` waiting jobs, and the burner that serves it (spawn it on
    /// the worker's runtime).
    pub fn new(max_queue: usize) -> (CpuQueue, Burner) {
        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let intake = Arc::new(AtomicUsize::new(0));
        let queue = CpuQueue { job_tx, waiting: waiting.clone(), max_queue, intake: intake.clone() };
        (queue, Burner { job_rx, waiting, intake })
    }

    /// Jobs waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// Queues a burn of `budget` and waits for it; refuses at once when the queue is full.
    pub async fn burn(&self, budget: Duration, client: Option<ClientSocket>) -> Result<BurnResult, Refused> {
        self.intake.fetch_add(1, Relaxed);
        if client.is_some_and(ClientSocket::gone) {
            return Err(Refused::ClientGone);
        }
        let waiting = self.waiting.load(Relaxed);
        if waiting >= self.max_queue {
            return Err(Refused::Full { waiting });
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        self.job_tx.send(Job { budget, client, reply_tx }).map_err(|_| Refused::Closed)?;
        self.waiting.fetch_add(1, Relaxed);
        match reply_rx.await {
            Ok(Some(used)) => Ok(used),
            Ok(None) => Err(Refused::ClientGone),
            Err(_) => Err(Refused::Closed),
        }
    }
}

/// The consuming side: runs the queued burns one by one.
pub struct Burner {
    job_rx: mpsc::UnboundedReceiver<Job>,
    waiting: Arc<AtomicUsize>,
    intake: Arc<AtomicUsize>,
}

impl Burner {
    /// Serves jobs until every [`CpuQueue`] is dropped.
    pub async fn run(mut self) {
        while let Some(job) = self.job_rx.recv().await {
            self.waiting.fetch_sub(1, Relaxed);
            // A client that went away still cost its place in the queue; its burn is skipped.
            if job.reply_tx.is_closed() || job.client.is_some_and(ClientSocket::gone) {
                let _ = job.reply_tx.send(None);
            } else {
                let _ = job.reply_tx.send(Some(cpu::burn(job.budget)));
            }
            // Let the event loop read what arrived during the burn before the next one: each
            // yield runs every task that is ready; stop once a round reads no new request.
            loop {
                let before = self.intake.load(Relaxed);
                tokio::task::yield_now().await;
                if self.intake.load(Relaxed) == before {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn burns_in_order_and_sheds_beyond_the_bound() {
        runtime().block_on(async {
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let (queue, burner) = CpuQueue::new(2);
                    tokio::task::spawn_local(burner.run());
                    // Three at once: two fit the queue, the third is shed before any burn runs.
                    let jobs: Vec<_> = (0..3)
                        .map(|_| {
                            let q = queue.clone();
                            tokio::task::spawn_local(
                                async move { q.burn(Duration::from_millis(2), None).await },
                            )
                        })
                        .collect();
                    let mut results = Vec::new();
                    for j in jobs {
                        results.push(j.await.unwrap());
                    }
                    assert!(results[0].as_ref().unwrap().as_ref().unwrap() >= &Duration::from_millis(2));
                    assert!(results[1].is_ok(), "{:?}", results[1]);
                    assert!(matches!(results[2], Err(Refused::Full { waiting: 2 })), "{:?}", results[2]);
                    assert_eq!(queue.waiting(), 0);
                })
                .await;
        });
    }
}
