//! Push, pull and sync of one volume set between a local store and a remote hub.
//!
//! Push: read the target's state, check every branch (new, extension, target ahead:
//! nothing, diverged: error, all before anything is sent), upload the blobs the target
//! lacks, import the new snapshots oldest first and the branches by tip depth, then
//! reconcile changed metadata three ways on the target. Pull: the same decisions made
//! locally, never writing the target. Sync: pull, then push. The local store keeps the
//! "initial" copy of every object as last synced (`init/…` keys).
//!
//! A sync (and a push that leaves both sides the same) remembers both sides' revisions of
//! the set (`init/mark/…`); the next sync
//! reads only the snapshots written since on either side (`export?since=` and the local
//! change log) and decides over those alone, falling back to everything when a revision is
//! unknown or a snapshot was deleted (see `read_changes`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use strata_volume::BlobStore;

use crate::model::{Branch, BranchMeta, Snapshot, SnapshotMeta, VolumeSet, VolumeSetMeta};
use crate::service::{HubService, blob_id, copy_blob};
use crate::store::{BranchOutcome, Changes, Hub, Query, SyncMark};
use crate::sync::{
    Decision, Export, ImportRequest, ImportResponse, SyncItem, SyncOutcome, SyncRequest,
    SyncResponse, decide,
};
use crate::{Error, Result};

/// Snapshots sent per import request.
pub const IMPORT_BATCH: usize = 2_000;

