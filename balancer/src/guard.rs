//! Client connections at the door. A slow or idle client must not hold the balancer's memory
//! and descriptors forever, so every connection gets:
//! - a cap on how many are held at once (`max_connections`): one more is closed as soon as
//!   it is accepted, which keeps descriptors free for upstream connections and the admin
//!   listener;
//! - a header deadline (`header_timeout_ms`): the whole request head must arrive within it,
//!   counted from its first byte (from the connection's start for the first request); a
//!   client that dawdles is answered `408` and closed;
//! - an idle deadline (`keepalive_timeout_ms`): a connection with no traffic either way for
//!   that long, between requests, is closed.
//!
//! pingora reads request heads itself, with a per-read timeout that a client sending one byte
//! every few seconds never trips, and keeps HTTP/1.1 connections forever once a request was
//! served. So [`ClientGuard`] wraps pingora's HTTP app and hands it a [`GuardedStream`]: a
//! stream that holds back a request head until it is complete. pingora only ever sees whole
//! heads; a head that misses its deadline is answered and closed here, and pingora sees a
//! client that went away before saying anything.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// A head longer than this is passed to pingora as it is, which refuses it with its own limit.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What a client that missed its header deadline is told.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The three limits, from `balancer:` in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

/// pingora's HTTP app `A`, behind the door.
pub struct ClientGuard<A> {
    inner: Arc<A>,
    limits: ClientLimits,
    /// Connections held now.
    open: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl<A> ClientGuard<A> {
    /// Guards `inner` with `limits`, counting in `metrics`.
    pub fn new(inner: A, limits: ClientLimits, metrics: Arc<Metrics>) -> ClientGuard<A> {
        ClientGuard { inner: Arc::new(inner), limits, open: AtomicUsize::new(0), metrics }
    }
}

/// Gives a connection's place back when it ends, however it ends.
struct Held<'a> {
    open: &'a AtomicUsize,
    metrics: &'a Metrics,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.client_connections.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ClientGuard<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let held = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.client_connections.inc();
        let _held = Held { open: &self.open, metrics: &self.metrics };
        if held > self.limits.max_connections {
            self.metrics.client_refused.inc();
            return None; // dropping the stream closes it
        }
        let guarded = GuardedStream::new(stream, self.limits, self.metrics.clone());
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Where a connection is between two requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request; closed after `keepalive_timeout` of silence.
    Idle,
    /// Reading a request head, which must be complete by the deadline.
    Head { deadline: Instant },
    /// The head went to pingora: body, upstream, response; no deadline of ours.
    Request,
    /// A response is being written; the next read starts the wait for another request.
    Responded,
}

/// Finds the blank line that ends a request head, across reads. Bare `\n` line ends count too,
/// as pingora's parser accepts them; blank lines before any content do not end a head (they
/// may precede a request line, and must not let a trickling client past the deadline).
#[derive(Debug, Default, Clone, Copy)]
struct HeadEnd {
    /// Bytes on the current line, carriage returns aside.
    line_len: usize,
    /// A line with content has ended in this head.
    content: bool,
}

impl HeadEnd {
    /// Feeds `bytes`; returns the index just past the first head end among them. Bytes after
    /// it are scanned too, so a pipelined head that continues in the next read is tracked.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut first = None;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if self.line_len == 0 && self.content => {
                    *self = HeadEnd::default();
                    first = first.or(Some(i + 1));
                }
                b'\n' => {
                    self.content |= self.line_len > 0;
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
        }
        first
    }
}

/// A client connection as pingora reads it: see the module comment.
pub struct GuardedStream {
    inner: Stream,
    limits: ClientLimits,
    metrics: Arc<Metrics>,
    phase: Phase,
    head_end: HeadEnd,
    /// Bytes of an incomplete head, held back from pingora.
    stash: Vec<u8>,
    /// How much of `stash` is ready to hand over (a complete head, or an oversized one).
    ready: usize,
    /// Last byte read or written: the idle deadline counts from here.
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
}

