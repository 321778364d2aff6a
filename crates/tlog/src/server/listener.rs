//! The accept loop: bounds connections with a semaphore, hands each to a handler task, and
//! on shutdown stops accepting, closes connections and lets every vdisk flush.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

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
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared { config, storage, vdisks: vdisk::Registry::default() });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "tlog server listening"),
        Err(err) => tracing::info!(error = %err, "tlog server listening (address unknown)"),
    }
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Running out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            handler::run(stream, peer, shared, stop).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    tracing::info!("tlog server shutting down: closing connections and flushing vdisks");
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    shared.vdisks.shutdown_all().await;
    tracing::info!("tlog server stopped");
    Ok(())
}
