//! `Connections`: a worker's HTTP connections, served by hyper whichever way they arrived
//! (accepted, taken from a queue, received from the primary), and the drain that ends them.
//!
//! The drain answers every connection the worker accepted. hyper's own graceful shutdown
//! closes at once a connection that has not sent a complete request head yet, so a client
//! that connects, pauses, then sends (a browser's preconnect, any client between its connect
//! and its write) would lose its request to a SIGHUP or a resize. Here a draining connection
//! that has not sent a request yet gets until the header timeout, counted from its accept, to
//! send one; it is answered, then closed. A connection that has sent a request finishes the
//! one in progress and is closed; an idle kept-alive one is closed at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::cpu_queue::ClientSocket;
use crate::routes::App;

/// A client that has not sent its request head by then is dropped (slowloris guard); a
/// client that connected before a drain has this long, from its accept, to send its first.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections with the worker's app until [`Connections::drain`].
pub struct Connections {
    app: Arc<App>,
    http: http1::Builder,
    /// Becomes `true` when the worker drains.
    draining: watch::Sender<bool>,
    /// Every connection task holds a clone; the drain waits until all of them are dropped.
    open_tx: mpsc::Sender<()>,
    open_rx: mpsc::Receiver<()>,
    /// Connections being served now, for the drain's log line.
    open: Arc<AtomicUsize>,
}

impl Connections {
    /// Connections served by `app`.
    pub fn new(app: Arc<App>) -> Connections {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        let (open_tx, open_rx) = mpsc::channel(1);
        Connections {
            app,
            http,
            draining: watch::channel(false).0,
            open_tx,
            open_rx,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Serves a connection that came as a std socket (accepted without tokio, or received).
    pub fn serve_std(&self, stream: std::net::TcpStream) {
        let registered = stream.set_nonblocking(true).and_then(|()| {
            let peer = stream.peer_addr()?;
            Ok((TcpStream::from_std(stream)?, peer))
        });
        match registered {
            Ok((stream, peer)) => self.serve(stream, peer),
            // Most likely the client already gave up (ENOTCONN): nothing to serve.
            Err(e) => tracing::debug!(error = %e, "dropping a connection that cannot be served"),
        }
    }

    /// Serves `stream` on its own task.
    pub fn serve(&self, stream: TcpStream, peer: std::net::SocketAddr) {
        let accepted = Instant::now();
        let app = Arc::clone(&self.app);
        // The task below owns the stream until the connection ends, so this number names this
        // connection for as long as a request of it can be waiting for the CPU.
        let client = ClientSocket(std::os::fd::AsRawFd::as_raw_fd(&stream));
        // Stores a permit at each request: once one came, the drain need not wait for it.
        let requested = Arc::new(Notify::new());
        let seen = Arc::clone(&requested);
        let service = service_fn(move |req| {
            seen.notify_one();
            let app = Arc::clone(&app);
            async move { Ok::<_, std::convert::Infallible>(app.handle(&req, Some(client)).await) }
        });
        let conn = self.http.serve_connection(TokioIo::new(stream), service);
        let mut draining = self.draining.subscribe();
        let (held, open) = (self.open_tx.clone(), Arc::clone(&self.open));
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            tokio::pin!(conn);
            let served = tokio::select! {
                ended = conn.as_mut() => Some(ended),
                _ = draining.wait_for(|d| *d) => None,
            };
            let ended = match served {
                Some(ended) => ended,
                None => {
                    tokio::select! {
                        ended = conn.as_mut() => ended,
                        () = requested.notified() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                        () = tokio::time::sleep_until(accepted + HEADER_READ_TIMEOUT) => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            open.fetch_sub(1, Ordering::Relaxed);
            drop(held);
        });
    }

    /// Stops every connection as the module says, waiting at most `grace` for them.
    pub async fn drain(self, grace: Duration) {
        let Connections { draining, open_tx, mut open_rx, open, .. } = self;
        let count = open.load(Ordering::Relaxed);
        draining.send_replace(true);
        drop(open_tx);
        // `None` once every connection task has dropped its sender.
        match tokio::time::timeout(grace, open_rx.recv()).await {
            Ok(_) => tracing::info!(connections = count, "worker drained"),
            Err(_) => tracing::warn!(
                ?grace,
                open = open.load(Ordering::Relaxed),
                "grace deadline passed with connections still open"
            ),
        }
    }
}
