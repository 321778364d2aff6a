//! Restore: rebuild a vdisk from its log, as of a sequence or a time.
//!
//! A restore always makes a new image and gives the result a fresh tlog id, so later writes
//! to it never mix with the log it came from. Its record's `origin` lists what to replay
//! before its own log: the source's origins, then the source's log, each with the bound it
//! was replayed to (pinned to the last sequence actually applied), so restoring a restored
//! disk again replays its whole history. A time bound applies to every log of the lineage
//! (blocks are stamped with the time they were written); a sequence bound to the source's
//! own log only. The restore reads the log's storage directly; no server needs to run.

use strata_tlog::aggregate::Key;
use strata_tlog::player::{self, Bounds, Progress};
use strata_tlog::storage::Storage;

use std::path::Path;

use strata_volume::{BlobId, BlobStore};

use crate::record::{Base, Origin, Records, Vdisk, check_name, now_nanos, tlog_id_for};
use crate::{Error, Result};

/// How far back a restore goes; both `None`: everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    /// The last sequence of the source's own log to apply.
    pub to_seq: Option<u64>,
    /// The last write time to apply (Unix nanoseconds).
    pub to_time: Option<u64>,
    /// Replay across gaps and overlaps in the sequences that a log does not record as a
    /// reset (see `strata_tlog::player::Bounds::allow_gaps`); otherwise they are an error.
    pub allow_gaps: bool,
}

/// Where a restore is, for a progress bar: the log being replayed (`log` of `logs`) and
/// the player's progress in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The log being replayed, from 0.
    pub log: usize,
    /// Logs to replay.
    pub logs: usize,
    /// The player's progress in this log.
    pub progress: Progress,
}

/// Rebuilds vdisk `name` from the logs in `storage` up to `bound`: into a new vdisk named
/// `as_new`, or (without it) in place of `name`, whose old image is then removed. Returns
/// the resulting record. The disk must not be served meanwhile.
pub fn restore(
    records: &Records,
    storage: &dyn Storage,
    key: Option<&Key>,
    name: &str,
    bound: Bound,
    as_new: Option<&str>,
    mut progress: impl FnMut(Step),
) -> Result<Vdisk> {
    let source = records.get(name)?;
    let target = as_new.unwrap_or(name);
    check_name(target)?;
    if as_new.is_some() && records.get(target).is_ok() {
        return Err(Error::AlreadyExists(target.to_string()));
    }
    let mut logs: Vec<Origin> = source
        .origin
        .iter()
        .map(|o| Origin {
            tlog_id: o.tlog_id.clone(),
            to_seq: o.to_seq,
            to_time: min_some(o.to_time, bound.to_time),
        })
        .collect();
    logs.push(Origin {
        tlog_id: source.tlog_id.clone(),
        to_seq: bound.to_seq,
        to_time: bound.to_time,
    });
    let created = now_nanos();
    let tlog_id = tlog_id_for(target, created);
    let image = records.new_image(&tlog_id, source.size)?;
    let built = (|| {
        let lineage = Lineage { size: source.size, allow_gaps: bound.allow_gaps };
        materialize_base(source.base.as_ref(), &image)?;
        replay_lineage(storage, key, &mut logs, &image, lineage, &mut progress)?;
        let vdisk = Vdisk {
            name: target.to_string(),
            size: source.size,
            block_size: source.block_size,
            created,
            image: image.clone(),
            tlog_id,
            next_sequence: 1,
            origin: logs.clone(),
            session_open: false,
            // The same base, and the same last snapshot: whether its point is still in the
            // new lineage (restored to after it) is decided when the next one is taken.
            base: source.base.clone(),
            tracked: source.tracked.clone(),
        };
        match as_new {
            Some(_) => records.insert(&vdisk)?,
            None => {
                records.replace(&vdisk, &source.tlog_id)?;
                if let Err(err) = std::fs::remove_file(&source.image) {
                    tracing::warn!(image = %source.image.display(), error = %err, "could not remove the old image");
                }
            }
        }
        Ok(vdisk)
    })();
    if built.is_err() {
        let _ = std::fs::remove_file(&image);
    }
    built
}

