//! Opening the stores commands share, each the same way wherever it is opened: the kv
//! store, the snapshotter, a hub store and a hub client, the vdisk records and the tlog.
//! Command modules call these and never each other.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use strata_hub::{Hub, Workspace};
use strata_kv::{EngineKind, KvConfig, Store};
use strata_nbd::Records;
use strata_snapshots::Snapshotter;
use strata_tlog::config::{Reader, RedisFlags};
use strata_tlog::server::ServerConfig;
use strata_tlog::storage::Storage;

use crate::config::Config;
use crate::exit::categorized;

/// The kv store for a command: through the `strata serve` that holds the data directory's
/// redb file, when one runs (see [`through_server`]), else opened here.
pub(crate) fn kv(kv: &KvConfig, data_dir: &Path) -> anyhow::Result<Store> {
    command_store(kv, data_dir, data_dir)
}

/// The kv store for a server, which holds it open: opened in this process, creating the
/// data directory for the embedded engine.
pub(crate) fn served_kv(kv: &KvConfig, data_dir: &Path) -> anyhow::Result<Store> {
    if kv.engine == EngineKind::Redb {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create data directory {}", data_dir.display()))?;
    }
    let store = Store::open(kv, data_dir).with_context(|| match kv.engine {
        EngineKind::Redb => format!("open the kv store in {}", data_dir.display()),
        EngineKind::Etcd => format!("open the kv store on etcd {}", kv.etcd.endpoints.join(",")),
    })?;
    tracing::debug!(engine = store.engine_name(), "kv store open");
    Ok(store)
}

/// The snapshotter on `root` for a command: its metadata through the `strata serve` running
/// on `data_dir` when that server holds it, else opened here.
pub(crate) fn snapshotter(
    root: &Path,
    config: &KvConfig,
    data_dir: &Path,
) -> anyhow::Result<Snapshotter> {
    let config = snapshotter_kv(root, config)?;
    Ok(Snapshotter::new(root, command_store(&config, root, data_dir)?)?)
}

/// The snapshotter on `root` for a server, which holds its metadata open, in
/// `root/metadata.redb` unless the configuration names etcd.
pub(crate) fn served_snapshotter(root: &Path, config: &KvConfig) -> anyhow::Result<Snapshotter> {
    let config = snapshotter_kv(root, config)?;
    Ok(Snapshotter::new(root, served_kv(&config, root)?)?)
}

/// The redb file of a snapshotter root's metadata, in the root.
pub(crate) const SNAPSHOTTER_METADATA: &str = "metadata.redb";

/// The kv configuration of a snapshotter root, creating the root.
fn snapshotter_kv(root: &Path, config: &KvConfig) -> anyhow::Result<KvConfig> {
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    let mut config = config.clone();
    if config.engine == EngineKind::Redb {
        // A snapshotter root carries its own metadata, whatever the main store's path is.
        config.redb.path = Some(SNAPSHOTTER_METADATA.into());
    }
    Ok(config)
}

/// The store `kv` names in `dir`, for a command: on redb, through the server running on
/// `data_dir` when it shares that file.
fn command_store(kv: &KvConfig, dir: &Path, data_dir: &Path) -> anyhow::Result<Store> {
    if kv.engine != EngineKind::Redb {
        return served_kv(kv, dir);
    }
    shared_or_own(data_dir, &kv.redb_file(dir), || served_kv(kv, dir))
}

