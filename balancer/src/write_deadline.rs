//! `WriteDeadline`: a socket whose writes may not stall for longer than a deadline. The admin
//! listener's event streams send a sample every second for as long as the client stays; a
//! client that stops reading (a frozen tab, a socket opened and forgotten) would otherwise hold
//! its connection forever once the socket buffers are full. A write that makes no progress for
//! the deadline fails with `TimedOut`, and hyper closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, whose writes and flushes fail once they have been pending for `deadline`.
pub struct WriteDeadline<T> {
    inner: T,
    deadline: Duration,
    /// Armed when a write first returns `Pending`, disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, deadline: Duration) -> Self {
        WriteDeadline { inner, deadline, stalled: None }
    }

    /// After a write or flush: progress disarms the timer; `Pending` arms it (once) and fails
    /// when it fires.
    fn watch<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let deadline = self.deadline;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {deadline:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DEADLINE: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_reader_that_does_not_read_is_cut_off_at_the_deadline() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, DEADLINE);
        // 64 bytes fit the pipe; the next write stalls.
        w.write_all(&[1; 64]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = w.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= DEADLINE && waited < DEADLINE * 5, "{waited:?}");
        // A reader that reads keeps the writer going, however long it takes in all.
        let (near, mut far2) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, DEADLINE);
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 64 * 8];
            for chunk in got.chunks_mut(64) {
                tokio::time::sleep(DEADLINE * 3 / 5).await;
                far2.read_exact(chunk).await.unwrap();
            }
            got
        });
        for i in 0..8u8 {
            w.write_all(&[i; 64]).await.expect("a slow reader is not cut off");
        }
        assert_eq!(reader.await.unwrap()[64 * 7], 7);
        drop(far.read(&mut [0; 1]).await);
    }
}
