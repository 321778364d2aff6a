//! `strata tlog keygen | replay | verify | ls | repair`: the commands that make keys and
//! read (or, for repair, mend) a log without a server. They open the segment store in
//! `<data-dir>/tlog` read-only, so they work beside a running server and after a crash, or
//! the Redis servers the flags or `[tlog.redis]` name. `strata tlog serve` lives elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;
use strata_kv::Category;
use strata_tlog::aggregate::{Key, hex};
use strata_tlog::config::{Reader, TlogConfig, segment_dir};
use strata_tlog::keyfile::write_key_file;
use strata_tlog::player::{self, Bounds, Progress};
use strata_tlog::storage::redis::RedisStore;
use strata_tlog::storage::{Storage, Stored, check_vdisk_id};

use crate::args::TlogStoreArgs;
use crate::config::Config;
use crate::exit::{Failure, categorized};
use crate::show::{Table, human_bytes, rfc3339};

/// Write a new random AES-256 key for `strata tlog serve --key-file` and the readers.
///
/// The file holds 64 hex characters and a newline, mode 0600. An existing file is never
/// overwritten. Keep a copy somewhere safe: without the key the log cannot be read.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the key.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Rebuild a vdisk as a raw image from its log, up to a sequence or a time.
///
/// Blocks are applied in log order; the replay stops at the first block past --to-seq or
/// --to-time, so the image is the disk as it was after that prefix of its writes. Blocks
/// before --from-seq or --from-time are skipped: give one of those to apply later writes
/// onto an image an earlier replay made. Discards become holes; the image is sparse.
/// Times are RFC 3339 (`2026-11-21T10:00:00Z`, UTC) or Unix nanoseconds, and compare with
/// the time the client wrote each block.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The vdisk to replay.
    #[arg(long, value_name = "ID")]
    vdisk: String,
    /// The raw image to write (a new file unless --from-* or --force is given).
    #[arg(long, value_name = "IMAGE")]
    out: PathBuf,
    /// Skip blocks with a smaller sequence.
    #[arg(long, value_name = "N")]
    from_seq: Option<u64>,
    /// Stop after the last block with this sequence or a smaller one.
    #[arg(long, value_name = "N")]
    to_seq: Option<u64>,
    /// Skip blocks written earlier than T.
    #[arg(long, value_name = "T", value_parser = crate::show::parse_time)]
    from_time: Option<u64>,
    /// Stop at the first block written later than T.
    #[arg(long, value_name = "T", value_parser = crate::show::parse_time)]
    to_time: Option<u64>,
    /// The key file the log was written with (needed when it is encrypted).
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Overwrite IMAGE when it exists (without --from-*, it is started empty).
    #[arg(long)]
    force: bool,
    /// Replay across gaps and overlaps in the sequences that the log does not record as a
    /// reset (each is logged as a warning); without it they stop the replay with an error.
    #[arg(long)]
    allow_gaps: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: TlogStoreArgs,
}

/// Check a vdisk's whole log: every aggregate's hash, every chain link back to the first
/// aggregate, that sequences run on without gaps or overlaps (except at recorded resets),
/// decryption and decoding. Names the first bad aggregate (exit code 8).
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The vdisk to check.
    #[arg(long, value_name = "ID")]
    vdisk: String,
    /// Accept gaps and overlaps in the sequences that the log does not record as a reset
    /// (each is logged as a warning and counted in the report).
    #[arg(long)]
    allow_gaps: bool,
    /// The key file the log was written with (needed when it is encrypted).
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: TlogStoreArgs,
}

/// List a vdisk's aggregates, oldest first, with their sequence ranges and times (from
/// their headers; no key needed). Without --vdisk, list the vdisks.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The vdisk whose aggregates to list.
    #[arg(long, value_name = "ID")]
    vdisk: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: TlogStoreArgs,
}

/// Rebuild what Redis servers lost, so that any M of them may be lost again.
///
/// Walks each vdisk's chain (or one vdisk's), rebuilds every aggregate from the shards that
/// remain, rewrites the shards that are missing or damaged, and gives servers whose list of
/// recent heads is missing or behind the newest heads again. Run it after a server came
/// back empty (replaced, or restarted without persistence). Every server must be up.
#[derive(Debug, Args)]
pub(crate) struct RepairArgs {
    /// Repair only this vdisk [default: every vdisk found on the servers].
    #[arg(long, value_name = "ID")]
    vdisk: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: TlogStoreArgs,
}

pub(crate) fn run_keygen(args: KeygenArgs) -> anyhow::Result<()> {
    write_key_file(&args.out).map_err(categorized)?;
    tracing::info!("{}: new tlog key written (mode 0600); keep a copy safe", args.out.display());
    Ok(())
}

