//! `strata vdisk`: virtual disk records, and restore from the tlog.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use serde_json::json;
use strata_nbd::Vdisk;
use strata_nbd::restore::{self, Bound, Step};
use strata_tlog::config::segment_dir;

use crate::config::Config;
use crate::exit::{Failure, categorized};
use crate::show::{Table, human_bytes, parse_time, rfc3339};

/// Virtual disks: create, ls, info, resize, rm, restore, snapshot.
///
/// A vdisk is a sparse image file (DATA-DIR/vdisks/) and a record; `strata nbd serve` and
/// `strata serve` export it over NBD under its name, journaling every write through the
/// tlog, and `strata vdisk restore` rebuilds it from that log. `strata vdisk snapshot`
/// records its state as a snapshot of a block volume set (pushed and pulled like any
/// other), and `strata vdisk create --from` makes a disk of such a snapshot.
#[derive(Debug, Args)]
pub(crate) struct VdiskArgs {
    #[command(subcommand)]
    command: VdiskCommand,
}

#[derive(Debug, Subcommand)]
enum VdiskCommand {
    /// Create a vdisk: an empty sparse image of SIZE bytes, or the disk of a block snapshot
    /// (--from), and its record.
    ///
    /// Create a vdisk: empty (--size), or with the contents of a block snapshot (--from): its
    /// chain of blobs, all of which must be here (`strata pull VOLSET` fetches them), written
    /// into a new sparse image. A disk made from a snapshot is restored and rebuilt on top of
    /// it, and its first snapshot is taken on top of it: extending the snapshot's branch when
    /// the snapshot is still its tip, forking a new one otherwise.
    Create(CreateArgs),
    /// List the vdisks.
    Ls(LsArgs),
    /// Show one vdisk's record: size, image, tlog id, lineage.
    Info(InfoArgs),
    /// Remove a vdisk's record and image (its log stays in the tlog).
    Rm(RmArgs),
    /// Grow a vdisk (not while it is served); clients see the new size when they reconnect.
    ///
    /// Grow a vdisk to SIZE: its image, then its record. A vdisk being served is refused (stop
    /// serving it first), and so is a smaller size: written data past it would be lost, and
    /// its log would still replay it. NBD clients see the new size on their next connection,
    /// and a restore rebuilds the grown disk.
    Resize(ResizeArgs),
    /// Rebuild a vdisk from the tlog as of a sequence or a time.
    ///
    /// Rebuild a vdisk from its log: the latest state, or as of --to-seq (the last sequence of
    /// its log to apply, see `strata tlog ls --vdisk TLOG_ID`) or --to-time (RFC 3339 or Unix
    /// nanoseconds; the time each write was made).
    ///
    /// Without --as the vdisk is rebuilt in place (its image is replaced; stop serving it
    /// first); with --as NEW a new vdisk is made and the source is untouched. Either way the
    /// result gets a fresh tlog id and records the logs it came from, so later writes never mix
    /// with the old log and restoring it again replays its whole history. Reads the log's
    /// storage directly: works with no server running.
    Restore(RestoreArgs),
    /// Record a vdisk's state as a snapshot of a block volume set, also while it is served.
    ///
    /// Record the state of vdisk NAME as a snapshot of a block volume set. Nothing of the image
    /// is copied: the snapshot is a point of the disk's log, and its blob holds the extents
    /// written or zeroed since the disk's last snapshot (for a first snapshot, the allocated
    /// extents), read from the log, compressed and content-addressed. A disk being served is
    /// first flushed through the NBD server (every write completed before this command is then
    /// durable in the log); the served disk's writes go on meanwhile.
    ///
    /// The snapshot extends the branch whose tip the disk's last snapshot (or the snapshot it
    /// was made from) is, or forks a new branch (first snapshot, a base that is no longer a
    /// tip, or --branch). When nothing changed since the last snapshot none is recorded (exit
    /// 0; --allow-empty records one). `strata push VOLSET` sends it to a hub.
    Snapshot(SnapshotArgs),
}

