//! The admin listener, served by hyper on a socket of its own, beside the proxy:
//!
//! | path          | what                                                               |
//! |---------------|--------------------------------------------------------------------|
//! | `/`           | the live dashboard (its script, styles and uPlot are embedded)     |
//! | `/events`     | live samples as server-sent events: the last 5 min, then one a second |
//! | `/live`       | the latest live sample (JSON)                                      |
//! | `/metrics`    | Prometheus text                                                    |
//! | `/state`      | the [`StateReport`] JSON                                           |
//!
//! It is read-only and answers like a careful HTTP server: GET and HEAD only (others get 405
//! with `Allow`), 404 for unknown paths, 400 for malformed requests (hyper's parser), a header
//! deadline (which also closes a kept-alive connection that sends nothing), and a cap on
//! concurrent connections. It must stay reachable when the proxy is saturated: the proxy's
//! connection cap (`guard`) keeps file descriptors free for it, and its own cap keeps admin
//! clients from taking them all.
//!
//! Event streams never end by themselves, so they have their own bound: at most
//! [`MAX_EVENT_STREAMS`] at once, a quarter of the connections, so the rest stay for `/metrics`,
//! `/state` and the page whatever the streams do; one more gets 503 and is closed. A stream
//! whose client stops reading is closed once a write has stalled for [`STALLED_WRITE`]
//! ([`WriteDeadline`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::LoadBalancer;
use tokio::sync::Semaphore;

use crate::live::Live;
use crate::metrics::Metrics;
use crate::state::Roster;
use crate::status::{BackendState, Settings, StateReport};
use crate::write_deadline::WriteDeadline;

/// Admin connections served at once; more are closed at accept.
pub const MAX_ADMIN_CONNECTIONS: usize = 128;
/// Event streams (`/events`) served at once; more get 503. The other connections stay for
/// `/metrics`, `/state` and the dashboard's files.
pub const MAX_EVENT_STREAMS: usize = MAX_ADMIN_CONNECTIONS / 4;
/// A write to an admin client may stall this long before the connection is closed (a stream
/// whose client stopped reading, once the socket buffers are full).
pub const STALLED_WRITE: Duration = Duration::from_secs(10);
/// An admin client must send its request head within this.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// What `Allow` says on a 405.
const ALLOWED: &str = "GET, HEAD";

/// The response type of every admin route: a whole body, or the event stream.
pub type AdminResponse = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// The dashboard's files, embedded: no CDN and no build step at run time.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../dashboard/index.html")),
    ("/dashboard.js", "text/javascript; charset=utf-8", include_str!("../dashboard/dashboard.js")),
    ("/dashboard.css", "text/css; charset=utf-8", include_str!("../dashboard/dashboard.css")),
    (
        "/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/vendor/uPlot.iife.min.js"),
    ),
    ("/uPlot.min.css", "text/css; charset=utf-8", include_str!("../dashboard/vendor/uPlot.min.css")),
];

/// The admin app over the proxy's load balancer, roster and metrics.
pub struct AdminApp<S: BackendSelection> {
    lb: Arc<LoadBalancer<S>>,
    roster: Arc<Roster>,
    metrics: Arc<Metrics>,
    live: Arc<Live>,
    settings: Settings,
    /// One permit per event stream; a stream holds its permit until its connection ends.
    streams: Arc<Semaphore>,
}

