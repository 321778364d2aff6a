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

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use strata_kv::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
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
    /// Turns true when the server shuts down.
    stop: watch::Receiver<bool>,
    /// This connection's place among `max_connections`; released when the task ends.
    _permit: OwnedSemaphorePermit,
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
            .map_err(|source| Error::Io { what: format!("listen on {}", config.listen), source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Io { what: "local address".into(), source })?;
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
        let (stop_sender, stop) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let sweeper = tokio::spawn(sweep(self.service.clone(), self.sweep_every, stop.clone()));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!("ckpt connection task failed: {err}");
                    }
                }
                (permit, accepted) = accept(&self.listener, &limit) => match accepted {
                    Ok((stream, peer)) => {
                        let connection = Connection {
                            service: self.service.clone(),
                            idle_timeout: self.idle_timeout,
                            stop: stop.clone(),
                            _permit: permit,
                        };
                        connections.spawn(connection.run(stream, peer, self.tls.clone()));
                    }
                    Err(err) => {
                        // Out of file descriptors, most likely: back off rather than spin.
                        tracing::warn!("ckpt accept: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
        tracing::info!(connections = connections.len(), "ckpt shutting down");
        let _ = stop_sender.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!(left = connections.len(), "ckpt connections cut off after the grace");
            connections.shutdown().await;
        }
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

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, std::io::Result<(TcpStream, SocketAddr)>) {
    // The semaphore is never closed, so acquiring cannot fail; should it ever, waiting
    // forever here is the safe reading of "no slot free".
    let Ok(permit) = limit.clone().acquire_owned().await else {
        return std::future::pending().await;
    };
    (permit, listener.accept().await)
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return self.serve(TokioIo::new(stream), peer).await;
        };
        match tokio::time::timeout(self.idle_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve(TokioIo::new(stream), peer).await,
            Ok(Err(err)) => tracing::debug!(%peer, "ckpt tls handshake: {err}"),
            Err(_) => tracing::debug!(%peer, "ckpt tls handshake timed out"),
        }
    }

    async fn serve<I>(mut self, io: I, peer: SocketAddr)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = self.service.clone();
        let handler = service_fn(move |request| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(service.handle(request).await) }
        });
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.idle_timeout).keep_alive(true);
        let connection = builder.serve_connection(io, handler);
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopped(&mut self.stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(err) = result {
            tracing::debug!(%peer, "ckpt connection: {err}");
        }
    }
}

/// Completes once the server stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Discards expired staged changes every `every` until the server stops.
async fn sweep(service: Arc<Service>, every: Duration, mut stop: watch::Receiver<bool>) {
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
            () = stopped(&mut stop) => return,
        }
    }
}
