//! The request path: `Balancer`, the pingora `ProxyHttp` implementation. It picks a healthy
//! backend with the load balancer's selector, fails over to another one when a connection
//! cannot be made (or breaks before any response), adds `X-Forwarded-For` upstream and
//! `x-upstream` downstream, and records metrics once per request.
//!
//! A node that accepts but does not answer (its processes stopped, or stuck) costs a request
//! at most `balancer.upstream.read_timeout_ms`: the attempt is then given up, counted in
//! `upstream_timeouts_total`, and an idempotent request is retried once on another node;
//! anything else, or a second timeout, is answered 504. Without this bound a stopped node's
//! kernel backlog would hold requests until it resumed.
//!
//! When the health checks mark every backend down it fails open, as Envoy's panic mode does:
//! health checks time out on saturated nodes (a worker busy with /op2 answers /health late),
//! and a lab under full load should slow down, not turn into a wall of 503s. A backend that is
//! really gone refuses the connection and the request fails over as usual.
//!
//! HTTP details it takes care of: pipelined requests are answered in order (pingora leaves
//! pipelining off unless asked); an HTTP/1.0 request without `Host` is forwarded with the
//! `Host` the client reached, an HTTP/1.1 one is refused with 400 (RFC 9112 §3.2); a node's
//! load-shedding 503s are counted.
//!
//! This runs for every request, so it stays lean: no logging above debug, no formatting
//! except the `X-Forwarded-For` value, one roster lookup per attempt.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{Backend, LoadBalancer};
use pingora_proxy::{ProxyHttp, ProxyWarnLogContext, Session};

use crate::metrics::Metrics;
use crate::state::{BackendEntry, InFlightGuard, Roster};

const X_FORWARDED_FOR: &str = "x-forwarded-for";
use scalelab_wire::{X_SHED, X_WORKER};

/// Bound on the selector's walk over candidates (pingora's own examples use 256).
const MAX_SELECT_STEPS: usize = 256;

/// How long an idle upstream connection stays pooled. Shorter than common server keepalive
/// timeouts (5 s), so a pooled connection is rarely one the node has already closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The proxy logic, generic over the selection algorithm (`RoundRobin` or `Random`).
pub struct Balancer<S: BackendSelection> {
    lb: Arc<LoadBalancer<S>>,
    roster: Arc<Roster>,
    metrics: Arc<Metrics>,
    /// Connect timeout per attempt; a dead host that drops SYNs costs at most this.
    connect_timeout: Duration,
    /// The longest wait for each read from a node (its response head above all); a node that
    /// accepted but does not answer costs an attempt at most this.
    read_timeout: Duration,
    /// Rotates the picks made while every backend is marked down.
    fail_open_turn: AtomicUsize,
    /// Upstream connections are reused only within one age window (0: forever). A window's
    /// number is part of the pool key, so when it turns, new connections are opened, and the
    /// workers a node gained since then get their share. (pingora's pool has no connection
    /// age of its own.)
    max_age_ms: u64,
    /// The start of window 0.
    epoch: Instant,
    /// Whether response times feed each backend's peak-EWMA: only `peak_ewma` reads it, and
    /// the algorithm is fixed for a balancer's life (a change starts a new balancer).
    track_latency: bool,
}

impl<S: BackendSelection> Balancer<S> {
    /// Proxy logic over `lb`, reading names from `roster` and recording into `metrics`; a
    /// node gets `connect_timeout` to accept and `read_timeout` for each read; upstream
    /// connections are reused for at most `max_age_ms` (0: no limit); response times
    /// are tracked for the selector when `track_latency`.
    pub fn new(
        lb: Arc<LoadBalancer<S>>,
        roster: Arc<Roster>,
        metrics: Arc<Metrics>,
        connect_timeout: Duration,
        read_timeout: Duration,
        max_age_ms: u64,
        track_latency: bool,
    ) -> Balancer<S> {
        Balancer {
            lb,
            roster,
            metrics,
            connect_timeout,
            read_timeout,
            fail_open_turn: AtomicUsize::new(0),
            max_age_ms,
            epoch: Instant::now(),
            track_latency,
        }
    }
}

