//! `strata serve`: every service of the system in one process, until SIGINT or SIGTERM.
//!
//! Today that is the KV store every other part keeps its metadata in; each part adds its
//! listener here as it lands.

use std::path::Path;

use anyhow::Context;
use clap::Args;

use crate::config::Config;

/// Runs every strata service on embedded defaults under the data directory (or on the
/// engines --config names) and stops cleanly on SIGINT or SIGTERM.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {}

pub(crate) fn run(_args: ServeArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let store = super::kv::open(&config.kv, data_dir)?;
    tracing::info!(
        data_dir = %data_dir.display(),
        kv = store.engine_name(),
        pid = std::process::id(),
        "strata serving"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let signal = runtime.block_on(wait_for_shutdown())?;
    tracing::info!(signal, "shutting down");
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM and names the one that came.
async fn wait_for_shutdown() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