/// The arguments of `strata vdisk create`; its help is on `VdiskCommand::Create`.
#[derive(Debug, Args)]
struct CreateArgs {
    /// The vdisk's name, also its NBD export name (letters, digits, '.', '_', '-').
    name: String,
    /// The size, a multiple of the block size: bytes, or with a unit: 10G and 1.5GiB (powers
    /// of 1024; a bare K, M, G, T is binary), 10GB (powers of 1000).
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = crate::args::parse_size,
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    size: Option<u64>,
    /// The block snapshot (name or id) to make the disk of; the disk's size is the
    /// snapshot's.
    #[arg(long, value_name = "SNAPSHOT")]
    from: Option<String>,
    /// With --from: the volume set (name or id) the snapshot is in [default: the one block
    /// set with a snapshot of that name].
    #[arg(long, value_name = "VOLSET", requires = "from")]
    volumeset: Option<String>,
    /// The block size clients are told to prefer (a power of two, 512 to 1M).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    block_size: u32,
    /// Print the record as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Print a JSON array of records.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InfoArgs {
    /// The vdisk.
    name: String,
    /// Print the record as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The vdisk.
    name: String,
}

/// The arguments of `strata vdisk resize`; its help is on `VdiskCommand::Resize`.
#[derive(Debug, Args)]
struct ResizeArgs {
    /// The vdisk.
    name: String,
    /// The new size, a multiple of the block size, as for `vdisk create`.
    #[arg(long, value_name = "SIZE", value_parser = crate::args::parse_size)]
    size: u64,
    /// Print the record as JSON.
    #[arg(long)]
    json: bool,
}

/// The arguments of `strata vdisk restore`; its help is on `VdiskCommand::Restore`.
#[derive(Debug, Args)]
struct RestoreArgs {
    /// The vdisk to restore.
    name: String,
    /// Apply its log up to and including this sequence.
    #[arg(long, value_name = "N", conflicts_with = "to_time")]
    to_seq: Option<u64>,
    /// Apply writes made up to this time.
    #[arg(long, value_name = "T", value_parser = parse_time)]
    to_time: Option<u64>,
    /// Restore into a new vdisk of this name instead of in place.
    #[arg(long = "as", value_name = "NEW")]
    as_new: Option<String>,
    /// Replay across gaps and overlaps in the sequences that a log does not record as a
    /// reset (each is logged as a warning); without it they stop the restore with an error.
    #[arg(long)]
    allow_gaps: bool,
    #[command(flatten)]
    log: LogSource,
    /// Print the resulting record as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: VdiskArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let records = crate::open::vdisk_records(config, data_dir, None)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        VdiskCommand::Create(a) => {
            let vdisk = match (&a.from, a.size) {
                (Some(from), _) => {
                    let ws = crate::open::workspace(config, data_dir)?;
                    let bar = crate::show::progress_bar(CLONE_PROGRESS);
                    let made = strata_blockvol::create_vdisk(
                        &ws,
                        &records,
                        from,
                        a.volumeset.as_deref(),
                        &a.name,
                        a.block_size,
                        |done, total| {
                            bar.set_length(total);
                            bar.set_position(done);
                        },
                    );
                    bar.finish_and_clear();
                    made.map_err(categorized)?
                }
                (None, Some(size)) => records.create(&a.name, size, a.block_size)?,
                (None, None) => anyhow::bail!("give --size SIZE, or --from SNAPSHOT"),
            };
            if a.json {
                writeln!(out, "{}", record_json(&vdisk))?;
            } else {
                writeln!(
                    out,
                    "created vdisk {} ({}, block size {}), image {}, tlog id {}",
                    vdisk.name,
                    human_bytes(vdisk.size),
                    vdisk.block_size,
                    vdisk.image.display(),
                    vdisk.tlog_id
                )?;
            }
        }
        VdiskCommand::Ls(a) => {
            let vdisks = records.list()?;
            if a.json {
                let rows: Vec<_> = vdisks.iter().map(record_json).collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
            } else {
                let mut table = Table::new(["NAME", ">SIZE", ">BLOCK", "CREATED", "TLOG_ID"]);
                for v in vdisks {
                    let created = rfc3339(v.created);
                    table.row([
                        v.name,
                        human_bytes(v.size),
                        v.block_size.to_string(),
                        created,
                        v.tlog_id,
                    ]);
                }
                writeln!(out, "{}", table.render())?;
            }
        }
        VdiskCommand::Info(a) => {
            let v = records.get(&a.name)?;
            if a.json {
                writeln!(out, "{}", record_json(&v))?;
            } else {
                writeln!(out, "name:        {}", v.name)?;
                writeln!(out, "size:        {} ({} bytes)", human_bytes(v.size), v.size)?;
                writeln!(out, "block size:  {}", v.block_size)?;
                writeln!(out, "created:     {}", rfc3339(v.created))?;
                writeln!(out, "image:       {}", v.image.display())?;
                writeln!(out, "tlog id:     {}", v.tlog_id)?;
                for o in &v.origin {
                    let seq = o.to_seq.map_or("-".to_string(), |s| s.to_string());
                    let time = o.to_time.map_or("-".to_string(), rfc3339);
                    writeln!(out, "origin:      {} to sequence {seq}, time {time}", o.tlog_id)?;
                }
                if let Some(b) = &v.base {
                    writeln!(
                        out,
                        "made from:   snapshot {} of volume set {} ({} blobs)",
                        b.snapshot_id,
                        b.volset_id,
                        b.chain.len()
                    )?;
                }
                if let Some(t) = &v.tracked {
                    writeln!(
                        out,
                        "snapshot:    {} of volume set {}, at sequence {} of {}",
                        t.snapshot_id, t.volset_id, t.seq, t.tlog_id
                    )?;
                }
            }
        }
        VdiskCommand::Resize(a) => {
            let vdisk = records.resize(&a.name, a.size)?;
            if a.json {
                writeln!(out, "{}", record_json(&vdisk))?;
            } else {
                let size = human_bytes(vdisk.size);
                writeln!(out, "vdisk {}: now {size} ({} bytes)", vdisk.name, vdisk.size)?;
            }
        }
        VdiskCommand::Rm(a) => {
            let v = records.remove(&a.name)?;
            writeln!(out, "removed vdisk {}; its log {} stays in the tlog", v.name, v.tlog_id)?;
        }
        VdiskCommand::Restore(a) => {
            let (log, key) = a.log.open(config, data_dir)?;
            let bound = Bound { to_seq: a.to_seq, to_time: a.to_time, allow_gaps: a.allow_gaps };
            let bar = crate::show::progress_bar(PROGRESS);
            let vdisk = restore::restore(
                &records,
                &*log.storage,
                key.as_ref(),
                &a.name,
                bound,
                a.as_new.as_deref(),
                |s| show(&bar, s),
            );
            bar.finish_and_clear();
            let vdisk = vdisk?;
            if a.json {
                writeln!(out, "{}", record_json(&vdisk))?;
            } else {
                let from: Vec<String> = vdisk
                    .origin
                    .iter()
                    .map(|o| format!("{} to sequence {}", o.tlog_id, o.to_seq.unwrap_or(0)))
                    .collect();
                writeln!(
                    out,
                    "restored vdisk {} from {}; image {}, new tlog id {}",
                    vdisk.name,
                    from.join(", then "),
                    vdisk.image.display(),
                    vdisk.tlog_id
                )?;
            }
        }
        VdiskCommand::Snapshot(a) => snapshot(a, config, data_dir, &records, &mut out)?,
    }
    Ok(())
}