/// The other side of a push or pull: a hub over HTTP ([`crate::Client`]) or in-process.
#[allow(async_fn_in_trait)]
pub trait Remote {
    /// The visible volume set whose name or id is `name_or_id`, if any.
    async fn find_volset(&self, name_or_id: &str) -> Result<Option<VolumeSet>>;
    /// Everything about a visible volume set.
    async fn export(&self, vsid: &str) -> Result<Export>;
    /// The visible volume set with only the snapshots changed after revision `since` (see
    /// [`Export`]); everything, with `since` unset in the answer, when the remote does not
    /// know that revision.
    async fn export_since(&self, vsid: &str, since: &str) -> Result<Export>;
    /// Imports new snapshots and branch moves.
    async fn import(&self, vsid: &str, request: &ImportRequest) -> Result<ImportResponse>;
    /// Reconciles metadata three ways.
    async fn sync(&self, vsid: &str, request: &SyncRequest) -> Result<SyncResponse>;
    /// Which of `ids` the remote lacks.
    async fn missing_blobs(&self, ids: &[String]) -> Result<Vec<String>>;
    /// Uploads blob `id` from `blobs`.
    async fn upload_blob(&self, blobs: &BlobStore, id: &str, progress: &dyn Fn(u64)) -> Result<()>;
    /// Downloads blob `id` of volume set `vs` into `to`, verifying its hash.
    async fn download_blob(&self, vs: &str, id: &str, to: &BlobStore, on: Tick<'_>) -> Result<()>;
}

/// Told how many more bytes of a blob moved.
pub type Tick<'a> = &'a dyn Fn(u64);

/// A remote hub in this process, acting for `user`: the server's logic without HTTP.
#[derive(Debug, Clone)]
pub struct InProcess {
    /// The hub.
    pub service: HubService,
    /// Who the requests come from.
    pub user: String,
}

impl Remote for InProcess {
    async fn find_volset(&self, name_or_id: &str) -> Result<Option<VolumeSet>> {
        let all = self.service.volsets(&self.user, &Query::default())?;
        Ok(all.into_iter().find(|v| v.id == name_or_id || v.name == name_or_id))
    }
    async fn export(&self, vsid: &str) -> Result<Export> {
        self.service.export(&self.user, vsid, None)
    }
    async fn export_since(&self, vsid: &str, since: &str) -> Result<Export> {
        self.service.export(&self.user, vsid, Some(since))
    }
    async fn import(&self, vsid: &str, request: &ImportRequest) -> Result<ImportResponse> {
        self.service.import(&self.user, vsid, request)
    }
    async fn sync(&self, vsid: &str, request: &SyncRequest) -> Result<SyncResponse> {
        self.service.sync(&self.user, vsid, request)
    }
    async fn missing_blobs(&self, ids: &[String]) -> Result<Vec<String>> {
        self.service.missing_blobs(&self.user, ids)
    }
    async fn upload_blob(&self, blobs: &BlobStore, id: &str, progress: &dyn Fn(u64)) -> Result<()> {
        let id = blob_id(id)?;
        copy_blob(blobs, &self.service.blobs, &id, progress)?;
        self.service.uploaded(&self.user, &id)
    }
    async fn download_blob(&self, vs: &str, id: &str, to: &BlobStore, on: Tick<'_>) -> Result<()> {
        let id = self.service.check_blob_access(&self.user, vs, id)?;
        copy_blob(&self.service.blobs, to, &id, on)
    }
}

/// Progress of a transfer; every method has a no-op default.
pub trait Progress {
    /// A phase begins (`"blobs"` with total bytes, `"snapshots"` with a count).
    fn begin(&self, _phase: &str, _total: u64) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn end(&self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// A conflict, shown to the user side by side; the target's copy won.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// `volumeset`, `snapshot` or `branch`.
    pub kind: &'static str,
    /// The object's id.
    pub id: String,
    /// The copy as last synced.
    pub initial: serde_json::Value,
    /// The local copy before the sync.
    pub current: serde_json::Value,
    /// The target's copy, now also the local one.
    pub target: serde_json::Value,
}

/// What a push, pull or sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The volume set's id.
    pub volset_id: String,
    /// Snapshots sent to the hub.
    pub snapshots_pushed: usize,
    /// Snapshots received from the hub.
    pub snapshots_pulled: usize,
    /// Blobs sent.
    pub blobs_pushed: usize,
    /// Blobs received.
    pub blobs_pulled: usize,
    /// Blob bytes moved either way.
    pub bytes: u64,
    /// Branch outcomes, by branch name (or id when unnamed).
    pub branches: Vec<(String, BranchOutcome)>,
    /// Metadata changes sent to the hub.
    pub metadata_pushed: usize,
    /// Metadata changes taken from the hub.
    pub metadata_pulled: usize,
    /// Conflicts; the hub's copy won each.
    pub conflicts: Vec<Conflict>,
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn branch_label(b: &Branch) -> String {
    if b.name.is_empty() { b.id.clone() } else { b.name.clone() }
}

/// Local bookkeeping for one sync: the local store and its blobs.
#[derive(Debug, Clone)]
pub struct Local {
    /// The local store.
    pub hub: Hub,
    /// The local blobs.
    pub blobs: BlobStore,
}

impl Local {
    /// The local volume set named or with id `name_or_id`.
    pub fn volset(&self, name_or_id: &str) -> Result<VolumeSet> {
        self.hub.find_volset(name_or_id, |_| true)
    }

    /// Push: sends new snapshots, branch moves and changed metadata of `vsid`.
    pub async fn push(
        &self,
        remote: &impl Remote,
        vsid: &str,
        progress: &dyn Progress,
    ) -> Result<Report> {
        let target = match remote.export(vsid).await {
            Ok(export) => Some(export),
            Err(Error::NotFound(_)) => None,
            Err(Error::Rejected { status: 404, .. }) => None,
            Err(err) => return Err(err),
        };
        self.push_onto(remote, vsid, target, None, None, progress).await
    }

