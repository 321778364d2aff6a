//! `strata serve`: every service of the system in one process, until SIGINT or SIGTERM.
//!
//! Today that is the KV store every other part keeps its metadata in; each part adds its
//! listener here as it lands. What the running services are, and where, is published in
//! `<data-dir>/run/` through the atomic writer, so programs watching it never see half of it.

use std::path::Path;

use anyhow::Context;
use clap::Args;

use serde_json::json;
use strata_atomic::{AtomicWriter, FileProjection, Payload};

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
    let mut published = Published::open(data_dir)?;
    published.write(&json!({
        "pid": std::process::id(),
        "state": "serving",
        "data_dir": data_dir,
        "kv": store.engine_name(),
    }))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let signal = runtime.block_on(wait_for_shutdown())?;
    tracing::info!(signal, "shutting down");
    drop(store);
    published.write(&json!({ "pid": std::process::id(), "state": "stopped" }))?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM and names the one that came.
pub(crate) async fn wait_for_shutdown() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// `<data-dir>/run/`: what this process serves, for other programs to read or watch.
struct Published {
    writer: AtomicWriter,
}

impl Published {
    fn open(data_dir: &Path) -> anyhow::Result<Published> {
        let dir = data_dir.join("run");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let writer = AtomicWriter::open(&dir).with_context(|| {
            format!("publish state in {} (is another strata serving?)", dir.display())
        })?;
        Ok(Published { writer })
    }

    /// Replaces `run/status.json` atomically.
    fn write(&mut self, status: &serde_json::Value) -> anyhow::Result<()> {
        let mut payload = Payload::new();
        let text = serde_json::to_string_pretty(status)? + "\n";
        payload.insert("status.json".into(), FileProjection::new(text, 0o644));
        self.writer.write(&payload).context("publish run/status.json")?;
        Ok(())
    }
}
