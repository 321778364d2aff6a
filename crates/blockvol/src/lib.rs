//! Block volumes: the states of a vdisk recorded as snapshots of a `block` volume set, and
//! vdisks made from such snapshots.
//!
//! A vdisk's log already holds every write, in order, so a snapshot copies nothing of the
//! image: it is a point of the disk's lineage (its origins' logs, then its own, up to a
//! sequence). Its blob is what changed between its parent's point and its own, read from
//! the log ([`strata_tlog::player::visit`]) into a [`BlockDiff`]: the extents last written
//! or zeroed, content-addressed and compressed. A root snapshot's blob applies onto an
//! empty disk and holds only the allocated extents. A vdisk made from a snapshot
//! (`strata vdisk create --from`) is the snapshot's chain of blobs materialized root first
//! into a new image; its record keeps that chain as its base (so a restore or a rebuild
//! needs no hub), and the snapshot as the parent of its own next one.
//!
//! Which snapshot is the parent: the disk's record tracks its last snapshot and the point
//! it was taken at (`Tracked`). When that point is still in the disk's lineage (the disk was
//! not restored to before it), the new blob holds the blocks after it; otherwise the parent
//! is the snapshot the disk was made from (the blob holds the whole lineage), or, for a
//! disk made empty, none (a new root). Either way the blob applied onto its parent gives
//! exactly the disk at the new point. Whether the snapshot extends a branch or forks one is
//! the hub's rule for every volume (`Workspace::record_snapshot`).
//!
//! Format and design: `docs/design/block-volumes.md`.

mod error;

use strata_hub::{Branch, NewSnapshot, Query, Snapshot, Take, VolumeKind, VolumeSet, Workspace};
use strata_nbd::record::{Base, Origin, Tracked};
use strata_nbd::{Records, Vdisk};
use strata_tlog::aggregate::Key;
use strata_tlog::message::operation;
use strata_tlog::player::{self, Bounds, Progress};
use strata_tlog::storage::Storage;
use strata_volume::{BlobId, BlockBlob, BlockDiff, block_header, materialize_disk};

pub use crate::error::{Error, Result};

/// The log a vdisk's snapshots are read from: its storage and the key that opens it.
#[derive(Debug, Clone, Copy)]
pub struct Log<'a> {
    /// Where the aggregates are.
    pub storage: &'a dyn Storage,
    /// The key of an encrypted log.
    pub key: Option<&'a Key>,
}

/// What to call a vdisk's snapshot, and where to record it.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSpec {
    /// The volume set (name or id). Default: the set of the disk's last snapshot or of the
    /// snapshot it was made from, else a block set named after the disk (made when missing).
    pub volset: Option<String>,
    /// Name, description, branch, and whether to record a snapshot when nothing changed.
    pub take: Take,
}

/// What `snapshot` did.
#[derive(Debug, Clone)]
pub enum Snapshotted {
    /// Nothing changed since the disk's last snapshot, and none was recorded.
    Unchanged {
        /// The last snapshot.
        base: String,
    },
    /// A snapshot was recorded.
    Recorded(Box<Recorded>),
}

/// A snapshot recorded of a vdisk.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its volume set.
    pub volset: VolumeSet,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The branch it is the tip of.
    pub branch: Branch,
    /// Its blob.
    pub blob: BlockBlob,
    /// Log blocks read to make the blob.
    pub blocks: u64,
    /// The point of the disk's lineage it holds.
    pub point: Tracked,
}

