//! A bare pingora reverse proxy, the peer that row 3 of `scripts/bench.sh` measures the
//! scalelab balancer against: the same pingora version, round robin over the same nodes, a
//! kept-alive upstream pool, one thread, and no hooks (no headers added, no metrics, no
//! health checks, no retries beyond pingora's own), and the same allocator (mimalloc). What the balancer costs above this is
//! scalelab's; what this costs above nginx is pingora's.
//!
//!     cargo build --release -p scalelab-bench --example bare_pingora
//!     target/release/examples/bare_pingora 127.0.0.1:8090 127.0.0.1:8081 127.0.0.1:8082

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};

// The scalelab binary's allocator, so the two differ only in what the balancer adds.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .0
            .select(b"", 256)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no backend"))?;
        Ok(Box::new(HttpPeer::new(backend, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstreams @ ..] = args.as_slice() else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM...");
        std::process::exit(2);
    };
    let lb =
        LoadBalancer::try_from_iter(upstreams.iter().map(String::as_str)).expect("upstreams are ip:port");
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Bare(Arc::new(lb)));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