pub(crate) fn run_replay(args: ReplayArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let (log, key) = open(&args.store, config, data_dir, &args.vdisk, args.key_file.as_deref())?;
    let bounds = Bounds {
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        from_time: args.from_time,
        to_time: args.to_time,
        allow_gaps: args.allow_gaps,
    };
    prepare_image(&args.out, &bounds, args.force)?;
    let bar = crate::show::progress_bar(PROGRESS);
    let done = player::replay(&*log.storage, &args.vdisk, key.as_ref(), bounds, &args.out, |p| {
        show(&bar, p)
    })
    .map_err(categorized)
    .with_context(|| format!("replay vdisk {} into {}", args.vdisk, args.out.display()))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = json!({
            "vdisk": args.vdisk,
            "image": args.out,
            "last_sequence": done.last_sequence,
            "aggregates": done.aggregates,
            "blocks": done.blocks,
            "bytes": done.bytes,
            "discarded": done.discarded,
        });
        writeln!(out, "{report}")?;
    } else {
        let last = done.last_sequence.map_or("none".to_string(), |s| s.to_string());
        writeln!(
            out,
            "{}: {} blocks from {} aggregates ({} written, {} discarded); last sequence \
             applied: {last}",
            args.out.display(),
            done.blocks,
            done.aggregates,
            human_bytes(done.bytes),
            human_bytes(done.discarded)
        )?;
    }
    Ok(())
}

pub(crate) fn run_verify(args: VerifyArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let (log, key) = open(&args.store, config, data_dir, &args.vdisk, args.key_file.as_deref())?;
    let report = player::verify(&*log.storage, &args.vdisk, key.as_ref(), args.allow_gaps)
        .map_err(categorized)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = json!({
            "vdisk": args.vdisk,
            "ok": true,
            "aggregates": report.aggregates,
            "encrypted": report.encrypted,
            "blocks": report.blocks,
            "bytes": report.bytes,
            "gaps": report.gaps,
            "first_sequence": report.first_sequence,
            "last_sequence": report.last_sequence,
            "head": report.head.map(|h| hex(&h)),
        });
        writeln!(out, "{report}")?;
    } else {
        let range = |s: Option<u64>| s.map_or("-".to_string(), |s| s.to_string());
        writeln!(
            out,
            "vdisk {}: ok: {} aggregates ({} encrypted), {} blocks, sequences {}..{}, {} \
             stored, head {}",
            args.vdisk,
            report.aggregates,
            report.encrypted,
            report.blocks,
            range(report.first_sequence),
            range(report.last_sequence),
            human_bytes(report.bytes),
            report.head.map_or("-".to_string(), |h| hex(&h))
        )?;
    }
    Ok(())
}

