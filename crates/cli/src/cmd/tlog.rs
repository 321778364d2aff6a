//! `strata tlog`: the transaction log's server, and (in `tlog_read`) its offline tools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_tlog::aggregate::Key;
use strata_tlog::config::RedisFlags;
use strata_tlog::server::ServerConfig;
use strata_tlog::storage::Storage;
use strata_tlog::storage::redis::{RedisConfig, RedisStore};
use strata_tlog::storage::segment::SegmentStore;

use crate::config::Config;

/// The block-device transaction log: a server that journals every block write of virtual
/// disks, and tools to list, verify, replay and repair the journal. Aggregates live in
/// DATA-DIR/tlog, or erasure-coded on Redis-protocol servers (--redis-servers, or
/// [tlog.redis] in the config).
#[derive(Debug, Args)]
pub(crate) struct TlogArgs {
    #[command(subcommand)]
    command: TlogCommand,
}

#[derive(Debug, Subcommand)]
enum TlogCommand {
    /// Serve tlog clients until SIGINT or SIGTERM.
    Serve(TlogServeArgs),
    /// Write a new random AES-256 key to FILE (mode 0600; never overwrites).
    Keygen(super::tlog_read::KeygenArgs),
    /// Rebuild a disk image from a vdisk's log, up to a sequence or a time.
    Replay(super::tlog_read::ReplayArgs),
    /// Check every aggregate of a vdisk: hashes, the chain, decryption.
    Verify(super::tlog_read::VerifyArgs),
    /// List a vdisk's aggregates with their sequence ranges and times.
    Ls(super::tlog_read::LsArgs),
    /// Rewrite the shards and head lists Redis servers lost (after one came back empty).
    Repair(super::tlog_read::RepairArgs),
}

pub(crate) use strata_tlog::config::TlogConfig;

/// Where the log is kept, for every `strata tlog` command: flags win over `[tlog.redis]`;
/// with neither, the segment files in DATA-DIR/tlog.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Keep aggregates erasure-coded on these Redis-protocol servers (HOST:PORT[/DB], in
    /// shard order) instead of DATA-DIR/tlog; fewer than K+M are filled up on consecutive
    /// ports after the last.
    #[arg(long, value_name = "HOST:PORT[,…]", value_delimiter = ',')]
    redis_servers: Vec<String>,
    /// With --redis-servers: the data shards K; any K servers rebuild every aggregate
    /// [default: 4].
    #[arg(long, value_name = "K", requires = "redis_servers")]
    data_shards: Option<usize>,
    /// With --redis-servers: the parity shards M; up to M servers may be lost [default: 2].
    #[arg(long, value_name = "M", requires = "redis_servers")]
    parity_shards: Option<usize>,
}

impl StoreArgs {
    /// The Redis engine's configuration, when the flags or the config file name one.
    pub(crate) fn redis(&self, config: &TlogConfig) -> anyhow::Result<Option<RedisConfig>> {
        let flags = RedisFlags {
            servers: self.redis_servers.clone(),
            data_shards: self.data_shards,
            parity_shards: self.parity_shards,
        };
        Ok(config.redis_config(&flags)?)
    }
}

/// Serve tlog clients.
#[derive(Debug, Args)]
pub(crate) struct TlogServeArgs {
    /// The address to listen on [default: tlog.listen of the config, 127.0.0.1:11211].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Flush when this many blocks of a vdisk are waiting [default: 25].
    #[arg(long, value_name = "N")]
    flush_size: Option<usize>,
    /// Flush what is waiting this many seconds after the last flush [default: 25].
    #[arg(long, value_name = "SECS")]
    flush_time: Option<f64>,
    /// Encrypt aggregates with the AES-256 key in this file (see `strata tlog keygen`);
    /// tlog.key_file of the config when not given. One of the two, or --no-encryption,
    /// is required.
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Store aggregates unencrypted (an explicit choice: without it a key file is required).
    #[arg(long, conflicts_with = "key_file")]
    no_encryption: bool,
    /// The most client connections served at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_connections: usize,
    /// Close a connection idle for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    idle_timeout: u64,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn run(args: TlogArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let tlog = &config.tlog;
    match args.command {
        TlogCommand::Serve(args) => serve(args, tlog, data_dir),
        TlogCommand::Keygen(args) => super::tlog_read::run_keygen(args),
        TlogCommand::Replay(args) => super::tlog_read::run_replay(args, tlog, data_dir),
        TlogCommand::Verify(args) => super::tlog_read::run_verify(args, tlog, data_dir),
        TlogCommand::Ls(args) => super::tlog_read::run_ls(args, tlog, data_dir),
        TlogCommand::Repair(args) => super::tlog_read::run_repair(args, tlog),
    }
}

