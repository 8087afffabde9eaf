//! Readiness: when `up` may tell the user the lab is ready. First every node's listener
//! accepts (so the balancer's first health check finds them up), then the balancer's listener
//! accepts and its admin `/state` shows every node healthy. Each wait is bounded; what is not
//! ready in time is named, and the lab runs anyway.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// Between two probes of something not ready yet.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// One probe's connect or request.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Waits until every address accepts a TCP connection, or `within` has passed; returns the
/// addresses that never did.
pub async fn listening(addrs: &[SocketAddr], within: Duration) -> Vec<SocketAddr> {
    let end = Instant::now() + within;
    let mut late = Vec::new();
    for &addr in addrs {
        loop {
            if let Ok(Ok(_)) = timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await {
                break;
            }
            if Instant::now() >= end {
                late.push(addr);
                break;
            }
            sleep(PROBE_EVERY).await;
        }
    }
    late
}

/// Waits until the balancer's admin `/state` lists exactly `names` and every one is healthy,
/// or `within` has passed. The error says what the balancer saw last.
pub async fn balancer_sees(admin: SocketAddr, names: &[String], within: Duration) -> Result<(), String> {
    let end = Instant::now() + within;
    let mut want = names.to_vec();
    want.sort_unstable();
    loop {
        let seen = match timeout(PROBE_TIMEOUT, get_state(admin)).await {
            Ok(Ok(state)) => healthy_names(&state).map_err(|e| format!("{admin}/state: {e}")),
            Ok(Err(e)) => Err(format!("{admin}/state: {e}")),
            Err(_) => Err(format!("{admin}/state: no answer within {PROBE_TIMEOUT:?}")),
        };
        let last = match seen {
            Ok(healthy) if healthy == want => return Ok(()),
            Ok(healthy) => format!("healthy backends {healthy:?}, expected {want:?}"),
            Err(e) => e,
        };
        if Instant::now() >= end {
            return Err(last);
        }
        sleep(PROBE_EVERY).await;
    }
}

/// The sorted names of the healthy backends in a `/state` document.
fn healthy_names(state: &serde_json::Value) -> Result<Vec<String>, String> {
    let backends = state["backends"].as_array().ok_or("no \"backends\" array")?;
    let mut names: Vec<String> = backends
        .iter()
        .filter(|b| b["healthy"].as_bool() == Some(true))
        .filter_map(|b| b["name"].as_str().map(String::from))
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// `GET /state` from the balancer's admin listener, parsed.
async fn get_state(admin: SocketAddr) -> Result<serde_json::Value, String> {
    let stream = TcpStream::connect(admin).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get("/state")
        .header(hyper::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("status {}", res.status()));
    }
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    driver.abort();
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_names_skips_the_unhealthy_and_sorts() {
        let state = serde_json::json!({"backends": [
            {"name": "node-2", "healthy": true},
            {"name": "node-3", "healthy": false},
            {"name": "node-1", "healthy": true},
        ]});
        assert_eq!(healthy_names(&state).unwrap(), ["node-1", "node-2"]);
        assert!(healthy_names(&serde_json::json!({})).is_err());
    }
}
