//! The admin listener: `GET /metrics` (Prometheus text) and `GET /state` (the
//! [`StateReport`] JSON), served by hyper on a socket of its own, beside the proxy.
//!
//! It is read-only and answers like a careful HTTP server: GET and HEAD only (others get 405
//! with `Allow`), 404 for unknown paths, 400 for malformed requests (hyper's parser), a header
//! deadline, and a cap on concurrent connections. It must stay reachable when the proxy is
//! saturated: the proxy's connection cap (`guard`) keeps file descriptors free for it, and its
//! own cap keeps admin clients from taking them all.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::LoadBalancer;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::state::Roster;
use crate::status::{BackendState, Settings, StateReport};

/// Admin connections served at once; more are closed at accept.
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// An admin client must send its request head within this.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// What `Allow` says on a 405.
const ALLOWED: &str = "GET, HEAD";

/// The response type of every admin route.
pub type AdminResponse = Response<Full<Bytes>>;

/// The admin app over the proxy's load balancer, roster and metrics.
pub struct AdminApp<S: BackendSelection> {
    lb: Arc<LoadBalancer<S>>,
    roster: Arc<Roster>,
    metrics: Arc<Metrics>,
    settings: Settings,
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
        settings: Settings,
    ) -> Self {
        AdminApp { lb, roster, metrics, settings }
    }

    /// Answers one request.
    pub fn handle<B>(&self, req: &Request<B>) -> AdminResponse {
        let path = req.uri().path();
        let known = matches!(path, "/metrics" | "/state");
        if !known {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found; try /metrics or /state\n".to_vec(),
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
        match path {
            "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics_text()),
            _ => reply(StatusCode::OK, "application/json", self.state_json()),
        }
    }

    /// `/metrics`: the health gauge is refreshed from the load balancer first, so departed
    /// backends disappear from it.
    fn metrics_text(&self) -> Vec<u8> {
        self.metrics.backend_healthy.reset();
        let backends = self.lb.backends();
        for backend in backends.get_backend().iter() {
            let Some(addr) = backend.addr.as_inet() else {
                continue;
            };
            let name = self.roster.get(addr).map(|e| e.name.clone()).unwrap_or_default();
            let addr = addr.to_string();
            self.metrics
                .backend_healthy
                .with_label_values(&[addr.as_str(), name.as_str()])
                .set(i64::from(backends.ready(backend)));
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
    let mut response = Response::new(Full::new(Bytes::from(body)));
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
                TokioIo::new(stream),
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