    /// Push against `target`, the remote's state as just read (`None`: the set is new there).
    /// `local`, when given, is this store's snapshots of the set and their synced copies as
    /// they are now (what a pull just read and wrote). `mark`, when given, is recorded with
    /// the synced copies at the end; without `local`, the push records one itself when it
    /// leaves both sides the same (the hub had nothing this store lacks).
    async fn push_onto(
        &self,
        remote: &impl Remote,
        vsid: &str,
        target: Option<Export>,
        local: Option<Scanned>,
        mark: Option<SyncMark>,
        progress: &dyn Progress,
    ) -> Result<Report> {
        let (local, snap_inits, complete) = match local {
            Some(scanned) => (Some(scanned.snapshots), Some(scanned.snap_inits), scanned.complete),
            None => (None, None, true),
        };
        let mut report = Report { volset_id: vsid.into(), ..Report::default() };
        let volset = self.hub.volset(vsid)?;
        let remote_snaps: HashMap<String, Snapshot> = target
            .as_ref()
            .map(|t| t.snapshots.iter().map(|s| (s.id.clone(), s.clone())).collect())
            .unwrap_or_default();
        let remote_branches: HashMap<String, Branch> = target
            .as_ref()
            .map(|t| t.branches.iter().map(|b| (b.id.clone(), b.clone())).collect())
            .unwrap_or_default();
        // This store's revision before it is read, for the mark of a push alone.
        let revision = if local.is_none() { self.hub.revision(vsid)? } else { None };
        let mut local_snaps = match local {
            Some(snaps) => snaps,
            None => self.hub.snapshots(vsid, &Query::default())?,
        };
        local_snaps.sort_by_key(|s| s.depth);
        let snap_inits = match snap_inits {
            Some(inits) => inits,
            None => self.hub.inits::<SnapshotMeta>("snap")?,
        };
        // Whether the remote has a local snapshot. When the target lists only what changed
        // since the last sync, a snapshot it does not list is there exactly when it was
        // synced before (it has a synced copy here): that sync left both sides the same.
        let remote_has =
            |id: &str| remote_snaps.contains_key(id) || (!complete && snap_inits.contains_key(id));

        // Decide every branch before sending anything.
        let mut branches = self.hub.branches(vsid)?;
        let tips: Vec<&str> = branches.iter().map(|b| b.tip.as_str()).collect();
        let depth: HashMap<String, u64> =
            self.hub.snapshots_by_id(&tips)?.into_iter().map(|s| (s.id, s.depth)).collect();
        branches.sort_by_key(|b| depth.get(&b.tip).copied().unwrap_or(0));
        let mut send_branches = Vec::new();
        for branch in &branches {
            let outcome = match remote_branches.get(&branch.id) {
                None => BranchOutcome::Created,
                Some(r) if r.tip == branch.tip => BranchOutcome::Unchanged,
                Some(r) if self.hub.is_ancestor(&r.tip, &branch.tip)? => BranchOutcome::Extended,
                // A partial target's snapshots are all here already (a pull just took them).
                Some(r)
                    if (complete && ancestor_in(&remote_snaps, &branch.tip, &r.tip))
                        || (!complete && self.hub.is_ancestor(&branch.tip, &r.tip)?) =>
                {
                    BranchOutcome::TargetAhead
                }
                Some(r) => {
                    return Err(Error::Diverged(format!(
                        "branch {:?} is at {} locally and at {} on the hub",
                        branch_label(branch),
                        branch.tip,
                        r.tip
                    )));
                }
            };
            if matches!(outcome, BranchOutcome::Created | BranchOutcome::Extended) {
                send_branches.push(branch.clone());
            }
            report.branches.push((branch_label(branch), outcome));
        }
        let new_snaps: Vec<Snapshot> =
            local_snaps.iter().filter(|s| !remote_has(&s.id)).cloned().collect();
        // A push alone leaves both sides the same when the hub has no snapshot this store
        // lacks and every branch of the hub's ends where this store's does: then it remembers
        // the revisions, and the next sync reads only what changed since, as after a sync.
        let mark = match (mark, revision, target.as_ref().and_then(|t| t.revision.clone())) {
            (Some(mark), _, _) => Some(mark),
            (None, Some(local), Some(remote)) => {
                let here: HashSet<&str> = local_snaps.iter().map(|s| s.id.as_str()).collect();
                let tips: HashSet<&str> = branches.iter().map(|b| b.id.as_str()).collect();
                let same = remote_snaps.keys().all(|id| here.contains(id.as_str()))
                    && remote_branches.keys().all(|id| tips.contains(id.as_str()))
                    && report.branches.iter().all(|(_, o)| *o != BranchOutcome::TargetAhead);
                same.then_some(SyncMark { remote, local })
            }
            (None, _, _) => None,
        };

        // Blobs the hub lacks.
        let wanted: Vec<String> = {
            let mut seen = HashSet::new();
            new_snaps
                .iter()
                .filter_map(|s| s.blob_id.clone())
                .filter(|b| seen.insert(b.clone()))
                .collect()
        };
        let mut missing = Vec::new();
        for chunk in wanted.chunks(IMPORT_BATCH) {
            missing.extend(remote.missing_blobs(chunk).await?);
        }
        let mut total = 0;
        for id in &missing {
            total += self.blobs.size(&blob_id(id)?).map_err(Error::blob)?;
        }
        progress.begin("upload blobs", total);
        let advance = |n| progress.advance(n);
        in_lanes(&missing, |id| remote.upload_blob(&self.blobs, id, &advance)).await?;
        report.blobs_pushed += missing.len();
        progress.end();
        report.bytes += total;

        // Snapshots oldest first, then branches.
        progress.begin("push snapshots", new_snaps.len() as u64);
        let chunks: Vec<&[Snapshot]> = new_snaps.chunks(IMPORT_BATCH).collect();
        let count = chunks.len().max(1);
        for i in 0..count {
            let snapshots = chunks.get(i).map(|c| c.to_vec()).unwrap_or_default();
            let last = i + 1 == count;
            let request = ImportRequest {
                volumeset: volset.clone(),
                branches: if last { send_branches.clone() } else { Vec::new() },
                snapshots,
            };
            if request.snapshots.is_empty() && request.branches.is_empty() && target.is_some() {
                continue;
            }
            let response = remote.import(vsid, &request).await?;
            report.snapshots_pushed += response.added;
            progress.advance(request.snapshots.len() as u64);
        }
        progress.end();

        // What is now the same on both sides is synced.
        let mut init_snaps: Vec<(String, SnapshotMeta)> =
            new_snaps.iter().map(|s| (s.id.clone(), s.meta())).collect();
        let mut init_branches: Vec<(String, BranchMeta)> = branches
            .iter()
            .filter(|b| !remote_branches.contains_key(&b.id))
            .map(|b| (b.id.clone(), b.meta()))
            .collect();
        let mut init_vs: Vec<(String, VolumeSetMeta)> = Vec::new();
        if target.is_none() {
            init_vs.push((vsid.into(), volset.meta()));
        }

        // Changed metadata, decided on the hub.
        let mut request = SyncRequest::default();
        if let Some(t) = &target {
            let init = self.hub.init::<VolumeSetMeta>("vs", vsid)?;
            if init.as_ref() != Some(&volset.meta()) || t.volumeset.meta() != volset.meta() {
                request.volumeset = Some(SyncItem { id: vsid.into(), cur: volset.meta(), init });
            }
        }
        for s in &local_snaps {
            if !remote_has(&s.id) {
                continue;
            }
            let init = snap_inits.get(&s.id);
            // Not listed by a partial target: unchanged there since it equalled `init`.
            let differs = remote_snaps.get(&s.id).is_some_and(|r| r.meta() != s.meta());
            if init != Some(&s.meta()) || differs {
                request.snapshots.push(SyncItem {
                    id: s.id.clone(),
                    cur: s.meta(),
                    init: init.cloned(),
                });
            }
        }
        let branch_inits = self.hub.inits::<BranchMeta>("br")?;
        for b in &branches {
            let Some(r) = remote_branches.get(&b.id) else { continue };
            let init = branch_inits.get(&b.id);
            if init != Some(&b.meta()) || r.meta() != b.meta() {
                request.branches.push(SyncItem {
                    id: b.id.clone(),
                    cur: b.meta(),
                    init: init.cloned(),
                });
            }
        }
        if request.volumeset.is_some()
            || !request.snapshots.is_empty()
            || !request.branches.is_empty()
        {
            let response = remote.sync(vsid, &request).await?;
            if let Some(out) = &response.volumeset {
                if let Some(meta) = self.settle("volumeset", out, &mut report)? {
                    self.hub.update_volset_meta(vsid, &meta)?;
                }
                init_vs.push((vsid.into(), settled(out)));
            }
            for out in &response.snapshots {
                if let Some(meta) = self.settle("snapshot", out, &mut report)? {
                    self.hub.update_snapshot_meta(&out.id, &meta)?;
                }
                init_snaps.push((out.id.clone(), settled(out)));
            }
            for out in &response.branches {
                if let Some(meta) = self.settle("branch", out, &mut report)? {
                    self.hub.update_branch_meta(vsid, &out.id, &meta)?;
                }
                init_branches.push((out.id.clone(), settled(out)));
            }
        }
        self.hub.set_synced(vsid, &init_vs, &init_snaps, &init_branches, mark.as_ref())?;
        Ok(report)
    }

