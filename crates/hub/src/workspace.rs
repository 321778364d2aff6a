//! A data directory's working copies: volumes, each a directory made from a snapshot (or
//! empty) and snapshotted back as the difference from the snapshot it is based on.
//!
//! Layout under the data directory: each volume is `volumes/<id>/`; its last manifest
//! (with the stat cache that spares hashing unchanged files) is
//! `volumes/<id>.manifest.json`; the blobs are in the [`Local`]'s blob store. The store
//! of records ([`Hub`]) is opened by the caller, on whichever engine it chose.
//!
//! Invariants:
//! - A volume is recorded only once its directory exists; a failed record removes the
//!   directory it made.
//! - The manifest cache is only a cache: when it is missing, stale (another snapshot) or
//!   unreadable, the base snapshot's blob supplies the manifest.
//! - A snapshot extends the branch whose tip its base is, unless a branch name is given;
//!   otherwise (no base, base not a tip, or a name given) it forks a new branch.

use std::path::{Path, PathBuf};

use strata_volume::{BlobId, BlobStore, Manifest, Snapshotted};

use crate::error::{Error, Result};
use crate::model::{self, Branch, Snapshot, Volume, VolumeKind, VolumeSet};
use crate::store::{Hub, NewSnapshot};
use crate::transfer::Local;

/// The volumes of one data directory with the store and blobs they are recorded in.
#[derive(Debug)]
pub struct Workspace {
    local: Local,
    root: PathBuf,
    user: String,
}

/// What a new snapshot of a volume is called.
#[derive(Debug, Clone, Default)]
pub struct Take {
    /// The snapshot's name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The new branch's name when the snapshot forks one; giving it always forks.
    /// Default: `main` when free, else the volume's name.
    pub branch: Option<String>,
    /// Record a snapshot even when nothing changed since the volume's base.
    pub allow_empty: bool,
}

/// A snapshot taken of a volume.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The new snapshot.
    pub snapshot: Snapshot,
    /// The branch it is the tip of.
    pub branch: Branch,
    /// The difference written as its blob, with counts of what changed.
    pub diff: Snapshotted,
}

impl Workspace {
    /// The workspace of `data_dir`: the records in `hub`, the blobs in `data_dir/blobs`
    /// (created when missing), snapshots made as `user`.
    pub fn open(hub: Hub, data_dir: &Path, user: impl Into<String>) -> Result<Workspace> {
        let blobs_dir = data_dir.join("blobs");
        let blobs = BlobStore::open(&blobs_dir)?;
        Ok(Workspace {
            local: Local { hub, blobs },
            root: data_dir.to_path_buf(),
            user: user.into(),
        })
    }

    /// The store and blobs, for push, pull and sync.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// The records.
    pub fn hub(&self) -> &Hub {
        &self.local.hub
    }

    /// The user snapshots and volume sets are made as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Makes a volume of `volset` (name or id): empty, or with the files of snapshot `from`
    /// (name or id), whose whole chain of blobs must be here. Named `name`, or `VOLSET-N`
    /// with the first free N.
    pub fn create_volume(
        &self,
        volset: &str,
        from: Option<&str>,
        name: Option<&str>,
    ) -> Result<Volume> {
        let hub = self.hub();
        let vs = self.volset_of(volset, VolumeKind::Filesystem)?;
        let name = match name {
            Some(name) => name.to_string(),
            None => {
                let taken: Vec<String> = hub.volumes()?.into_iter().map(|v| v.name).collect();
                first_free((1..).map(|i| format!("{}-{i}", vs.name)), &taken)
            }
        };
        model::validate_name("volume", &name)?;
        let id = model::new_id();
        let path = self.root.join("volumes").join(&id);
        let (snapshot_id, branch_id) = match from {
            Some(from) => {
                let snap = hub.find_snapshot(&vs.id, from)?;
                let chain = self.chain_blobs(&snap)?;
                let manifest = strata_volume::materialize(&self.local.blobs, &chain, &path)?;
                self.save_manifest(&id, &snap.id, &manifest);
                let branch = hub.branches(&vs.id)?.into_iter().find(|b| b.tip == snap.id);
                (Some(snap.id), branch.map(|b| b.id))
            }
            None => {
                std::fs::create_dir_all(&path)
                    .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
                (None, None)
            }
        };
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let volume = Volume {
            id,
            name,
            volset_id: vs.id,
            snapshot_id,
            branch_id,
            path: path.to_string_lossy().into_owned(),
            created_at: model::now(),
        };
        if let Err(err) = hub.put_volume(&volume) {
            let _ = std::fs::remove_dir_all(&path);
            return Err(err);
        }
        Ok(volume)
    }

