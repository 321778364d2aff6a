//! What a hub does for one authenticated user, independent of HTTP: visibility, import,
//! export, sync and blob bookkeeping. The HTTP server calls these; so does the in-process
//! [`Remote`](crate::Remote) that tests use against a real store without a socket.

use std::io::{Read as _, Write as _};

use strata_volume::{BlobId, BlobStore};

use crate::model::VolumeSet;
use crate::store::{Hub, Query};
use crate::sync::{Export, ImportRequest, ImportResponse, SyncRequest, SyncResponse};
use crate::{Error, Result};

/// A hub's store and blobs.
#[derive(Debug, Clone)]
pub struct HubService {
    /// Metadata.
    pub hub: Hub,
    /// Blob contents.
    pub blobs: BlobStore,
}

/// Parses a blob id.
pub fn blob_id(id: &str) -> Result<BlobId> {
    id.parse::<BlobId>()
        .map_err(|_| Error::InvalidArgument(format!("{id:?} is not a blob id (64 hex digits)")))
}

impl HubService {
    /// A service over `hub` and `blobs`.
    pub fn new(hub: Hub, blobs: BlobStore) -> HubService {
        HubService { hub, blobs }
    }

    /// The volume set `id` if `user` may see it; NotFound otherwise (not telling whether it
    /// exists).
    pub fn volset_for(&self, user: &str, id: &str) -> Result<VolumeSet> {
        crate::model::validate_id("volume set", id)?;
        let not_found = || Error::NotFound(format!("no volume set with id {id}"));
        let volset = match self.hub.volset(id) {
            Ok(v) => v,
            Err(Error::NotFound(_)) => return Err(not_found()),
            Err(err) => return Err(err),
        };
        if self.hub.can_access(&volset, user)? { Ok(volset) } else { Err(not_found()) }
    }

    /// The volume sets `user` may see.
    pub fn volsets(&self, user: &str, query: &Query) -> Result<Vec<VolumeSet>> {
        let unpaged = Query { offset: 0, limit: 0, ..query.clone() };
        let mut visible = Vec::new();
        for v in self.hub.volsets(&unpaged)? {
            if self.hub.can_access(&v, user)? {
                visible.push(v);
            }
        }
        let it = visible.into_iter().skip(query.offset);
        Ok(if query.limit == 0 { it.collect() } else { it.take(query.limit).collect() })
    }

    /// Everything about one visible volume set, or with `since` only the snapshots changed
    /// after that revision (everything when the revision is unknown here).
    pub fn export(&self, user: &str, vsid: &str, since: Option<&str>) -> Result<Export> {
        self.volset_for(user, vsid)?;
        self.hub.export_since(vsid, since)
    }

    /// [`HubService::export`] as JSON, without decoding the records.
    pub fn export_json(&self, user: &str, vsid: &str, since: Option<&str>) -> Result<Vec<u8>> {
        self.volset_for(user, vsid)?;
        self.hub.export_json(vsid, since)
    }

    /// Imports new snapshots and branch moves. A set new here is created owned by `user`;
    /// snapshots' creator is `user`. Every snapshot's blob must be uploaded first.
    pub fn import(
        &self,
        user: &str,
        vsid: &str,
        request: &ImportRequest,
    ) -> Result<ImportResponse> {
        if request.volumeset.id != vsid {
            return Err(Error::InvalidArgument(format!(
                "the body's volume set {} is not the path's {vsid}",
                request.volumeset.id
            )));
        }
        let mut response = ImportResponse::default();
        match self.volset_for(user, vsid) {
            Ok(_) => {}
            Err(Error::NotFound(_)) if self.hub.volset(vsid).is_err() => {
                let mut volset = request.volumeset.clone();
                volset.owner = user.into();
                volset.creator = user.into();
                response.created_volumeset = self.hub.import_volset(&volset)?;
            }
            Err(err) => return Err(err),
        }
        let mut access = BlobAccess::new(self, user);
        for snap in &request.snapshots {
            // The same answer whether the hub lacks the blob or the user may not use it, so
            // an import cannot probe for other users' blobs.
            if let Some(blob) = &snap.blob_id
                && !(self.blobs.has(&blob_id(blob)?) && access.allows(blob)?)
            {
                return Err(Error::FailedPrecondition(format!(
                    "blob {blob} of snapshot {} is not uploaded; upload it first",
                    snap.id
                )));
            }
        }
        let mut snaps = request.snapshots.clone();
        snaps.sort_by_key(|s| s.depth);
        response.added = self.hub.import_snapshots(vsid, &snaps, Some(user))?;
        let mut branches = request.branches.clone();
        let mut depth = std::collections::HashMap::new();
        for b in &branches {
            depth.insert(b.id.clone(), self.hub.snapshot(&b.tip).map_or(0, |s| s.depth));
        }
        branches.sort_by_key(|b| depth.get(&b.id).copied().unwrap_or(0));
        for branch in &branches {
            if branch.volset_id != vsid {
                return Err(Error::InvalidArgument(format!(
                    "branch {} is in another volume set",
                    branch.id
                )));
            }
            response.branches.push((branch.id.clone(), self.hub.import_branch(branch)?));
        }
        Ok(response)
    }

