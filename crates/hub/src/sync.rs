//! Three-way sync: the decision rule, the messages that carry current and initial copies to
//! the target, and the target's side (decide again in a transaction, write `UseCurrent`).
//!
//! Equality is over the metadata fields only ([`VolumeSetMeta`], [`SnapshotMeta`],
//! [`BranchMeta`]): ids, parents, tips, blobs, owners and times are not compared. A missing
//! initial copy (never synced) equals nothing.

use serde::{Deserialize, Serialize};

use crate::model::{
    Branch, BranchMeta, Snapshot, SnapshotMeta, VolumeSet, VolumeSetMeta, validate_id,
};
use crate::store::{BranchOutcome, Hub};
use crate::{Error, Result};

/// What to do with one object, given target, current and initial copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Nothing changed anywhere.
    NoAction,
    /// Only the current side changed: the target takes the current copy.
    UseCurrent,
    /// The target's copy wins and there is nothing to report.
    UseTgtNoConflict,
    /// Both sides changed differently: the target's copy wins, and the user is told.
    UseTgtConflict,
}

/// The rule: `cur == init` → NoAction if `cur == tgt`, else UseTgtNoConflict;
/// `tgt == init` → UseCurrent; `tgt == cur` → UseTgtNoConflict; otherwise UseTgtConflict.
pub fn decide<T: PartialEq>(tgt: &T, cur: &T, init: Option<&T>) -> Decision {
    if init == Some(cur) {
        if cur == tgt { Decision::NoAction } else { Decision::UseTgtNoConflict }
    } else if init == Some(tgt) {
        Decision::UseCurrent
    } else if tgt == cur {
        Decision::UseTgtNoConflict
    } else {
        Decision::UseTgtConflict
    }
}

/// One object's current and initial copies, as the caller sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncItem<M> {
    /// The object's id.
    pub id: String,
    /// The caller's current copy.
    pub cur: M,
    /// The caller's copy as last synced, if ever.
    pub init: Option<M>,
}

/// The target's decision on one object, with all three copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOutcome<M> {
    /// The object's id.
    pub id: String,
    /// The decision.
    pub decision: Decision,
    /// The target's copy before the decision was carried out.
    pub tgt: M,
    /// The caller's current copy.
    pub cur: M,
    /// The caller's initial copy.
    pub init: Option<M>,
}

/// A batch of objects to reconcile on the target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncRequest {
    /// The volume set's own metadata.
    pub volumeset: Option<SyncItem<VolumeSetMeta>>,
    /// Snapshots' metadata.
    pub snapshots: Vec<SyncItem<SnapshotMeta>>,
    /// Branches' metadata (a rename is a change of `name` of the same branch id).
    pub branches: Vec<SyncItem<BranchMeta>>,
}

/// The target's answers, in request order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncResponse {
    /// The volume set's own metadata.
    pub volumeset: Option<SyncOutcome<VolumeSetMeta>>,
    /// Snapshots.
    pub snapshots: Vec<SyncOutcome<SnapshotMeta>>,
    /// Branches.
    pub branches: Vec<SyncOutcome<BranchMeta>>,
}

/// Everything a store holds about one volume set: what a pull or push compares against.
/// Asked for with a revision (`since`), only the snapshots changed after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Export {
    /// The set.
    pub volumeset: VolumeSet,
    /// Its branches (always all of them).
    pub branches: Vec<Branch>,
    /// Its snapshots, in no particular order (sort by depth for parents first); only those
    /// created or changed after `since` when that is set.
    pub snapshots: Vec<Snapshot>,
    /// The revision the answer lists changes after; `None` when it lists every snapshot
    /// (none was asked for, or the one asked for is unknown to the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Snapshots deleted after `since`, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_snapshots: Vec<String>,
    /// The set's snapshot revision as of this answer (`None` while no snapshot of it was
    /// ever written): what to ask for changes after next time.
    #[serde(default)]
    pub revision: Option<String>,
}