    /// Counts a decision of the target and returns the copy to store locally, if any.
    fn settle<M: Clone + Serialize>(
        &self,
        kind: &'static str,
        out: &SyncOutcome<M>,
        report: &mut Report,
    ) -> Result<Option<M>> {
        Ok(match out.decision {
            Decision::NoAction => None,
            Decision::UseCurrent => {
                report.metadata_pushed += 1;
                None
            }
            Decision::UseTgtNoConflict => {
                report.metadata_pulled += 1;
                Some(out.tgt.clone())
            }
            Decision::UseTgtConflict => {
                report.metadata_pulled += 1;
                report.conflicts.push(Conflict {
                    kind,
                    id: out.id.clone(),
                    initial: json(&out.init),
                    current: json(&out.cur),
                    target: json(&out.tgt),
                });
                Some(out.tgt.clone())
            }
        })
    }

    /// Pull: takes the hub's new snapshots (with the blobs missing here), branch moves and
    /// changed metadata of the volume set named or with id `name_or_id`.
    pub async fn pull(
        &self,
        remote: &impl Remote,
        name_or_id: &str,
        progress: &dyn Progress,
    ) -> Result<Report> {
        Ok(self.pull_export(remote, name_or_id, progress).await?.0)
    }

    /// Pull, returning also the remote's state it read (which a pull never changes).
    async fn pull_export(
        &self,
        remote: &impl Remote,
        name_or_id: &str,
        progress: &dyn Progress,
    ) -> Result<(Report, Export, Scanned)> {
        let vsid = self.resolve(remote, name_or_id).await?;
        let (target, scanned) = self.read_everything(remote, &vsid, None).await?;
        self.pull_onto(&vsid, target, scanned, remote, progress).await
    }