    /// Three-way sync of metadata on a visible set.
    pub fn sync(&self, user: &str, vsid: &str, request: &SyncRequest) -> Result<SyncResponse> {
        self.volset_for(user, vsid)?;
        self.hub.apply_sync(vsid, request)
    }

    /// Which of `ids` `user` must upload: those the blob store lacks, and those `user` may
    /// not use yet (see [`HubService::may_use_blob`]), so that the answer says nothing of
    /// other users' blobs.
    pub fn missing_blobs(&self, user: &str, ids: &[String]) -> Result<Vec<String>> {
        let mut access = BlobAccess::new(self, user);
        let mut missing = Vec::new();
        for id in ids {
            if !self.blobs.has(&blob_id(id)?) || !access.allows(id)? {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }

    /// Whether `user`'s snapshots may refer to `blob`: the user sent its bytes once (and
    /// so knows them), or a volume set the user may see refers to it already.
    pub fn may_use_blob(&self, user: &str, blob: &str) -> Result<bool> {
        BlobAccess::new(self, user).allows(blob)
    }

    /// Records that `user` sent the bytes of `blob`, which the store now holds.
    pub fn uploaded(&self, user: &str, blob: &BlobId) -> Result<()> {
        self.hub.claim_blob(&blob.to_string(), user)
    }

    /// Checks that `user` may download `blob` through volume set `vsid`.
    pub fn check_blob_access(&self, user: &str, vsid: &str, blob: &str) -> Result<BlobId> {
        self.volset_for(user, vsid)?;
        let id = blob_id(blob)?;
        if !self.hub.volset_has_blob(vsid, blob)? || !self.blobs.has(&id) {
            return Err(Error::NotFound(format!("no blob {blob} in volume set {vsid}")));
        }
        Ok(id)
    }
}

/// Which blobs one user may refer to (see [`HubService::may_use_blob`]), for checking many
/// blobs at once: the volume sets the user sees are listed once, when first needed.
struct BlobAccess<'a> {
    service: &'a HubService,
    user: &'a str,
    visible: Option<Vec<String>>,
}

impl<'a> BlobAccess<'a> {
    fn new(service: &'a HubService, user: &'a str) -> BlobAccess<'a> {
        BlobAccess { service, user, visible: None }
    }

    fn allows(&mut self, blob: &str) -> Result<bool> {
        let hub = &self.service.hub;
        if hub.has_blob_claim(blob, self.user)? {
            return Ok(true);
        }
        if self.visible.is_none() {
            let sets = self.service.volsets(self.user, &Query::default())?;
            self.visible = Some(sets.into_iter().map(|v| v.id).collect());
        }
        for vsid in self.visible.iter().flatten() {
            if hub.volset_has_blob(vsid, blob)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Receives one blob on a blocking thread, so that receiving several at once overlaps their
/// writes and fsyncs: chunks sent to the returned sender are written and hashed as they
/// arrive; once the sender is dropped, the blob is stored if it hashes to `expected`, and
/// the task answers its length. A blob that does not hash to `expected` is
/// [`Error::Corrupted`] and leaves nothing behind.
pub(crate) fn receive_blob(
    blobs: BlobStore,
    expected: BlobId,
) -> (tokio::sync::mpsc::Sender<bytes::Bytes>, tokio::task::JoinHandle<Result<u64>>) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let task = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut writer = blobs.writer().map_err(Error::blob)?;
        while let Some(chunk) = receiver.blocking_recv() {
            writer.write_all(&chunk).map_err(|e| Error::io("write a received blob", e))?;
            count_transfer("in", chunk.len());
        }
        let len = writer.len();
        writer.finish_expecting(&expected).map_err(|e| match e {
            strata_volume::Error::BlobMismatch { .. } => Error::Corrupted(e.to_string()),
            other => Error::blob(other),
        })?;
        Ok(len)
    });
    (sender, task)
}

/// Counts blob bytes the hub server received (`direction` "in") or sent ("out") in the
/// process's metrics (`strata_hub_transfer_bytes_total`, documented in docs/operations.md).
pub(crate) fn count_transfer(direction: &'static str, bytes: usize) {
    metrics::counter!("strata_hub_transfer_bytes_total", "direction" => direction)
        .increment(bytes as u64);
}

/// Copies blob `id` from one store to another, verifying its hash; calls `progress` with
/// each chunk's length.
pub fn copy_blob(
    from: &BlobStore,
    to: &BlobStore,
    id: &BlobId,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let mut file = from.open_blob(id).map_err(Error::blob)?;
    let mut writer = to.writer().map_err(Error::blob)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io("read a blob", e))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).map_err(|e| Error::io("write a blob", e))?;
        progress(n as u64);
    }
    writer.finish_expecting(id).map_err(Error::blob)?;
    Ok(())
}
