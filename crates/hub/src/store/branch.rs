//! Branches: fork, extend, the branch records and their indexes, import of a branch made
//! elsewhere; bushes.

use strata_kv::{Read, WriteTxn};

use super::{BranchOutcome, Hub, NewSnapshot, Query, encode, text};
use crate::model::{
    Attrs, Branch, BranchMeta, Bush, Snapshot, new_id, validate_branch_name, validate_id,
};
use crate::{Error, Result};

impl Hub {
    pub(super) fn write_branch(&self, txn: &mut WriteTxn, old: Option<&Branch>, branch: &Branch) {
        if let Some(old) = old {
            txn.delete(&self.key(&["tip", &old.volset_id, &old.tip]));
            if !old.name.is_empty() {
                txn.delete(&self.key(&["brname", &old.volset_id, &old.name]));
            }
        }
        txn.put(&self.key(&["br", &branch.volset_id, &branch.id]), &encode(branch));
        txn.put(&self.key(&["tip", &branch.volset_id, &branch.tip]), branch.id.as_bytes());
        if !branch.name.is_empty() {
            txn.put(&self.key(&["brname", &branch.volset_id, &branch.name]), branch.id.as_bytes());
        }
    }

    fn check_branch_name_free(
        &self,
        txn: &mut WriteTxn,
        vsid: &str,
        name: &str,
        id: &str,
    ) -> Result<()> {
        validate_branch_name(name)?;
        if name.is_empty() {
            return Ok(());
        }
        match txn.get(&self.key(&["brname", vsid, name]))? {
            Some(other) if text(other.clone()) != id => Err(Error::AlreadyExists(format!(
                "a branch named {name:?} exists already in the volume set; choose another name"
            ))),
            _ => Ok(()),
        }
    }

    /// Fork: a new branch named `branch_name` whose first snapshot's parent is `parent` (any
    /// snapshot of the set) or none.
    pub fn fork(
        &self,
        vsid: &str,
        parent: Option<&str>,
        branch_name: &str,
        spec: &NewSnapshot,
    ) -> Result<(Branch, Snapshot)> {
        validate_branch_name(branch_name)?;
        self.store.with_txn(|txn| {
            let parent = match parent {
                Some(id) => {
                    let snap = self
                        .snapshot_in(txn, id)?
                        .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
                    if snap.volset_id != vsid {
                        return Err(Error::InvalidArgument(format!(
                            "snapshot {id} belongs to another volume set"
                        )));
                    }
                    Some(snap)
                }
                None => None,
            };
            let branch_id = new_id();
            self.check_branch_name_free(txn, vsid, branch_name, &branch_id)?;
            let snap = self.make_snapshot(txn, vsid, parent.as_ref(), spec)?;
            let branch = Branch {
                id: branch_id,
                volset_id: vsid.into(),
                name: branch_name.into(),
                tip: snap.id.clone(),
                attrs: Attrs::new(),
            };
            self.write_branch(txn, None, &branch);
            Ok((branch, snap))
        })
    }