    /// The id of the volume set named or with id `name_or_id` here, or else on the remote.
    async fn resolve(&self, remote: &impl Remote, name_or_id: &str) -> Result<String> {
        Ok(match self.volset(name_or_id) {
            Ok(v) => v.id,
            Err(Error::NotFound(_)) => {
                remote
                    .find_volset(name_or_id)
                    .await?
                    .ok_or_else(|| {
                        Error::NotFound(format!("no volume set {name_or_id:?} here or on the hub"))
                    })?
                    .id
            }
            Err(err) => return Err(err),
        })
    }

    /// The remote's whole state of `vsid` (`target`, when already read) and this store's.
    async fn read_everything(
        &self,
        remote: &impl Remote,
        vsid: &str,
        target: Option<Export>,
    ) -> Result<(Export, Scanned)> {
        let revision = self.hub.revision(vsid)?;
        // Read the local side while the hub assembles its answer.
        let (target, scanned) = tokio::join!(
            async {
                match target {
                    Some(target) => Ok(target),
                    None => remote.export(vsid).await,
                }
            },
            async {
                let snapshots = self.hub.snapshots(vsid, &Query::default());
                (snapshots, self.hub.inits::<SnapshotMeta>("snap"))
            }
        );
        let (snapshots, snap_inits) = scanned;
        let scanned =
            Scanned { snapshots: snapshots?, snap_inits: snap_inits?, complete: true, revision };
        Ok((target?, scanned))
    }