impl<S> Balancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    /// The next backend for this request, avoiding those that already failed it: a healthy
    /// one, or any one when none is healthy (fail open).
    fn select(&self, failed: &[Backend], timed_out: bool) -> Result<Backend> {
        // A request whose node did not answer in time gets one retry, not one per node: with
        // every node stopped, the client waits two read timeouts, then gets 504.
        if timed_out && failed.len() > 1 {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                "no node answered within read_timeout_ms",
            ));
        }
        let untried = |b: &Backend| !failed.contains(b);
        if let Some(b) = self.lb.select_with(b"", MAX_SELECT_STEPS, |b, healthy| healthy && untried(b)) {
            return Ok(b);
        }
        let backends = self.lb.backends();
        let all = backends.get_backend();
        if all.iter().any(|b| backends.ready(b)) {
            let code = if timed_out { 504 } else { 502 };
            return Err(Error::explain(ErrorType::HTTPStatus(code), "every healthy backend failed"));
        }
        // pingora's selector cannot rotate here: the healthy-only walk above spent a fixed
        // number of its round-robin steps, so it would land on the same backend every time.
        let untried: Vec<&Backend> = all.iter().filter(|b| untried(b)).collect();
        if untried.is_empty() {
            return Err(if failed.is_empty() {
                Error::explain(ErrorType::HTTPStatus(503), "no backends")
            } else {
                Error::explain(
                    ErrorType::HTTPStatus(if timed_out { 504 } else { 502 }),
                    "no backend answered",
                )
            });
        }
        let turn = self.fail_open_turn.fetch_add(1, Ordering::Relaxed);
        let b = untried[turn % untried.len()].clone();
        self.metrics.fail_open.inc();
        Ok(b)
    }
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    /// The backend of the current attempt.
    backend: Option<Backend>,
    /// Its roster entry (name, address text, counters).
    entry: Option<Arc<BackendEntry>>,
    /// Backends that failed this request; later attempts avoid them. Empty (no allocation)
    /// unless something failed.
    failed: Vec<Backend>,
    /// The current attempt counted in flight on its backend; replaced on a retry, dropped
    /// when the request ends however it ends (the count goes back either way).
    in_flight: Option<InFlightGuard>,
    /// When the current attempt was sent, for the latency average.
    attempt_started: Instant,
    /// Whether an attempt of this request timed out waiting for its node (one retry then).
    timed_out: bool,
}

impl RequestCtx {
    /// Moves the current backend to the failed list so the next attempt picks another one.
    /// Its entry goes too: if no attempt succeeds, the error response is nobody's.
    fn exclude_current(&mut self) {
        if let Some(b) = self.backend.take() {
            self.failed.push(b);
        }
        self.entry = None;
        self.in_flight = None;
    }
}

