//! `strata serve`: every service of the system in one process, until SIGINT or SIGTERM.
//!
//! The services run side by side on one runtime: the containerd proxy snapshotter on a unix
//! socket and the tlog server on TCP, each over the data directory's embedded engines (or the
//! engines `--config` names). What runs, and where, is published in `<data-dir>/run/` through
//! the atomic writer, so programs watching it never see half of it. On a signal every service
//! stops accepting, finishes or flushes what it holds, and the process exits 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use strata_atomic::{AtomicWriter, FileProjection, Payload};
use strata_tlog::config::RedisFlags;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

/// Runs every strata service on embedded defaults under the data directory (or on the
/// engines --config names) and stops cleanly on SIGINT or SIGTERM.
///
/// Services and their defaults: the containerd proxy snapshotter on
/// DATA-DIR/snapshotter.sock (layers and metadata in DATA-DIR/snapshotter), and the tlog
/// server on 127.0.0.1:11211 (aggregates in DATA-DIR/tlog, encrypted with DATA-DIR/tlog.key,
/// made on first start), and the checkpoint service on 127.0.0.1:33123 (committed values in
/// the KV store), and the hub server on 127.0.0.1:7070 (DATA-DIR/hub), and the NBD server
/// on 127.0.0.1:10809 (every vdisk, journaled to this
/// process's tlog server). DATA-DIR/run/status.json says what runs where.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The containerd proxy snapshotter's socket [default: DATA-DIR/snapshotter.sock].
    #[arg(long, value_name = "PATH")]
    snapshotter_socket: Option<PathBuf>,
    /// The tlog server's address [default: tlog.listen of the config, 127.0.0.1:11211].
    #[arg(long, value_name = "ADDR")]
    tlog_listen: Option<SocketAddr>,
    /// The checkpoint service's address [default: ckpt.listen of the config, 127.0.0.1:33123].
    #[arg(long, value_name = "ADDR")]
    ckpt_listen: Option<SocketAddr>,
    /// The NBD server's address, serving every vdisk and journaling to this process's tlog
    /// server [default: nbd.listen of the config, 127.0.0.1:10809].
    #[arg(long, value_name = "ADDR")]
    nbd_listen: Option<SocketAddr>,
    /// The hub server's address (volume sets pushed with `strata push`, kept in
    /// DATA-DIR/hub) [default: hub.listen of the config, 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    hub_listen: Option<SocketAddr>,
    /// Where to serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz)
    /// over HTTP: IP:PORT, or off [default: metrics.listen of the config, 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|off", value_parser = crate::metrics::parse_listen)]
    metrics_listen: Option<crate::metrics::Listen>,
}

/// How long services get to finish after a signal before the process exits anyway.
const GRACE: Duration = Duration::from_secs(30);

/// The tlog server's address when neither --tlog-listen nor `tlog.listen` gives one.
const TLOG_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 11211);

