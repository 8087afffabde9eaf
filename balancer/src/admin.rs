//! The admin listener's HTTP app, served by pingora beside the proxy: `GET /metrics`
//! (Prometheus text) and `GET /state` (JSON: the backends with their health and request
//! counts, and the settings in force). Anything else is a 404 (405 for other methods).

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, HeaderValue, Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::LoadBalancer;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::state::Roster;

/// The settings `/state` reports, fixed at startup.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `round_robin` or `random`.
    pub algorithm: &'static str,
    /// `local` or `dns`.
    pub discovery: &'static str,
    /// The prefix of group DNS names (`dns` discovery only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_prefix: Option<String>,
    /// The client listener.
    pub listen: String,
    /// This listener.
    pub admin: String,
    /// Proxy worker threads.
    pub threads: usize,
    /// The health check path.
    pub health_path: String,
    /// Milliseconds between health check passes.
    pub health_interval_ms: u64,
}

/// One backend as `/state` shows it.
#[derive(Debug, Serialize)]
struct BackendReport<'a> {
    name: &'a str,
    addr: String,
    healthy: bool,
    /// Responses relayed from it since it (last) joined.
    requests: u64,
}

/// The whole `/state` document.
#[derive(Debug, Serialize)]
struct StateReport<'a> {
    backends: Vec<BackendReport<'a>>,
    healthy_backends: usize,
    retries: u64,
    #[serde(flatten)]
    settings: &'a Settings,
}

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

    /// `/state` as JSON.
    fn state_json(&self) -> Vec<u8> {
        let backends = self.lb.backends();
        let current = backends.get_backend();
        let entries: Vec<_> = current
            .iter()
            .map(|b| (b, b.addr.as_inet().and_then(|a| self.roster.get(a)), backends.ready(b)))
            .collect();
        let report = StateReport {
            backends: entries
                .iter()
                .map(|(b, entry, healthy)| BackendReport {
                    name: entry.as_deref().map_or("", |e| e.name.as_str()),
                    addr: b.addr.to_string(),
                    healthy: *healthy,
                    requests: entry.as_deref().map_or(0, |e| e.requests()),
                })
                .collect(),
            healthy_backends: entries.iter().filter(|(_, _, healthy)| *healthy).count(),
            retries: self.metrics.retries.get(),
            settings: &self.settings,
        };
        serde_json::to_vec_pretty(&report).unwrap_or_else(|e| {
            tracing::error!("encoding /state: {e}");
            b"{}".to_vec()
        })
    }
}

#[async_trait]
impl<S> ServeHttp for AdminApp<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        let known = matches!(path, "/metrics" | "/state");
        if known && req.method != Method::GET {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"only GET\n".to_vec());
        }
        match path {
            "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics_text()),
            "/state" => reply(StatusCode::OK, "application/json", self.state_json()),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found; try /metrics or /state\n".to_vec()),
        }
    }
}

/// A complete response with its length (pingora's `ServeHttp` adds no framing of its own).
fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}
