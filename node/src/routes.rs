//! The HTTP endpoints a worker serves, and the headers every response carries.
//!
//! | route        | does                                                            |
//! |--------------|-----------------------------------------------------------------|
//! | `GET /op1`   | answers at once: `{node, worker, pid}`                          |
//! | `GET /op2`   | burns `op2_cpu_ms` of thread CPU (`?cpu_ms=N` overrides, capped);  |
//! |              | 503 + `Retry-After` when `max_queue` requests already wait     |
//! | `GET /health`| `{"status":"ok"}`                                               |
//! | `GET /stats` | the node's CPU used (µs) and cap (cores), from its cgroups       |
//! | `GET /info`  | node, worker, pid, uptime, requests served and shed, queue, XFF, |
//! |              | the node's distribution                                          |
//!
//! Handlers run on the worker's only thread, so `/op2` blocks the whole worker while it burns:
//! that is the Node.js event-loop lesson the lab is about.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use scalelab_topology::{Distribution, Workload};
use serde_json::json;

use scalelab_wire as wire;

use crate::cgroup_stats;
use crate::config::WorkerConfig;
use crate::cpu_queue::{ClientSocket, CpuQueue, Refused};

/// The response type of every route.
pub type HttpResponse = Response<Full<Bytes>>;

// The headers of the wire contract (`scalelab_wire`).
static X_NODE: HeaderName = HeaderName::from_static(wire::X_NODE);
static X_WORKER: HeaderName = HeaderName::from_static(wire::X_WORKER);
static X_PID: HeaderName = HeaderName::from_static(wire::X_PID);
/// Marks a response as shed by a full queue (the balancer counts these).
static X_SHED: HeaderName = HeaderName::from_static(wire::X_SHED);

/// Seconds a shed client is told to wait before retrying: about the time a full queue of
/// default /op2 requests takes to drain.
const RETRY_AFTER_S: u32 = 1;

/// One worker's identity, settings and counters, shared by all its connections.
#[derive(Debug)]
pub struct App {
    node: String,
    worker: usize,
    pid: u32,
    workload: Workload,
    /// How connections reach this node's workers (reported by `/info`).
    distribution: Distribution,
    /// This worker's CPU: `/op2` burns queue here.
    cpu: CpuQueue,
    /// The node's cgroups, for `/stats`.
    cgroups: Vec<std::path::PathBuf>,
    started: Instant,
    /// Requests answered by this worker (any route, any status).
    served: AtomicU64,
    /// `/op2` requests refused because the queue was full.
    shed: AtomicU64,
    /// The identity headers, built once: they are the same on every response.
    identity: [(HeaderName, HeaderValue); 3],
}

/// Why `?cpu_ms=` was refused (a 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuQueryError {
    #[error("cpu_ms={0:?} is not a whole number of milliseconds")]
    NotANumber(String),
    #[error("cpu_ms={asked} exceeds the node's max_cpu_ms={max}")]
    OverMax { asked: u64, max: u64 },
}

impl App {
    /// The app of worker `config.id` in process `pid`, burning `/op2` CPU through `cpu`.
    pub fn new(config: &WorkerConfig, pid: u32, cpu: CpuQueue) -> anyhow::Result<App> {
        let node = HeaderValue::from_str(&config.node)
            .map_err(|_| anyhow::anyhow!("node name {:?} is not a valid header value", config.node))?;
        Ok(App {
            node: config.node.clone(),
            worker: config.id,
            pid,
            workload: config.workload,
            distribution: config.distribution,
            cgroups: config.cgroups.clone(),
            cpu,
            started: Instant::now(),
            served: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            identity: [
                (X_NODE.clone(), node),
                (X_WORKER.clone(), HeaderValue::from(config.id)),
                (X_PID.clone(), HeaderValue::from(pid)),
            ],
        })
    }

