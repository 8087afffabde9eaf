//! A worker process: one single-threaded event loop (like a Node.js worker), a fair accept
//! loop on the inherited socket (or a receive loop on the primary's handoff, in round-robin
//! distribution), and a drain when told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scalelab_topology::Distribution;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{WorkerConfig, EXIT_BOOT_FAILED};
use crate::connections::Connections;
use crate::cpu_queue::{Burner, CpuQueue};
use crate::handoff::Receiver;
use crate::routes::App;
use crate::{lifeline, listener};

/// Where a worker's connections come from.
#[derive(Debug)]
pub enum Incoming {
    /// The node's one listening socket (`shared`), every worker accepting on it.
    Shared(TcpListener),
    /// This worker's slot's own `SO_REUSEPORT` socket (`reuseport`).
    Own(TcpListener),
    /// The primary's handoff (`round_robin`).
    Handoff(Receiver),
}

/// Boots the worker from its environment and serves until told to stop. Boot failures exit
/// the process with [`EXIT_BOOT_FAILED`].
pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let booted =
        runtime.context("building the worker's event loop").and_then(|rt| boot(&rt).map(|parts| (rt, parts)));
    let (runtime, (config, incoming, app, burner, stop)) = match booted {
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
        serve(incoming, app, stop, config.grace).await
    });
    tracing::info!("worker exiting");
    Ok(())
}

type Booted = (WorkerConfig, Incoming, Arc<App>, Burner, std::pin::Pin<Box<dyn Future<Output = ()>>>);

/// Everything that can fail before serving: config, fd 3 (of the kind the distribution
/// needs), signal handlers, lifeline.
fn boot(rt: &tokio::runtime::Runtime) -> anyhow::Result<Booted> {
    let config = WorkerConfig::from_env()?;
    let _guard = rt.enter();
    let incoming = match config.distribution {
        Distribution::Shared => Incoming::Shared(listener::take_inherited(false)?),
        Distribution::Reuseport => Incoming::Own(listener::take_inherited(true)?),
        Distribution::RoundRobin => Incoming::Handoff(Receiver::take_inherited()?),
    };
    let (cpu, burner) = CpuQueue::new(config.workload.max_queue);
    let app = Arc::new(App::new(&config, std::process::id(), cpu)?);
    let stop = stop_requested(config.lifeline_fd)?;
    Ok((config, incoming, app, burner, Box::pin(stop)))
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

/// Serves HTTP/1 on the connections from `incoming` until `stop` resolves, then stops taking
/// new ones and drains the ones it has for at most `grace`: each is answered (see
/// [`Connections`]).
pub async fn serve(incoming: Incoming, app: Arc<App>, stop: impl Future<Output = ()>, grace: Duration) {
    let conns = Connections::new(app);
    match incoming {
        Incoming::Shared(listener) => {
            accept_until(&listener, &conns, stop).await;
            // Closing our copy of the socket stops this worker's accepts; queued connections
            // stay in the backlog for the other workers (the primary still holds the socket).
            drop(listener);
        }
        Incoming::Own(listener) => {
            accept_until(&listener, &conns, stop).await;
            // No sibling accepts on this socket: what is queued on it now would wait for this
            // slot's next worker, or be reset if the slot is being removed (then the primary
            // already sends new connections elsewhere, see `reuseport`, and this is the last
            // of them). Take it and serve it while draining.
            let taken = take_queued(listener, &conns);
            if taken > 0 {
                tracing::info!(connections = taken, "took the connections queued on this worker's socket");
            }
        }
        Incoming::Handoff(receiver) => {
            receive_until(&receiver, &conns, stop).await;
            // Connections sent before the primary learnt this worker stops: take them, then
            // close the handoff, so whatever the primary sends later comes back to it.
            match receiver.take_queued().await {
                Ok(last) => last.into_iter().for_each(|conn| conns.serve_std(conn)),
                Err(e) => tracing::warn!(error = %e, "reading the handoff one last time failed"),
            }
            drop(receiver);
        }
    }
    conns.drain(grace).await;
}

/// Accepts on `listener` until `stop` resolves.
///
/// Fairness: in `shared` distribution all workers race to accept on the same socket. A worker
/// that accepted a connection yields before accepting again, so the new connection's request
/// is read and answered first; a worker therefore never drains the whole backlog while its
/// siblings idle.
async fn accept_until(listener: &TcpListener, conns: &Connections, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.serve(stream, peer);
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    if listener::is_resource_exhaustion(&e) {
                        // Out of fds or memory: retrying at once would spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
        }
    }
}

/// Accepts whatever is queued on `listener` without waiting (at most a full backlog); returns
/// how many.
fn take_queued(listener: TcpListener, conns: &Connections) -> usize {
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the queued connections");
            return 0;
        }
    };
    let mut taken = 0;
    while taken < listener::BACKLOG as usize {
        match listener.accept() {
            Ok((stream, _)) => {
                conns.serve_std(stream);
                taken += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "accepting the queued connections failed");
                break;
            }
        }
    }
    taken
}

/// Receives connections from the primary until `stop` resolves or the primary closes the
/// handoff.
async fn receive_until(receiver: &Receiver, conns: &Connections, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            received = receiver.next() => match received {
                Ok(Some(batch)) => batch.into_iter().for_each(|conn| conns.serve_std(conn)),
                Ok(None) => {
                    tracing::info!("the primary closed the handoff");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving connections failed");
                    if !listener::is_resource_exhaustion(&e) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
