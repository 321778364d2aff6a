//! Push and pull planning: which snapshots move and in what order, which blobs they need,
//! what happens to each branch, and which metadata to reconcile or take.
//!
//! The planners take both sides' state as [`crate::transfer`] read it and return a plan for
//! it to carry out; they neither write nor talk to the remote, and are not async. The one
//! thing they ask of this store beyond the data they are given goes through [`Lookups`]:
//! ancestry (a read of only what changed since the last sync does not hold whole
//! histories) and which blobs are here. The rules are those of the module doc of
//! [`crate::transfer`]; the metadata rule is [`decide`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::model::{Branch, BranchMeta, Snapshot, SnapshotMeta, VolumeSet, VolumeSetMeta};
use crate::store::{BranchOutcome, SyncMark};
use crate::sync::{Decision, Export, SyncItem, SyncRequest, decide};
use crate::transfer::Conflict;
use crate::{Error, Result};

/// What a plan asks of this store besides the state it is given.
pub trait Lookups {
    /// True when `ancestor` is `descendant` or one of its ancestors here; false when
    /// `ancestor` is not here (see [`crate::Hub::is_ancestor`]).
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool>;
    /// True when the bytes of blob `id` are here; an error when `id` is not a blob id.
    fn has_blob(&self, id: &str) -> Result<bool>;
}

/// This store's side of a push of one volume set, as read before anything is sent.
#[derive(Debug, Clone)]
pub struct PushState {
    /// The volume set.
    pub volset: VolumeSet,
    /// Its snapshots: all of them (`complete`), or those changed on either side since the
    /// last sync (what the pull of a sync just read and wrote).
    pub snapshots: Vec<Snapshot>,
    /// The synced copies of snapshots, by id (all, or at least those of `snapshots`).
    pub snap_inits: HashMap<String, SnapshotMeta>,
    /// Whether `snapshots` and the target list everything (otherwise only what changed).
    pub complete: bool,
    /// Its branches, all of them.
    pub branches: Vec<Branch>,
    /// The depths of the branches' tips, by snapshot id.
    pub tip_depths: HashMap<String, u64>,
    /// The set's synced copy (read only when the remote has the set).
    pub volset_init: Option<VolumeSetMeta>,
    /// The branches' synced copies, by id.
    pub branch_inits: HashMap<String, BranchMeta>,
    /// This store's revision of the set before `snapshots` were read, for the mark of a
    /// push alone; `None` in a sync (which brings its own `mark`).
    pub revision: Option<String>,
    /// The mark a sync records at the end, if any.
    pub mark: Option<SyncMark>,
}

/// The synced copies a push or pull settles, to record with [`crate::Hub::set_synced`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synced {
    /// The volume set's.
    pub volsets: Vec<(String, VolumeSetMeta)>,
    /// Snapshots'.
    pub snapshots: Vec<(String, SnapshotMeta)>,
    /// Branches'.
    pub branches: Vec<(String, BranchMeta)>,
}

/// What a push does.
#[derive(Debug, Clone)]
pub struct PushPlan {
    /// Every local branch, in order of tip depth, with what the push does to it.
    pub branches: Vec<(Branch, BranchOutcome)>,
    /// The snapshots the remote lacks, parents first.
    pub snapshots: Vec<Snapshot>,
    /// Their blobs, each once, in that order: the remote is asked which of them it lacks.
    pub blobs: Vec<String>,
    /// The metadata to reconcile three ways on the remote (empty: no request).
    pub metadata: SyncRequest,
    /// What is the same on both sides once the snapshots and branches are sent.
    pub synced: Synced,
    /// The mark to record with the synced copies at the end.
    pub mark: Option<SyncMark>,
}

impl PushPlan {
    /// The branches to send: new on the remote, or moved forward.
    pub fn moves(&self) -> Vec<Branch> {
        self.branches
            .iter()
            .filter(|(_, o)| matches!(o, BranchOutcome::Created | BranchOutcome::Extended))
            .map(|(b, _)| b.clone())
            .collect()
    }
}

