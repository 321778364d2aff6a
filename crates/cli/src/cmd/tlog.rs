//! `strata tlog`: the transaction log's server, and (in `tlog_read`) its offline tools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_tlog::aggregate::Key;
use strata_tlog::server::ServerConfig;
use strata_tlog::storage::Storage;
use strata_tlog::storage::redis::{RedisConfig, RedisStore};
use strata_tlog::storage::segment::SegmentStore;

use crate::config::Config;

/// The block-device transaction log: a server that journals every block write of virtual
/// disks, and tools to list, verify and replay the journal. Aggregates live in
/// DATA-DIR/tlog.
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
}

/// Serve tlog clients.
#[derive(Debug, Args)]
pub(crate) struct TlogServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:11211")]
    listen: SocketAddr,
    /// Flush when this many blocks of a vdisk are waiting.
    #[arg(long, value_name = "N", default_value_t = 25)]
    flush_size: usize,
    /// Flush what is waiting this many seconds after the last flush.
    #[arg(long, value_name = "SECS", default_value_t = 25.0)]
    flush_time: f64,
    /// Encrypt aggregates with the AES-256 key in this file (see `strata tlog keygen`).
    #[arg(long, value_name = "F", required_unless_present = "no_encryption")]
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
    /// Store aggregates erasure-coded on these Redis-protocol servers (HOST:PORT[/DB]) instead
    /// of DATA-DIR/tlog; fewer than K+M are filled up on consecutive ports after the last.
    #[arg(long, value_name = "HOST:PORT[,…]", value_delimiter = ',')]
    redis_servers: Vec<String>,
    /// With --redis-servers: the data shards K; any K servers rebuild every aggregate.
    #[arg(long, value_name = "K", default_value_t = 4, requires = "redis_servers")]
    data_shards: usize,
    /// With --redis-servers: the parity shards M; up to M servers may be lost.
    #[arg(long, value_name = "M", default_value_t = 2, requires = "redis_servers")]
    parity_shards: usize,
}

pub(crate) fn run(args: TlogArgs, _config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    match args.command {
        TlogCommand::Serve(args) => serve(args, data_dir),
        TlogCommand::Keygen(args) => super::tlog_read::run_keygen(args),
        TlogCommand::Replay(args) => super::tlog_read::run_replay(args, data_dir),
        TlogCommand::Verify(args) => super::tlog_read::run_verify(args, data_dir),
        TlogCommand::Ls(args) => super::tlog_read::run_ls(args, data_dir),
    }
}

fn serve(args: TlogServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    let key = match &args.key_file {
        Some(path) => Some(strata_tlog::keyfile::read_key_file(path)?),
        None => None,
    };
    if !args.flush_time.is_finite() || args.flush_time <= 0.0 {
        anyhow::bail!("--flush-time must be a positive number of seconds");
    }
    let config = ServerConfig {
        flush_size: args.flush_size,
        flush_time: Duration::from_secs_f64(args.flush_time),
        key,
        max_connections: args.max_connections,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        ..ServerConfig::default()
    };
    config.validate()?;
    let storage: Arc<dyn Storage> = if args.redis_servers.is_empty() {
        open_storage(data_dir)?
    } else {
        let mut redis = RedisConfig {
            servers: args.redis_servers.clone(),
            data_shards: args.data_shards,
            parity_shards: args.parity_shards,
            ..RedisConfig::default()
        };
        redis.auto_fill()?;
        tracing::info!(servers = ?redis.servers, k = redis.data_shards, m = redis.parity_shards, "tlog on redis");
        Arc::new(RedisStore::connect(redis)?)
    };
    let runtime = super::serve::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let shutdown = super::serve::shutdown_signal();
        strata_tlog::server::serve(listener, config, storage, shutdown).await?;
        Ok(())
    })
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
