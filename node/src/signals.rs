//! The primary's signal intake. A handler does nothing but enqueue what arrived; the primary's
//! loop decides what it means (gunicorn's `SIG_QUEUE`).

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// A signal the primary acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM: stop gracefully.
    Term,
    /// SIGINT: stop gracefully (Ctrl-C).
    Int,
    /// SIGTTIN: one worker more.
    Ttin,
    /// SIGTTOU: one worker less (never below 1).
    Ttou,
    /// SIGHUP: replace every worker, one at a time.
    Hup,
    /// SIGCHLD: a worker changed state; reap now rather than at the next tick.
    Chld,
}

impl Sig {
    fn kind(self) -> SignalKind {
        match self {
            Sig::Term => SignalKind::terminate(),
            Sig::Int => SignalKind::interrupt(),
            Sig::Ttin => SignalKind::from_raw(libc::SIGTTIN),
            Sig::Ttou => SignalKind::from_raw(libc::SIGTTOU),
            Sig::Hup => SignalKind::hangup(),
            Sig::Chld => SignalKind::child(),
        }
    }

    /// The conventional name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Int => "SIGINT",
            Sig::Ttin => "SIGTTIN",
            Sig::Ttou => "SIGTTOU",
            Sig::Hup => "SIGHUP",
            Sig::Chld => "SIGCHLD",
        }
    }
}

/// Installs handlers for every [`Sig`]; each arrival is sent on the returned queue. Must run
/// inside the primary's runtime.
pub fn install() -> anyhow::Result<mpsc::UnboundedReceiver<Sig>> {
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    for sig in [Sig::Term, Sig::Int, Sig::Ttin, Sig::Ttou, Sig::Hup, Sig::Chld] {
        let mut stream =
            signal(sig.kind()).with_context(|| format!("installing the {} handler", sig.name()))?;
        let sig_tx = sig_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if sig_tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    Ok(sig_rx)
}