impl<S> AdminApp<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    /// An app reporting on `lb`.
    pub fn new(
        lb: Arc<LoadBalancer<S>>,
        roster: Arc<Roster>,
        metrics: Arc<Metrics>,
        live: Arc<Live>,
        settings: Settings,
    ) -> Self {
        AdminApp { lb, roster, metrics, live, settings, streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)) }
    }

    /// Answers one request.
    pub fn handle<B>(&self, req: &Request<B>) -> AdminResponse {
        let path = req.uri().path();
        let asset = ASSETS.iter().find(|(p, _, _)| *p == path);
        let known = asset.is_some() || matches!(path, "/metrics" | "/state" | "/events" | "/live");
        if !known {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found; try / (the dashboard), /metrics or /state\n".to_vec(),
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                format!("{} {path}: only {ALLOWED}\n", req.method()).into_bytes(),
            );
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
            return r;
        }
        if let Some((_, content_type, body)) = asset {
            return reply(StatusCode::OK, content_type, body.as_bytes().to_vec());
        }
        match path {
            "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics_text()),
            "/live" => reply(StatusCode::OK, "application/json", self.live.latest().as_bytes().to_vec()),
            "/events" => self.events(),
            _ => reply(StatusCode::OK, "application/json", self.state_json()),
        }
    }

    /// The live samples as server-sent events: the recent ones at once (a page opened late
    /// draws the last minutes), then each new one. Beyond [`MAX_EVENT_STREAMS`], 503.
    fn events(&self) -> AdminResponse {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            let mut r = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!(
                    "{MAX_EVENT_STREAMS} event streams are open already; /metrics and /state still answer\n"
                )
                .into_bytes(),
            );
            let headers = r.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        };
        let (history, rx) = self.live.follow();
        let mut first = String::from("retry: 2000\n");
        for sample in &history {
            first.push_str(&format!("data: {sample}\n\n"));
        }
        // The permit lives in the stream's state: it goes back when the connection ends.
        let state = (rx, Some(first), permit);
        let stream = futures_util::stream::unfold(state, |(mut rx, first, permit)| async move {
            let event = match first {
                Some(backlog) => backlog,
                None => {
                    if rx.changed().await.is_err() {
                        return None; // the balancer is stopping
                    }
                    let data = rx.borrow_and_update().clone();
                    format!("data: {data}\n\n")
                }
            };
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), (rx, None, permit)))
        });
        let mut response = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// `/metrics`: the health gauge is refreshed from the load balancer first, so departed
    /// backends disappear from it.
    fn metrics_text(&self) -> Vec<u8> {
        self.metrics.backend_healthy.reset();
        self.metrics.in_flight.reset();
        let backends = self.lb.backends();
        for backend in backends.get_backend().iter() {
            let Some(addr) = backend.addr.as_inet() else {
                continue;
            };
            let entry = self.roster.get(addr);
            let name = entry.as_ref().map(|e| e.name.clone()).unwrap_or_default();
            let addr = addr.to_string();
            let labels = [addr.as_str(), name.as_str()];
            self.metrics.backend_healthy.with_label_values(&labels).set(i64::from(backends.ready(backend)));
            let in_flight = entry.map_or(0, |e| e.in_flight() as i64);
            self.metrics.in_flight.with_label_values(&labels).set(in_flight);
        }
        self.metrics.encode()
    }

    /// The current [`StateReport`].
    pub fn state(&self) -> StateReport {
        let backends = self.lb.backends();
        let list: Vec<BackendState> = backends
            .get_backend()
            .iter()
            .map(|b| {
                let entry = b.addr.as_inet().and_then(|a| self.roster.get(a));
                BackendState {
                    name: entry.as_deref().map_or_else(String::new, |e| e.name.clone()),
                    addr: b.addr.to_string(),
                    healthy: backends.ready(b),
                    requests: entry.as_deref().map_or(0, |e| e.requests()),
                }
            })
            .collect();
        StateReport {
            healthy_backends: list.iter().filter(|b| b.healthy).count(),
            backends: list,
            retries: self.metrics.retries.get(),
            settings: self.settings.clone(),
            groups: self.live.groups(),
        }
    }

    fn state_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.state()).unwrap_or_else(|e| {
            tracing::error!("encoding /state: {e}");
            b"{}".to_vec()
        })
    }
}

/// A complete response with its type and length.
fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The admin listener as a pingora background service: it accepts on `listener` until the
/// server shuts down.
pub struct AdminServer<S: BackendSelection> {
    app: Arc<AdminApp<S>>,
    /// Taken when the service starts (it starts once).
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
}

impl<S: BackendSelection> AdminServer<S> {
    /// Serves `app` on `listener`.
    pub fn new(app: AdminApp<S>, listener: std::net::TcpListener) -> Self {
        AdminServer { app: Arc::new(app), listener: std::sync::Mutex::new(Some(listener)) }
    }
}

#[async_trait]
impl<S> BackgroundService for AdminServer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.listener.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(std_listener) = taken else { return };
        let listener = match std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("admin listener: {e}");
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(ADMIN_HEADER_TIMEOUT);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue; // over the cap: dropping the stream closes it
            };
            let app = self.app.clone();
            let conn = http.serve_connection(
                TokioIo::new(WriteDeadline::new(stream, STALLED_WRITE)),
                service_fn(move |req| {
                    let resp = app.handle(&req);
                    async move { Ok::<_, Infallible>(resp) }
                }),
            );
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = conn.await {
                    tracing::debug!("admin connection: {e}");
                }
            });
        }
    }
}
