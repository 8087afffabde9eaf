//! The active health check: pingora's `HttpHealthCheck` configured from
//! `balancer.health_check` (path, timeouts, how many results flip a backend).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora_load_balancing::health_check::{HealthObserve, HttpHealthCheck};
use pingora_load_balancing::Backend;
use scalelab_topology::HealthCheckConfig;

use crate::state::Roster;

/// The Host header of health probes; nodes answer any host.
const PROBE_HOST: &str = "scalelab-balancer";

/// A `GET <path>` probe: a 200 within `timeout_ms` (connect, then again for the response
/// header) passes. `unhealthy_after` consecutive failures eject a backend,
/// `healthy_after` consecutive passes readmit it.
/// Health changes are logged (by pingora) with the backend's topology name from `roster`.
pub fn http_health_check(config: &HealthCheckConfig, roster: Arc<Roster>) -> anyhow::Result<HttpHealthCheck> {
    let marker_roster = roster.clone();
    let mut check = HttpHealthCheck::new(PROBE_HOST, false);
    check.set_backend_summary(move |backend| match backend.addr.as_inet().and_then(|a| roster.get(a)) {
        Some(entry) => format!("backend {} ({})", entry.name, entry.addr),
        None => format!("backend {}", backend.addr),
    });
    let uri = config
        .path
        .parse()
        .with_context(|| format!("health_check.path {:?} is not a URI path", config.path))?;
    check.req.set_uri(uri);
    let timeout = Duration::from_millis(config.timeout_ms);
    check.peer_template.options.connection_timeout = Some(timeout);
    check.peer_template.options.read_timeout = Some(timeout);
    check.peer_template.options.write_timeout = Some(timeout);
    check.consecutive_failure = config.unhealthy_after;
    check.consecutive_success = config.healthy_after;
    check.health_changed_callback = Some(Box::new(HealthMarker(marker_roster)));
    Ok(check)
}

/// Notes each health change on the backend's roster entry (when it last changed is what the
/// dashboard shows). pingora calls it only on changes; a backend starts healthy.
struct HealthMarker(Arc<Roster>);

#[async_trait::async_trait]
impl HealthObserve for HealthMarker {
    async fn observe(&self, target: &Backend, healthy: bool) {
        if let Some(entry) = target.addr.as_inet().and_then(|a| self.0.get(a)) {
            entry.traffic.set_health(healthy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_follows_the_config() {
        let config = HealthCheckConfig {
            path: "/health".into(),
            interval_ms: 200,
            timeout_ms: 300,
            unhealthy_after: 2,
            healthy_after: 3,
        };
        let check = http_health_check(&config, Arc::default()).unwrap();
        assert_eq!(check.req.uri.path(), "/health");
        assert_eq!(check.peer_template.options.connection_timeout, Some(Duration::from_millis(300)));
        assert_eq!(check.consecutive_failure, 2);
        assert_eq!(check.consecutive_success, 3);
    }
}