    /// Extend: a new snapshot after `parent`, which must be the tip of a branch; the branch
    /// moves to it. Off a tip, fails with "use fork".
    pub fn extend(
        &self,
        vsid: &str,
        parent: &str,
        spec: &NewSnapshot,
    ) -> Result<(Branch, Snapshot)> {
        self.store.with_txn(|txn| {
            let Some(branch_id) = txn.get(&self.key(&["tip", vsid, parent]))? else {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {parent} is not the tip of a branch; use fork to start a new branch from it"
                )));
            };
            let old: Branch = self
                .get_json(txn, &["br", vsid, &text(branch_id)])?
                .ok_or_else(|| Error::Corrupted(format!("tip index of {parent} names a missing branch")))?;
            let parent = self
                .snapshot_in(txn, parent)?
                .ok_or_else(|| Error::Corrupted(format!("branch tip {parent} is missing")))?;
            let snap = self.make_snapshot(txn, vsid, Some(&parent), spec)?;
            let mut branch = old.clone();
            branch.tip = snap.id.clone();
            self.write_branch(txn, Some(&old), &branch);
            Ok((branch, snap))
        })
    }

    /// The branches of `vsid`, by name.
    pub fn branches(&self, vsid: &str) -> Result<Vec<Branch>> {
        let mut all: Vec<Branch> = self.list_json(&mut self.read()?, &["br", vsid, ""])?;
        all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The branch of `vsid` whose name or id is `name_or_id`.
    pub fn find_branch(&self, vsid: &str, name_or_id: &str) -> Result<Branch> {
        self.find_branch_in(&mut self.read()?, vsid, name_or_id)
    }

    pub(super) fn find_branch_in(
        &self,
        txn: &mut impl Read,
        vsid: &str,
        name_or_id: &str,
    ) -> Result<Branch> {
        let id = match txn.get(&self.key(&["brname", vsid, name_or_id]))? {
            Some(id) => text(id),
            None => name_or_id.to_string(),
        };
        self.get_json(txn, &["br", vsid, &id])?
            .ok_or_else(|| Error::NotFound(format!("no branch {name_or_id:?} in the volume set")))
    }

    /// Renames a branch; names stay unique in the volume set.
    pub fn rename_branch(&self, vsid: &str, old_name: &str, new_name: &str) -> Result<Branch> {
        let branch = self.find_branch(vsid, old_name)?;
        let mut meta = branch.meta();
        meta.name = new_name.into();
        self.update_branch_meta(vsid, &branch.id, &meta)
    }

    /// Replaces a branch's metadata (name and attributes).
    pub fn update_branch_meta(&self, vsid: &str, id: &str, meta: &BranchMeta) -> Result<Branch> {
        self.store.with_txn(|txn| {
            let old: Branch = self
                .get_json(txn, &["br", vsid, id])?
                .ok_or_else(|| Error::NotFound(format!("no branch with id {id}")))?;
            self.check_branch_name_free(txn, vsid, &meta.name, id)?;
            let mut branch = old.clone();
            branch.set_meta(meta);
            self.write_branch(txn, Some(&old), &branch);
            Ok(branch)
        })
    }

    /// Imports a branch made elsewhere (same id): created when new, its tip moved forward
    /// when the offered tip descends from it; no-op when this store is ahead; "history
    /// diverged" otherwise. Its snapshots must be imported first.
    pub fn import_branch(&self, offered: &Branch) -> Result<BranchOutcome> {
        validate_id("branch", &offered.id)?;
        let vsid = offered.volset_id.as_str();
        let current: Option<Branch> =
            self.get_json(&mut self.read()?, &["br", vsid, &offered.id])?;
        let outcome = match &current {
            None => BranchOutcome::Created,
            Some(have) if have.tip == offered.tip => return Ok(BranchOutcome::Unchanged),
            Some(have) if self.is_ancestor(&have.tip, &offered.tip)? => BranchOutcome::Extended,
            Some(have) if self.is_ancestor(&offered.tip, &have.tip)? => {
                return Ok(BranchOutcome::TargetAhead);
            }
            Some(have) => {
                return Err(Error::Diverged(format!(
                    "branch {:?} is at {} here and at {} on the other side",
                    have.name, have.tip, offered.tip
                )));
            }
        };
        self.store.with_txn(|txn| {
            let now_here: Option<Branch> = self.get_json(txn, &["br", vsid, &offered.id])?;
            if now_here.as_ref().map(|b| &b.tip) != current.as_ref().map(|b| &b.tip) {
                return Err(Error::Kv(strata_kv::Error::Conflict(format!(
                    "branch {} moved while it was imported",
                    offered.id
                ))));
            }
            // A tip in another set is as missing as one nowhere.
            if self.snapshot_in(txn, &offered.tip)?.is_none_or(|t| t.volset_id != vsid) {
                return Err(Error::FailedPrecondition(format!(
                    "branch tip {} is missing; import it first",
                    offered.tip
                )));
            }
            let mut branch = match &now_here {
                Some(have) => {
                    let mut b = have.clone();
                    b.tip = offered.tip.clone();
                    b
                }
                None => {
                    self.check_branch_name_free(txn, vsid, &offered.name, &offered.id)?;
                    offered.clone()
                }
            };
            // A different branch whose tip this was (a fork of an old tip) keeps it: only
            // remove this branch's own tip entry.
            if let Some(old_tip_owner) = txn.get(&self.key(&["tip", vsid, &offered.tip]))?
                && text(old_tip_owner) != offered.id
            {
                return Err(Error::Diverged(format!(
                    "snapshot {} is already the tip of another branch",
                    offered.tip
                )));
            }
            branch.volset_id = vsid.into();
            self.write_branch(txn, now_here.as_ref(), &branch);
            Ok(())
        })?;
        Ok(outcome)
    }

    /// The bushes of `vsid`: one per root snapshot.
    pub fn bushes(&self, vsid: &str) -> Result<Vec<Bush>> {
        Ok(self
            .snapshots(vsid, &Query::default())?
            .into_iter()
            .filter(|s| s.parent_id.is_none())
            .map(|s| Bush { volset_id: vsid.into(), root: s.id, data_server: "local".into() })
            .collect())
    }
}
