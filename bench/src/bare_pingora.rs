//! A bare pingora reverse proxy, the peer that row 3 of `scripts/bench.sh` measures the
//! scalelab balancer against: the same pingora version, round robin over the same nodes, a
//! kept-alive upstream pool, one thread, and no hooks (no headers added, no metrics, no
//! health checks, no retries beyond pingora's own), and the same allocator (mimalloc). What the balancer costs above this is
//! scalelab's; what this costs above nginx is pingora's.
//!
//!     cargo build --release -p scalelab-bench --example bare_pingora
//!     target/release/examples/bare_pingora 127.0.0.1:8090 127.0.0.1:8081 127.0.0.1:8082
//!
//! With no `BARE_*` variable set it runs pingora's defaults (what row 3 measures). Each variable
//! changes one of pingora's public tuning knobs, for `scripts/bench.sh knobs`, which measures
//! this proxy with one knob changed against itself with none:
//!
//! - `BARE_LISTENER_TASKS=N`: `ServerConf::listener_tasks_per_fd` (default 1)
//! - `BARE_POOL_SIZE=N`: `ServerConf::upstream_keepalive_pool_size` (default 128)
//! - `BARE_WORK_STEALING=0|1`: `ServerConf::work_stealing` (default 1; the balancer uses 0 with
//!   one thread)
//! - `BARE_ALT_TIMER=1`: `ServerConf::runtime_enable_alt_timer` (pingora ignores it unless built
//!   with `RUSTFLAGS="--cfg tokio_unstable"` and work stealing is on)
//! - `BARE_L4_READ=BYTES`, `BARE_L4_WRITE=BYTES`: the downstream connection's user-space read and
//!   write buffers (`ListenerConfig::l4_buffer`; pingora's defaults 65536 and 1460, 0 unbuffered)
//! - `BARE_SOCK_BUF=BYTES`: SO_SNDBUF and SO_RCVBUF on accepted connections and SO_RCVBUF on
//!   upstream connections (default: the kernel's, autotuned)

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};

// The scalelab binary's allocator, so the two differ only in what the balancer adds.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    lb: Arc<LoadBalancer<RoundRobin>>,
    upstream_recv_buf: Option<usize>,
}

/// The `BARE_*` variable `name` as a number, if set.
fn knob(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(value.parse().unwrap_or_else(|_| panic!("{name}={value}: not a number")))
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .lb
            .select(b"", 256)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no backend"))?;
        let mut peer = HttpPeer::new(backend, false, String::new());
        peer.options.tcp_recv_buf = self.upstream_recv_buf;
        Ok(Box::new(peer))
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
    let defaults = ServerConf::default();
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        listener_tasks_per_fd: knob("BARE_LISTENER_TASKS").unwrap_or(defaults.listener_tasks_per_fd),
        upstream_keepalive_pool_size: knob("BARE_POOL_SIZE").unwrap_or(defaults.upstream_keepalive_pool_size),
        work_stealing: knob("BARE_WORK_STEALING").map_or(defaults.work_stealing, |v| v != 0),
        runtime_enable_alt_timer: knob("BARE_ALT_TIMER").is_some_and(|v| v != 0),
        ..defaults
    };
    let sock_buf = knob("BARE_SOCK_BUF");
    let mut socket = TcpSocketOptions::default();
    socket.tcp_snd_buf = sock_buf;
    socket.tcp_recv_buf = sock_buf;
    let l4_buffer = L4BufferSettings { read: knob("BARE_L4_READ"), write: knob("BARE_L4_WRITE") };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let bare = Bare { lb: Arc::new(lb), upstream_recv_buf: sock_buf };
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, bare);
    proxy.add_listener(ListenerConfig::tcp(listen.as_str()).tcp_socket_options(socket).l4_buffer(l4_buffer));
    server.add_service(proxy);
    server.run_forever();
}
