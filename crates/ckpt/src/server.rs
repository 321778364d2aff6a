//! The listener: binding, TLS, connection limits, idle timeouts and graceful shutdown.
//!
//! A semaphore bounds the connections served at once (`max_connections`); the accept loop
//! takes a permit before it accepts, so excess clients wait in the kernel's queue. Each
//! connection is HTTP/1.1 with keep-alive, closed when no request begins within
//! `idle_timeout`. On shutdown the listener closes, every connection finishes the request it
//! is serving and closes, and after [`SHUTDOWN_GRACE`] the stragglers are cut off. A sweeper
//! task discards expired staged changes. This is not where requests are understood: see
//! `service`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strata_kv::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::service::Service;
use crate::{CkptConfig, Error, Result};

/// How long connections get to finish their requests once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound checkpoint server, not yet serving. [`Server::run`] serves until shutdown.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: Arc<Service>,
    /// Present in TLS mode.
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    idle_timeout: Duration,
    /// How often expired staged changes are swept away.
    sweep_every: Duration,
}

/// What one connection's task owns.
struct Connection {
    service: Arc<Service>,
    idle_timeout: Duration,
    /// Completes when the server shuts down.
    stopping: strata_net::Stopping,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `config`, loads the TLS files if given, and binds `config.listen`.
    /// Committed values are kept in `store`.
    pub async fn bind(config: &CkptConfig, store: Store) -> Result<Server> {
        config.validate()?;
        if config.storage_hosts.is_empty() {
            tracing::warn!(
                "ckpt: storage_hosts is empty, so every request is refused with 400; set \
                 [ckpt] storage_hosts (StorageHosts in [ICKPT]) to the object store's URL"
            );
        }
        let tls = match config.tls_files()? {
            Some(files) => Some(TlsAcceptor::from(Arc::new(crate::tls::server_config(&files)?))),
            None => None,
        };
        let service = Arc::new(Service::new(config, store)?);
        let listener = TcpListener::bind(config.listen.as_str())
            .await
            .map_err(|cause| Error::Io { what: format!("listen on {}", config.listen), cause })?;
        let local_addr = listener
            .local_addr()
            .map_err(|cause| Error::Io { what: "local address".into(), cause })?;
        let sweep_every = (config.transaction_timeout() / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        Ok(Server {
            listener,
            local_addr,
            service,
            tls,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout(),
            sweep_every,
        })
    }

    /// The address the server listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients reach the server at: `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves until `shutdown` completes, then drains as the module documentation says.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tracing::info!(addr = %self.local_addr, tls = self.tls.is_some(), "ckpt serving");
        let shell = strata_net::Shell {
            grace: SHUTDOWN_GRACE,
            ..strata_net::Shell::new("ckpt", self.max_connections)
        };
        let (stop_sweeper, sweeper_stop) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(sweep(self.service.clone(), self.sweep_every, sweeper_stop));
        let (service, idle_timeout, tls) = (self.service, self.idle_timeout, self.tls);
        strata_net::serve(&shell, self.listener, shutdown, |stream, peer, stopping| {
            let connection = Connection { service: service.clone(), idle_timeout, stopping };
            connection.run(stream, peer, tls.clone())
        })
        .await;
        let _ = stop_sweeper.send(());
        let _ = sweeper.await;
        Ok(())
    }
}

/// Binds and serves `config` on `store` until `shutdown` completes: what `strata serve` and
/// `strata ckpt serve` run.
pub async fn serve(
    config: &CkptConfig,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Server::bind(config, store).await?.run(shutdown).await
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: String, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve(TokioIo::new(stream), peer).await;
        };
        match tokio::time::timeout(self.idle_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve(TokioIo::new(stream), peer).await,
            Ok(Err(err)) => tracing::debug!(%peer, "ckpt tls handshake: {err}"),
            Err(_) => tracing::debug!(%peer, "ckpt tls handshake timed out"),
        }
    }

    async fn serve<I>(self, io: I, peer: String)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = self.service.clone();
        let handler = service_fn(move |request| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(service.handle(request).await) }
        });
        if let Err(err) = strata_net::http1(io, handler, self.idle_timeout, self.stopping).await {
            tracing::debug!(%peer, "ckpt connection: {err}");
        }
    }
}

/// Discards expired staged changes every `every` until the server stops.
async fn sweep(
    service: Arc<Service>,
    every: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let discarded = service.staging().sweep(std::time::Instant::now());
                if discarded > 0 {
                    tracing::debug!(discarded, "ckpt: expired staged changes discarded");
                }
            }
            _ = &mut stop => return,
        }
    }
}