/// Records a snapshot of vdisk `name` as it is in its log now: the blocks after its last
/// snapshot's point (see the module documentation) up to the last sequence stored in its
/// log. The caller makes the point consistent first: a disk being served is flushed (every
/// write completed before is then in the log), a disk not served must have closed cleanly.
/// `progress` is called after each aggregate read.
pub fn snapshot(
    ws: &Workspace,
    records: &Records,
    log: Log<'_>,
    name: &str,
    spec: &SnapshotSpec,
    mut progress: impl FnMut(Progress),
) -> Result<Snapshotted> {
    let disk = records.get(name)?;
    if disk.session_open {
        tracing::debug!(vdisk = %disk.name, "served (or not closed cleanly): the point is the log's head");
    }
    let head = log.storage.head(&disk.tlog_id)?.map_or(0, |h| h.header.last_sequence);
    let volset = volset_for(ws, &disk, spec.volset.as_deref())?;
    let mut logs = disk.origin.clone();
    logs.push(Origin { tlog_id: disk.tlog_id.clone(), to_seq: Some(head), to_time: None });
    let start = start_point(ws, &disk, &volset, &logs)?;
    let point = |snapshot: &str| Tracked {
        volset_id: volset.id.clone(),
        snapshot_id: snapshot.to_string(),
        tlog_id: disk.tlog_id.clone(),
        seq: head,
    };
    // Nothing in the log after the parent's point: no need to read it.
    let nothing_new = start.log + 1 == logs.len() && start.from_seq > head;
    if let (Some(parent), true, false) = (&start.parent, nothing_new, spec.take.allow_empty) {
        return Ok(Snapshotted::Unchanged { base: parent.id.clone() });
    }
    let blobs = &ws.local().blobs;
    let mut diff = BlockDiff::new(blobs, disk.size, start.parent.is_none())?;
    let mut blocks = 0u64;
    for (n, origin) in logs.iter().enumerate().skip(start.log) {
        let from_seq = (n == start.log && start.from_seq > 0).then_some(start.from_seq);
        let bounds = Bounds {
            from_seq,
            to_seq: origin.to_seq,
            to_time: origin.to_time,
            ..Bounds::default()
        };
        let mut failed = None;
        let visited =
            player::visit(log.storage, &origin.tlog_id, log.key, bounds, &mut progress, |b| {
                let added = match b.operation {
                    operation::WRITE => diff.write(b.offset, &b.data),
                    operation::DISCARD => diff.zero(b.offset, b.size),
                    other => {
                        return Err(strata_tlog::Error::Corrupted(format!(
                            "block {} has unknown operation {other}",
                            b.sequence
                        )));
                    }
                };
                blocks += 1;
                added.map_err(|err| {
                    let message = err.to_string();
                    failed = Some(err);
                    strata_tlog::Error::InvalidArgument(message)
                })
            });
        if let Some(err) = failed {
            return Err(err.into());
        }
        visited?;
    }
    let blob = diff.finish()?;
    if let (Some(parent), 0, false) = (&start.parent, blocks, spec.take.allow_empty) {
        // The empty blob stays in the store, unreferenced, as for filesystem volumes.
        return Ok(Snapshotted::Unchanged { base: parent.id.clone() });
    }
    let new = NewSnapshot {
        name: spec.take.name.clone(),
        description: spec.take.description.clone(),
        size: blob.stored,
        blob_id: Some(blob.id.to_string()),
        creator: ws.user().to_string(),
        ..NewSnapshot::default()
    };
    let (branch, snapshot) =
        ws.record_snapshot(&volset.id, start.parent.as_ref(), &new, &spec.take, &disk.name)?;
    let point = point(&snapshot.id);
    records.set_tracked(&disk.name, &disk.tlog_id, point.clone())?;
    tracing::info!(
        vdisk = %disk.name,
        snapshot = %snapshot.id,
        parent = ?start.parent.as_ref().map(|p| &p.id),
        blocks,
        blob = %blob.id,
        "vdisk snapshot recorded"
    );
    Ok(Snapshotted::Recorded(Box::new(Recorded { volset, snapshot, branch, blob, blocks, point })))
}