    /// Records a snapshot of the volume named `volume` (name, id or path): the difference
    /// of its directory from the snapshot it is based on, as a content-addressed blob.
    /// `None` when the volume has a base and nothing changed since (unless
    /// `take.allow_empty`): no snapshot is recorded. A volume's first snapshot is always
    /// recorded.
    pub fn snapshot_volume(&self, volume: &str, take: &Take) -> Result<Option<Taken>> {
        let hub = self.hub();
        let mut vol = hub.find_volume(volume)?;
        let base = vol.snapshot_id.as_deref().map(|id| hub.snapshot(id)).transpose()?;
        let base_manifest = self.base_manifest(&vol.id, base.as_ref())?;
        let diff =
            strata_volume::snapshot(Path::new(&vol.path), &base_manifest, &self.local.blobs)?;
        let unchanged = diff.added == 0 && diff.changed == 0 && diff.deleted == 0;
        if base.is_some() && unchanged && !take.allow_empty {
            // The stat caches may have been refreshed by the scan: keep them. The empty
            // diff's blob stays in the store, unreferenced (blobs are never deleted here:
            // the same bytes may be another snapshot's).
            if let Some(base) = &base {
                self.save_manifest(&vol.id, &base.id, &diff.manifest);
            }
            return Ok(None);
        }
        let spec = NewSnapshot {
            name: take.name.clone(),
            description: take.description.clone(),
            size: diff.size,
            blob_id: Some(diff.blob.to_string()),
            creator: self.user.clone(),
            ..NewSnapshot::default()
        };
        let (branch, snapshot) =
            self.record_snapshot(&vol.volset_id, base.as_ref(), &spec, take, &vol.name)?;
        vol.snapshot_id = Some(snapshot.id.clone());
        vol.branch_id = Some(branch.id.clone());
        hub.put_volume(&vol)?;
        self.save_manifest(&vol.id, &snapshot.id, &diff.manifest);
        Ok(Some(Taken { snapshot, branch, diff }))
    }

    /// Records snapshot `spec` of set `volset_id` taken on top of `base`: it extends the
    /// branch whose tip `base` is, unless `take.branch` names a branch to fork; otherwise
    /// (no base, a base that is no longer a tip, or a name given) it forks a new branch,
    /// named `take.branch`, else `main` when free, else `fallback`. The one rule for
    /// filesystem volumes and vdisks alike.
    pub fn record_snapshot(
        &self,
        volset_id: &str,
        base: Option<&Snapshot>,
        spec: &NewSnapshot,
        take: &Take,
        fallback: &str,
    ) -> Result<(Branch, Snapshot)> {
        let hub = self.hub();
        let branches = hub.branches(volset_id)?;
        let tip = base.filter(|b| branches.iter().any(|br| br.tip == b.id));
        match (tip, &take.branch) {
            (Some(tip), None) => hub.extend(volset_id, &tip.id, spec),
            (_, named) => {
                let name = match named {
                    Some(name) => name.clone(),
                    None => {
                        let taken: Vec<String> = branches.into_iter().map(|b| b.name).collect();
                        first_free(["main".to_string(), fallback.to_string()], &taken)
                    }
                };
                hub.fork(volset_id, base.map(|b| b.id.as_str()), &name, spec)
            }
        }
    }

    /// The volume set `volset` (name or id), which must be of `kind`; the error for
    /// another kind names the commands that handle it.
    pub fn volset_of(&self, volset: &str, kind: VolumeKind) -> Result<VolumeSet> {
        let vs = self.local.volset(volset)?;
        if vs.kind != kind {
            let hint = match vs.kind {
                VolumeKind::Block => "strata vdisk create --from and strata vdisk snapshot",
                VolumeKind::Filesystem => "strata volume create and strata volume snapshot",
            };
            return Err(Error::InvalidArgument(format!(
                "volume set {:?} holds {} volumes, not {kind} ones; use {hint}",
                vs.name, vs.kind
            )));
        }
        Ok(vs)
    }

