//! A worker process: one single-threaded event loop (like a Node.js worker), a fair accept
//! loop on the inherited socket, and a graceful drain when told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{WorkerConfig, EXIT_BOOT_FAILED};
use crate::cpu_queue::{Burner, CpuQueue};
use crate::routes::App;
use crate::{lifeline, listener};

/// A client that has not sent its request head by then is dropped (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Boots the worker from its environment and serves until told to stop. Boot failures exit
/// the process with [`EXIT_BOOT_FAILED`].
pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let booted =
        runtime.context("building the worker's event loop").and_then(|rt| boot(&rt).map(|parts| (rt, parts)));
    let (runtime, (config, listener, app, burner, stop)) = match booted {
        Ok(parts) => parts,
        Err(e) => {
            tracing::error!("worker failed to boot: {e:#}");
            std::process::exit(EXIT_BOOT_FAILED);
        }
    };
    // Every line this worker logs names it; the runtime runs on this thread only.
    let _span = tracing::info_span!("worker", id = config.id, pid = std::process::id()).entered();
    tracing::info!("worker serving");
    runtime.block_on(async {
        tokio::spawn(burner.run());
        serve(listener, app, stop, config.grace).await
    });
    tracing::info!("worker exiting");
    Ok(())
}

type Booted = (WorkerConfig, TcpListener, Arc<App>, Burner, std::pin::Pin<Box<dyn Future<Output = ()>>>);

/// Everything that can fail before serving: config, socket, signal handlers, lifeline.
fn boot(rt: &tokio::runtime::Runtime) -> anyhow::Result<Booted> {
    let config = WorkerConfig::from_env()?;
    let _guard = rt.enter();
    let listener = listener::take_inherited()?;
    let (cpu, burner) = CpuQueue::new(config.workload.max_queue);
    let app = Arc::new(App::new(&config, std::process::id(), cpu)?);
    let stop = stop_requested(config.lifeline_fd)?;
    Ok((config, listener, app, burner, Box::pin(stop)))
}

/// Resolves on SIGTERM, SIGINT or when the primary is gone. Handlers are installed now, so a
/// signal that arrives during the first requests is not lost.
fn stop_requested(lifeline_fd: i32) -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let primary_gone = lifeline::primary_gone(lifeline_fd)
        .with_context(|| format!("watching the lifeline pipe at fd {lifeline_fd}"))?;
    Ok(async move {
        let why = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = primary_gone => "the primary is gone",
        };
        tracing::info!("worker stopping ({why}): no new connections, draining");
    })
}

/// Serves HTTP/1 on `listener` until `stop` resolves, then stops accepting and lets in-flight
/// requests finish for at most `grace`.
///
/// Fairness: all workers race to accept on the same socket. A worker that accepted a
/// connection yields before accepting again, so the new connection's request is read and
/// answered first; a worker therefore never drains the whole backlog while its siblings idle.
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: impl Future<Output = ()>, grace: Duration) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let app = Arc::clone(&app);
                    let service = service_fn(move |req| {
                        let app = Arc::clone(&app);
                        async move { Ok::<_, std::convert::Infallible>(app.handle(&req).await) }
                    });
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    if is_resource_exhaustion(&e) {
                        // Out of fds or memory: retrying at once would spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
        }
    }
    // Closing our copy of the socket stops this worker's accepts; queued connections stay in
    // the backlog for the other workers (the primary still holds the socket).
    drop(listener);
    let open = graceful.count();
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!(connections = open, "worker drained"),
        Err(_) => tracing::warn!(?grace, "grace deadline passed with connections still open"),
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
