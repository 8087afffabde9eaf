//! Readiness probes: a node is ready when its listener accepts, the lab when the balancer's
//! admin `/state` lists exactly the topology's nodes, all healthy. Each wait is bounded and
//! says what it saw last.

use std::net::SocketAddr;
use std::time::Duration;

use scalelab_balancer::fetch::get_json;
use scalelab_balancer::status::StateReport;
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
            Ok(Ok(state)) => Ok(state.healthy_names()),
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

/// Waits until the balancer's admin `/state` lists node `name` healthy, or `within` has passed.
pub async fn balancer_sees_healthy(admin: SocketAddr, name: &str, within: Duration) -> Result<(), String> {
    let end = Instant::now() + within;
    loop {
        let last = match timeout(PROBE_TIMEOUT, get_state(admin)).await {
            Ok(Ok(state)) if state.healthy_names().iter().any(|n| n == name) => return Ok(()),
            Ok(Ok(_)) => format!("{name} is not healthy at the balancer"),
            Ok(Err(e)) => format!("{admin}/state: {e}"),
            Err(_) => format!("{admin}/state: no answer within {PROBE_TIMEOUT:?}"),
        };
        if Instant::now() >= end {
            return Err(last);
        }
        sleep(PROBE_EVERY).await;
    }
}

/// `GET /state` from the balancer's admin listener, parsed.
pub async fn get_state(admin: SocketAddr) -> Result<StateReport, String> {
    get_json(admin, "/state").await
}
