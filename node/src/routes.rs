//! The HTTP endpoints a worker serves, and the headers every response carries.
//!
//! | route        | does                                                            |
//! |--------------|-----------------------------------------------------------------|
//! | `GET /op1`   | answers at once: `{node, worker, pid}`                          |
//! | `GET /op2`   | burns `op2_cpu_ms` of thread CPU (`?cpu_ms=N` overrides, capped) |
//! | `GET /health`| `{"status":"ok"}`                                               |
//! | `GET /info`  | node, worker, pid, uptime, requests served, X-Forwarded-For seen |
//!
//! Handlers run on the worker's only thread, so `/op2` blocks the whole worker while it burns:
//! that is the Node.js event-loop lesson the lab is about.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::config::WorkerConfig;
use crate::cpu;

/// The response type of every route.
pub type HttpResponse = Response<Full<Bytes>>;

static X_NODE: HeaderName = HeaderName::from_static("x-node");
static X_WORKER: HeaderName = HeaderName::from_static("x-worker");
static X_PID: HeaderName = HeaderName::from_static("x-pid");

/// One worker's identity, settings and counters, shared by all its connections.
#[derive(Debug)]
pub struct App {
    node: String,
    worker: usize,
    pid: u32,
    op2_cpu_ms: u64,
    max_cpu_ms: u64,
    started: Instant,
    /// Requests answered by this worker (any route, any status).
    served: AtomicU64,
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
    /// The app of worker `config.id` in process `pid`.
    pub fn new(config: &WorkerConfig, pid: u32) -> anyhow::Result<App> {
        let node = HeaderValue::from_str(&config.node)
            .map_err(|_| anyhow::anyhow!("node name {:?} is not a valid header value", config.node))?;
        Ok(App {
            node: config.node.clone(),
            worker: config.id,
            pid,
            op2_cpu_ms: config.op2_cpu_ms,
            max_cpu_ms: config.max_cpu_ms,
            started: Instant::now(),
            served: AtomicU64::new(0),
            identity: [
                (X_NODE.clone(), node),
                (X_WORKER.clone(), HeaderValue::from(config.id)),
                (X_PID.clone(), HeaderValue::from(pid)),
            ],
        })
    }

    /// Answers one request.
    pub fn handle<B>(&self, req: &Request<B>) -> HttpResponse {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let route = req.uri().path();
        let known = matches!(route, "/op1" | "/op2" | "/health" | "/info");
        let mut resp = if !known {
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
                "/op2" => self.op2(req.uri().query()),
                "/health" => self.json(StatusCode::OK, json!({ "status": "ok" })),
                _ => self.json(
                    StatusCode::OK,
                    json!({
                        "node": self.node,
                        "worker": self.worker,
                        "pid": self.pid,
                        "uptime_s": self.started.elapsed().as_secs_f64(),
                        "requests": served,
                        "op2_cpu_ms": self.op2_cpu_ms,
                        "max_cpu_ms": self.max_cpu_ms,
                        // What a proxy in front said about the client (the balancer appends it).
                        "forwarded_for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
                    }),
                ),
            }
        };
        for (name, value) in &self.identity {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        resp
    }

    fn op2(&self, query: Option<&str>) -> HttpResponse {
        let cpu_ms = match cpu_ms_param(query, self.op2_cpu_ms, self.max_cpu_ms) {
            Ok(ms) => ms,
            Err(e) => return self.json(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
        };
        match cpu::burn(Duration::from_millis(cpu_ms)) {
            Ok(used) => {
                let mut body = self.identity_json();
                body["requested_cpu_ms"] = json!(cpu_ms);
                body["cpu_ms"] = json!((used.as_secs_f64() * 1e5).round() / 100.0);
                self.json(StatusCode::OK, body)
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the thread CPU clock failed");
                self.json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": format!("thread CPU clock: {e}") }),
                )
            }
        }
    }

    fn identity_json(&self) -> serde_json::Value {
        json!({ "node": self.node, "worker": self.worker, "pid": self.pid })
    }

    fn json(&self, status: StatusCode, body: serde_json::Value) -> HttpResponse {
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
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

    fn app() -> App {
        let config = WorkerConfig {
            id: 2,
            node: "node-1".into(),
            op2_cpu_ms: 3,
            max_cpu_ms: 100,
            grace: Duration::from_secs(1),
            lifeline_fd: 4,
        };
        App::new(&config, 4242).unwrap()
    }

    fn request(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    fn body_json(resp: &HttpResponse) -> serde_json::Value {
        use http_body_util::BodyExt;
        let full = resp.body().clone();
        let bytes = poll_once(full.collect()).unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// `Full` is ready at once, so one poll with a no-op waker completes the collection.
    fn poll_once<F: std::future::Future>(fut: F) -> F::Output
    where
        F::Output: Sized,
    {
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a Full body is always ready"),
        }
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
        let app = app();
        for (method, uri, status) in [
            (Method::GET, "/op1", 200),
            (Method::GET, "/op2?cpu_ms=1", 200),
            (Method::GET, "/op2?cpu_ms=101", 400),
            (Method::GET, "/health", 200),
            (Method::GET, "/info", 200),
            (Method::GET, "/nope", 404),
            (Method::POST, "/op1", 405),
        ] {
            let resp = app.handle(&request(method.clone(), uri));
            assert_eq!(resp.status().as_u16(), status, "{method} {uri}");
            assert_eq!(resp.headers()["x-node"], "node-1");
            assert_eq!(resp.headers()["x-worker"], "2");
            assert_eq!(resp.headers()["x-pid"], "4242");
        }
        let info = body_json(&app.handle(&request(Method::GET, "/info")));
        assert_eq!(info["requests"], 8);
        assert_eq!(info["worker"], 2);
    }

    #[test]
    fn op2_reports_the_cpu_it_burned() {
        let body = body_json(&app().handle(&request(Method::GET, "/op2?cpu_ms=5")));
        let ms = body["cpu_ms"].as_f64().unwrap();
        assert!((5.0..7.0).contains(&ms), "{body}");
        assert_eq!(body["requested_cpu_ms"], 5);
        let body = body_json(&app().handle(&request(Method::GET, "/op2")));
        assert_eq!(body["requested_cpu_ms"], 3);
    }
}