pub(crate) fn run(args: ServeArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let store = crate::open::served_kv(&config.kv, data_dir)?;
    let snapshotter_root = data_dir.join("snapshotter");
    let snapshotter = crate::open::served_snapshotter(&snapshotter_root, &config.kv)?;
    let shared = shared_stores(config, data_dir, &store, &snapshotter_root, &snapshotter)?;
    let socket =
        args.snapshotter_socket.clone().unwrap_or_else(|| data_dir.join("snapshotter.sock"));
    let tlog_storage = crate::open::tlog_writer(config, &RedisFlags::default(), data_dir)?;
    let tlog_config = crate::open::tlog_server(config, data_dir)?;
    let mut published = Published::open(data_dir)?;
    let runtime = crate::runtime::runtime()?;
    runtime.block_on(async {
        let mut signals = crate::runtime::Signals::install()?;
        let admin_socket = data_dir.join("run").join("admin.sock");
        let admin_listener = bind_admin(&admin_socket)?;
        let metrics_listen = match args.metrics_listen {
            Some(listen) => listen.0,
            None => config.metrics.listen_addr().map_err(crate::exit::categorized)?,
        };
        let metrics = crate::metrics::Exporter::start(metrics_listen).await?;
        let tlog_listen = args.tlog_listen.or(config.tlog.listen).unwrap_or(TLOG_LISTEN);
        let tlog_listener =
            tokio::net::TcpListener::bind(tlog_listen).await.with_context(|| {
                format!(
                    "tlog: listen on {tlog_listen} (choose another with --tlog-listen or tlog.listen)"
                )
            })?;
        let tlog_addr = tlog_listener.local_addr()?;
        let mut ckpt_config = config.ckpt.clone();
        if let Some(listen) = args.ckpt_listen {
            ckpt_config.listen = listen.to_string();
        }
        let ckpt =
            strata_ckpt::Server::bind(&ckpt_config, store.clone()).await.map_err(crate::exit::categorized).context(
                // The checkpoint service's error names the address already.
                "ckpt (choose another address with --ckpt-listen or ckpt.listen)",
            )?;
        let ckpt_addr = ckpt.local_addr();
        let hub_listen = args.hub_listen.map(|a| a.to_string());
        let hub_tls = super::hub::TlsFlags::default();
        let hub = super::hub::bind(config, data_dir, hub_listen, hub_tls, "--hub-listen").await?;
        let hub_addr = hub.local_addr();
        let hub_url = hub.url();
        let nbd_listen = match args.nbd_listen {
            Some(listen) => listen,
            None => config.nbd.listen_addr()?,
        };
        let nbd_listeners =
            super::nbd::bind(nbd_listen, "--nbd-listen", config.nbd.socket.as_deref()).await?;
        let nbd_addr = super::nbd::tcp_addr(&nbd_listeners).unwrap_or(nbd_listen);
        // One tlog server: TCP for other clients, and an in-process link for this process's
        // NBD server, whose blocks are handed over without encoding, socket or re-hashing.
        let tlog = strata_tlog::server::Server::new(tlog_config.clone(), tlog_storage.clone())
            .map_err(crate::exit::categorized)?;
        // The NBD server reads the log it journals to, to rebuild a disk whose last session
        // did not close cleanly.
        let mut nbd_config = config.nbd.server(vec![tlog_addr.to_string()]);
        nbd_config.tlog_local = Some(tlog.local());
        nbd_config.tls = config.nbd.tls()?;
        nbd_config.log = Some(strata_nbd::LogAccess {
            storage: tlog_storage.clone(),
            key: tlog_config.key.clone(),
        });
        let records = crate::open::vdisk_records(config, data_dir, Some(&store))?;
        let nbd = strata_nbd::NbdServer::new(records, nbd_config)?;

        // Bound here, before READY=1, so readiness means the socket accepts connections.
        let snapshotter_listener = strata_snapshots::grpc::Listener::bind(&socket)
            .await
            .context("choose another socket with --snapshotter-socket")?;

        let mut services = Services::new();
        let shutdown = services.until_stop();
        services.spawn("admin socket", async move {
            strata_kv::share::serve(admin_listener, shared, shutdown).await;
            Ok(())
        });
        let shutdown = services.until_stop();
        services.spawn("snapshotter", async move {
            let config = strata_snapshots::grpc::ServeConfig::default();
            snapshotter_listener.serve(snapshotter, &config, shutdown).await.map_err(Into::into)
        });
        // The tlog stops after the NBD server, which flushes its disks through it.
        let (nbd_done, mut nbd_stopped) = watch::channel(false);
        let tlog_stop = services.until_stop();
        let shutdown = async move {
            tlog_stop.await;
            let _ = nbd_stopped.wait_for(|done| *done).await;
        };
        services.spawn("tlog server", async move {
            tlog.serve(tlog_listener, shutdown).await.map_err(Into::into)
        });
        let shutdown = services.until_stop();
        services.spawn("checkpoint service", async move {
            ckpt.run(shutdown).await.map_err(Into::into)
        });
        let shutdown = services.until_stop();
        services.spawn("hub server", async move {
            hub.run(shutdown).await.map_err(crate::exit::categorized)
        });
        let shutdown = services.until_stop();
        services.spawn("nbd server", async move {
            let served = nbd.serve(nbd_listeners, shutdown).await;
            let _ = nbd_done.send(true);
            served.map_err(Into::into)
        });
        // Ready before the status file says so: a reader of `serving` finds /readyz at 200.
        tokio::spawn(metrics.ready_until(services.until_stop()));
        published.write(&json!({
            "pid": std::process::id(),
            "state": "serving",
            "data_dir": data_dir,
            "kv": store.engine_name(),
            "services": {
                "snapshotter": { "socket": socket, "root": snapshotter_root },
                "tlog": { "address": tlog_addr.to_string(), "dir": data_dir.join("tlog") },
                "ckpt": { "address": ckpt_addr.to_string() },
                "hub": { "address": hub_addr.to_string(), "url": hub_url, "dir": data_dir.join("hub") },
                "nbd": { "address": nbd_addr.to_string(), "vdisks": data_dir.join("vdisks") },
                "admin": { "socket": admin_socket },
                "metrics": { "address": metrics.addr().map(|a| a.to_string()) },
            },
        }))?;
        tracing::info!(
            data_dir = %data_dir.display(),
            kv = store.engine_name(),
            snapshotter = %socket.display(),
            tlog = %tlog_addr,
            ckpt = %ckpt_addr,
            hub = %hub_addr,
            nbd = %nbd_addr,
            "strata serving"
        );
        crate::notify::ready(&format!(
            "serving: tlog {tlog_addr}, ckpt {ckpt_addr}, hub {hub_addr}, nbd {nbd_addr}, \
             snapshotter {}",
            socket.display()
        ));
        let outcome = services.supervise(&mut signals).await;
        metrics.stop().await;
        outcome
    })?;
    drop(store);
    published.write(&json!({ "pid": std::process::id(), "state": "stopped" }))?;
    tracing::info!("stopped");
    Ok(())
}

