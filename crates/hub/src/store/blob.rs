//! Blobs: a snapshot's blob (compare and swap), which sets and users may refer to a blob,
//! FindNonMissingSnapshot and RequestBlobDiff.

use strata_kv::{Read, WriteTxn};

use super::Hub;
use crate::model::Snapshot;
use crate::{Error, Result};

impl Hub {
    /// Sets snapshot `id`'s blob to `blob` if it is `expected` now (compare and swap);
    /// setting the blob it has is a no-op; any other blob is "already have blob".
    pub fn set_blob(&self, id: &str, expected: Option<&str>, blob: &str) -> Result<Snapshot> {
        self.store.with_txn(|txn| {
            let snap = self
                .snapshot_in(txn, id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            self.set_blob_in(txn, snap, expected, blob)
        })
    }

    pub(super) fn set_blob_in(
        &self,
        txn: &mut WriteTxn,
        mut snap: Snapshot,
        expected: Option<&str>,
        blob: &str,
    ) -> Result<Snapshot> {
        if snap.blob_id.as_deref() == Some(blob) {
            return Ok(snap);
        }
        if snap.blob_id.as_deref() != expected {
            return Err(Error::AlreadyHaveBlob {
                snapshot: snap.id.clone(),
                have: snap.blob_id.clone().unwrap_or_else(|| "none".into()),
                offered: blob.into(),
            });
        }
        snap.blob_id = Some(blob.into());
        self.put_snapshot(txn, &snap)?;
        txn.put(&self.key(&["vsblob", &snap.volset_id, blob]), b"");
        Ok(snap)
    }

    /// True when some snapshot of `vsid` refers to `blob`.
    pub fn volset_has_blob(&self, vsid: &str, blob: &str) -> Result<bool> {
        Ok(self.read()?.contains(&self.key(&["vsblob", vsid, blob]))?)
    }

    /// Records that `user` sent the bytes of `blob` (they hashed to its id), which lets the
    /// user's snapshots refer to it.
    pub fn claim_blob(&self, blob: &str, user: &str) -> Result<()> {
        self.store.with_txn(|txn| {
            txn.put(&self.key(&["blobclaim", blob, user]), b"");
            Ok(())
        })
    }

    /// True when `user` sent the bytes of `blob` at some time.
    pub fn has_blob_claim(&self, blob: &str, user: &str) -> Result<bool> {
        Ok(self.read()?.contains(&self.key(&["blobclaim", blob, user]))?)
    }

    /// FindNonMissingSnapshot: the base to upload `target` against, both in volume set
    /// `vsid`. NotFound when the target is missing from `vsid`, "already have blob" when it
    /// has one, else the newest of `candidates` (oldest first) of `vsid` that has a blob
    /// here, with that blob; `None` to start from empty. Snapshots of other sets are never
    /// looked at.
    pub fn find_non_missing_snapshot(
        &self,
        vsid: &str,
        target: &str,
        candidates: &[String],
    ) -> Result<Option<(String, String)>> {
        let mut txn = self.read()?;
        let target = self
            .snapshot_in(&mut txn, target)?
            .filter(|s| s.volset_id == vsid)
            .ok_or_else(|| Error::NotFound(format!("no snapshot with id {target}")))?;
        if let Some(blob) = target.blob_id {
            return Err(Error::AlreadyHaveBlob {
                snapshot: target.id,
                have: blob.clone(),
                offered: blob,
            });
        }
        for id in candidates.iter().rev() {
            if let Some(snap) = self.snapshot_in(&mut txn, id)?
                && snap.volset_id == vsid
                && let Some(blob) = snap.blob_id
            {
                return Ok(Some((snap.id, blob)));
            }
        }
        Ok(None)
    }

    /// RequestBlobDiff: the newest of `candidates` (oldest first) of volume set `vsid` that
    /// has a blob here, with its blob, and the target's blob. NotFound when the target is
    /// missing from `vsid` or has no blob.
    pub fn request_blob_diff(
        &self,
        vsid: &str,
        target: &str,
        candidates: &[String],
    ) -> Result<(Option<(String, String)>, String)> {
        let mut txn = self.read()?;
        let snap = self
            .snapshot_in(&mut txn, target)?
            .filter(|s| s.volset_id == vsid)
            .ok_or_else(|| Error::NotFound(format!("no snapshot with id {target}")))?;
        let blob = snap
            .blob_id
            .ok_or_else(|| Error::NotFound(format!("snapshot {target} has no blob here")))?;
        for id in candidates.iter().rev() {
            if let Some(base) = self.snapshot_in(&mut txn, id)?
                && base.volset_id == vsid
                && let Some(base_blob) = base.blob_id
            {
                return Ok((Some((base.id, base_blob)), blob));
            }
        }
        Ok((None, blob))
    }
}