/// Rebuilds the image of `vdisk` in place from its logs: its origins up to their bounds,
/// then its own log, all of it. For a disk whose last serving session did not close
/// cleanly, whose image may hold writes the log never got: afterwards image and log agree
/// again, holding every write that was durable (acknowledged by FLUSH or FUA) and maybe
/// some later ones. The new image is built beside the old one and renamed over it.
pub fn rebuild_image(storage: &dyn Storage, key: Option<&Key>, vdisk: &Vdisk) -> Result<()> {
    let mut logs: Vec<Origin> = vdisk.origin.clone();
    logs.push(Origin { tlog_id: vdisk.tlog_id.clone(), to_seq: None, to_time: None });
    let mut temp = vdisk.image.clone().into_os_string();
    temp.push(".rebuild");
    let temp = std::path::PathBuf::from(temp);
    let _ = std::fs::remove_file(&temp);
    let lineage = Lineage { size: vdisk.size, allow_gaps: false };
    let built = materialize_base(vdisk.base.as_ref(), &temp)
        .and_then(|()| replay_lineage(storage, key, &mut logs, &temp, lineage, &mut |_| {}))
        .and_then(|()| {
            std::fs::rename(&temp, &vdisk.image)
                .map_err(Error::io(format!("replace image {}", vdisk.image.display())))?;
            let dir = vdisk.image.parent().unwrap_or(std::path::Path::new("."));
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Error::io(format!("sync {}", dir.display())))
        });
    if built.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    built
}

/// Writes the image of the snapshot a disk was made from into `image` (a new file), or
/// nothing for a disk made empty.
fn materialize_base(base: Option<&Base>, image: &Path) -> Result<()> {
    let Some(base) = base else { return Ok(()) };
    let blobs = BlobStore::open(&base.blobs_dir)?;
    let chain = (base.chain.iter())
        .map(|id| {
            id.parse::<BlobId>().map_err(|e| {
                Error::InvalidArgument(format!(
                    "base snapshot {}: blob {id:?}: {e}",
                    base.snapshot_id
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    strata_volume::materialize_disk(&blobs, &chain, image, |_, _| {})?;
    Ok(())
}

/// How a lineage is replayed: the image's size, and whether gaps in a log are allowed.
#[derive(Debug, Clone, Copy)]
struct Lineage {
    size: u64,
    allow_gaps: bool,
}

/// Replays `logs` in order into `image` (created if missing), pins each one's sequence
/// bound to what was applied, and sizes and syncs the image.
fn replay_lineage(
    storage: &dyn Storage,
    key: Option<&Key>,
    logs: &mut [Origin],
    image: &std::path::Path,
    lineage: Lineage,
    progress: &mut dyn FnMut(Step),
) -> Result<()> {
    let Lineage { size, allow_gaps } = lineage;
    let count = logs.len();
    for (i, log) in logs.iter_mut().enumerate() {
        let bounds =
            Bounds { to_seq: log.to_seq, to_time: log.to_time, allow_gaps, ..Bounds::default() };
        let done = player::replay(storage, &log.tlog_id, key, bounds, image, |p| {
            progress(Step { log: i, logs: count, progress: p })
        })?;
        // Pin the bound to what was applied: the log may still grow.
        log.to_seq = Some(done.last_sequence.unwrap_or(0));
        tracing::info!(log = %log.tlog_id, blocks = done.blocks, last = ?done.last_sequence, "replayed");
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(image)
        .map_err(Error::io(format!("open image {}", image.display())))?;
    file.set_len(size).map_err(Error::io(format!("size image {}", image.display())))?;
    file.sync_all().map_err(Error::io(format!("sync image {}", image.display())))
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