    /// Both sides' snapshots of `vsid` changed since the last sync, when that sync's
    /// revisions are known on both sides and nothing was deleted since; otherwise both
    /// sides' whole state.
    async fn read_changes(&self, remote: &impl Remote, vsid: &str) -> Result<(Export, Scanned)> {
        let Some(mark) = self.hub.sync_mark(vsid)? else {
            return self.read_everything(remote, vsid, None).await;
        };
        let (target, changes) = tokio::join!(remote.export_since(vsid, &mark.remote), async {
            self.hub.changes(vsid, &mark.local)
        });
        let target = target?;
        // A whole answer (the hub did not know the revision) serves a full read as it is.
        let whole = |target: Export| if target.since.is_none() { Some(target) } else { None };
        let Some(Changes { revision, changed, deleted }) = changes? else {
            return self.read_everything(remote, vsid, whole(target)).await;
        };
        if target.since.is_none() || !target.deleted_snapshots.is_empty() || !deleted.is_empty() {
            // A deletion on either side is undone by a sync; the whole state shows how.
            return self.read_everything(remote, vsid, whole(target)).await;
        }
        // This store's copies of what changed on either side, and their synced copies.
        let mut local: HashMap<String, Snapshot> =
            changed.into_iter().map(|s| (s.id.clone(), s)).collect();
        let theirs: Vec<&str> = target
            .snapshots
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| !local.contains_key(*id))
            .collect();
        for s in self.hub.snapshots_by_id(&theirs)? {
            local.insert(s.id.clone(), s);
        }
        let ids: Vec<&str> = local.keys().map(String::as_str).collect();
        let snap_inits = self.hub.snapshot_inits(&ids)?;
        let snapshots = local.into_values().collect();
        Ok((target, Scanned { snapshots, snap_inits, complete: false, revision: Some(revision) }))
    }

