//! The accept loop, on the shell every strata server shares (`strata-net`): bounded
//! connections, each handed to a handler task; on shutdown it stops accepting, closes
//! connections (within the grace period) and lets every vdisk flush.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::Result;
use crate::server::local::LocalConnector;
use crate::server::{ServerConfig, Shared, handler, vdisk};
use crate::storage::Storage;

/// A tlog server: its vdisk tasks, served to TCP clients by [`Server::serve`] and to
/// clients in the same process through [`Server::local`].
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// A server over `storage`; nothing runs until a client attaches.
    pub fn new(config: ServerConfig, storage: Arc<dyn Storage>) -> Result<Server> {
        config.validate()?;
        Ok(Server {
            shared: Arc::new(Shared { config, storage, vdisks: vdisk::Registry::default() }),
        })
    }

    /// A connector for clients in this process (see [`LocalConnector`]). It attaches until
    /// [`Server::serve`] has shut down, then refuses.
    pub fn local(&self) -> LocalConnector {
        LocalConnector::new(self.shared.clone())
    }

    /// Serves tlog clients on `listener` until `shutdown` completes, then closes every
    /// connection (local links too: their vdisks stop), flushes every vdisk's buffered
    /// blocks, and returns. A server serves once: afterwards no vdisk starts again.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let shared = &self.shared;
        let shell = strata_net::Shell::new("tlog", shared.config.max_connections);
        match listener.local_addr() {
            Ok(addr) => tracing::info!(%addr, "tlog server listening"),
            Err(err) => tracing::info!(error = %err, "tlog server listening (address unknown)"),
        }
        strata_net::serve(&shell, listener, shutdown, |stream, peer, stop| {
            handler::run(stream, peer, shared.clone(), stop)
        })
        .await;
        tracing::info!("tlog server: connections closed; flushing vdisks");
        shared.vdisks.shutdown_all().await;
        tracing::info!("tlog server stopped");
        Ok(())
    }
}

/// Serves tlog clients on `listener` until `shutdown` completes, then closes every
/// connection, flushes every vdisk's buffered blocks, and returns.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Server::new(config, storage)?.serve(listener, shutdown).await
}
