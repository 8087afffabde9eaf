//! One load connection: a kept-alive HTTP/1 client connection and the single worker loop that
//! takes tickets from the schedule, sends them and pushes each outcome into the connection's
//! own aggregate.
//!
//! The loop is the same for both load models; the ticket says whether to wait for an intended
//! instant first. The hyper connection driver is polled inside the worker's own task (see
//! [`drive`]) rather than spawned, so a request costs no cross-task or cross-thread wake-ups.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{response, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::report::{Aggregate, ErrorKind, Sample, LATE_AFTER};
use crate::schedule::Schedule;
use crate::seconds::Seconds;

/// Names the node that answered (set by `scalelab node` and passed on by the balancer).
const X_NODE: HeaderName = HeaderName::from_static(scalelab_wire::X_NODE);
/// Names the worker process inside that node.
const X_WORKER: HeaderName = HeaderName::from_static(scalelab_wire::X_WORKER);

/// After a failed connect, a connection waits this long before the next ticket, so a dead
/// target costs a bounded number of attempts instead of a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Where requests go, prepared once so that building a request only bumps reference counts.
#[derive(Debug)]
pub struct Target {
    /// The resolved server address.
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port` from the URL).
    pub host: HeaderValue,
    /// The request target of each mix path (origin form, base-URL path prefix included).
    pub paths: Vec<Uri>,
}

impl Target {
    fn request(&self, path: usize) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.paths[path].clone();
        req.headers_mut().insert(HOST, self.host.clone());
        req
    }
}

/// What every connection of a run shares.
#[derive(Debug)]
pub struct Shared {
    /// Where to send.
    pub target: Target,
    /// The ticket dispenser.
    pub schedule: Schedule,
    /// Per-request limit, from the send to the end of the response body.
    pub timeout: Duration,
    /// Finished requests across all connections: read by the progress bar only.
    pub done: AtomicU64,
    /// The run second by second.
    pub seconds: Seconds,
}

/// An open HTTP/1 connection: the request handle and the driver that performs its I/O.
struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>,
}

/// The worker loop of connection `index` (from 0): runs until the schedule is exhausted for
/// it, then returns the connection's totals.
pub async fn run_connection(shared: Arc<Shared>, index: usize) -> Aggregate {
    let mut agg = Aggregate::new(shared.target.paths.len());
    let mut per_second = shared.seconds.recorder();
    let mut conn: Option<Conn> = None;
    let deadline = shared.schedule.deadline();
    let mut now = Instant::now();
    // One timer for every request of this connection (see `until`).
    let mut alarm = pin!(tokio::time::sleep_until((now + shared.timeout).into()));
    while let Some(ticket) = shared.schedule.next_ticket(now, index) {
        if ticket.intended.is_some_and(|at| now.saturating_duration_since(at) > LATE_AFTER) {
            // Handed out after it was due: no connection was free to wait for it.
            agg.push_wait();
        }
        if let Some(at) = ticket.intended.or(ticket.not_before) {
            // An open-loop request is due at `at` and its connection should be ready then; a
            // connection waiting for its turn in a ramp stays closed until the turn comes.
            idle_until(&mut conn, &shared.target, at, ticket.intended.is_some()).await;
            now = Instant::now();
        }
        let sent = now;
        per_second.sent(sent);
        let begin = match ticket.intended {
            Some(at) => {
                agg.push_lag(sent.saturating_duration_since(at));
                at
            }
            None => sent,
        };
        let give_up = sent + shared.timeout;
        // The end of the run cuts a request short only if it comes before the request's own
        // timeout; then the request is neither an answer nor an error.
        let cut_off = deadline.filter(|d| *d < give_up);
        let stop = cut_off.unwrap_or(give_up);
        let outcome = until(alarm.as_mut(), stop, attempt(&mut conn, &shared.target, ticket.path)).await;
        now = Instant::now();
        match outcome {
            Some(Ok((parts, retried))) => {
                if retried {
                    agg.push_retry();
                }
                let sample = Sample {
                    status: parts.status.as_u16(),
                    latency: now.saturating_duration_since(begin),
                    node: header(&parts, &X_NODE),
                    worker: header(&parts, &X_WORKER),
                };
                per_second.response(sent, now, sample.status, sample.latency);
                agg.push(ticket.path, Ok(sample));
            }
            Some(Err(kind)) => {
                conn = None;
                per_second.failure(sent, now);
                agg.push(ticket.path, Err(kind));
                if kind == ErrorKind::Connect {
                    let backoff = now + CONNECT_BACKOFF;
                    tokio::time::sleep_until(deadline.map_or(backoff, |d| d.min(backoff)).into()).await;
                    now = Instant::now();
                }
            }
            None if cut_off.is_some() => {
                agg.push_cut_off();
                break;
            }
            None => {
                conn = None;
                per_second.failure(sent, now);
                agg.push(ticket.path, Err(ErrorKind::Timeout));
            }
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    per_second.flush();
    agg
}

/// Runs `fut` until it finishes (`Some`) or `stop` passes (`None`).
///
/// Unlike `tokio::time::timeout_at`, which puts a timer into the wheel and takes it out again
/// for every request, the connection keeps one `alarm` and re-arms it lazily: it only has to
/// ring no later than `stop`. It is moved only when it is set later than `stop`, or when it
/// rings early (set for an earlier request) and `stop` is still ahead; so a busy connection
/// re-arms about once per timeout period, not once per request.
async fn until<T>(
    mut alarm: Pin<&mut tokio::time::Sleep>,
    stop: Instant,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let stop_tokio = tokio::time::Instant::from(stop);
    if alarm.deadline() > stop_tokio {
        alarm.as_mut().reset(stop_tokio);
    }
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        while alarm.as_mut().poll(cx).is_ready() {
            if Instant::now() >= stop {
                return Poll::Ready(None);
            }
            alarm.as_mut().reset(stop_tokio);
        }
        Poll::Pending
    })
    .await
}

fn header<'a>(parts: &'a response::Parts, name: &HeaderName) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sends one request on the kept-alive connection (opening one if needed) and reads the whole
/// response; says whether it had to be resent. Leaves `None` in `slot` when the connection
/// can't be used again.
///
/// A kept-alive connection can close under a request that was just written: the server timed
/// it out, or is restarting, at that very moment. Like Go's `net/http` and browsers (RFC 9112
/// §9.3.1 allows it for idempotent requests), the request is then resent once on a new
/// connection, but only if the connection had carried earlier requests and no byte of a
/// response arrived. A failure on a fresh connection, or after a response began, is an error.
async fn attempt(
    slot: &mut Option<Conn>,
    target: &Target,
    path: usize,
) -> Result<(response::Parts, bool), ErrorKind> {
    drop_if_closed(slot).await;
    let reused = slot.is_some();
    match exchange(slot, target, path).await {
        Err(Failure { kind: ErrorKind::Io, before_response: true }) if reused => {
            *slot = None;
            exchange(slot, target, path).await.map(|parts| (parts, true)).map_err(|f| f.kind)
        }
        result => result.map(|parts| (parts, false)).map_err(|f| f.kind),
    }
}

/// Why an exchange failed, and whether any response had begun.
struct Failure {
    kind: ErrorKind,
    before_response: bool,
}

/// Empties `slot` when the server closed its kept-alive connection since the last response:
/// keep-alive housekeeping, not a failed request. Done before a request, so that a request
/// whose connection is replaced here counts as sent on a fresh one (and is not resent).
async fn drop_if_closed(slot: &mut Option<Conn>) {
    if let Some(c) = slot {
        let (ready, alive) = drive(&mut c.driver, c.sender.ready()).await;
        if ready.is_err() || !alive {
            *slot = None;
        }
    }
}

/// One request and its whole response on the kept-alive connection in `slot` (opened if
/// needed).
async fn exchange(slot: &mut Option<Conn>, target: &Target, path: usize) -> Result<response::Parts, Failure> {
    let c = match slot {
        Some(c) => c,
        None => slot.insert(connect(target).await.map_err(|kind| Failure { kind, before_response: true })?),
    };
    let sender = &mut c.sender;
    let mut got_head = false;
    let exchange = async {
        let (parts, mut body) = sender.send_request(target.request(path)).await?.into_parts();
        got_head = true;
        // The body must be read to its end before the connection can carry the next request.
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(parts)
    };
    let (result, alive) = drive(&mut c.driver, exchange).await;
    if !alive {
        *slot = None;
    }
    result.map_err(|kind| Failure { kind, before_response: !got_head })
}

async fn connect(target: &Target) -> Result<Conn, ErrorKind> {
    let stream = TcpStream::connect(target.addr).await.map_err(|_| ErrorKind::Connect)?;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY not set: {e}");
    }
    let (sender, driver) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| ErrorKind::Connect)?;
    Ok(Conn { sender, driver })
}

/// Waits for `at`: an open-loop ticket's intended instant, or a ramped connection's turn.
///
/// Open loop (`connect_early`): an idle connection's driver is polled meanwhile, so a server
/// closing it is noticed now rather than failing the next request, and a missing connection
/// is opened now, so connect time is not charged to the request. A ramped connection out of
/// turn closes its connection instead: the server sees as many connections as the ramp says.
async fn idle_until(slot: &mut Option<Conn>, target: &Target, at: Instant, connect_early: bool) {
    let at_tokio = tokio::time::Instant::from(at);
    if !connect_early {
        *slot = None;
    }
    if slot.is_none() && connect_early {
        if let Ok(Ok(c)) = tokio::time::timeout_at(at_tokio, connect(target)).await {
            *slot = Some(c);
        }
    }
    if let Some(c) = slot {
        let (_, alive) = drive(&mut c.driver, async {
            tokio::time::sleep_until(at_tokio).await;
            Ok(())
        })
        .await;
        if !alive {
            *slot = None;
        }
    }
    tokio::time::sleep_until(at_tokio).await;
}

/// Runs `fut` (which needs the connection's I/O) while polling the connection `driver` in the
/// same task. Returns `fut`'s result and whether the connection is still usable.
///
/// If the driver finishes first (the server closed, or the connection failed), `fut` gets one
/// more poll to pick up what the driver delivered; if it is still pending it never will finish.
async fn drive<T>(
    driver: &mut http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>,
    fut: impl Future<Output = Result<T, hyper::Error>>,
) -> (Result<T, ErrorKind>, bool) {
    let mut fut = pin!(fut);
    let mut closed: Option<Result<(), hyper::Error>> = None;
    let result = poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(|e| classify(&e)));
        }
        if closed.is_none() {
            match Pin::new(&mut *driver).poll(cx) {
                // The driver may just have delivered what `fut` waits for: look once more
                // instead of paying for a self-wake and a second trip through the scheduler.
                Poll::Pending => return fut.as_mut().poll(cx).map_err(|e| classify(&e)),
                Poll::Ready(r) => closed = Some(r),
            }
        }
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(r) => r.map_err(|e| classify(&e)),
            Poll::Pending => Err(match &closed {
                Some(Err(e)) => classify(e),
                _ => ErrorKind::Io,
            }),
        })
    })
    .await;
    (result, closed.is_none())
}

/// Sorts a hyper error into the report's error kinds.
fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() || e.is_user() {
        ErrorKind::Http
    } else {
        ErrorKind::Io
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A request on a connection opened to replace a closed kept-alive one was never sent on a
    /// reused connection: when it fails, it is an error, not resent.
    #[tokio::test]
    async fn a_failure_on_a_replacement_connection_is_not_resent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            // The first connection answers one request and closes 50 ms later; every later one
            // closes as soon as a request arrives, with no response.
            while let Ok((mut s, _)) = listener.accept().await {
                let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                if first {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    // Kept alive past the response, then closed while the client is idle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let target = Target {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).unwrap(),
            paths: vec![Uri::from_static("/op1")],
        };
        let mut slot = None;
        let (parts, resent) = attempt(&mut slot, &target, 0).await.unwrap_or_else(|_| panic!("first"));
        assert_eq!((parts.status.as_u16(), resent), (200, false));
        tokio::time::sleep(Duration::from_millis(100)).await; // the server has closed it
        assert!(attempt(&mut slot, &target, 0).await.is_err(), "a failure on a fresh connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "no third connection: nothing was resent");
    }
}