#[async_trait]
impl<S> ProxyHttp for Balancer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    type CTX = RequestCtx;

    /// No downstream modules. pingora's default adds its response-compression module at
    /// level 0 (disabled), which still builds a module context and runs two boxed filter
    /// futures for every request; the balancer never compresses, so it skips that work.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        let now = Instant::now();
        RequestCtx {
            started: now,
            backend: None,
            entry: None,
            failed: Vec::new(),
            in_flight: None,
            attempt_started: now,
            timed_out: false,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let backend = self.select(&ctx.failed, ctx.timed_out)?;
        let addr: SocketAddr = *backend
            .addr
            .as_inet()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "backend is not an IP address"))?;
        let entry = match self.roster.get(&addr) {
            Some(e) => e,
            // Discovery dropped it between selection and now; still serve the request.
            None => Arc::new(BackendEntry::new(String::new(), addr, &self.metrics)),
        };
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        if let Some(window) = (self.epoch.elapsed().as_millis() as u64).checked_div(self.max_age_ms) {
            peer.group_key = window;
        }
        ctx.in_flight = Some(BackendEntry::start(&entry));
        ctx.attempt_started = Instant::now();
        ctx.backend = Some(backend);
        ctx.entry = Some(entry);
        Ok(Box::new(peer))
    }

    /// An HTTP/1.1 request without `Host` is refused with 400, as RFC 9112 §3.2 requires
    /// (HTTP/1.0 may omit it: see `upstream_request_filter`).
    async fn request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
            session.respond_error(400).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Pipelined requests (RFC 9112 §9.3.2) are read and answered one after another on the same
    /// connection, instead of the connection being closed after the first answer.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        session.set_pipelining_enabled(true);
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // pingora forwards as HTTP/1.1, which requires Host; an HTTP/1.0 client may omit it.
        if upstream_request.headers.get(http::header::HOST).is_none() {
            if let Some(local) = session.server_addr().and_then(|a| a.as_inet()) {
                upstream_request.insert_header(http::header::HOST, local.to_string())?;
            }
        }
        let Some(client) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) else {
            return Ok(());
        };
        let earlier =
            upstream_request.headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok());
        let forwarded = forwarded_for(earlier, client);
        upstream_request.insert_header(X_FORWARDED_FOR, forwarded)
    }

    /// The response head arrived: the attempt's time to first byte feeds the peak-EWMA (when
    /// the algorithm uses it).
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(entry) = ctx.entry.as_ref().filter(|_| self.track_latency) {
            entry.observe_latency(ctx.attempt_started.elapsed());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(entry) = &ctx.entry {
            if response.status == http::StatusCode::SERVICE_UNAVAILABLE
                && response.headers.contains_key(X_SHED)
            {
                entry.shed.inc();
            }
            response.insert_header("x-upstream", entry.addr_header.clone())?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(entry) = &ctx.entry {
            self.metrics.connect_failures.with_label_values(&[entry.addr.as_str()]).inc();
            entry.traffic.record_failure();
            entry.traffic.record_retry();
        }
        // Nothing reached the backend, so any request may go to the next one.
        ctx.exclude_current();
        e.set_retry(true);
        self.metrics.retries.inc();
        e
    }

    /// Like pingora's default (only idempotent, fully buffered requests are retried, and a
    /// `ReusedOnly` error only on a reused connection), plus: a connection that the backend
    /// closed or reset before any response reached the client is always retried. On a pooled
    /// connection that is most likely a stale one, so the same backend stays eligible (a dead
    /// one then fails to connect and is excluded); on a fresh connection the backend died
    /// under the request, so the retry goes elsewhere.
    ///
    /// A node that did not answer within the read timeout is counted, excluded, and the
    /// request retried elsewhere once if it can be replayed; otherwise it is answered 504.
    /// An error of the client's side (it went away) is not the node's failure.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let node_failed = *e.esource() != ErrorSource::Downstream;
        if let Some(entry) = ctx.entry.as_ref().filter(|_| node_failed) {
            entry.traffic.record_failure();
        }
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        if node_timed_out(&e) {
            if let Some(entry) = &ctx.entry {
                self.metrics.upstream_timeouts.with_label_values(&[entry.addr.as_str()]).inc();
                entry.traffic.record_timeout();
            }
            let first = !ctx.timed_out;
            ctx.timed_out = true;
            ctx.exclude_current();
            if !(replayable && first) {
                let mut answer = Error::because(
                    ErrorType::HTTPStatus(504),
                    format!("no answer within read_timeout_ms ({} ms)", self.read_timeout.as_millis()),
                    e,
                );
                answer.set_retry(false);
                return answer;
            }
            e.set_retry(true);
        } else if !replayable {
            e.set_retry(false);
        } else if backend_went_away(&e) {
            if !client_reused {
                ctx.exclude_current();
            }
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if e.retry() {
            self.metrics.retries.inc();
            if let Some(entry) = &ctx.entry {
                entry.traffic.record_retry();
            }
        }
        e
    }

    /// A retried attempt is counted (`retries_total`, `connect_failures_total`) instead of
    /// logged: while a dead node awaits its health verdict, every request would log a warning.
    /// Health changes and requests that finally fail are still logged.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        let retry = matches!(context, ProxyWarnLogContext::UpstreamRetry);
        if retry {
            tracing::debug!("retrying: {error}");
        }
        retry
    }

    /// A client that went away before its answer (the end of a load run, a browser tab
    /// closed) is counted in `client_aborts_total`, not logged as an error: a lab sees
    /// thousands of them.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        let client_left = *error.esource() == ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_left {
            self.metrics.client_aborts.inc();
        }
        client_left
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.in_flight = None;
        let took = ctx.started.elapsed();
        self.metrics.latency.observe(took.as_secs_f64());
        let written = session.response_written();
        let code = written.map(|r| r.status);
        match (&ctx.entry, code) {
            (Some(entry), Some(code)) => {
                entry.record(code, &self.metrics);
                let worker = written.and_then(|r| r.headers.get(X_WORKER)).map(|v| v.as_bytes());
                let op2 = session.req_header().uri.path() == "/op2";
                let traffic = &entry.traffic;
                traffic.record(&entry.addr, &entry.name, worker, op2, code.is_success(), took, &self.metrics);
            }
            (None, Some(code)) => self.metrics.requests.with_label_values(&["none", code.as_str()]).inc(),
            // The client went away before any response.
            (_, None) => {}
        }
    }
}