    /// Pull of `vsid` against `target`, the remote's state as just read, and `scanned`,
    /// this store's as just read (both whole, or both only what changed since the last
    /// sync). Returns the target and this store's state as the pull left it.
    async fn pull_onto(
        &self,
        vsid: &str,
        target: Export,
        scanned: Scanned,
        remote: &impl Remote,
        progress: &dyn Progress,
    ) -> Result<(Report, Export, Scanned)> {
        let vsid = vsid.to_string();
        let Scanned { snapshots: local_snapshots, mut snap_inits, complete, revision } = scanned;
        let mut report = Report { volset_id: vsid.clone(), ..Report::default() };
        let mut init_vs = Vec::new();
        let mut init_snaps = Vec::new();
        let mut init_branches = Vec::new();
        let mut fresh_branches = HashSet::new();
        if self.hub.import_volset(&target.volumeset)? {
            init_vs.push((vsid.clone(), target.volumeset.meta()));
        } else {
            let cur = self.hub.volset(&vsid)?;
            let init = self.hub.init::<VolumeSetMeta>("vs", &vsid)?;
            let tgt = target.volumeset.meta();
            if let Some(meta) =
                self.take(&mut report, "volumeset", &vsid, &tgt, &cur.meta(), init.as_ref())
            {
                self.hub.update_volset_meta(&vsid, &meta)?;
                init_vs.push((vsid.clone(), meta));
            }
        }

        let mut local: HashMap<String, Snapshot> =
            local_snapshots.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut new_snaps: Vec<Snapshot> =
            target.snapshots.iter().filter(|s| !local.contains_key(&s.id)).cloned().collect();
        new_snaps.sort_by_key(|s| s.depth);
        let mut wanted = Vec::new();
        let mut total = 0;
        for s in &new_snaps {
            if let Some(blob) = &s.blob_id
                && !self.blobs.has(&blob_id(blob)?)
                && !wanted.contains(blob)
            {
                wanted.push(blob.clone());
                total += s.size;
            }
        }
        progress.begin("download blobs", total);
        let advance = |n| progress.advance(n);
        in_lanes(&wanted, |id| remote.download_blob(&vsid, id, &self.blobs, &advance)).await?;
        report.blobs_pulled += wanted.len();
        progress.end();
        report.bytes += total;
        report.snapshots_pulled = self.hub.import_snapshots(&vsid, &new_snaps, None)?;
        init_snaps.extend(new_snaps.iter().map(|s| (s.id.clone(), s.meta())));

        let mut branches = target.branches.clone();
        let local_branches: HashMap<String, Branch> =
            self.hub.branches(&vsid)?.into_iter().map(|b| (b.id.clone(), b)).collect();
        // Tips' depths: from the target, or (a partial target) from this store, which has
        // every tip it has not listed.
        let mut depth: HashMap<&str, u64> =
            target.snapshots.iter().map(|s| (s.id.as_str(), s.depth)).collect();
        let unlisted: Vec<&str> = if complete {
            Vec::new()
        } else {
            branches.iter().map(|b| b.tip.as_str()).filter(|t| !depth.contains_key(t)).collect()
        };
        let here: HashMap<String, u64> =
            self.hub.snapshots_by_id(&unlisted)?.into_iter().map(|s| (s.id, s.depth)).collect();
        depth.extend(here.iter().map(|(id, d)| (id.as_str(), *d)));
        branches.sort_by_key(|b| depth.get(b.tip.as_str()).copied().unwrap_or(0));
        for b in &branches {
            let outcome = match local_branches.get(&b.id) {
                Some(have) if have.tip == b.tip => BranchOutcome::Unchanged,
                _ => self.hub.import_branch(b)?,
            };
            if outcome == BranchOutcome::Created {
                init_branches.push((b.id.clone(), b.meta()));
                fresh_branches.insert(b.id.clone());
            }
            report.branches.push((branch_label(b), outcome));
        }

        for t in &target.snapshots {
            let Some(cur) = local.get_mut(&t.id) else { continue };
            if let Some(meta) = self.take(
                &mut report,
                "snapshot",
                &t.id,
                &t.meta(),
                &cur.meta(),
                snap_inits.get(&t.id),
            ) {
                *cur = self.hub.update_snapshot_meta(&t.id, &meta)?;
                init_snaps.push((t.id.clone(), meta));
            }
        }
        let branch_inits = self.hub.inits::<BranchMeta>("br")?;
        for t in &target.branches {
            if fresh_branches.contains(&t.id) {
                continue;
            }
            let cur = match local_branches.get(&t.id) {
                Some(have) => have.clone(),
                None => self.hub.find_branch(&vsid, &t.id)?,
            };
            if let Some(meta) = self.take(
                &mut report,
                "branch",
                &t.id,
                &t.meta(),
                &cur.meta(),
                branch_inits.get(&t.id),
            ) {
                self.hub.update_branch_meta(&vsid, &t.id, &meta)?;
                init_branches.push((t.id.clone(), meta));
            }
        }
        self.hub.set_synced(&vsid, &init_vs, &init_snaps, &init_branches, None)?;
        // What the store holds now: the snapshots it had (with the metadata just taken)
        // and the new ones as imported.
        let mut now: Vec<Snapshot> = local.into_values().collect();
        for mut s in new_snaps {
            s.owner = target.volumeset.owner.clone();
            now.push(s);
        }
        snap_inits.extend(init_snaps.iter().cloned());
        Ok((report, target, Scanned { snapshots: now, snap_inits, complete, revision }))
    }

    /// The pull side of one decision: the copy to store locally (and as initial), if any.
    /// `UseCurrent` leaves both local copies alone: the change is still to be pushed.
    fn take<M: PartialEq + Clone + Serialize>(
        &self,
        report: &mut Report,
        kind: &'static str,
        id: &str,
        tgt: &M,
        cur: &M,
        init: Option<&M>,
    ) -> Option<M> {
        match decide(tgt, cur, init) {
            Decision::NoAction | Decision::UseCurrent => None,
            Decision::UseTgtNoConflict => {
                if tgt != cur {
                    report.metadata_pulled += 1;
                }
                Some(tgt.clone())
            }
            Decision::UseTgtConflict => {
                report.metadata_pulled += 1;
                report.conflicts.push(Conflict {
                    kind,
                    id: id.into(),
                    initial: json(&init),
                    current: json(cur),
                    target: json(tgt),
                });
                Some(tgt.clone())
            }
        }
    }

