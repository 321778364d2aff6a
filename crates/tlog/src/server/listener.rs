//! The accept loop, on the shell every strata server shares (`strata-net`): bounded
//! connections, each handed to a handler task; on shutdown it stops accepting, closes
//! connections (within the grace period) and lets every vdisk flush.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::Result;
use crate::server::{ServerConfig, Shared, handler, vdisk};
use crate::storage::Storage;

/// Serves tlog clients on `listener` until `shutdown` completes, then closes every
/// connection, flushes every vdisk's buffered blocks, and returns.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    storage: Arc<dyn Storage>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate()?;
    let shell = strata_net::Shell::new("tlog", config.max_connections);
    let shared = Arc::new(Shared { config, storage, vdisks: vdisk::Registry::default() });
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