/// Makes vdisk `name` from block snapshot `from` (name or id; in `volset` when given,
/// else in the one block set that has a snapshot of that name): its chain of blobs, all of
/// which must be in this data directory (`strata pull` fetches them), materialized root
/// first into a new image. The disk's record keeps the chain as its base and tracks the
/// snapshot as the parent of its next one. `progress(done, total)` counts blob bytes.
pub fn create_vdisk(
    ws: &Workspace,
    records: &Records,
    from: &str,
    volset: Option<&str>,
    name: &str,
    block_size: u32,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vdisk> {
    let (volset, snap) = find_snapshot(ws, volset, from)?;
    let blobs = &ws.local().blobs;
    let mut chain = Vec::new();
    for s in ws.hub().chain(&snap.id)? {
        let Some(blob) = &s.blob_id else {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {} has no blob here; `strata pull {}` fetches it",
                s.id, volset.name
            )));
        };
        let id: BlobId = blob.parse().map_err(|e| {
            Error::InvalidArgument(format!("snapshot {}: bad blob id {blob:?}: {e}", s.id))
        })?;
        if !blobs.has(&id) {
            return Err(Error::FailedPrecondition(format!(
                "blob {id} of snapshot {} is not here; `strata pull {}` fetches it",
                s.id, volset.name
            )));
        }
        chain.push(id);
    }
    let last = chain.last().ok_or_else(|| {
        Error::FailedPrecondition(format!("snapshot {} has no chain of blobs", snap.id))
    })?;
    let size = block_header(blobs, last)?.size;
    let blobs_dir =
        std::fs::canonicalize(blobs.dir()).unwrap_or_else(|_| blobs.dir().to_path_buf());
    let base = Base {
        volset_id: volset.id.clone(),
        snapshot_id: snap.id.clone(),
        blobs_dir,
        chain: chain.iter().map(ToString::to_string).collect(),
    };
    let vdisk = records.create_from(name, size, block_size, Some(base), |image| {
        materialize_disk(blobs, &chain, image, &mut progress)?;
        Ok(())
    })?;
    Ok(vdisk)
}

/// The block snapshot `snapshot` (name or id): in `volset` (name or id) when given, else
/// by id, else the one snapshot of that name among the block volume sets.
pub fn find_snapshot(
    ws: &Workspace,
    volset: Option<&str>,
    snapshot: &str,
) -> Result<(VolumeSet, Snapshot)> {
    let hub = ws.hub();
    if let Some(volset) = volset {
        let vs = ws.volset_of(volset, VolumeKind::Block)?;
        let snap = hub.find_snapshot(&vs.id, snapshot)?;
        return Ok((vs, snap));
    }
    if let Ok(snap) = hub.snapshot(snapshot) {
        let vs = hub.volset(&snap.volset_id)?;
        if vs.kind != VolumeKind::Block {
            return Err(Error::InvalidArgument(format!(
                "snapshot {snapshot} is of the filesystem volume set {:?}; \
                 `strata volume create --from` makes a volume of it",
                vs.name
            )));
        }
        return Ok((vs, snap));
    }
    let mut found = Vec::new();
    for vs in hub.volsets(&Query::default())? {
        if vs.kind != VolumeKind::Block {
            continue;
        }
        let named = Query { name: Some(snapshot.to_string()), ..Query::default() };
        for snap in hub.snapshots(&vs.id, &named)? {
            found.push((vs.clone(), snap));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::NotFound(format!(
            "no block snapshot named or with id {snapshot:?} here (`strata volume snapshots \
             VOLSET` lists a set's; `strata pull VOLSET` fetches a hub's)"
        ))),
        _ => {
            let sets: Vec<String> =
                found.iter().map(|(vs, s)| format!("{}/{}", vs.name, s.id)).collect();
            Err(Error::InvalidArgument(format!(
                "{} block snapshots are named {snapshot:?} ({}); give --volumeset or the \
                 snapshot's id",
                found.len(),
                sets.join(", ")
            )))
        }
    }
}