    /// Answers one request.
    /// Answers one request that came on `client` (its connection's socket, when known: a
    /// queued `/op2` whose client has gone is not burned).
    pub async fn handle<B>(&self, req: &Request<B>, client: Option<ClientSocket>) -> HttpResponse {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let route = req.uri().path();
        let known = matches!(route, "/op1" | "/op2" | "/health" | "/info" | "/stats");
        let mut resp = if let Some(why) = ambiguous_authority(req) {
            self.json(StatusCode::BAD_REQUEST, json!({ "error": why }))
        } else if !known {
            self.json(StatusCode::NOT_FOUND, json!({ "error": format!("no route {route}") }))
        } else if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = self.json(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": format!("{} {route}: only GET is allowed", req.method()) }),
            );
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        } else {
            match route {
                "/op1" => self.json(StatusCode::OK, self.identity_json()),
                "/op2" => self.op2(req.uri().query(), client).await,
                "/health" => self.json(StatusCode::OK, json!({ "status": "ok" })),
                "/stats" => self.typed(&wire::NodeStats {
                    node: Some(self.node.clone()),
                    cpu_used_us: cgroup_stats::cpu_used(&self.cgroups).map(|d| d.as_micros() as u64),
                    cpu_cap: cgroup_stats::cpu_cap(&self.cgroups),
                }),
                _ => {
                    let text =
                        |name| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                    self.typed(&wire::NodeInfo {
                        node: self.node.clone(),
                        worker: self.worker,
                        pid: self.pid,
                        uptime_s: self.started.elapsed().as_secs_f64(),
                        requests: served,
                        shed: self.shed.load(Ordering::Relaxed),
                        queued: self.cpu.waiting(),
                        op2_cpu_ms: self.workload.op2_cpu_ms,
                        max_cpu_ms: self.workload.max_cpu_ms,
                        max_queue: self.workload.max_queue,
                        distribution: self.distribution,
                        forwarded_for: text("x-forwarded-for"),
                        host: text(HOST.as_str()),
                    })
                }
            }
        };
        for (name, value) in &self.identity {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        resp
    }

    async fn op2(&self, query: Option<&str>, client: Option<ClientSocket>) -> HttpResponse {
        let w = &self.workload;
        let cpu_ms = match cpu_ms_param(query, w.op2_cpu_ms, w.max_cpu_ms) {
            Ok(ms) => ms,
            Err(e) => return self.json(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
        };
        match self.cpu.burn(Duration::from_millis(cpu_ms), client).await {
            Ok(Ok(used)) => {
                let mut body = self.identity_json();
                body["requested_cpu_ms"] = json!(cpu_ms);
                body["cpu_ms"] = json!((used.as_secs_f64() * 1e5).round() / 100.0);
                self.json(StatusCode::OK, body)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the thread CPU clock failed");
                self.json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": format!("thread CPU clock: {e}") }),
                )
            }
            Err(Refused::Full { waiting }) => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                let mut r = self.json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({
                        "error": format!(
                            "worker busy: {waiting} requests already wait for its CPU (max_queue {}); \
                             retry after {RETRY_AFTER_S} s", w.max_queue
                        )
                    }),
                );
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
                r.headers_mut().insert(X_SHED.clone(), HeaderValue::from_static("queue-full"));
                r
            }
            Err(Refused::ClientGone) => {
                self.json(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "the client went away" }))
            }
            Err(Refused::Closed) => {
                self.json(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "worker shutting down" }))
            }
        }
    }

    fn identity_json(&self) -> serde_json::Value {
        let who = wire::Identity { node: self.node.clone(), worker: self.worker, pid: self.pid };
        serde_json::to_value(who).unwrap_or_default()
    }

    /// A 200 with `body`, one of the wire contract's documents.
    fn typed(&self, body: &impl serde::Serialize) -> HttpResponse {
        self.json(StatusCode::OK, serde_json::to_value(body).unwrap_or_default())
    }

    fn json(&self, status: StatusCode, body: serde_json::Value) -> HttpResponse {
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

/// Why a request in absolute form (`GET http://a/op1`) is refused: its `Host` names another
/// authority. The balancer (pingora) refuses the same request, as a defence against requests
/// routed one way and served another; the node agrees, so both tiers answer alike.
fn ambiguous_authority<B>(req: &Request<B>) -> Option<String> {
    let authority = req.uri().authority()?;
    let host = req.headers().get(HOST)?;
    (!host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes())).then(|| {
        format!(
            "Host header {:?} differs from the request-target authority {:?}",
            String::from_utf8_lossy(host.as_bytes()),
            authority.as_str()
        )
    })
}