/// `strata vdisk snapshot`: the flush barrier, then the snapshot read from the log.
fn snapshot(
    a: SnapshotArgs,
    config: &Config,
    data_dir: &Path,
    records: &strata_nbd::Records,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    barrier(&a, config, data_dir, records)?;
    let (log, key) = a.log.open(config, data_dir)?;
    let ws = crate::open::workspace(config, data_dir)?;
    let spec = strata_blockvol::SnapshotSpec {
        volset: a.volumeset.clone(),
        take: strata_hub::Take {
            name: a.name.clone(),
            description: a.description.clone(),
            branch: a.branch.clone(),
            allow_empty: a.allow_empty,
        },
    };
    let bar = crate::show::progress_bar(SNAPSHOT_PROGRESS);
    let source = strata_blockvol::Log { storage: &*log.storage, key: key.as_ref() };
    let taken = strata_blockvol::snapshot(&ws, records, source, &a.vdisk, &spec, |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes);
    });
    bar.finish_and_clear();
    match taken.map_err(categorized)? {
        strata_blockvol::Snapshotted::Unchanged { base } => {
            if a.json {
                writeln!(out, "{}", json!({ "unchanged": true, "base": base }))?;
            } else {
                writeln!(
                    out,
                    "vdisk {}: nothing changed since snapshot {base}; no snapshot recorded \
                     (--allow-empty records one)",
                    a.vdisk
                )?;
            }
        }
        strata_blockvol::Snapshotted::Recorded(r) => {
            let h = r.blob.header;
            if a.json {
                let mut value = serde_json::to_value(&r.snapshot)?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("branch".into(), json!(r.branch.name));
                    map.insert("branch_id".into(), json!(r.branch.id));
                    map.insert("volumeset".into(), json!(r.volset.name));
                    map.insert("vdisk".into(), json!(a.vdisk));
                    map.insert("tlog_id".into(), json!(r.point.tlog_id));
                    map.insert("sequence".into(), json!(r.point.seq));
                    map.insert("log_blocks".into(), json!(r.blocks));
                    map.insert("blob".into(), serde_json::to_value(h)?);
                }
                writeln!(out, "{value}")?;
            } else {
                writeln!(
                    out,
                    "snapshot {} ({}) of vdisk {} at sequence {} on branch {} of {}: {} \
                     written and {} zeroed in {} extents from {} log blocks, blob {}",
                    r.snapshot.name,
                    r.snapshot.id,
                    a.vdisk,
                    r.point.seq,
                    r.branch.name,
                    r.volset.name,
                    human_bytes(h.data_bytes),
                    human_bytes(h.zero_bytes),
                    h.extents,
                    r.blocks,
                    human_bytes(r.blob.stored)
                )?;
            }
        }
    }
    Ok(())
}