/// The store in the redb `file`: through the server running on `data_dir` when it shares
/// it, else opened here with `open`. A file held by a server that is still starting (it
/// publishes its admin socket once every service runs) is waited for, up to 5 s.
fn shared_or_own(
    data_dir: &Path,
    file: &Path,
    open: impl Fn() -> anyhow::Result<Store>,
) -> anyhow::Result<Store> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(store) = through_server(data_dir, file) {
            return Ok(store);
        }
        match open() {
            Err(err) if is_busy(&err) && std::time::Instant::now() < deadline => {
                tracing::debug!(
                    "{file:?} is held by another process; waiting for its admin socket"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// Whether `err` says another process holds the redb file.
fn is_busy(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| matches!(cause.downcast_ref(), Some(strata_kv::Error::Busy(_))))
}

/// The store in the redb `file` through the server running on `data_dir`: the admin socket
/// its `run/status.json` names, when the server is serving and shares that file. `None`
/// otherwise (no server, a stale status, another file), and the caller opens the file itself.
fn through_server(data_dir: &Path, file: &Path) -> Option<Store> {
    let status = serving_status(data_dir)?;
    let socket = Path::new(status["services"]["admin"]["socket"].as_str()?);
    match Store::connect(socket, file) {
        Ok(store) => {
            tracing::debug!(socket = %socket.display(), file = %file.display(), "kv store open through the server");
            Some(store)
        }
        Err(err) => {
            tracing::debug!(error = %err, file = %file.display(), "not shared by a server; opening it here");
            None
        }
    }
}

/// The `run/status.json` of a `strata serve` on `data_dir` that says it is serving (it may
/// be stale: a server killed outright leaves it behind).
fn serving_status(data_dir: &Path) -> Option<serde_json::Value> {
    let status = std::fs::read(data_dir.join("run").join("status.json")).ok()?;
    let status: serde_json::Value = serde_json::from_slice(&status).ok()?;
    (status["state"] == "serving").then_some(status)
}

/// The NBD address of the `strata serve` running on `data_dir`, as its status names it.
pub(crate) fn served_nbd(data_dir: &Path) -> Option<std::net::SocketAddr> {
    serving_status(data_dir)?["services"]["nbd"]["address"].as_str()?.parse().ok()
}

/// A hub store: its own redb file at `redb_path` (waiting up to 10 s while another
/// process has it open), or the configured etcd under `etcd_prefix`.
pub(crate) fn hub_store(
    config: &Config,
    redb_path: &Path,
    etcd_prefix: &str,
) -> anyhow::Result<Hub> {
    match config.kv.engine {
        EngineKind::Redb => {
            if let Some(dir) = redb_path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
            }
            // Another volume command may hold the file for a moment: wait for it.
            let store = Store::redb_waiting(redb_path, std::time::Duration::from_secs(10))
                .with_context(|| format!("open {}", redb_path.display()))?;
            Ok(Hub::new(store, ""))
        }
        EngineKind::Etcd => {
            let store = Store::etcd(&config.kv.etcd).with_context(|| {
                format!("open the kv store on etcd {}", config.kv.etcd.endpoints.join(","))
            })?;
            Ok(Hub::new(store, etcd_prefix))
        }
    }
}

/// A client of the hub at `remote` with `token`, trusting `ca_file` (else `hub.ca_file`)
/// besides the system's roots for https: what every command that reaches a hub uses.
pub(crate) fn hub_client(
    config: &Config,
    remote: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<strata_hub::Client> {
    let ca_file = ca_file.or(config.hub.ca_file.as_deref());
    strata_hub::Client::with_ca_file(remote, token, ca_file).map_err(categorized)
}

/// The data directory's volume sets, snapshots and volumes (filesystem and block): the
/// volume store in DATA-DIR/volumes/store.redb (or etcd under `volumes/`), the blobs in
/// DATA-DIR/blobs.
pub(crate) fn workspace(config: &Config, data_dir: &Path) -> anyhow::Result<Workspace> {
    let hub = hub_store(config, &data_dir.join("volumes").join("store.redb"), "volumes/")?;
    Workspace::open(hub, data_dir, config.hub.local_user()).map_err(categorized)
}

/// Where vdisk records live: their own redb file under DATA-DIR/vdisks on the embedded
/// default (opened only per transaction, so the server and `strata vdisk` share it), the
/// kv store itself on etcd (`store` when the caller has it open already).
pub(crate) fn vdisk_records(
    config: &Config,
    data_dir: &Path,
    store: Option<&Store>,
) -> anyhow::Result<Records> {
    if config.kv.engine == EngineKind::Redb {
        return Ok(Records::embedded(data_dir));
    }
    let images = config.nbd.images_dir.clone().unwrap_or_else(|| data_dir.join("vdisks"));
    let store = match store {
        Some(store) => store.clone(),
        None => kv(&config.kv, data_dir)?,
    };
    Ok(Records::shared(store, &images))
}

/// The tlog for readers, as the flags or `[tlog]` name it: the Redis servers, else the
/// segment files in `segments` read-only.
pub(crate) fn tlog_reader(
    config: &Config,
    flags: &RedisFlags,
    segments: &Path,
) -> anyhow::Result<Reader> {
    config.tlog.open_reader(flags, segments).map_err(categorized)
}

/// The tlog a server writes to, as the flags or `[tlog]` name it.
pub(crate) fn tlog_writer(
    config: &Config,
    flags: &RedisFlags,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Storage>> {
    // The errors name the segment files or the Redis servers themselves.
    config.tlog.open_writer(flags, data_dir).map_err(categorized)
}

/// The tlog server settings `[tlog]` gives, encrypted with its key file or DATA-DIR/tlog.key
/// (made on first start): what `strata serve` runs.
pub(crate) fn tlog_server(config: &Config, data_dir: &Path) -> anyhow::Result<ServerConfig> {
    let tlog = &config.tlog;
    tlog.validate()?;
    let key = tlog.server_key(data_dir)?;
    let defaults = ServerConfig::default();
    let server = ServerConfig {
        flush_size: tlog.flush_size.unwrap_or(defaults.flush_size),
        local_flush_size: tlog.local_flush_size.unwrap_or(defaults.local_flush_size),
        flush_time: tlog.flush_time()?.unwrap_or(defaults.flush_time),
        key: Some(key),
        ..defaults
    };
    server.validate()?;
    Ok(server)
}