fn serve(args: TlogServeArgs, tlog: &TlogConfig, data_dir: &Path) -> anyhow::Result<()> {
    let key = match args.key_file.as_ref().or(tlog.key_file.as_ref()) {
        Some(path) if !args.no_encryption => Some(strata_tlog::keyfile::read_key_file(path)?),
        Some(_) | None if args.no_encryption => None,
        _ => {
            return Err(anyhow::Error::new(crate::exit::Failure {
                category: strata_kv::Category::InvalidArgument,
                message: "no key to encrypt the log with: give --key-file (make one with \
                          `strata tlog keygen`), set tlog.key_file in the config, or choose \
                          --no-encryption"
                    .into(),
            }));
        }
    };
    let flush_time = args.flush_time.or(tlog.flush_time).unwrap_or(25.0);
    if !flush_time.is_finite() || flush_time <= 0.0 {
        anyhow::bail!("--flush-time must be a positive number of seconds");
    }
    tlog.validate()?;
    let config = ServerConfig {
        flush_size: args.flush_size.or(tlog.flush_size).unwrap_or(25),
        flush_time: Duration::from_secs_f64(flush_time),
        key,
        max_connections: args.max_connections,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        ..ServerConfig::default()
    };
    config.validate()?;
    let storage = serve_storage(args.store.redis(tlog)?, data_dir)?;
    let listen =
        args.listen.or(tlog.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 11211)));
    let runtime = crate::runtime::runtime()?;
    runtime.block_on(async {
        let shutdown = crate::runtime::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        strata_tlog::server::serve(listener, config, storage, shutdown).await?;
        Ok(())
    })
}

/// The store a server writes to: the Redis engine when `redis` names one, else the
/// segment files in DATA-DIR/tlog.
pub(crate) fn serve_storage(
    redis: Option<RedisConfig>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Storage>> {
    let Some(redis) = redis else { return open_storage(data_dir) };
    tracing::info!(servers = ?redis.servers, k = redis.data_shards, m = redis.parity_shards, "tlog on redis");
    Ok(Arc::new(RedisStore::connect(redis)?))
}

/// The store `strata serve` writes to, as `[tlog]` configures it.
pub(crate) fn configured_storage(
    config: &Config,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Storage>> {
    let store = StoreArgs { redis_servers: Vec::new(), data_shards: None, parity_shards: None };
    serve_storage(store.redis(&config.tlog)?, data_dir)
}

/// The server settings `strata serve` uses: `[tlog]`'s, encrypted with its key file or
/// DATA-DIR/tlog.key (made on first start).
pub(crate) fn configured_server(config: &Config, data_dir: &Path) -> anyhow::Result<ServerConfig> {
    let tlog = &config.tlog;
    let key = match &tlog.key_file {
        Some(path) => strata_tlog::keyfile::read_key_file(path)?,
        None => default_key(data_dir)?,
    };
    let defaults = ServerConfig::default();
    tlog.validate()?;
    let server = ServerConfig {
        flush_size: tlog.flush_size.unwrap_or(defaults.flush_size),
        flush_time: tlog.flush_time()?.unwrap_or(defaults.flush_time),
        key: Some(key),
        ..defaults
    };
    server.validate()?;
    Ok(server)
}

/// The embedded segment store in DATA-DIR/tlog, locked for this process.
pub(crate) fn open_storage(data_dir: &Path) -> anyhow::Result<Arc<dyn Storage>> {
    let dir = super::tlog_read::tlog_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let store = SegmentStore::open(&dir)
        .with_context(|| format!("open the tlog store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// The key `strata serve` encrypts with: DATA-DIR/tlog.key, made on first use.
pub(crate) fn default_key(data_dir: &Path) -> anyhow::Result<Key> {
    let path = data_dir.join("tlog.key");
    if !path.exists() {
        strata_tlog::keyfile::write_key_file(&path)?;
        tracing::info!(path = %path.display(), "generated the tlog encryption key; back it up");
    }
    Ok(strata_tlog::keyfile::read_key_file(&path)?)
}
