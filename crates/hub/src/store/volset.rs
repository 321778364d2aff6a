//! Volume sets: create, import, find, list, rename; grants.

use std::ops::Bound;

use strata_kv::{Read, WriteTxn};

use super::{Hub, Query, SortBy, encode, page};
use crate::model::{
    Attrs, VolumeKind, VolumeSet, VolumeSetMeta, new_id, now, validate_id, validate_name,
};
use crate::{Error, Result};

impl Hub {
    /// Creates a filesystem volume set named `name` owned by `user`. Names are unique per
    /// owner.
    pub fn create_volset(&self, name: &str, description: &str, user: &str) -> Result<VolumeSet> {
        self.create_volset_of(VolumeKind::Filesystem, name, description, user)
    }

    /// Creates a volume set of `kind` named `name` owned by `user`. Names are unique per
    /// owner, whatever the kind.
    pub fn create_volset_of(
        &self,
        kind: VolumeKind,
        name: &str,
        description: &str,
        user: &str,
    ) -> Result<VolumeSet> {
        validate_name("volume set", name)?;
        let at = now();
        let volset = VolumeSet {
            id: new_id(),
            name: name.into(),
            prefix: String::new(),
            kind,
            description: description.into(),
            attrs: Attrs::new(),
            size: 0,
            creator: user.into(),
            owner: user.into(),
            created_at: at,
            updated_at: at,
        };
        self.store.with_txn(|txn| {
            self.check_volset_name_free(txn, name, user, &volset.id)?;
            txn.put(&self.key(&["vs", &volset.id]), &encode(&volset));
            Ok::<_, Error>(())
        })?;
        Ok(volset)
    }

    fn check_volset_name_free(
        &self,
        txn: &mut WriteTxn,
        name: &str,
        owner: &str,
        id: &str,
    ) -> Result<()> {
        let all: Vec<VolumeSet> = self.list_json(txn, &["vs", ""])?;
        if all.iter().any(|v| v.name == name && v.owner == owner && v.id != id) {
            return Err(Error::AlreadyExists(format!(
                "a volume set named {name:?} exists already; choose another name"
            )));
        }
        Ok(())
    }

    /// Stores `volset` as it is (pulls and pushes: the id and owner come from elsewhere).
    /// Idempotent: an existing set keeps its metadata.
    pub fn import_volset(&self, volset: &VolumeSet) -> Result<bool> {
        validate_id("volume set", &volset.id)?;
        self.store.with_txn(|txn| {
            if txn.contains(&self.key(&["vs", &volset.id]))? {
                return Ok(false);
            }
            self.check_volset_name_free(txn, &volset.name, &volset.owner, &volset.id)?;
            txn.put(&self.key(&["vs", &volset.id]), &encode(volset));
            Ok::<_, Error>(true)
        })
    }