/// New snapshots and branch moves sent to the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    /// The set (created on the target when new there).
    pub volumeset: VolumeSet,
    /// New snapshots, oldest first.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// Branches to create or move, in order of tip depth.
    #[serde(default)]
    pub branches: Vec<Branch>,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportResponse {
    /// True when the volume set was new on the target.
    pub created_volumeset: bool,
    /// Snapshots that were new.
    pub added: usize,
    /// Per branch id, what happened.
    pub branches: Vec<(String, BranchOutcome)>,
}

fn outcome<M: PartialEq + Clone>(item: &SyncItem<M>, tgt: M) -> SyncOutcome<M> {
    SyncOutcome {
        id: item.id.clone(),
        decision: decide(&tgt, &item.cur, item.init.as_ref()),
        tgt,
        cur: item.cur.clone(),
        init: item.init.clone(),
    }
}

impl Hub {
    /// The target's side of a sync: decides each object against this store's copy and
    /// writes the caller's copy where the decision is `UseCurrent`; nothing else is written.
    pub fn apply_sync(&self, vsid: &str, request: &SyncRequest) -> Result<SyncResponse> {
        let mut response = SyncResponse::default();
        if let Some(item) = &request.volumeset {
            if item.id != vsid {
                return Err(Error::InvalidArgument(format!(
                    "volume set item {} is not {vsid}",
                    item.id
                )));
            }
            let out = outcome(item, self.volset(vsid)?.meta());
            if out.decision == Decision::UseCurrent {
                self.update_volset_meta(vsid, &item.cur)?;
            }
            response.volumeset = Some(out);
        }
        for item in &request.snapshots {
            validate_id("snapshot", &item.id)?;
            let snap = self.snapshot(&item.id)?;
            if snap.volset_id != vsid {
                return Err(Error::NotFound(format!(
                    "no snapshot {} in volume set {vsid}",
                    item.id
                )));
            }
            let out = outcome(item, snap.meta());
            if out.decision == Decision::UseCurrent {
                self.update_snapshot_meta(&item.id, &item.cur)?;
            }
            response.snapshots.push(out);
        }
        for item in &request.branches {
            validate_id("branch", &item.id)?;
            let branch = self.find_branch(vsid, &item.id)?;
            if branch.id != item.id {
                return Err(Error::NotFound(format!("no branch with id {}", item.id)));
            }
            let out = outcome(item, branch.meta());
            if out.decision == Decision::UseCurrent {
                self.update_branch_meta(vsid, &item.id, &item.cur)?;
            }
            response.branches.push(out);
        }
        Ok(response)
    }

    /// Everything about `vsid`, snapshots by depth.
    pub fn export(&self, vsid: &str) -> Result<Export> {
        let mut export = self.export_since(vsid, None)?;
        export.snapshots.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.id.cmp(&b.id)));
        export.branches.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(export)
    }

    /// Everything about `vsid`, or with `since` (a revision of this store's) only the
    /// snapshots changed after it; see [`Hub::export_json`].
    pub fn export_since(&self, vsid: &str, since: Option<&str>) -> Result<Export> {
        serde_json::from_slice(&self.export_json(vsid, since)?)
            .map_err(|e| Error::Corrupted(format!("export of volume set {vsid}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_in_every_case() {
        use Decision::*;
        // (tgt, cur, init) -> decision
        let cases: &[(i32, i32, Option<i32>, Decision)] = &[
            (1, 1, Some(1), NoAction),
            (2, 1, Some(1), UseTgtNoConflict),
            (1, 2, Some(1), UseCurrent),
            (2, 2, Some(1), UseTgtNoConflict),
            (2, 3, Some(1), UseTgtConflict),
            (1, 1, None, UseTgtNoConflict),
            (1, 2, None, UseTgtConflict),
        ];
        for (tgt, cur, init, want) in cases {
            assert_eq!(decide(tgt, cur, init.as_ref()), *want, "tgt {tgt} cur {cur} init {init:?}");
        }
    }
}
