//! The command line: global options and the list of subcommands. Each subcommand's own
//! arguments live beside its code in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use strata_tlog::config::RedisFlags;

use crate::cmd;

/// Strata: versioned storage for volumes, containers and object stores.
///
/// One binary for every part of the system:
///
///   kv         a transactional key-value layer on redb (embedded) or etcd v3 (a cluster);
///              every metadata part of strata keeps its records there
///
///   snapshot   containerd's snapshot model on kv, with an overlayfs snapshotter
///
///   tlog       a transaction log for block devices: a server journaling every write,
///              and a player that rebuilds a disk as of any sequence or time
///
///   ckpt       a strongly consistent checkpoint service over HTTP for clients of an
///              eventually consistent object store, authorized by the store itself
///
///   vdisk, nbd virtual disks served over NBD, every write journaled through the tlog
///
///   hub        volume sets of filesystem volumes with snapshots on branches, pushed to
///              and pulled from a hub server with three-way sync (volumeset, volume, log,
///              push, pull, sync)
///
///   project    atomic projection of a set of files into a directory (the ..data swap)
///
///   serve      runs every strata service in one process, on embedded defaults under one
///              data directory, or on the engines a --config file names
///
/// Start with `strata serve`; inspect what it stores with `strata kv ls`.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about, verbatim_doc_comment)]
#[command(after_help = crate::exit::EXIT_CODES_HELP)]
#[command(propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Where strata keeps its data: the redb file, logs, published state.
    /// Default: /var/lib/strata when run as root, else $XDG_DATA_HOME/strata
    /// (~/.local/share/strata).
    #[arg(long, global = true, env = "STRATA_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// A strata.toml configuration file; its keys are documented in docs/configuration.md.
    /// Command-line flags win over it.
    #[arg(long, global = true, env = "STRATA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Log more: -v for debug, -vv for trace. STRATA_LOG (e.g. `strata_kv=debug`) wins.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Log less: -q for warnings and errors only, -qq for errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) quiet: u8,

    /// How log lines on standard error look: `text` for people, `json` for log collectors
    /// (one object per line with `timestamp`, `level`, `fields.message` and the event's
    /// other fields under `fields`).
    #[arg(
        long,
        global = true,
        env = "STRATA_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
}

/// The shape of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event, coloured on a terminal.
    Text,
    /// One JSON object per event.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every strata service in one process until SIGINT or SIGTERM.
    Serve(cmd::serve::ServeArgs),
    /// Inspect and change a KV store directly (for operators; keys and values are bytes).
    Kv(cmd::kv::KvArgs),
    /// Work with container snapshots (prepare, view, commit, rm, ls, info, label, tree, ...).
    Snapshot(cmd::snapshot::SnapshotArgs),
    Snapshotter(cmd::snapshotter::SnapshotterArgs),
    /// The block-device transaction log: serve it, replay it, verify it, list it.
    Tlog(cmd::tlog::TlogArgs),
    /// The strongly consistent checkpoint service, and its client.
    Ckpt(cmd::ckpt::CkptArgs),
    /// Project files into a directory atomically: watchers see the old set or the new one.
    Project(cmd::project::ProjectArgs),
    /// The hub server that volume sets are pushed to and pulled from, and its users' tokens.
    Hub(cmd::hub::HubArgs),
    /// Volume sets: named collections of snapshots on branches, of filesystem volumes or of
    /// vdisks (create, ls, rm).
    Volumeset(cmd::volume::VolumesetArgs),
    /// Filesystem volumes: writable directories made from snapshots (create, ls, snapshot, rm).
    Volume(cmd::volume::VolumeArgs),
    /// Draw a volume set's branches and snapshots as a graph.
    Log(cmd::volume::LogArgs),
    /// Send a volume set's new snapshots and changed metadata to a hub.
    Push(cmd::volume::TransferArgs),
    /// Fetch a volume set's new snapshots and changed metadata from a hub.
    Pull(cmd::volume::TransferArgs),
    /// Pull, reconcile changed metadata three ways, then push.
    Sync(cmd::volume::TransferArgs),
    /// Virtual disks served over NBD (create, ls, info, resize, rm, restore from the tlog,
    /// snapshot into a block volume set, create --from a snapshot).
    Vdisk(cmd::vdisk::VdiskArgs),
    /// The NBD server that serves vdisks and journals every write through the tlog.
    Nbd(cmd::nbd::NbdArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::CompletionsArgs),
    /// Write manual pages: strata.1 and one per subcommand (strata-kv.1, ...).
    Man(cmd::man::ManArgs),
}

impl Command {
    /// Long-running services log what they do; one-shot commands only what went wrong.
    pub(crate) fn default_log_level(&self) -> tracing::Level {
        match self {
            Command::Serve(_)
            | Command::Project(_)
            | Command::Snapshotter(_)
            | Command::Tlog(_)
            | Command::Nbd(_) => tracing::Level::INFO,
            Command::Ckpt(args) if args.is_serve() => tracing::Level::INFO,
            Command::Hub(args) if args.is_serve() => tracing::Level::INFO,
            Command::Kv(_)
            | Command::Snapshot(_)
            | Command::Ckpt(_)
            | Command::Hub(_)
            | Command::Volumeset(_)
            | Command::Volume(_)
            | Command::Log(_)
            | Command::Push(_)
            | Command::Pull(_)
            | Command::Sync(_)
            | Command::Vdisk(_)
            | Command::Completions(_)
            | Command::Man(_) => tracing::Level::WARN,
        }
    }
}

/// Where the log is kept, for every command that reads or serves a tlog: flags win over
/// `[tlog.redis]`; with neither, the segment files in DATA-DIR/tlog.
#[derive(Debug, Args)]
pub(crate) struct TlogStoreArgs {
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

impl TlogStoreArgs {
    /// The flags, for `strata_tlog::config` to merge over `[tlog.redis]`.
    pub(crate) fn flags(&self) -> RedisFlags {
        RedisFlags {
            servers: self.redis_servers.clone(),
            data_shards: self.data_shards,
            parity_shards: self.parity_shards,
        }
    }
}

/// The value parser of every size flag (`vdisk create --size`, `vdisk resize --size`): bytes,
/// or a number, maybe with a fraction, and a unit. `KiB`, `MiB`, `GiB`, `TiB` are powers of
/// 1024 and `KB`, `MB`, `GB`, `TB` powers of 1000 (the `bytesize` crate's rules, case
/// insensitive); a bare `K`, `M`, `G`, `T` is a power of 1024, as in `qemu-img` and `dd`, so
/// `10G` is 10 GiB. `1.5GiB`, `10GB`, `512M`, `1048576`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let binary = trimmed
        .strip_suffix(|c: char| "kmgtpeKMGTPE".contains(c))
        .filter(|number| number.ends_with(|c: char| c.is_ascii_digit() || c.is_whitespace()));
    let spelled = match binary {
        Some(_) => format!("{trimmed}iB"),
        None => trimmed.to_string(),
    };
    let bad = |why: &str| {
        format!("size {text:?}: {why}; give bytes or a number with a unit: 10G, 1.5GiB, 10GB, 512M")
    };
    let size: bytesize::ByteSize = spelled.parse().map_err(|_| bad("not a size"))?;
    match size.as_u64() {
        u64::MAX => Err(bad("too large")),
        bytes => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_mean_what_they_say() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4 KiB"), Ok(4096));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("10gb"), Ok(10_000_000_000));
        assert_eq!(parse_size("1kB"), Ok(1000));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_text() {
        for text in ["ten", "", "-1G", "1.2.3G", "10X", "99999999999999999999T", "G"] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }
}