/// Plans a push of `local` onto `target`, the remote's state as read (`None`: the set is
/// new there). Fails with "history diverged" when a branch moved differently on each side,
/// before anything is sent.
pub fn push(
    local: &PushState,
    target: Option<&Export>,
    lookups: &impl Lookups,
) -> Result<PushPlan> {
    let remote_snaps: HashMap<&str, &Snapshot> = target
        .map(|t| t.snapshots.iter().map(|s| (s.id.as_str(), s)).collect())
        .unwrap_or_default();
    let remote_branches: HashMap<&str, &Branch> =
        target.map(|t| t.branches.iter().map(|b| (b.id.as_str(), b)).collect()).unwrap_or_default();
    let mut snaps: Vec<&Snapshot> = local.snapshots.iter().collect();
    snaps.sort_by_key(|s| s.depth);
    // Whether the remote has a local snapshot. When the target lists only what changed
    // since the last sync, a snapshot it does not list is there exactly when it was
    // synced before (it has a synced copy here): that sync left both sides the same.
    let remote_has = |id: &str| {
        remote_snaps.contains_key(id) || (!local.complete && local.snap_inits.contains_key(id))
    };
    let mut branches: Vec<&Branch> = local.branches.iter().collect();
    branches.sort_by_key(|b| local.tip_depths.get(&b.tip).copied().unwrap_or(0));
    let mut moves = Vec::new();
    for branch in branches {
        let remote = remote_branches.get(branch.id.as_str()).copied();
        let outcome = push_outcome(branch, remote, &remote_snaps, local.complete, lookups)?;
        moves.push((branch.clone(), outcome));
    }
    let snapshots: Vec<Snapshot> =
        snaps.iter().filter(|s| !remote_has(&s.id)).map(|s| (*s).clone()).collect();
    let mut seen = HashSet::new();
    let blobs = snapshots
        .iter()
        .filter_map(|s| s.blob_id.clone())
        .filter(|b| seen.insert(b.clone()))
        .collect();
    let vsid = &local.volset.id;
    let synced = Synced {
        volsets: if target.is_none() { vec![(vsid.clone(), local.volset.meta())] } else { vec![] },
        snapshots: snapshots.iter().map(|s| (s.id.clone(), s.meta())).collect(),
        branches: moves
            .iter()
            .filter(|(b, _)| !remote_branches.contains_key(b.id.as_str()))
            .map(|(b, _)| (b.id.clone(), b.meta()))
            .collect(),
    };
    let mut metadata = SyncRequest::default();
    if let Some(t) = target {
        let (cur, init) = (local.volset.meta(), local.volset_init.clone());
        if init.as_ref() != Some(&cur) || t.volumeset.meta() != cur {
            metadata.volumeset = Some(SyncItem { id: vsid.clone(), cur, init });
        }
    }
    for s in snaps.iter().filter(|s| remote_has(&s.id)) {
        let init = local.snap_inits.get(&s.id);
        // Not listed by a partial target: unchanged there since it equalled `init`.
        let differs = remote_snaps.get(s.id.as_str()).is_some_and(|r| r.meta() != s.meta());
        if init != Some(&s.meta()) || differs {
            metadata.snapshots.push(SyncItem {
                id: s.id.clone(),
                cur: s.meta(),
                init: init.cloned(),
            });
        }
    }
    for (b, _) in &moves {
        let Some(r) = remote_branches.get(b.id.as_str()) else { continue };
        let init = local.branch_inits.get(&b.id);
        if init != Some(&b.meta()) || r.meta() != b.meta() {
            metadata.branches.push(SyncItem {
                id: b.id.clone(),
                cur: b.meta(),
                init: init.cloned(),
            });
        }
    }
    let mark = push_mark(local, target, &snaps, &moves);
    Ok(PushPlan { branches: moves, snapshots, blobs, metadata, synced, mark })
}