/// The volume set a snapshot of `disk` goes to. A disk's snapshots stay in one set: the
/// set of its last snapshot or of the snapshot it was made from, while that set exists.
/// Otherwise `named`, else a block set named after the disk; either is made when missing.
fn volset_for(ws: &Workspace, disk: &Vdisk, named: Option<&str>) -> Result<VolumeSet> {
    let hub = ws.hub();
    let owned = (disk.tracked.as_ref().map(|t| &t.volset_id))
        .or(disk.base.as_ref().map(|b| &b.volset_id))
        .and_then(|id| hub.volset(id).ok());
    match (owned, named) {
        (Some(owned), None) => Ok(owned),
        (Some(owned), Some(named)) => {
            let vs = ws.volset_of(named, VolumeKind::Block)?;
            if vs.id == owned.id {
                Ok(vs)
            } else {
                Err(Error::InvalidArgument(format!(
                    "vdisk {:?}'s snapshots are in volume set {:?}: a disk's snapshots stay in \
                     the set it was made from or first snapshotted into (`strata vdisk create \
                     --from` makes a disk of another set's snapshot)",
                    disk.name, owned.name
                )))
            }
        }
        (None, named) => {
            let name = named.unwrap_or(&disk.name);
            match ws.volset_of(name, VolumeKind::Block) {
                Ok(vs) => Ok(vs),
                Err(strata_hub::Error::NotFound(_)) => Ok(ws.hub().create_volset_of(
                    VolumeKind::Block,
                    name,
                    &format!("snapshots of vdisk {}", disk.name),
                    ws.user(),
                )?),
                Err(err) => Err(err.into()),
            }
        }
    }
}

/// Where a new snapshot's blob starts: its parent, and the first block of the lineage it
/// holds (log `log` of the lineage, from sequence `from_seq`; 0: the whole log).
struct Start {
    parent: Option<Snapshot>,
    log: usize,
    from_seq: u64,
}

/// The tracked snapshot's point when it is still in `logs` (the disk was not restored to
/// before it); else the start of the lineage, on the snapshot the disk was made from or
/// (a disk made empty) on nothing.
fn start_point(ws: &Workspace, disk: &Vdisk, volset: &VolumeSet, logs: &[Origin]) -> Result<Start> {
    let hub = ws.hub();
    if let Some(t) = disk.tracked.as_ref().filter(|t| t.volset_id == volset.id) {
        let at =
            logs.iter().position(|o| o.tlog_id == t.tlog_id && o.to_seq.is_none_or(|b| b >= t.seq));
        match (at, hub.snapshot(&t.snapshot_id)) {
            (Some(log), Ok(parent)) => {
                return Ok(Start { parent: Some(parent), log, from_seq: t.seq + 1 });
            }
            (None, _) => tracing::info!(
                vdisk = %disk.name,
                snapshot = %t.snapshot_id,
                "the disk was restored to before its last snapshot: this one is taken on the \
                 snapshot it was made from"
            ),
            (_, Err(err)) => tracing::warn!(
                vdisk = %disk.name,
                snapshot = %t.snapshot_id,
                error = %err,
                "the disk's last snapshot is gone: this one is taken on the snapshot it was made from"
            ),
        }
    }
    let Some(base) = &disk.base else {
        return Ok(Start { parent: None, log: 0, from_seq: 0 });
    };
    let parent = hub.snapshot(&base.snapshot_id).map_err(|err| {
        Error::FailedPrecondition(format!(
            "vdisk {:?} was made from snapshot {}, which is not in this store any more ({err}); \
             its snapshots need it as their parent: `strata pull` its volume set again",
            disk.name, base.snapshot_id
        ))
    })?;
    if parent.volset_id != volset.id {
        return Err(Error::InvalidArgument(format!(
            "vdisk {:?} was made from a snapshot of another volume set; its snapshots go there",
            disk.name
        )));
    }
    Ok(Start { parent: Some(parent), log: 0, from_seq: 0 })
}
