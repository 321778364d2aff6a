//! The metrics and health endpoint of a serving command (`--metrics-listen`), on
//! `strata-metrics`: bound before the services, ready once they all serve, not ready from
//! the moment they stop, and stopped after them.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use strata_metrics::{Endpoint, Health};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `--metrics-listen` of the standalone servers: off unless given.
#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics (GET /metrics) and health checks (GET /healthz, /readyz)
    /// over HTTP on this address, IP:PORT [default: off].
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

/// `--metrics-listen` of `strata serve`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listen(pub(crate) Option<SocketAddr>);

/// Parses `IP:PORT` or `off` for clap.
pub(crate) fn parse_listen(text: &str) -> Result<Listen, String> {
    strata_metrics::parse_listen(text)
        .map(Listen)
        .map_err(|_| format!("{text:?} is neither an address (IP:PORT) nor \"off\""))
}

/// A running endpoint, or none when the process exports nothing.
#[derive(Debug)]
pub(crate) struct Exporter {
    addr: Option<SocketAddr>,
    health: Health,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Exporter {
    /// Binds `listen` and serves it (not ready yet); with `None`, exports nothing.
    pub(crate) async fn start(listen: Option<SocketAddr>) -> anyhow::Result<Exporter> {
        let Some(listen) = listen else {
            return Ok(Exporter { addr: None, health: Health::default(), running: None });
        };
        let endpoint = Endpoint::bind(listen)
            .await
            .map_err(crate::exit::categorized)
            .context("choose another address with --metrics-listen, or off")?;
        let (addr, health) = (endpoint.local_addr(), endpoint.health());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(endpoint.run(async {
            let _ = stopped.await;
        }));
        Ok(Exporter { addr: Some(addr), health, running: Some((stop, task)) })
    }

    /// The address it serves on, if any.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Reports the process ready now, and not ready once `stopping` completes; the future
    /// returned completes with `stopping` (hand it to the server as its shutdown signal).
    pub(crate) fn ready_until(
        &self,
        stopping: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let health = self.health.clone();
        health.set_ready(true);
        async move {
            stopping.await;
            health.set_ready(false);
        }
    }

    /// Stops serving, once the services have stopped.
    pub(crate) async fn stop(self) {
        if let Some((stop, task)) = self.running {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
