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
//!
//! The decisions (which snapshots, blobs and branch moves, which metadata) are
//! [`crate::plan`]'s: each of push and pull reads both sides, asks its planner, and carries
//! the plan out here.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use strata_volume::BlobStore;

use crate::model::{BranchMeta, Snapshot, SnapshotMeta, VolumeSet, VolumeSetMeta};
use crate::plan::{
    self, Lookups, PullBranch, PullState, PushPlan, PushState, Synced, Take, branch_label, json,
};
use crate::service::{HubService, blob_id, copy_blob};
use crate::store::{BranchOutcome, Changes, Hub, Query, SyncMark};
use crate::sync::{
    Decision, Export, ImportRequest, ImportResponse, SyncOutcome, SyncRequest, SyncResponse,
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
        let state = self.push_state(vsid, local, mark, target.is_some())?;
        // Every branch is decided before anything is sent.
        let plan = plan::push(&state, target.as_ref(), self)?;
        let mut report = Report { volset_id: vsid.into(), ..Report::default() };
        report.branches = plan.branches.iter().map(|(b, o)| (branch_label(b), *o)).collect();
        let (blobs, bytes) = self.upload_blobs(remote, &plan.blobs, progress).await?;
        report.blobs_pushed += blobs;
        report.bytes += bytes;
        let new_there = target.is_none();
        report.snapshots_pushed +=
            self.send_snapshots(remote, vsid, &state.volset, &plan, new_there, progress).await?;
        let mut synced = plan.synced;
        self.reconcile(remote, vsid, &plan.metadata, &mut synced, &mut report).await?;
        let Synced { volsets, snapshots, branches } = &synced;
        self.hub.set_synced(vsid, volsets, snapshots, branches, plan.mark.as_ref())?;
        Ok(report)
    }

    /// This store's side of a push of `vsid`, with `local` (what a pull just left) when
    /// given, else every snapshot read now.
    fn push_state(
        &self,
        vsid: &str,
        local: Option<Scanned>,
        mark: Option<SyncMark>,
        on_remote: bool,
    ) -> Result<PushState> {
        let volset = self.hub.volset(vsid)?;
        let (revision, snapshots, snap_inits, complete) = match local {
            Some(scanned) => (None, scanned.snapshots, scanned.snap_inits, scanned.complete),
            None => {
                // This store's revision before it is read, for the mark of a push alone.
                let revision = self.hub.revision(vsid)?;
                let snapshots = self.hub.snapshots(vsid, &Query::default())?;
                (revision, snapshots, self.hub.inits::<SnapshotMeta>("snap")?, true)
            }
        };
        let branches = self.hub.branches(vsid)?;
        let tips: Vec<&str> = branches.iter().map(|b| b.tip.as_str()).collect();
        let tip_depths =
            self.hub.snapshots_by_id(&tips)?.into_iter().map(|s| (s.id, s.depth)).collect();
        let volset_init =
            if on_remote { self.hub.init::<VolumeSetMeta>("vs", vsid)? } else { None };
        let branch_inits = self.hub.inits::<BranchMeta>("br")?;
        Ok(PushState {
            volset,
            snapshots,
            snap_inits,
            complete,
            branches,
            tip_depths,
            volset_init,
            branch_inits,
            revision,
            mark,
        })
    }

    /// Uploads those of `wanted` the remote lacks; returns how many, and their bytes.
    async fn upload_blobs(
        &self,
        remote: &impl Remote,
        wanted: &[String],
        progress: &dyn Progress,
    ) -> Result<(usize, u64)> {
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
        progress.end();
        Ok((missing.len(), total))
    }

    /// Imports the plan's snapshots on the remote, oldest first, in batches, then its branch
    /// moves with the last batch (one request even when empty if the set is `new_there`);
    /// returns how many snapshots were new there.
    async fn send_snapshots(
        &self,
        remote: &impl Remote,
        vsid: &str,
        volset: &VolumeSet,
        plan: &PushPlan,
        new_there: bool,
        progress: &dyn Progress,
    ) -> Result<usize> {
        let moves = plan.moves();
        let mut added = 0;
        progress.begin("push snapshots", plan.snapshots.len() as u64);
        let chunks: Vec<&[Snapshot]> = plan.snapshots.chunks(IMPORT_BATCH).collect();
        let count = chunks.len().max(1);
        for i in 0..count {
            let snapshots = chunks.get(i).map(|c| c.to_vec()).unwrap_or_default();
            let last = i + 1 == count;
            let request = ImportRequest {
                volumeset: volset.clone(),
                branches: if last { moves.clone() } else { Vec::new() },
                snapshots,
            };
            if request.snapshots.is_empty() && request.branches.is_empty() && !new_there {
                continue;
            }
            let response = remote.import(vsid, &request).await?;
            added += response.added;
            progress.advance(request.snapshots.len() as u64);
        }
        progress.end();
        Ok(added)
    }

    /// Changed metadata, decided on the hub: sends `request` (unless empty), takes the
    /// target's copies where it won, and adds what both sides now hold to `synced`.
    async fn reconcile(
        &self,
        remote: &impl Remote,
        vsid: &str,
        request: &SyncRequest,
        synced: &mut Synced,
        report: &mut Report,
    ) -> Result<()> {
        if request.volumeset.is_none()
            && request.snapshots.is_empty()
            && request.branches.is_empty()
        {
            return Ok(());
        }
        let response = remote.sync(vsid, request).await?;
        if let Some(out) = &response.volumeset {
            if let Some(meta) = self.settle("volumeset", out, report)? {
                self.hub.update_volset_meta(vsid, &meta)?;
            }
            synced.volsets.push((vsid.into(), settled(out)));
        }
        for out in &response.snapshots {
            if let Some(meta) = self.settle("snapshot", out, report)? {
                self.hub.update_snapshot_meta(&out.id, &meta)?;
            }
            synced.snapshots.push((out.id.clone(), settled(out)));
        }
        for out in &response.branches {
            if let Some(meta) = self.settle("branch", out, report)? {
                self.hub.update_branch_meta(vsid, &out.id, &meta)?;
            }
            synced.branches.push((out.id.clone(), settled(out)));
        }
        Ok(())
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
        let Scanned { snapshots, snap_inits, complete, revision } = scanned;
        let mut report = Report { volset_id: vsid.clone(), ..Report::default() };
        let mut synced = Synced::default();
        self.pull_volset(&vsid, &target.volumeset, &mut report, &mut synced)?;
        let state = PullState {
            snapshots: snapshots.into_iter().map(|s| (s.id.clone(), s)).collect(),
            snap_inits,
            branches: self.hub.branches(&vsid)?.into_iter().map(|b| (b.id.clone(), b)).collect(),
            tip_depths: self.unlisted_tip_depths(&target, complete)?,
            branch_inits: self.hub.inits::<BranchMeta>("br")?,
        };
        let plan = plan::pull(&state, &target, self)?;
        progress.begin("download blobs", plan.bytes);
        let advance = |n| progress.advance(n);
        in_lanes(&plan.blobs, |id| remote.download_blob(&vsid, id, &self.blobs, &advance)).await?;
        report.blobs_pulled += plan.blobs.len();
        progress.end();
        report.bytes += plan.bytes;
        report.snapshots_pulled = self.hub.import_snapshots(&vsid, &plan.snapshots, None)?;
        synced.snapshots.extend(plan.snapshots.iter().map(|s| (s.id.clone(), s.meta())));
        for step in &plan.branches {
            let (b, outcome) = match step {
                PullBranch::Unchanged(b) => (b, BranchOutcome::Unchanged),
                PullBranch::Import(b) => (b, self.hub.import_branch(b)?),
            };
            if outcome == BranchOutcome::Created {
                synced.branches.push((b.id.clone(), b.meta()));
            }
            report.branches.push((branch_label(b), outcome));
        }
        let PullState { snapshots: mut local, mut snap_inits, .. } = state;
        for t in plan.snapshot_meta {
            let (id, meta) = note(&mut report, t);
            let updated = self.hub.update_snapshot_meta(&id, &meta)?;
            local.insert(id.clone(), updated);
            synced.snapshots.push((id, meta));
        }
        for t in plan.branch_meta {
            let (id, meta) = note(&mut report, t);
            self.hub.update_branch_meta(&vsid, &id, &meta)?;
            synced.branches.push((id, meta));
        }
        let Synced { volsets, snapshots, branches } = &synced;
        self.hub.set_synced(&vsid, volsets, snapshots, branches, None)?;
        // What the store holds now: the snapshots it had (with the metadata just taken)
        // and the new ones as imported.
        let mut now: Vec<Snapshot> = local.into_values().collect();
        for mut s in plan.snapshots {
            s.owner = target.volumeset.owner.clone();
            now.push(s);
        }
        snap_inits.extend(synced.snapshots);
        Ok((report, target, Scanned { snapshots: now, snap_inits, complete, revision }))
    }

    /// Imports the remote's volume set `tgt` when new here, or else takes its metadata
    /// where the remote's copy wins.
    fn pull_volset(
        &self,
        vsid: &str,
        tgt: &VolumeSet,
        report: &mut Report,
        synced: &mut Synced,
    ) -> Result<()> {
        if self.hub.import_volset(tgt)? {
            synced.volsets.push((vsid.into(), tgt.meta()));
            return Ok(());
        }
        let cur = self.hub.volset(vsid)?;
        let init = self.hub.init::<VolumeSetMeta>("vs", vsid)?;
        if let Some(t) = plan::take("volumeset", vsid, &tgt.meta(), &cur.meta(), init.as_ref()) {
            let (_, meta) = note(report, t);
            self.hub.update_volset_meta(vsid, &meta)?;
            synced.volsets.push((vsid.into(), meta));
        }
        Ok(())
    }

    /// The depths of `target`'s branch tips it does not list, read here: a partial target
    /// lists only what changed, and this store has every tip it has not listed.
    fn unlisted_tip_depths(&self, target: &Export, complete: bool) -> Result<HashMap<String, u64>> {
        if complete {
            return Ok(HashMap::new());
        }
        let listed: HashSet<&str> = target.snapshots.iter().map(|s| s.id.as_str()).collect();
        let unlisted: Vec<&str> = target
            .branches
            .iter()
            .map(|b| b.tip.as_str())
            .filter(|t| !listed.contains(t))
            .collect();
        Ok(self.hub.snapshots_by_id(&unlisted)?.into_iter().map(|s| (s.id, s.depth)).collect())
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

/// This store's ancestry and blobs, as the planners ask for them.
impl Lookups for Local {
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        self.hub.is_ancestor(ancestor, descendant)
    }
    fn has_blob(&self, id: &str) -> Result<bool> {
        Ok(self.blobs.has(&blob_id(id)?))
    }
}

/// Counts metadata taken from the remote (and its conflict) in `report`; returns the id
/// and the copy to store.
fn note<M>(report: &mut Report, take: Take<M>) -> (String, M) {
    if take.pulled {
        report.metadata_pulled += 1;
    }
    report.conflicts.extend(take.conflict);
    (take.id, take.meta)
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