/// Makes the disk's log hold every write completed before now. A disk whose last session
/// closed cleanly (not served) needs nothing: its log holds everything its image does. A
/// disk being served (its record marks a session open) is flushed through the NBD server of
/// `--nbd` or of the `strata serve` on this data directory: FLUSH answers only once every
/// write completed before it is durable in the log. Nothing else can vouch for a disk
/// marked open: a server this command cannot reach, or a session that crashed.
fn barrier(
    a: &SnapshotArgs,
    config: &Config,
    data_dir: &Path,
    records: &strata_nbd::Records,
) -> anyhow::Result<()> {
    use strata_nbd::client::{ClientTls, Endpoint, flush_export};
    if !records.get(&a.vdisk)?.session_open {
        tracing::debug!(vdisk = %a.vdisk, "not served, closed cleanly: no flush needed");
        return Ok(());
    }
    let unserved = || {
        anyhow::anyhow!(Failure {
            category: strata_kv::Category::FailedPrecondition,
            message: format!(
                "vdisk {name} is served by an NBD server this command does not know (give \
                 --nbd HOST:PORT), or its last session did not close cleanly (serve it again, \
                 or `strata vdisk restore {name}`), so its log may lack writes its image has",
                name = a.vdisk
            ),
        })
    };
    let addr = a.nbd.or_else(|| crate::open::served_nbd(data_dir)).ok_or_else(unserved)?;
    let tls = match a.ca_file.as_deref().or(config.nbd.tls_cert.as_deref()) {
        Some(ca) => {
            let client = strata_net::tls::client_config(Some(ca))
                .with_context(|| format!("TLS for the NBD server, trusting {}", ca.display()))?;
            Some(ClientTls {
                config: std::sync::Arc::new(client),
                server_name: a.tls_name.clone().unwrap_or_else(|| addr.ip().to_string()),
            })
        }
        None => None,
    };
    let flushed = crate::runtime::runtime()?.block_on(flush_export(
        &Endpoint::Tcp(addr),
        &a.vdisk,
        tls.as_ref(),
        FLUSH_TIMEOUT,
    ));
    match flushed {
        Ok(()) => {
            tracing::debug!(vdisk = %a.vdisk, nbd = %addr, "flushed through the NBD server");
            Ok(())
        }
        // A status left by a server killed outright names an address nobody serves.
        Err(err) if a.nbd.is_none() && strata_nbd::client::is_not_listening(&err) => {
            tracing::debug!(nbd = %addr, error = %err, "no NBD server answers");
            Err(unserved())
        }
        Err(err) => Err(categorized(err))
            .with_context(|| format!("flush vdisk {} through the NBD server {addr}", a.vdisk)),
    }
}

