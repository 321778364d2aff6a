//! Snapshots: lookups, ancestry, the write of a record with its revision and log entry,
//! the change log read, import, metadata and delete.

use std::collections::BTreeSet;

use strata_kv::{Read, WriteTxn, prefix_end};

use super::{
    Changes, Hub, NewSnapshot, Query, RawChanges, SortBy, decode, encode, page, parse_revision,
    text,
};
use crate::model::{Branch, Snapshot, SnapshotMeta, VolumeSet, new_id, now, validate_id};
use crate::{Error, Result};

impl Hub {
    /// The snapshot `id`.
    pub fn snapshot(&self, id: &str) -> Result<Snapshot> {
        self.snapshot_in(&mut self.read()?, id)?
            .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))
    }

    pub(super) fn snapshot_in(&self, txn: &mut impl Read, id: &str) -> Result<Option<Snapshot>> {
        let Some(vsid) = txn.get(&self.key(&["snap", id]))? else { return Ok(None) };
        self.get_json(txn, &["s", &text(vsid), id])
    }

    /// The snapshot of `vsid` whose id or name is `name_or_id` (the newest of that name).
    pub fn find_snapshot(&self, vsid: &str, name_or_id: &str) -> Result<Snapshot> {
        let all = self.snapshots(vsid, &Query::default())?;
        all.into_iter()
            .filter(|s| s.id == name_or_id || s.name == name_or_id)
            .max_by_key(|s| (s.id == name_or_id, s.created_at))
            .ok_or_else(|| {
                Error::NotFound(format!("no snapshot named {name_or_id:?} in the volume set"))
            })
    }

    /// The snapshots of `vsid`, filtered, sorted and paged by `query`.
    pub fn snapshots(&self, vsid: &str, query: &Query) -> Result<Vec<Snapshot>> {
        let mut txn = self.read()?;
        let mut all: Vec<Snapshot> = self.list_json(&mut txn, &["s", vsid, ""])?;
        if let Some(branch) = &query.branch {
            let branch = self.find_branch_in(&mut txn, vsid, branch)?;
            let on: BTreeSet<String> = self.chain(&branch.tip)?.into_iter().map(|s| s.id).collect();
            all.retain(|s| on.contains(&s.id));
        }
        if let Some(name) = &query.name {
            all.retain(|s| &s.name == name);
        }
        all.sort_by(|a, b| {
            match query.sort {
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::Size => a.size.cmp(&b.size),
                SortBy::Depth => a.depth.cmp(&b.depth),
                SortBy::Created => a.created_at.cmp(&b.created_at),
            }
            .then_with(|| a.depth.cmp(&b.depth))
            .then_with(|| a.id.cmp(&b.id))
        });
        Ok(page(all, query))
    }

    /// The snapshots among `ids` that this store has, read at one point in time.
    pub fn snapshots_by_id(&self, ids: &[&str]) -> Result<Vec<Snapshot>> {
        let mut txn = self.read()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(snap) = self.snapshot_in(&mut txn, id)? {
                out.push(snap);
            }
        }
        Ok(out)
    }

    /// The snapshots from the root to `id`, root first.
    pub fn chain(&self, id: &str) -> Result<Vec<Snapshot>> {
        let mut txn = self.read()?;
        let mut chain = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(id) = next {
            let snap = self
                .snapshot_in(&mut txn, &id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            next = snap.parent_id.clone();
            chain.push(snap);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The snapshots of branch `branch` (name or id) from its tip to its root.
    pub fn snapshots_by_branch(&self, vsid: &str, branch: &str) -> Result<Vec<Snapshot>> {
        let branch = self.find_branch_in(&mut self.read()?, vsid, branch)?;
        let mut chain = self.chain(&branch.tip)?;
        chain.reverse();
        Ok(chain)
    }

    /// True when `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        let mut txn = self.read()?;
        let Some(top) = self.snapshot_in(&mut txn, ancestor)? else { return Ok(false) };
        let mut next = Some(descendant.to_string());
        while let Some(id) = next {
            if id == ancestor {
                return Ok(true);
            }
            let Some(snap) = self.snapshot_in(&mut txn, &id)? else { return Ok(false) };
            if snap.depth <= top.depth {
                return Ok(false);
            }
            next = snap.parent_id;
        }
        Ok(false)
    }

    pub(super) fn make_snapshot(
        &self,
        txn: &mut WriteTxn,
        vsid: &str,
        parent: Option<&Snapshot>,
        spec: &NewSnapshot,
    ) -> Result<Snapshot> {
        let volset: VolumeSet = self
            .get_json(txn, &["vs", vsid])?
            .ok_or_else(|| Error::NotFound(format!("no volume set with id {vsid}")))?;
        let id = spec.id.clone().unwrap_or_else(new_id);
        validate_id("snapshot", &id)?;
        if txn.contains(&self.key(&["snap", &id]))? {
            return Err(Error::AlreadyExists(format!("snapshot {id} exists already")));
        }
        let at = now();
        let snap = Snapshot {
            id,
            parent_id: parent.map(|p| p.id.clone()),
            volset_id: vsid.into(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            attrs: spec.attrs.clone(),
            size: spec.size,
            creator: spec.creator.clone(),
            owner: volset.owner.clone(),
            created_at: at,
            updated_at: at,
            blob_id: spec.blob_id.clone(),
            prev_blob_id: parent.and_then(|p| p.blob_id.clone()),
            depth: parent.map_or(1, |p| p.depth + 1),
        };
        self.write_new_snapshot(txn, &snap)?;
        Ok(snap)
    }

    fn write_new_snapshot(&self, txn: &mut WriteTxn, snap: &Snapshot) -> Result<()> {
        txn.put(&self.key(&["snap", &snap.id]), snap.volset_id.as_bytes());
        self.put_snapshot(txn, snap)?;
        if let Some(parent) = &snap.parent_id {
            txn.put(&self.key(&["child", parent, &snap.id]), b"");
        }
        if let Some(blob) = &snap.blob_id {
            txn.put(&self.key(&["vsblob", &snap.volset_id, blob]), b"");
        }
        Ok(())
    }

    /// Writes a snapshot's record and logs the change.
    pub(super) fn put_snapshot(&self, txn: &mut WriteTxn, snap: &Snapshot) -> Result<()> {
        txn.put(&self.key(&["s", &snap.volset_id, &snap.id]), &encode(snap));
        self.log_snapshot(txn, &snap.volset_id, &snap.id)
    }

    /// Bumps `vsid`'s snapshot revision and logs that snapshot `id` changed at it.
    fn log_snapshot(&self, txn: &mut WriteTxn, vsid: &str, id: &str) -> Result<()> {
        let key = self.key(&["srev", vsid]);
        let current = txn.get(&key)?.map(text);
        let (epoch, n) = match current.as_deref().and_then(parse_revision) {
            Some((epoch, n)) => (epoch.to_string(), n + 1),
            None => (new_id(), 1),
        };
        txn.put(&key, format!("{epoch}:{n}").as_bytes());
        txn.put(&self.key(&["slog", vsid, &format!("{n:016x}")]), id.as_bytes());
        Ok(())
    }

    /// `vsid`'s snapshot revision now (`None` while no snapshot of it was ever written).
    pub fn revision(&self, vsid: &str) -> Result<Option<String>> {
        Ok(self.read()?.get(&self.key(&["srev", vsid]))?.map(text))
    }

    /// The snapshots of `vsid` created, changed or deleted after revision `since`, read in
    /// `txn`; `None` when `since` is not a revision of this store's (another epoch, ahead of
    /// it, malformed): then only a full read will do.
    pub(super) fn changes_in(
        &self,
        txn: &mut impl Read,
        vsid: &str,
        since: &str,
    ) -> Result<Option<RawChanges>> {
        let Some(revision) = txn.get(&self.key(&["srev", vsid]))?.map(text) else {
            return Ok(None);
        };
        let (Some((epoch, now)), Some((their_epoch, from))) =
            (parse_revision(&revision), parse_revision(since))
        else {
            return Ok(None);
        };
        if epoch != their_epoch || from > now {
            return Ok(None);
        }
        let start = self.key(&["slog", vsid, &format!("{:016x}", from + 1)]);
        let end = prefix_end(&self.key(&["slog", vsid, ""]))
            .ok_or_else(|| Error::Corrupted("the change log's key has no end".into()))?;
        let mut seen = std::collections::HashSet::new();
        let mut out = RawChanges { revision: revision.clone(), ..RawChanges::default() };
        for (_, id) in txn.range(&start, &end)? {
            let id = text(id);
            if !seen.insert(id.clone()) {
                continue;
            }
            match txn.get(&self.key(&["s", vsid, &id]))? {
                Some(record) => out.changed.push(record),
                None => out.deleted.push(id),
            }
        }
        Ok(Some(out))
    }

    /// The snapshots of `vsid` created, changed or deleted after revision `since`; `None`
    /// when `since` is not a revision of this store's (another epoch, ahead, malformed).
    pub fn changes(&self, vsid: &str, since: &str) -> Result<Option<Changes>> {
        let Some(raw) = self.changes_in(&mut self.read()?, vsid, since)? else {
            return Ok(None);
        };
        let changed = raw.changed.iter().map(|r| decode("snapshot", r)).collect::<Result<_>>()?;
        Ok(Some(Changes { revision: raw.revision, changed, deleted: raw.deleted }))
    }

    /// Imports snapshots made elsewhere, oldest first, keeping their ids. Idempotent: a
    /// snapshot already here is left as it is (its blob may be set by the compare-and-swap
    /// rule). `creator`, when given, overrides the records' creator (a hub takes it from the
    /// token). Returns how many were new.
    pub fn import_snapshots(
        &self,
        vsid: &str,
        snaps: &[Snapshot],
        creator: Option<&str>,
    ) -> Result<usize> {
        let mut added = 0;
        for chunk in snaps.chunks(self.chunk()) {
            added += self.store.with_txn(|txn| {
                let volset: VolumeSet = self
                    .get_json(txn, &["vs", vsid])?
                    .ok_or_else(|| Error::NotFound(format!("no volume set with id {vsid}")))?;
                let mut added = 0;
                let mut made: Vec<Snapshot> = Vec::new();
                for offered in chunk {
                    validate_id("snapshot", &offered.id)?;
                    if offered.volset_id != vsid {
                        return Err(Error::InvalidArgument(format!(
                            "snapshot {} belongs to volume set {}, not {vsid}",
                            offered.id, offered.volset_id
                        )));
                    }
                    if let Some(have) = self.snapshot_in(txn, &offered.id)? {
                        if have.volset_id != vsid {
                            // Never touch, nor describe, a snapshot of another set.
                            return Err(Error::AlreadyExists(format!(
                                "snapshot id {} is taken; snapshots get new ids",
                                offered.id
                            )));
                        }
                        if have.parent_id != offered.parent_id {
                            return Err(Error::AlreadyExists(format!(
                                "snapshot {} exists already with another parent",
                                offered.id
                            )));
                        }
                        if let Some(blob) = &offered.blob_id {
                            // The offered blob may only replace "none" (compare and swap).
                            self.set_blob_in(txn, have, None, blob)?;
                        }
                        continue;
                    }
                    let parent = match &offered.parent_id {
                        None => None,
                        Some(pid) => match made.iter().find(|s| &s.id == pid) {
                            Some(p) => Some(p.clone()),
                            // A parent in another set is as missing as one nowhere.
                            None => Some(
                                self.snapshot_in(txn, pid)?
                                    .filter(|p| p.volset_id == vsid)
                                    .ok_or_else(|| {
                                        Error::FailedPrecondition(format!(
                                            "snapshot {}'s parent {pid} is missing; import \
                                             parents first",
                                            offered.id
                                        ))
                                    })?,
                            ),
                        },
                    };
                    let mut snap = offered.clone();
                    snap.depth = parent.as_ref().map_or(1, |p| p.depth + 1);
                    snap.owner = volset.owner.clone();
                    if let Some(creator) = creator {
                        snap.creator = creator.into();
                    }
                    self.write_new_snapshot(txn, &snap)?;
                    made.push(snap);
                    added += 1;
                }
                Ok::<_, Error>(added)
            })?;
        }
        Ok(added)
    }

    /// Replaces a snapshot's metadata.
    pub fn update_snapshot_meta(&self, id: &str, meta: &SnapshotMeta) -> Result<Snapshot> {
        self.store.with_txn(|txn| {
            let mut snap = self
                .snapshot_in(txn, id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            snap.set_meta(meta);
            self.put_snapshot(txn, &snap)?;
            Ok(snap)
        })
    }

    /// Deletes a snapshot with no children. When it was a branch's tip, the branch moves
    /// to its parent, or is deleted with its root.
    pub fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.store.with_txn(|txn| {
            let snap = self
                .snapshot_in(txn, id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            if !txn
                .scan(
                    std::ops::Bound::Included(&self.key(&["child", id, ""])),
                    strata_kv::prefix_end(&self.key(&["child", id, ""]))
                        .as_deref()
                        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                    1,
                )?
                .is_empty()
            {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {id} has children; delete them first"
                )));
            }
            let vsid = snap.volset_id.clone();
            if let Some(branch_id) = txn.get(&self.key(&["tip", &vsid, id]))? {
                let old: Branch =
                    self.get_json(txn, &["br", &vsid, &text(branch_id)])?.ok_or_else(|| {
                        Error::Corrupted(format!("tip index of {id} names a missing branch"))
                    })?;
                txn.delete(&self.key(&["tip", &vsid, id]));
                match &snap.parent_id {
                    Some(parent) if !txn.contains(&self.key(&["tip", &vsid, parent]))? => {
                        let mut branch = old.clone();
                        branch.tip = parent.clone();
                        self.write_branch(txn, Some(&old), &branch);
                    }
                    _ => {
                        txn.delete(&self.key(&["br", &vsid, &old.id]));
                        if !old.name.is_empty() {
                            txn.delete(&self.key(&["brname", &vsid, &old.name]));
                        }
                    }
                }
            }
            if let Some(parent) = &snap.parent_id {
                txn.delete(&self.key(&["child", parent, id]));
            }
            txn.delete(&self.key(&["snap", id]));
            txn.delete(&self.key(&["s", &vsid, id]));
            self.log_snapshot(txn, &vsid, id)
        })
    }
}
