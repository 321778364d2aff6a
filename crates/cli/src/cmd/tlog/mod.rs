//! `strata tlog`: the transaction log's server, and (in `read`) its offline tools.

mod read;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_tlog::server::ServerConfig;

use crate::args::TlogStoreArgs;
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
    Keygen(read::KeygenArgs),
    /// Rebuild a disk image from a vdisk's log, up to a sequence or a time.
    Replay(read::ReplayArgs),
    /// Check every aggregate of a vdisk: hashes, the chain, decryption.
    Verify(read::VerifyArgs),
    /// List a vdisk's aggregates with their sequence ranges and times.
    Ls(read::LsArgs),
    /// Rewrite the shards and head lists Redis servers lost (after one came back empty).
    Repair(read::RepairArgs),
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
    store: TlogStoreArgs,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

pub(crate) fn run(args: TlogArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let tlog = &config.tlog;
    match args.command {
        TlogCommand::Serve(args) => serve(args, config, data_dir),
        TlogCommand::Keygen(args) => read::run_keygen(args),
        TlogCommand::Replay(args) => read::run_replay(args, config, data_dir),
        TlogCommand::Verify(args) => read::run_verify(args, config, data_dir),
        TlogCommand::Ls(args) => read::run_ls(args, config, data_dir),
        TlogCommand::Repair(args) => read::run_repair(args, tlog),
    }
}

fn serve(args: TlogServeArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let tlog = &config.tlog;
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
    let server = ServerConfig {
        flush_size: args.flush_size.or(tlog.flush_size).unwrap_or(25),
        flush_time: Duration::from_secs_f64(flush_time),
        key,
        max_connections: args.max_connections,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        ..ServerConfig::default()
    };
    server.validate()?;
    let storage = crate::open::tlog_writer(config, &args.store.flags(), data_dir)?;
    let listen =
        args.listen.or(tlog.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 11211)));
    let runtime = crate::runtime::runtime()?;
    runtime.block_on(async {
        let shutdown = crate::runtime::shutdown_signal();
        let metrics = crate::metrics::Exporter::start(args.metrics.metrics_listen).await?;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("tlog: listen on {listen} (choose another with --listen or tlog.listen)")
        })?;
        let shutdown = metrics.ready_until(shutdown);
        strata_tlog::server::serve(listener, server, storage, shutdown).await?;
        metrics.stop().await;
        Ok(())
    })
}