/// How long the flush barrier may take, connecting included.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn record_json(v: &Vdisk) -> serde_json::Value {
    json!({
        "name": v.name,
        "size": v.size,
        "block_size": v.block_size,
        "created": rfc3339(v.created),
        "created_ns": v.created,
        "image": v.image,
        "tlog_id": v.tlog_id,
        "next_sequence": v.next_sequence,
        "origin": v.origin.iter().map(|o| json!({
            "tlog_id": o.tlog_id,
            "to_seq": o.to_seq,
            "to_time": o.to_time,
        })).collect::<Vec<_>>(),
        "base": v.base.as_ref().map(|b| json!({
            "volumeset_id": b.volset_id,
            "snapshot_id": b.snapshot_id,
            "blobs": b.chain.len(),
        })),
        "snapshot": v.tracked.as_ref().map(|t| json!({
            "volumeset_id": t.volset_id,
            "snapshot_id": t.snapshot_id,
            "tlog_id": t.tlog_id,
            "sequence": t.seq,
        })),
    })
}

/// The arguments of `strata vdisk snapshot`; its help is on `VdiskCommand::Snapshot`.
#[derive(Debug, Args)]
struct SnapshotArgs {
    /// The vdisk.
    vdisk: String,
    /// The snapshot's name.
    #[arg(long)]
    name: String,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
    /// The block volume set (name or id) to record it in, made when missing [default: the
    /// set of the disk's snapshots, else one named after the disk].
    #[arg(long, value_name = "VOLSET")]
    volumeset: Option<String>,
    /// The new branch's name when this snapshot forks one [default: main when free, else
    /// the disk's name].
    #[arg(long)]
    branch: Option<String>,
    /// Record a snapshot even when nothing changed since the disk's last one.
    #[arg(long)]
    allow_empty: bool,
    /// The NBD server serving the disk, HOST:PORT [default: the address in
    /// DATA-DIR/run/status.json of a running `strata serve`]; give it for `strata nbd serve`.
    #[arg(long, value_name = "ADDR")]
    nbd: Option<std::net::SocketAddr>,
    /// With an NBD server that requires TLS: the CA certificate (PEM) to trust [default:
    /// nbd.tls_cert of the config, for a self-signed certificate].
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// With TLS: the name the server's certificate is checked against [default: the
    /// server's IP address].
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    #[command(flatten)]
    log: LogSource,
    /// Print the snapshot as JSON, with its branch, volume set, blob and log point
    /// (`{"unchanged": true, "base": ID}` when nothing changed and none was recorded).
    #[arg(long)]
    json: bool,
}

/// Where a vdisk's log is read from, for the commands that read it directly.
#[derive(Debug, Args)]
struct LogSource {
    /// The tlog's segment store [default: DATA-DIR/tlog]; for a log on Redis servers give
    /// --redis-servers (or [tlog.redis] in the config) instead.
    #[arg(long, value_name = "DIR", conflicts_with = "redis_servers")]
    tlog_dir: Option<PathBuf>,
    #[command(flatten)]
    store: crate::args::TlogStoreArgs,
    /// The key the log was encrypted with [default: tlog.key_file of the config, else
    /// DATA-DIR/tlog.key when it exists].
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
}

impl LogSource {
    /// The log's storage, read-only, and its key.
    fn open(
        &self,
        config: &Config,
        data_dir: &Path,
    ) -> anyhow::Result<(strata_tlog::config::Reader, Option<strata_tlog::aggregate::Key>)> {
        let dir = self.tlog_dir.clone().unwrap_or_else(|| segment_dir(data_dir));
        let log = crate::open::tlog_reader(config, &self.store.flags(), &dir)
            .context("open the tlog (give --tlog-dir or --redis-servers)")?;
        let key = (config.tlog.reader_key(self.key_file.as_deref(), data_dir))
            .map_err(categorized)
            .context("read the tlog key (give --key-file)")?;
        Ok((log, key))
    }
}

/// What the progress bar of `vdisk create --from` shows: blob bytes applied.
const CLONE_PROGRESS: &str =
    "{spinner} applying blobs [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";

/// What the progress bar of `vdisk snapshot` shows: log bytes read.
const SNAPSHOT_PROGRESS: &str =
    "{spinner} reading the log [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";

/// What the restore's progress bar shows: the log being replayed of how many, its bytes.
const PROGRESS: &str =
    "{spinner} log {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";

fn show(bar: &ProgressBar, s: Step) {
    bar.set_message(format!("{}/{}", s.log + 1, s.logs));
    bar.set_length(s.progress.bytes_total);
    bar.set_position(s.progress.bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_template_parses() {
        for template in [PROGRESS, CLONE_PROGRESS, SNAPSHOT_PROGRESS] {
            assert!(indicatif::ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