pub(crate) fn run_ls(args: LsArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let log = crate::open::tlog_reader(config, &args.store.flags(), &segment_dir(data_dir))?;
    let Some(vdisk) = args.vdisk else {
        return list_vdisks(&*log.storage, args.json);
    };
    check_vdisk_id(&vdisk).map_err(invalid)?;
    let listed = player::list(&*log.storage, &vdisk).map_err(categorized)?;
    if listed.is_empty() {
        return Err(categorized(log.no_aggregates(&vdisk)));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let rows: Vec<_> = listed.iter().map(aggregate_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    let mut table =
        Table::new([">FIRST_SEQ", ">LAST_SEQ", ">BLOCKS", "TIME", ">SIZE", "ENC", "HASH"]);
    for s in &listed {
        let h = &s.header;
        table.row([
            h.first_sequence.to_string(),
            h.last_sequence.to_string(),
            h.blocks.to_string(),
            rfc3339(h.timestamp),
            human_bytes(s.len),
            if h.encrypted { "yes" } else { "no" }.to_string(),
            hex(&s.hash),
        ]);
    }
    writeln!(out, "{}", table.render())?;
    Ok(())
}

pub(crate) fn run_repair(args: RepairArgs, tlog: &TlogConfig) -> anyhow::Result<()> {
    let Some(redis) = tlog.redis_config(&args.store.flags()).map_err(categorized)? else {
        return Err(invalid(
            "repair rebuilds the shards of Redis servers; name them with --redis-servers or \
             [tlog.redis] (the embedded store in DATA-DIR/tlog has no shards to rebuild: check \
             it with `strata tlog verify`)"
                .to_string(),
        ));
    };
    let store = RedisStore::connect(redis).map_err(categorized)?;
    let repaired = store.repair(args.vdisk.as_deref()).map_err(categorized)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let per_server: Vec<_> = repaired
            .shards
            .iter()
            .zip(&repaired.head_lists)
            .map(|((server, shards), (_, lists))| {
                json!({ "server": server, "shards": shards, "head_lists": lists })
            })
            .collect();
        let report = json!({
            "vdisks": repaired.vdisks,
            "aggregates": repaired.aggregates,
            "shards_rewritten": repaired.shards_rewritten(),
            "servers": per_server,
        });
        writeln!(out, "{report}")?;
        return Ok(());
    }
    writeln!(
        out,
        "checked {} aggregates of {} vdisks; rewrote {} shards",
        repaired.aggregates,
        repaired.vdisks,
        repaired.shards_rewritten()
    )?;
    for ((server, shards), (_, lists)) in repaired.shards.iter().zip(&repaired.head_lists) {
        if *shards > 0 || *lists > 0 {
            writeln!(out, "  {server}: {shards} shards, {lists} head lists")?;
        }
    }
    Ok(())
}

/// Lists the vdisks with aggregates, with their counts and newest sequences.
fn list_vdisks(store: &dyn Storage, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut rows = Vec::new();
    for vdisk in store.vdisks().map_err(categorized)? {
        let listed = store.list(&vdisk).map_err(categorized)?;
        let head = listed.last().map(|s| (s.header.last_sequence, s.header.timestamp));
        rows.push((vdisk, listed.len(), head));
    }
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(vdisk, count, head)| {
                json!({
                    "vdisk": vdisk,
                    "aggregates": count,
                    "last_sequence": head.map(|h| h.0),
                    "timestamp": head.map(|h| h.1),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    let mut table = Table::new(["VDISK", ">AGGREGATES", ">LAST_SEQ", "LAST_TIME"]);
    for (vdisk, count, head) in rows {
        let (seq, time) =
            head.map_or(("-".into(), "-".into()), |h| (h.0.to_string(), rfc3339(h.1)));
        table.row([vdisk, count.to_string(), seq, time]);
    }
    writeln!(out, "{}", table.render())?;
    Ok(())
}

fn aggregate_json(s: &Stored) -> serde_json::Value {
    let h = &s.header;
    json!({
        "hash": hex(&s.hash),
        "prev": hex(&h.prev),
        "first_sequence": h.first_sequence,
        "last_sequence": h.last_sequence,
        "blocks": h.blocks,
        "timestamp": h.timestamp,
        "time": crate::show::rfc3339(h.timestamp),
        "bytes": s.len,
        "encrypted": h.encrypted,
    })
}

/// Opens the log and the key, after checking the vdisk has a log. The key is the one
/// named by the flag, else by `tlog.key_file`, else DATA-DIR/tlog.key if `strata serve`
/// made one; logs written without encryption need none.
fn open(
    store: &TlogStoreArgs,
    config: &Config,
    data_dir: &Path,
    vdisk: &str,
    key_file: Option<&Path>,
) -> anyhow::Result<(Reader, Option<Key>)> {
    check_vdisk_id(vdisk).map_err(invalid)?;
    let key = config.tlog.reader_key(key_file, data_dir).map_err(categorized)?;
    let log = crate::open::tlog_reader(config, &store.flags(), &segment_dir(data_dir))?;
    if log.storage.head(vdisk).map_err(categorized)?.is_none() {
        return Err(categorized(log.no_aggregates(vdisk)));
    }
    Ok((log, key))
}

/// Refuses to clobber an image by accident; empties it when --force says to start over.
fn prepare_image(path: &Path, bounds: &Bounds, force: bool) -> anyhow::Result<()> {
    let incremental = bounds.from_seq.is_some() || bounds.from_time.is_some();
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    if incremental || !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    if !force {
        return Err(anyhow::Error::new(Failure {
            category: Category::AlreadyExists,
            message: format!(
                "{}: already exists; give --force to replace it, or --from-seq/--from-time to \
                 apply later writes onto it",
                path.display()
            ),
        }));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .with_context(|| format!("empty {}", path.display()))
}

/// What the replay's progress bar shows: stored bytes read, speed, time left, aggregates.
const PROGRESS: &str = "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}";

fn show(bar: &ProgressBar, p: Progress) {
    bar.set_length(p.bytes_total);
    bar.set_position(p.bytes);
    bar.set_message(format!("{}/{} aggregates", p.aggregates, p.aggregates_total));
}

fn invalid(message: String) -> anyhow::Error {
    anyhow::Error::new(Failure { category: Category::InvalidArgument, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_template_parses() {
        assert!(indicatif::ProgressStyle::with_template(PROGRESS).is_ok());
    }
}