/// The CPU milliseconds an `/op2` request asks for: `cpu_ms` from the query, else `default`.
pub fn cpu_ms_param(query: Option<&str>, default: u64, max: u64) -> Result<u64, CpuQueryError> {
    let asked = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("cpu_ms="));
    let Some(text) = asked else { return Ok(default) };
    let asked: u64 = text.parse().map_err(|_| CpuQueryError::NotANumber(text.to_string()))?;
    if asked > max {
        return Err(CpuQueryError::OverMax { asked, max });
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_queue::CpuQueue;

    fn config() -> WorkerConfig {
        WorkerConfig {
            id: 2,
            node: "node-1".into(),
            workload: Workload { op2_cpu_ms: 3, max_cpu_ms: 100, max_queue: 4 },
            grace: Duration::from_secs(1),
            lifeline_fd: 4,
            distribution: Distribution::Shared,
            cgroups: Vec::new(),
        }
    }

    /// Runs `f` with an app whose CPU queue is served, on a current-thread runtime like a
    /// worker's.
    fn with_app<F: std::future::Future>(f: impl FnOnce(std::sync::Arc<App>) -> F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (queue, burner) = CpuQueue::new(config().workload.max_queue);
            tokio::spawn(burner.run());
            f(std::sync::Arc::new(App::new(&config(), 4242, queue).unwrap())).await
        })
    }

    fn request(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    async fn body_json(resp: HttpResponse) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn cpu_ms_defaults_overrides_and_refuses() {
        assert_eq!(cpu_ms_param(None, 20, 1000), Ok(20));
        assert_eq!(cpu_ms_param(Some("x=1"), 20, 1000), Ok(20));
        assert_eq!(cpu_ms_param(Some("x=1&cpu_ms=50"), 20, 1000), Ok(50));
        assert_eq!(cpu_ms_param(Some("cpu_ms=1000"), 20, 1000), Ok(1000));
        assert_eq!(
            cpu_ms_param(Some("cpu_ms=1001"), 20, 1000),
            Err(CpuQueryError::OverMax { asked: 1001, max: 1000 })
        );
        assert_eq!(cpu_ms_param(Some("cpu_ms=-1"), 20, 1000), Err(CpuQueryError::NotANumber("-1".into())));
        assert_eq!(cpu_ms_param(Some("cpu_ms="), 20, 1000), Err(CpuQueryError::NotANumber(String::new())));
    }

    #[test]
    fn every_response_names_node_worker_and_pid() {
        with_app(|app| async move {
            for (method, uri, status) in [
                (Method::GET, "/op1", 200),
                (Method::GET, "/op2?cpu_ms=1", 200),
                (Method::GET, "/op2?cpu_ms=101", 400),
                (Method::GET, "/health", 200),
                (Method::GET, "/info", 200),
                (Method::GET, "/nope", 404),
                (Method::POST, "/op1", 405),
            ] {
                let resp = app.handle(&request(method.clone(), uri), None).await;
                assert_eq!(resp.status().as_u16(), status, "{method} {uri}");
                assert_eq!(resp.headers()["x-node"], "node-1");
                assert_eq!(resp.headers()["x-worker"], "2");
                assert_eq!(resp.headers()["x-pid"], "4242");
            }
            let info = body_json(app.handle(&request(Method::GET, "/info"), None).await).await;
            assert_eq!(info["requests"], 8);
            assert_eq!(info["worker"], 2);
            assert_eq!(info["max_queue"], 4);
            assert_eq!(info["distribution"], "shared");
        });
    }

    #[test]
    fn absolute_form_with_another_host_is_refused() {
        with_app(|app| async move {
            let req = |host: &str| {
                Request::builder().uri("http://example.com/op1").header(HOST, host).body(()).unwrap()
            };
            assert_eq!(app.handle(&req("example.com"), None).await.status(), 200);
            assert_eq!(app.handle(&req("EXAMPLE.com"), None).await.status(), 200);
            let refused = app.handle(&req("other"), None).await;
            assert_eq!(refused.status(), 400);
            assert!(body_json(refused).await["error"].as_str().unwrap().contains("differs"));
        });
    }

    #[test]
    fn op2_reports_the_cpu_it_burned() {
        with_app(|app| async move {
            let body = body_json(app.handle(&request(Method::GET, "/op2?cpu_ms=5"), None).await).await;
            let ms = body["cpu_ms"].as_f64().unwrap();
            assert!((5.0..7.0).contains(&ms), "{body}");
            assert_eq!(body["requested_cpu_ms"], 5);
            let body = body_json(app.handle(&request(Method::GET, "/op2"), None).await).await;
            assert_eq!(body["requested_cpu_ms"], 3);
        });
    }

    #[test]
    fn a_full_queue_sheds_with_503_and_retry_after() {
        with_app(|app| async move {
            // Eight at once against a queue of four: four wait, four are shed before any burns.
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let app = app.clone();
                    tokio::spawn(
                        async move { app.handle(&request(Method::GET, "/op2?cpu_ms=1"), None).await },
                    )
                })
                .collect();
            let mut codes = Vec::new();
            for t in tasks {
                let resp = t.await.unwrap();
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                    assert_eq!(resp.headers()[RETRY_AFTER], "1");
                    assert_eq!(resp.headers()["x-shed"], "queue-full");
                }
                codes.push(resp.status().as_u16());
            }
            assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 4, "{codes:?}");
            assert_eq!(codes.iter().filter(|&&c| c == 503).count(), 4, "{codes:?}");
            let info = body_json(app.handle(&request(Method::GET, "/info"), None).await).await;
            assert_eq!(info["shed"], 4);
            assert_eq!(info["queued"], 0);
        });
    }
}