impl GuardedStream {
    /// A fresh connection: its first request head is due within the header timeout.
    pub fn new(inner: Stream, limits: ClientLimits, metrics: Arc<Metrics>) -> GuardedStream {
        let now = Instant::now();
        let deadline = now + limits.header_timeout;
        GuardedStream {
            inner,
            limits,
            metrics,
            phase: Phase::Head { deadline },
            head_end: HeadEnd::default(),
            stash: Vec::new(),
            ready: 0,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// The instant this connection is closed at unless something arrives.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle => Some(self.last_activity + self.limits.keepalive_timeout),
            Phase::Head { deadline } => Some(deadline),
            Phase::Request | Phase::Responded => None,
        }
    }

    /// Hands over as much of the ready part of the stash as fits.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.ready.min(buf.remaining());
        buf.put_slice(&self.stash[..n]);
        self.stash.drain(..n);
        self.ready -= n;
    }

    /// A deadline passed: say so if a head was started, and end the stream for pingora.
    fn expire(&mut self, cx: &mut Context<'_>) {
        match self.phase {
            Phase::Head { .. } => {
                self.metrics.header_timeouts.inc();
                // Best effort: a client this slow may not read it, and that is fine.
                let _ = Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT);
            }
            _ => self.metrics.idle_closed.inc(),
        }
        self.stash.clear();
        self.ready = 0;
        self.phase = Phase::Request; // no deadline any more: pingora now sees the end
    }

    fn poll_read_head(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.ready > 0 {
                self.deliver(buf);
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            match Pin::new(&mut self.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    let now = Instant::now();
                    self.last_activity = now;
                    if buf.filled().len() == before {
                        // The client closed; a partial head dies with it, unseen by pingora.
                        self.stash.clear();
                        return Poll::Ready(Ok(()));
                    }
                    if self.phase == Phase::Idle {
                        self.phase = Phase::Head { deadline: now + self.limits.header_timeout };
                    }
                    let end = self.head_end.feed(&buf.filled()[before..]);
                    if end.is_some() && self.stash.is_empty() {
                        // The usual case: the whole head in one read, passed on untouched.
                        self.phase = Phase::Request;
                        return Poll::Ready(Ok(()));
                    }
                    self.stash.extend_from_slice(&buf.filled()[before..]);
                    buf.set_filled(before);
                    if end.is_some() || self.stash.len() > MAX_HEAD_BYTES {
                        self.phase = Phase::Request;
                        self.ready = self.stash.len();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let Some(deadline) = self.deadline() else { return Poll::Pending };
                    if self.timer.deadline() != deadline {
                        self.timer.as_mut().reset(deadline);
                    }
                    if self.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.expire(cx);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.phase == Phase::Responded {
            this.phase = Phase::Idle;
        }
        match this.phase {
            Phase::Idle | Phase::Head { .. } => this.poll_read_head(cx, buf),
            Phase::Request | Phase::Responded => {
                if this.ready > 0 {
                    this.deliver(buf);
                    return Poll::Ready(Ok(()));
                }
                let before = buf.filled().len();
                let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                }
                polled
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.last_activity = Instant::now();
            if this.phase == Phase::Request {
                this.phase = Phase::Responded;
            }
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.last_activity = Instant::now();
            if this.phase == Phase::Request {
                this.phase = Phase::Responded;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream").field("inner", &self.inner).field("phase", &self.phase).finish()
    }
}

// The rest of pingora's `IO` contract is the inner stream's.

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_across_reads_and_line_ends() {
        let mut h = HeadEnd::default();
        assert_eq!(h.feed(b"GET / HTTP/1.1\r\nHost: a\r"), None);
        assert_eq!(h.feed(b"\n\r"), None);
        assert_eq!(h.feed(b"\nGET"), Some(1));
        let mut h = HeadEnd::default();
        assert_eq!(h.feed(b"GET / HTTP/1.0\n\nrest"), Some(16));
        // Blank lines before any content (allowed before a request line) end nothing.
        let mut h = HeadEnd::default();
        assert_eq!(h.feed(b"\r\n\r\n\nGET / HTTP/1.1\r\n\r\n"), Some(23));
        // A pipelined head split across reads is still found.
        let mut h = HeadEnd::default();
        assert_eq!(h.feed(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n"), Some(19));
        assert_eq!(h.feed(b"\r\n"), Some(2));
    }
}