    /// Deletes volume set `id`, which must have no snapshot left and no volume made from it
    /// (checked in the transaction that deletes the record, so a concurrent snapshot or
    /// volume either wins or is refused). The set's grants, blob claims, revision log and
    /// synced copies are then removed in store-sized transactions; an interrupted delete
    /// leaves only such keys of a set that no longer exists. Blobs stay in the blob store:
    /// another set may refer to the same bytes.
    pub fn delete_volset(&self, id: &str) -> Result<VolumeSet> {
        let volset = self.store.with_txn(|txn| {
            let volset: VolumeSet = self
                .get_json(txn, &["vs", id])?
                .ok_or_else(|| Error::NotFound(format!("no volume set with id {id}")))?;
            let volumes: Vec<crate::model::Volume> = self.list_json(txn, &["vol", ""])?;
            let names: Vec<&str> =
                volumes.iter().filter(|v| v.volset_id == id).map(|v| v.name.as_str()).collect();
            if !names.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "volume set {:?} has volumes made from it ({}); remove them first",
                    volset.name,
                    names.join(", ")
                )));
            }
            let snapshots = self.key(&["s", id, ""]);
            let end = strata_kv::prefix_end(&snapshots);
            let end = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            if !txn.scan(Bound::Included(&snapshots), end, 1)?.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "volume set {:?} still has snapshots; delete them first",
                    volset.name
                )));
            }
            txn.delete(&self.key(&["vs", id]));
            txn.delete(&self.key(&["init", "vs", id]));
            txn.delete(&self.key(&["init", "mark", id]));
            txn.delete(&self.key(&["srev", id]));
            Ok::<_, Error>(volset)
        })?;
        let leftovers = [["grant", id, ""], ["vsblob", id, ""], ["slog", id, ""], ["br", id, ""]];
        for parts in leftovers.into_iter().chain([["brname", id, ""]]) {
            let keys: Vec<Vec<u8>> =
                (self.read()?.prefix(&self.key(&parts))?).into_iter().map(|(key, _)| key).collect();
            for chunk in keys.chunks(self.chunk() * 4) {
                self.store.with_txn(|txn| {
                    for key in chunk {
                        txn.delete(key);
                    }
                    Ok::<_, Error>(())
                })?;
            }
        }
        Ok(volset)
    }

    /// The volume set `id`.
    pub fn volset(&self, id: &str) -> Result<VolumeSet> {
        self.get_json(&mut self.read()?, &["vs", id])?
            .ok_or_else(|| Error::NotFound(format!("no volume set with id {id}")))
    }

    /// The volume set whose id or name is `name_or_id` among those `visible` accepts.
    pub fn find_volset(
        &self,
        name_or_id: &str,
        visible: impl Fn(&VolumeSet) -> bool,
    ) -> Result<VolumeSet> {
        let all = self.volsets(&Query::default())?;
        let mut found: Vec<VolumeSet> = all
            .into_iter()
            .filter(|v| visible(v) && (v.id == name_or_id || v.name == name_or_id))
            .collect();
        match found.len() {
            0 => Err(Error::NotFound(format!(
                "no volume set named {name_or_id:?}; `strata volumeset ls` lists them"
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(Error::InvalidArgument(format!(
                "several volume sets are named {name_or_id:?}; name one by its id"
            ))),
        }
    }

    /// Volume sets, filtered, sorted and paged by `query`.
    pub fn volsets(&self, query: &Query) -> Result<Vec<VolumeSet>> {
        let mut all: Vec<VolumeSet> = self.list_json(&mut self.read()?, &["vs", ""])?;
        if let Some(name) = &query.name {
            all.retain(|v| &v.name == name);
        }
        all.sort_by(|a, b| {
            match query.sort {
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::Size => a.size.cmp(&b.size),
                SortBy::Created | SortBy::Depth => a.created_at.cmp(&b.created_at),
            }
            .then_with(|| a.id.cmp(&b.id))
        });
        Ok(page(all, query))
    }

    /// Replaces a volume set's metadata.
    pub fn update_volset_meta(&self, id: &str, meta: &VolumeSetMeta) -> Result<VolumeSet> {
        validate_name("volume set", &meta.name)?;
        self.store.with_txn(|txn| {
            let mut volset: VolumeSet = self
                .get_json(txn, &["vs", id])?
                .ok_or_else(|| Error::NotFound(format!("no volume set with id {id}")))?;
            if volset.name != meta.name {
                self.check_volset_name_free(txn, &meta.name, &volset.owner, id)?;
            }
            volset.set_meta(meta);
            txn.put(&self.key(&["vs", id]), &encode(&volset));
            Ok(volset)
        })
    }

    /// Lets `user` see and push to the volume set `vsid`.
    pub fn grant(&self, vsid: &str, user: &str) -> Result<()> {
        validate_name("user", user)?;
        self.store.with_txn(|txn| {
            if !txn.contains(&self.key(&["vs", vsid]))? {
                return Err(Error::NotFound(format!("no volume set with id {vsid}")));
            }
            txn.put(&self.key(&["grant", vsid, user]), b"");
            Ok(())
        })
    }

    /// True when `user` owns the volume set or was granted it.
    pub fn can_access(&self, volset: &VolumeSet, user: &str) -> Result<bool> {
        if volset.owner == user {
            return Ok(true);
        }
        Ok(self.read()?.contains(&self.key(&["grant", &volset.id, user]))?)
    }
}