/// What a push does to `branch`, which the remote has at `remote` (if at all).
fn push_outcome(
    branch: &Branch,
    remote: Option<&Branch>,
    remote_snaps: &HashMap<&str, &Snapshot>,
    complete: bool,
    lookups: &impl Lookups,
) -> Result<BranchOutcome> {
    Ok(match remote {
        None => BranchOutcome::Created,
        Some(r) if r.tip == branch.tip => BranchOutcome::Unchanged,
        Some(r) if lookups.is_ancestor(&r.tip, &branch.tip)? => BranchOutcome::Extended,
        // A partial target's snapshots are all here already (a pull just took them).
        Some(r)
            if (complete && ancestor_in(remote_snaps, &branch.tip, &r.tip))
                || (!complete && lookups.is_ancestor(&branch.tip, &r.tip)?) =>
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
    })
}

/// The mark a push records: a sync's, or, for a push alone, both sides' revisions when the
/// push leaves both sides the same: the hub has no snapshot this store lacks and every
/// branch of the hub's ends where this store's does. Then the next sync reads only what
/// changed since, as after a sync.
fn push_mark(
    local: &PushState,
    target: Option<&Export>,
    snaps: &[&Snapshot],
    moves: &[(Branch, BranchOutcome)],
) -> Option<SyncMark> {
    match (&local.mark, &local.revision, target.and_then(|t| t.revision.clone())) {
        (Some(mark), _, _) => Some(mark.clone()),
        (None, Some(revision), Some(remote)) => {
            let target = target?;
            let here: HashSet<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
            let branches: HashSet<&str> = moves.iter().map(|(b, _)| b.id.as_str()).collect();
            let same = target.snapshots.iter().all(|s| here.contains(s.id.as_str()))
                && target.branches.iter().all(|b| branches.contains(b.id.as_str()))
                && moves.iter().all(|(_, o)| *o != BranchOutcome::TargetAhead);
            same.then(|| SyncMark { remote, local: revision.clone() })
        }
        (None, _, _) => None,
    }
}

/// This store's side of a pull of one volume set, as read (after the set itself was
/// imported or its metadata taken).
#[derive(Debug, Clone)]
pub struct PullState {
    /// This store's snapshots of the set, by id: all of them, or those changed on either
    /// side since the last sync.
    pub snapshots: HashMap<String, Snapshot>,
    /// The synced copies of snapshots, by id (all, or at least those of `snapshots`).
    pub snap_inits: HashMap<String, SnapshotMeta>,
    /// This store's branches of the set, by id.
    pub branches: HashMap<String, Branch>,
    /// The depths of the remote's branch tips that a partial target does not list (they
    /// are here), by snapshot id.
    pub tip_depths: HashMap<String, u64>,
    /// The branches' synced copies, by id.
    pub branch_inits: HashMap<String, BranchMeta>,
}

/// What a pull does with one of the remote's branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullBranch {
    /// This store has it at the same tip: nothing to do.
    Unchanged(Branch),
    /// Imported here ([`crate::Hub::import_branch`]): created, moved forward, or left
    /// alone when this store is ahead; "history diverged" otherwise.
    Import(Branch),
}

/// One object's metadata taken from the remote.
#[derive(Debug, Clone, PartialEq)]
pub struct Take<M> {
    /// The object's id.
    pub id: String,
    /// The copy to store here, and as synced.
    pub meta: M,
    /// Whether it counts as metadata pulled (the local copy changes, or a conflict).
    pub pulled: bool,
    /// The conflict to report, when both sides changed differently.
    pub conflict: Option<Conflict>,
}

/// What a pull does.
#[derive(Debug, Clone)]
pub struct PullPlan {
    /// The remote's snapshots this store lacks, parents first.
    pub snapshots: Vec<Snapshot>,
    /// The blobs of those that are not here, each once, in that order.
    pub blobs: Vec<String>,
    /// Their bytes: each blob's size as the first snapshot naming it says.
    pub bytes: u64,
    /// The remote's branches, in order of tip depth.
    pub branches: Vec<PullBranch>,
    /// Snapshots' metadata to take, in the target's order.
    pub snapshot_meta: Vec<Take<SnapshotMeta>>,
    /// The metadata to take of branches this store had (a new one comes as the remote's).
    pub branch_meta: Vec<Take<BranchMeta>>,
}

