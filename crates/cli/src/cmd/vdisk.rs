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
use crate::exit::categorized;
use crate::show::{Table, human_bytes, parse_time, rfc3339};

/// Virtual disks: create, ls, info, resize, rm, restore.
///
/// A vdisk is a sparse image file (DATA-DIR/vdisks/) and a record; `strata nbd serve` and
/// `strata serve` export it over NBD under its name, journaling every write through the
/// tlog, and `strata vdisk restore` rebuilds it from that log.
#[derive(Debug, Args)]
pub(crate) struct VdiskArgs {
    #[command(subcommand)]
    command: VdiskCommand,
}

#[derive(Debug, Subcommand)]
enum VdiskCommand {
    /// Create a vdisk: an empty sparse image of SIZE bytes and its record.
    Create(CreateArgs),
    /// List the vdisks.
    Ls(LsArgs),
    /// Show one vdisk's record: size, image, tlog id, lineage.
    Info(InfoArgs),
    /// Remove a vdisk's record and image (its log stays in the tlog).
    Rm(RmArgs),
    /// Grow a vdisk (not while it is served); clients see the new size when they reconnect.
    Resize(ResizeArgs),
    /// Rebuild a vdisk from the tlog as of a sequence or a time.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The vdisk's name, also its NBD export name (letters, digits, '.', '_', '-').
    name: String,
    /// The size, a multiple of the block size: bytes, or with a unit: 10G and 1.5GiB (powers
    /// of 1024; a bare K, M, G, T is binary), 10GB (powers of 1000).
    #[arg(long, value_name = "SIZE", value_parser = crate::args::parse_size)]
    size: u64,
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

/// Grow a vdisk to SIZE: its image, then its record. A vdisk being served is refused (stop
/// serving it first), and so is a smaller size: written data past it would be lost, and
/// its log would still replay it. NBD clients see the new size on their next connection,
/// and a restore rebuilds the grown disk.
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

/// Rebuild a vdisk from its log: the latest state, or as of --to-seq (the last sequence of
/// its log to apply, see `strata tlog ls --vdisk TLOG_ID`) or --to-time (RFC 3339 or Unix
/// nanoseconds; the time each write was made).
///
/// Without --as the vdisk is rebuilt in place (its image is replaced; stop serving it
/// first); with --as NEW a new vdisk is made and the source is untouched. Either way the
/// result gets a fresh tlog id and records the logs it came from, so later writes never mix
/// with the old log and restoring it again replays its whole history. Reads the log's
/// storage directly: works with no server running.
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
    /// Print the resulting record as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: VdiskArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let records = crate::open::vdisk_records(config, data_dir, None)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        VdiskCommand::Create(a) => {
            let vdisk = records.create(&a.name, a.size, a.block_size)?;
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
            let dir = a.tlog_dir.clone().unwrap_or_else(|| segment_dir(data_dir));
            let log = crate::open::tlog_reader(config, &a.store.flags(), &dir)
                .context("open the tlog (give --tlog-dir or --redis-servers)")?;
            let key = (config.tlog.reader_key(a.key_file.as_deref(), data_dir))
                .map_err(categorized)
                .context("read the tlog key (give --key-file)")?;
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
    }
    Ok(())
}

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
    })
}

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
        assert!(indicatif::ProgressStyle::with_template(PROGRESS).is_ok());
    }
}