    /// Removes the volume `volume` (name, id or path): its record, then its directory and
    /// cached manifest. Nothing refers to a volume, so nothing else changes; files not in a
    /// snapshot are gone with it.
    pub fn remove_volume(&self, volume: &str) -> Result<Volume> {
        let vol = self.hub().find_volume(volume)?;
        self.hub().delete_volume(&vol.id)?;
        let path = Path::new(&vol.path);
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("remove {}", path.display()), e));
            }
            _ => {}
        }
        let _ = std::fs::remove_file(self.manifest_path(&vol.id));
        Ok(vol)
    }

    /// Removes the volume set `volset` (name or id) from this store. Refused while a
    /// volume is made from it; refused while it has snapshots unless `with_snapshots`, which
    /// deletes them first, newest generation first (a parent is never deleted before its
    /// children). Returns the set and how many snapshots went with it. Blobs stay: another set
    /// may share them; a hub keeps its own copy of the set.
    pub fn remove_volset(&self, volset: &str, with_snapshots: bool) -> Result<(VolumeSet, usize)> {
        let hub = self.hub();
        let vs = self.local.volset(volset)?;
        let volumes: Vec<String> =
            (hub.volumes()?.into_iter()).filter(|v| v.volset_id == vs.id).map(|v| v.name).collect();
        if !volumes.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "volume set {:?} has volumes made from it ({}); `strata volume rm` them first",
                vs.name,
                volumes.join(", ")
            )));
        }
        let mut snapshots = hub.snapshots(&vs.id, &crate::store::Query::default())?;
        if !snapshots.is_empty() && !with_snapshots {
            return Err(Error::FailedPrecondition(format!(
                "volume set {:?} has {} snapshots; `strata volumeset rm --force` deletes them \
                 with it",
                vs.name,
                snapshots.len()
            )));
        }
        let branches: Vec<String> = hub.branches(&vs.id)?.into_iter().map(|b| b.id).collect();
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.depth));
        for snap in &snapshots {
            hub.delete_snapshot(&snap.id)?;
        }
        let removed = hub.delete_volset(&vs.id)?;
        let ids: Vec<String> = snapshots.iter().map(|s| s.id.clone()).collect();
        hub.forget_inits("snap", &ids)?;
        hub.forget_inits("br", &branches)?;
        Ok((removed, snapshots.len()))
    }

    /// The manifest a volume's next snapshot is compared with: the cached one when it is
    /// of `base`, else the one in `base`'s blob, else (no base) the empty one.
    fn base_manifest(&self, volume_id: &str, base: Option<&Snapshot>) -> Result<Manifest> {
        let Some(base) = base else { return Ok(Manifest::empty()) };
        if let Some(cached) = self.load_manifest(volume_id, &base.id) {
            return Ok(cached);
        }
        let Some(blob) = &base.blob_id else { return Ok(Manifest::empty()) };
        let blob: BlobId = blob.parse().map_err(|e| {
            Error::Corrupted(format!("snapshot {}: bad blob id {blob:?}: {e}", base.id))
        })?;
        strata_volume::manifest_of(&self.local.blobs, &blob).map_err(|e| {
            Error::FailedPrecondition(format!(
                "read the base snapshot's manifest: {e}; `strata pull` fetches its blobs"
            ))
        })
    }

    /// The blob ids of `snap`'s chain, root first; each must be in the blob store.
    fn chain_blobs(&self, snap: &Snapshot) -> Result<Vec<BlobId>> {
        let mut ids = Vec::new();
        for s in self.hub().chain(&snap.id)? {
            let Some(blob) = &s.blob_id else {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {} has no blob here; pull it first",
                    s.id
                )));
            };
            let id: BlobId = blob.parse().map_err(|e| {
                Error::Corrupted(format!("snapshot {}: bad blob id {blob:?}: {e}", s.id))
            })?;
            if !self.local.blobs.has(&id) {
                return Err(Error::FailedPrecondition(format!(
                    "blob {id} of snapshot {} is not here; `strata pull` fetches it",
                    s.id
                )));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    fn manifest_path(&self, volume_id: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{volume_id}.manifest.json"))
    }

    fn load_manifest(&self, volume_id: &str, snapshot_id: &str) -> Option<Manifest> {
        let bytes = std::fs::read(self.manifest_path(volume_id)).ok()?;
        let (snapshot, manifest): (String, Manifest) = serde_json::from_slice(&bytes).ok()?;
        (snapshot == snapshot_id).then_some(manifest)
    }

    /// Caches `manifest` as the volume's, of `snapshot_id`; a failure only costs hashing
    /// next time, so it is logged, not returned.
    fn save_manifest(&self, volume_id: &str, snapshot_id: &str, manifest: &Manifest) {
        let path = self.manifest_path(volume_id);
        let temp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&(snapshot_id, manifest))
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), "could not cache the volume's manifest: {err}");
        }
    }
}

/// The first of `names` not in `taken` (empty if all are).
fn first_free(names: impl IntoIterator<Item = String>, taken: &[String]) -> String {
    names.into_iter().find(|n| !taken.contains(n)).unwrap_or_default()
}
