//! `strata snapshotter`: containerd's proxy snapshotter, serving the Snapshots gRPC API on a
//! unix socket until SIGINT or SIGTERM. Not the operators' tool for a root's snapshots:
//! that is `strata snapshot`, which opens the same root directly.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use strata_snapshots::grpc;

use crate::config::Config;

/// Serve a snapshotter root to containerd as a proxy snapshotter plugin
///
/// Serves containerd's snapshots API (containerd.services.snapshots.v1) on a unix socket,
/// with layers and metadata under a root directory.
/// containerd uses it through a proxy plugin in its config.toml:
///
///   [proxy_plugins.strata]
///     type = "snapshot"
///     address = "PATH"
///
/// and then `ctr images pull --snapshotter strata …` or `ctr run --snapshotter strata …`.
/// The metadata is DIR/metadata.redb unless --config puts the KV store on etcd.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct SnapshotterArgs {
    /// The unix socket to listen on: containerd's `address` for the plugin. A stale socket
    /// file is replaced; one another server listens on is an error. Removed on exit.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The snapshotter's root directory: layers under DIR/snapshots, metadata in
    /// DIR/metadata.redb (created when missing).
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

/// Serves until SIGINT or SIGTERM. Everything lives under --root, so the data directory is
/// not used.
pub(crate) fn run(args: SnapshotterArgs, config: &Config, _data_dir: &Path) -> anyhow::Result<()> {
    let snapshotter = crate::open::served_snapshotter(&args.root, &config.kv)?;
    tracing::info!(
        socket = %args.socket.display(),
        root = %args.root.display(),
        kv = snapshotter.store().engine_name(),
        pid = std::process::id(),
        "strata snapshotter starting"
    );
    let runtime = crate::runtime::runtime()?;
    runtime
        .block_on(serve(snapshotter, args.socket, args.metrics))
        .map_err(|err| hint_socket(err, "snapshotter (choose another socket with --socket)"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves `snapshotter` on `socket` until SIGINT or SIGTERM, with metrics where `metrics`
/// says, telling a service manager it is ready once the socket listens.
async fn serve(
    snapshotter: strata_snapshots::Snapshotter,
    socket: PathBuf,
    metrics: crate::metrics::MetricsArgs,
) -> anyhow::Result<()> {
    let mut signals = crate::runtime::Signals::install()?;
    let metrics = crate::metrics::Exporter::start(metrics.metrics_listen).await?;
    // The snapshots error names the socket already.
    let listener = grpc::Listener::bind(&socket).await?;
    crate::notify::ready(&format!("serving containerd snapshots on {}", socket.display()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopping = metrics.ready_until(async {
        let _ = stopped.await;
    });
    let mut server = tokio::spawn(async move {
        listener.serve(snapshotter, &grpc::ServeConfig::default(), stopping).await
    });
    let outcome = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, "shutting down");
            crate::notify::stopping();
            let _ = stop.send(());
            server.await
        }
        // The server ends by itself only when serving fails.
        result = &mut server => result,
    };
    metrics.stop().await;
    Ok(outcome.context("the snapshots server task failed")??)
}

/// `err`, with `hint` (naming the option that chooses another socket) when the socket is in
/// use.
fn hint_socket(err: anyhow::Error, hint: &'static str) -> anyhow::Error {
    let in_use = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<strata_snapshots::Error>(),
            Some(strata_snapshots::Error::Io { cause, .. })
                if cause.kind() == std::io::ErrorKind::AddrInUse
        )
    });
    if in_use { err.context(hint) } else { err }
}