/// Whether `e` says the node did not answer within the read timeout.
fn node_timed_out(e: &Error) -> bool {
    *e.esource() == ErrorSource::Upstream && *e.etype() == ErrorType::ReadTimedout
}

/// Whether `e` says the upstream connection broke (closed, reset, failed read or write)
/// rather than timed out or sent something invalid.
fn backend_went_away(e: &Error) -> bool {
    *e.esource() == ErrorSource::Upstream
        && matches!(e.etype(), ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError)
}

/// The `X-Forwarded-For` value to send upstream: the entries of earlier proxies (one header
/// line or several), then the client.
fn forwarded_for<'a>(earlier: impl Iterator<Item = &'a str>, client: IpAddr) -> String {
    let client = client.to_string();
    let mut value = String::new();
    for entry in earlier.filter(|e| !e.trim().is_empty()) {
        value.push_str(entry);
        value.push_str(", ");
    }
    if value.is_empty() {
        return client; // the usual case: one allocation
    }
    value.push_str(&client);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_client() {
        let client: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(forwarded_for(std::iter::empty(), client), "10.0.0.9");
        assert_eq!(forwarded_for(["203.0.113.7"].into_iter(), client), "203.0.113.7, 10.0.0.9");
        assert_eq!(
            forwarded_for(["203.0.113.7, 198.51.100.2", "192.0.2.1"].into_iter(), client),
            "203.0.113.7, 198.51.100.2, 192.0.2.1, 10.0.0.9"
        );
        assert_eq!(forwarded_for([""].into_iter(), client), "10.0.0.9");
    }

    #[test]
    fn broken_upstream_connections_count_as_gone() {
        assert!(backend_went_away(&Error::new_up(ErrorType::ConnectionClosed)));
        assert!(backend_went_away(&Error::new_up(ErrorType::ReadError)));
        assert!(!backend_went_away(&Error::new_up(ErrorType::ReadTimedout)));
        assert!(!backend_went_away(&Error::new_down(ErrorType::ConnectionClosed)));
        assert!(node_timed_out(&Error::new_up(ErrorType::ReadTimedout)));
        assert!(!node_timed_out(&Error::new_down(ErrorType::ReadTimedout)));
    }
}
