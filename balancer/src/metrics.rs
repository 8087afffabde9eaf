//! The balancer's Prometheus metrics, in a registry of its own (not the process-global one)
//! so `/metrics` shows exactly these series and tests can build as many as they like.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Metric handles, cheap to update from the request path.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `scalelab_balancer_requests_total{backend, code}`: responses relayed, by backend address
    /// (`none` when no backend could be picked) and HTTP status.
    pub requests: IntCounterVec,
    /// `scalelab_balancer_request_duration_seconds`: from request header read to the end of
    /// logging, retries included.
    pub latency: Histogram,
    /// `scalelab_balancer_backend_healthy{backend, name}`: 1 when the backend takes traffic.
    /// Set when `/metrics` is scraped, from the load balancer's own view.
    pub backend_healthy: IntGaugeVec,
    /// `scalelab_balancer_connect_failures_total{backend}`: connections that could not be made.
    pub connect_failures: IntCounterVec,
    /// `scalelab_balancer_retries_total`: attempts repeated on another (or a fresh) connection.
    pub retries: IntCounter,
    /// `scalelab_balancer_upstream_timeouts_total{backend}`: attempts given up because the
    /// node did not answer within `read_timeout_ms`.
    pub upstream_timeouts: IntCounterVec,
    /// `scalelab_balancer_fail_open_total`: attempts sent to a backend the health checks
    /// mark down, because none was marked up.
    pub fail_open: IntCounter,
    /// `scalelab_balancer_shed_total{backend}`: 503s a node sent because its worker's queue
    /// was full (marked `x-shed`), relayed to the client.
    pub shed: IntCounterVec,
    /// `scalelab_balancer_client_connections`: client connections held now.
    pub client_connections: IntGauge,
    /// `scalelab_balancer_client_refused_total`: connections closed at accept because
    /// `max_connections` were held.
    pub client_refused: IntCounter,
    /// `scalelab_balancer_header_timeouts_total`: clients answered 408 for not sending a whole
    /// request head within `header_timeout_ms`.
    pub header_timeouts: IntCounter,
    /// `scalelab_balancer_idle_closed_total`: connections closed after `keepalive_timeout_ms`
    /// without traffic.
    pub idle_closed: IntCounter,
    /// `scalelab_balancer_client_aborts_total`: requests whose client went away before the
    /// answer was complete.
    pub client_aborts: IntCounter,
    /// `scalelab_balancer_worker_responses_total{backend, name, worker}`: responses relayed
    /// from each node worker (its `x-worker` header; 0 when it sent none).
    pub worker_responses: IntCounterVec,
    /// `scalelab_balancer_in_flight{backend, name}`: attempts in flight on each backend, set
    /// when `/metrics` is scraped.
    pub in_flight: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every balancer metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("scalelab_balancer_requests_total", "Responses relayed, by backend and HTTP status"),
            &["backend", "code"],
        )
        .expect("valid metric");
        // 100 µs .. ~3.3 s: loopback requests take well under a millisecond, /op2 tens of them.
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "scalelab_balancer_request_duration_seconds",
                "Request latency through the balancer",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let backend_healthy = IntGaugeVec::new(
            Opts::new("scalelab_balancer_backend_healthy", "1 when the backend passes its health checks"),
            &["backend", "name"],
        )
        .expect("valid metric");
        let connect_failures = IntCounterVec::new(
            Opts::new("scalelab_balancer_connect_failures_total", "Failed connection attempts, by backend"),
            &["backend"],
        )
        .expect("valid metric");
        let retries =
            IntCounter::new("scalelab_balancer_retries_total", "Requests retried after a failed attempt")
                .expect("valid metric");
        let upstream_timeouts = IntCounterVec::new(
            Opts::new(
                "scalelab_balancer_upstream_timeouts_total",
                "Attempts given up because the node did not answer within read_timeout_ms, by backend",
            ),
            &["backend"],
        )
        .expect("valid metric");
        let fail_open = IntCounter::new(
            "scalelab_balancer_fail_open_total",
            "Attempts sent to an unhealthy backend because no backend was healthy",
        )
        .expect("valid metric");
        let shed = IntCounterVec::new(
            Opts::new("scalelab_balancer_shed_total", "503s a node sent because a worker queue was full"),
            &["backend"],
        )
        .expect("valid metric");
        let client_connections =
            IntGauge::new("scalelab_balancer_client_connections", "Client connections held now")
                .expect("valid metric");
        let client_refused = IntCounter::new(
            "scalelab_balancer_client_refused_total",
            "Client connections closed at accept because max_connections were held",
        )
        .expect("valid metric");
        let header_timeouts = IntCounter::new(
            "scalelab_balancer_header_timeouts_total",
            "Clients answered 408 for a request head slower than header_timeout_ms",
        )
        .expect("valid metric");
        let idle_closed = IntCounter::new(
            "scalelab_balancer_idle_closed_total",
            "Client connections closed after keepalive_timeout_ms without traffic",
        )
        .expect("valid metric");
        let client_aborts = IntCounter::new(
            "scalelab_balancer_client_aborts_total",
            "Requests whose client went away before the answer was complete",
        )
        .expect("valid metric");
        let worker_responses = IntCounterVec::new(
            Opts::new("scalelab_balancer_worker_responses_total", "Responses relayed from each node worker"),
            &["backend", "name", "worker"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new("scalelab_balancer_in_flight", "Attempts in flight on each backend"),
            &["backend", "name"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(backend_healthy.clone()),
            Box::new(connect_failures.clone()),
            Box::new(retries.clone()),
            Box::new(upstream_timeouts.clone()),
            Box::new(fail_open.clone()),
            Box::new(shed.clone()),
            Box::new(client_connections.clone()),
            Box::new(client_refused.clone()),
            Box::new(header_timeouts.clone()),
            Box::new(idle_closed.clone()),
            Box::new(client_aborts.clone()),
            Box::new(worker_responses.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            backend_healthy,
            connect_failures,
            retries,
            upstream_timeouts,
            fail_open,
            shed,
            client_connections,
            client_refused,
            header_timeouts,
            idle_closed,
            client_aborts,
            worker_responses,
            in_flight,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(4096);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!("encoding metrics: {e}");
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let m = Metrics::new();
        m.requests.with_label_values(&["127.0.0.1:8081", "200"]).inc();
        m.latency.observe(0.001);
        m.backend_healthy.with_label_values(&["127.0.0.1:8081", "node-1"]).set(1);
        m.connect_failures.with_label_values(&["127.0.0.1:8081"]).inc();
        m.retries.inc();
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains(r#"scalelab_balancer_requests_total{backend="127.0.0.1:8081",code="200"} 1"#),
            "{text}"
        );
        assert!(text.contains("scalelab_balancer_request_duration_seconds_bucket"));
        assert!(
            text.contains(r#"scalelab_balancer_backend_healthy{backend="127.0.0.1:8081",name="node-1"} 1"#)
        );
        assert!(text.contains("scalelab_balancer_connect_failures_total"));
        assert!(text.contains("scalelab_balancer_retries_total 1"));
    }
}