    /// Sync: pull, then push.
    pub async fn sync(
        &self,
        remote: &impl Remote,
        name_or_id: &str,
        progress: &dyn Progress,
    ) -> Result<Report> {
        let exists_remotely = match self.volset(name_or_id) {
            Ok(v) => remote.find_volset(&v.id).await?.is_some(),
            Err(Error::NotFound(_)) => true,
            Err(err) => return Err(err),
        };
        let (mut report, target, local) = if exists_remotely {
            let vsid = self.resolve(remote, name_or_id).await?;
            let (target, scanned) = match self.hub.volset(&vsid) {
                Ok(_) => self.read_changes(remote, &vsid).await?,
                Err(Error::NotFound(_)) => self.read_everything(remote, &vsid, None).await?,
                Err(err) => return Err(err),
            };
            let (report, target, local) =
                self.pull_onto(&vsid, target, scanned, remote, progress).await?;
            (report, Some(target), Some(local))
        } else {
            (Report { volset_id: self.volset(name_or_id)?.id, ..Report::default() }, None, None)
        };
        let vsid = report.volset_id.clone();
        // Where both sides stood: the remote as read, this store as it was before the pull.
        let mark = match (&target, &local) {
            (Some(t), Some(l)) => t.revision.clone().zip(l.revision.clone()),
            _ => None,
        };
        let mark = mark.map(|(remote, local)| SyncMark { remote, local });
        // A pull never changes the remote: its state as the pull read it is the target.
        let pushed = self.push_onto(remote, &vsid, target, local, mark, progress).await?;
        report.snapshots_pushed = pushed.snapshots_pushed;
        report.blobs_pushed = pushed.blobs_pushed;
        report.bytes += pushed.bytes;
        report.metadata_pushed = pushed.metadata_pushed;
        report.metadata_pulled += pushed.metadata_pulled;
        report.conflicts.extend(pushed.conflicts);
        report.branches = pushed.branches;
        Ok(report)
    }
}

/// A store's snapshots of one set and their synced copies: all of them (`complete`), or
/// those changed on either side since the last sync.
struct Scanned {
    snapshots: Vec<Snapshot>,
    snap_inits: HashMap<String, SnapshotMeta>,
    complete: bool,
    /// The store's revision of the set when it was read.
    revision: Option<String>,
}

/// The copy both sides hold after the target decided.
fn settled<M: Clone>(out: &SyncOutcome<M>) -> M {
    match out.decision {
        Decision::NoAction | Decision::UseCurrent => out.cur.clone(),
        Decision::UseTgtNoConflict | Decision::UseTgtConflict => out.tgt.clone(),
    }
}

/// Blob transfers in flight at once: each stored blob costs an fsync on the receiving
/// side, so small blobs one after another are bound by the disk's latency, not bandwidth.
pub const BLOB_LANES: usize = 8;

/// Runs `f` on every id, [`BLOB_LANES`] at a time (in this task: the futures borrow).
async fn in_lanes<'a, F, Fut>(ids: &'a [String], f: F) -> Result<()>
where
    F: Fn(&'a String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let lane = |k: usize| {
        let f = &f;
        async move {
            for id in ids.iter().skip(k).step_by(BLOB_LANES) {
                f(id).await?;
            }
            Ok::<(), Error>(())
        }
    };
    let (a, b, c, d, e, g, h, i) =
        tokio::join!(lane(0), lane(1), lane(2), lane(3), lane(4), lane(5), lane(6), lane(7));
    for result in [a, b, c, d, e, g, h, i] {
        result?;
    }
    Ok(())
}

/// True when `ancestor` is `descendant` or its ancestor, among `snaps`.
fn ancestor_in(snaps: &HashMap<String, Snapshot>, ancestor: &str, descendant: &str) -> bool {
    let mut next = Some(descendant.to_string());
    while let Some(id) = next {
        if id == ancestor {
            return true;
        }
        next = snaps.get(&id).and_then(|s| s.parent_id.clone());
    }
    false
}
