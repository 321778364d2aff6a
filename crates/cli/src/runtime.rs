//! The async runtime and the signals every long-running command shares.

use anyhow::Context;

/// The runtime every long-running command serves on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Completes on SIGINT or SIGTERM, logging which. The handlers are installed when this is
/// called (not when the future is first polled), so call it before announcing that the
/// process serves: a signal that comes early is then never left to its default action.
/// Without signal handlers (which cannot happen on Linux short of running out of file
/// descriptors) it logs why and never completes, leaving the default action to end the
/// process. Needs a runtime.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let signals = Signals::install();
    async move {
        match signals {
            Ok(mut signals) => {
                let signal = signals.recv().await;
                tracing::info!(signal, "shutting down");
            }
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "cannot wait for signals");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Handlers for SIGINT and SIGTERM, installed on creation.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (from here on the signals no longer end the process). Needs a
    /// runtime.
    pub(crate) fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
        })
    }

    /// Waits for SIGINT or SIGTERM and names the one that came.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
