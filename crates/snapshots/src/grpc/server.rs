//! Serving the `Snapshots` service on a unix socket until a shutdown signal: binding
//! (replacing a stale socket file, refusing a live one), limits, graceful shutdown and
//! removing the socket afterwards. Not the calls themselves: [`SnapshotsService`] is that.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tonic::transport::Server;

use crate::grpc::connections::incoming;
use crate::grpc::service::SnapshotsService;
use crate::{Error, Result, Snapshotter};

/// The limits of a server. `Default` gives the ones [`serve`] uses.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The largest request message accepted, in bytes; larger ones fail with
    /// `OutOfRange` and the connection stays usable. Default 4 MiB.
    pub max_request_bytes: usize,
    /// The largest response message sent, in bytes. Default 16 MiB.
    pub max_response_bytes: usize,
    /// Connections served at once; more wait to be accepted. Default 64.
    pub max_connections: usize,
    /// Calls one connection may have in flight; more wait. containerd multiplexes every
    /// call over one connection, so this bounds its parallelism too. Default 64.
    pub max_calls_per_connection: usize,
    /// How long shutdown waits for calls in flight before closing connections. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            max_request_bytes: 4 << 20,
            max_response_bytes: 16 << 20,
            max_connections: 64,
            max_calls_per_connection: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `snapshotter` on the unix socket `socket` with the default limits until
/// `shutdown` completes; see [`serve_with`].
pub async fn serve(
    snapshotter: Snapshotter,
    socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with(snapshotter, socket, &ServeConfig::default(), shutdown).await
}

/// Serves `snapshotter` on `socket` until `shutdown` completes, then drains calls for at
/// most [`ServeConfig::shutdown_grace`] and removes the socket: [`Listener::bind`], then
/// [`Listener::serve`].
pub async fn serve_with(
    snapshotter: Snapshotter,
    socket: &Path,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    Listener::bind(socket).await?.serve(snapshotter, config, shutdown).await
}

/// The service's socket, bound and accepting connections (the kernel queues them) but not
/// yet served: a caller binds first, so it can say it is ready (systemd's `READY=1`) before
/// it serves. Dropped unserved, it leaves a stale socket file that the next bind replaces.
#[derive(Debug)]
pub struct Listener {
    /// The bound socket.
    listener: UnixListener,
    /// Its path, removed after serving.
    socket: PathBuf,
    /// The socket file's device and inode, so only this server's file is removed.
    identity: Option<(u64, u64)>,
}

impl Listener {
    /// Binds `socket`. A socket file nobody listens on (left by a crash) is replaced; a live
    /// one, or a path that is not a socket, is an error. The socket is made accessible to its
    /// owner only.
    pub async fn bind(socket: &Path) -> Result<Listener> {
        let listener = bind(socket).await?;
        let identity = std::fs::symlink_metadata(socket).map(|m| (m.dev(), m.ino())).ok();
        tracing::info!(socket = %socket.display(), "snapshots service listening");
        Ok(Listener { listener, socket: socket.to_path_buf(), identity })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.socket
    }

    /// Serves `snapshotter` until `shutdown` completes, then drains calls for at most
    /// [`ServeConfig::shutdown_grace`] and removes the socket.
    pub async fn serve(
        self,
        snapshotter: Snapshotter,
        config: &ServeConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let Listener { listener, socket, identity } = self;
        let result = run(snapshotter, listener, config, shutdown).await;
        // Remove the socket only if it is still the one bound here, not a successor's.
        if std::fs::symlink_metadata(&socket).map(|m| (m.dev(), m.ino())).ok() == identity
            && let Err(err) = std::fs::remove_file(&socket)
        {
            tracing::warn!(socket = %socket.display(), error = %err, "cannot remove the socket");
        }
        tracing::info!(socket = %socket.display(), "snapshots service stopped");
        result.map_err(|err| Error::Io { path: socket, cause: io::Error::other(err) })
    }
}

async fn run(
    snapshotter: Snapshotter,
    listener: UnixListener,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> std::result::Result<(), tonic::transport::Error> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let streams = u32::try_from(config.max_calls_per_connection).unwrap_or(u32::MAX);
    let server = Server::builder()
        .concurrency_limit_per_connection(config.max_calls_per_connection)
        .max_concurrent_streams(streams)
        .layer(tower::layer::layer_fn(crate::grpc::metrics::Observed::new))
        .add_service(SnapshotsService::new(snapshotter).into_server(config))
        .serve_with_incoming_shutdown(incoming(listener, config.max_connections), async {
            let _ = stopped.await;
        });
    let grace = config.shutdown_grace;
    let drain = async move {
        shutdown.await;
        tracing::info!("snapshots service shutting down");
        let _ = stop.send(());
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = drain => {
            tracing::warn!(?grace, "calls still in flight after the grace period; closing");
            Ok(())
        }
    }
}

/// Binds `socket`, replacing a stale socket file, and restricts it to its owner.
async fn bind(socket: &Path) -> Result<UnixListener> {
    remove_stale(socket).await?;
    if let Some(dir) = socket.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let listener = UnixListener::bind(socket).map_err(Error::io(socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io(socket))?;
    Ok(listener)
}

async fn remove_stale(socket: &Path) -> Result<()> {
    let refuse = |kind: io::ErrorKind, message: &str| Error::Io {
        path: socket.to_path_buf(),
        cause: io::Error::new(kind, message.to_string()),
    };
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(socket)(err)),
    };
    if !meta.file_type().is_socket() {
        return Err(refuse(io::ErrorKind::AlreadyExists, "exists and is not a socket"));
    }
    if UnixStream::connect(socket).await.is_ok() {
        return Err(refuse(io::ErrorKind::AddrInUse, "another server is listening on it"));
    }
    tracing::info!(socket = %socket.display(), "replacing a stale socket");
    std::fs::remove_file(socket).map_err(Error::io(socket))
}