/// Plans a pull of `target`, the remote's state as read, into `local`.
pub fn pull(local: &PullState, target: &Export, lookups: &impl Lookups) -> Result<PullPlan> {
    let mut snapshots: Vec<Snapshot> =
        target.snapshots.iter().filter(|s| !local.snapshots.contains_key(&s.id)).cloned().collect();
    snapshots.sort_by_key(|s| s.depth);
    let mut blobs = Vec::new();
    let mut bytes = 0;
    for s in &snapshots {
        if let Some(blob) = &s.blob_id
            && !lookups.has_blob(blob)?
            && !blobs.contains(blob)
        {
            blobs.push(blob.clone());
            bytes += s.size;
        }
    }
    // Tips' depths: from the target, or (a partial target) from this store, which has
    // every tip it has not listed.
    let mut depth: HashMap<&str, u64> =
        target.snapshots.iter().map(|s| (s.id.as_str(), s.depth)).collect();
    for (id, d) in &local.tip_depths {
        depth.entry(id.as_str()).or_insert(*d);
    }
    let mut sorted: Vec<&Branch> = target.branches.iter().collect();
    sorted.sort_by_key(|b| depth.get(b.tip.as_str()).copied().unwrap_or(0));
    let branches = sorted
        .into_iter()
        .map(|b| match local.branches.get(&b.id) {
            Some(have) if have.tip == b.tip => PullBranch::Unchanged(b.clone()),
            _ => PullBranch::Import(b.clone()),
        })
        .collect();
    let snapshot_meta = target
        .snapshots
        .iter()
        .filter_map(|t| {
            let cur = local.snapshots.get(&t.id)?;
            take("snapshot", &t.id, &t.meta(), &cur.meta(), local.snap_inits.get(&t.id))
        })
        .collect();
    let branch_meta = target
        .branches
        .iter()
        .filter_map(|t| {
            let cur = local.branches.get(&t.id)?;
            take("branch", &t.id, &t.meta(), &cur.meta(), local.branch_inits.get(&t.id))
        })
        .collect();
    Ok(PullPlan { snapshots, blobs, bytes, branches, snapshot_meta, branch_meta })
}

/// The pull side of one decision: the copy to store locally (and as synced), if any.
/// `UseCurrent` leaves both local copies alone: the change is still to be pushed.
pub fn take<M: PartialEq + Clone + Serialize>(
    kind: &'static str,
    id: &str,
    tgt: &M,
    cur: &M,
    init: Option<&M>,
) -> Option<Take<M>> {
    let (pulled, conflict) = match decide(tgt, cur, init) {
        Decision::NoAction | Decision::UseCurrent => return None,
        Decision::UseTgtNoConflict => (tgt != cur, None),
        Decision::UseTgtConflict => (
            true,
            Some(Conflict {
                kind,
                id: id.into(),
                initial: json(&init),
                current: json(cur),
                target: json(tgt),
            }),
        ),
    };
    Some(Take { id: id.into(), meta: tgt.clone(), pulled, conflict })
}

pub(crate) fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A branch as reports and errors name it: its name, or its id when unnamed.
pub(crate) fn branch_label(b: &Branch) -> String {
    if b.name.is_empty() { b.id.clone() } else { b.name.clone() }
}

/// True when `ancestor` is `descendant` or its ancestor, among `snaps`.
fn ancestor_in(snaps: &HashMap<&str, &Snapshot>, ancestor: &str, descendant: &str) -> bool {
    let mut next = Some(descendant.to_string());
    while let Some(id) = next {
        if id == ancestor {
            return true;
        }
        next = snaps.get(id.as_str()).and_then(|s| s.parent_id.clone());
    }
    false
}