/// The stores this process holds that other processes' commands (`strata kv`,
/// `strata snapshot`) use through the admin socket: the redb files, none on etcd (where
/// every process opens the store itself).
fn shared_stores(
    config: &Config,
    data_dir: &Path,
    store: &strata_kv::Store,
    snapshotter_root: &Path,
    snapshotter: &strata_snapshots::Snapshotter,
) -> anyhow::Result<strata_kv::share::Shared> {
    let mut shared = strata_kv::share::Shared::default();
    if config.kv.engine == strata_kv::EngineKind::Redb {
        let files = [
            (config.kv.redb_file(data_dir), store),
            (snapshotter_root.join(crate::open::SNAPSHOTTER_METADATA), snapshotter.store()),
        ];
        for (file, store) in files {
            shared
                .add(&file, store.clone())
                .with_context(|| format!("share {}", file.display()))?;
        }
    }
    Ok(shared)
}

/// Binds the admin socket at `path`, replacing one a killed server left (this process
/// holds the data directory's stores, so no other server is using it), readable and
/// writable by this user only.
fn bind_admin(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("remove the stale {}", path.display()));
        }
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("admin: listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restrict {} to this user", path.display()))?;
    Ok(listener)
}

/// The services of one process: each a task with a name; one stop signal for all.
struct Services {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    stop: watch::Sender<bool>,
}

impl Services {
    fn new() -> Services {
        Services { tasks: JoinSet::new(), stop: watch::channel(false).0 }
    }

    /// A future that completes when the services are told to stop.
    fn until_stop(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stop.subscribe();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    }

    fn spawn(
        &mut self,
        name: &'static str,
        service: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tasks.spawn(async move { (name, service.await) });
    }

    /// Runs until a signal (Ok) or until a service ends (an error: none should), then
    /// stops them all and waits up to [`GRACE`] for them to finish.
    async fn supervise(mut self, signals: &mut crate::runtime::Signals) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            signal = signals.recv() => {
                tracing::info!(signal, "shutting down");
                Ok(())
            }
            Some(ended) = self.tasks.join_next() => Err(match ended {
                Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped unexpectedly"),
                Ok((name, Err(err))) => err.context(name),
                Err(err) => anyhow::anyhow!("a service panicked: {err}"),
            }),
        };
        crate::notify::stopping();
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(GRACE, async {
            while let Some(ended) = self.tasks.join_next().await {
                match ended {
                    Ok((name, Ok(()))) => tracing::info!(service = name, "stopped"),
                    Ok((name, Err(err))) => {
                        tracing::error!(
                            service = name,
                            error = format!("{err:#}"),
                            "service failed"
                        )
                    }
                    Err(err) => tracing::error!(error = %err, "service panicked"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("services did not stop within {GRACE:?}; exiting anyway");
        }
        outcome
    }
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
