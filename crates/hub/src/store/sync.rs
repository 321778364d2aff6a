//! Export and the "initial" copies of what was last synced (`init/…`), with the sync mark.

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_kv::Read;

use super::{Hub, SyncMark, decode, encode, text};
use crate::model::{BranchMeta, SnapshotMeta, VolumeSetMeta};
use crate::{Error, Result};

impl Hub {
    /// The JSON of [`crate::sync::Export`] for `vsid`, assembled from the stored records
    /// without decoding them (snapshots in key or log order, not by depth). With `since`, a
    /// revision of this store's, only the snapshots changed after it are listed (and those
    /// deleted, by id); with no `since`, or one this store does not know, all of them.
    pub fn export_json(&self, vsid: &str, since: Option<&str>) -> Result<Vec<u8>> {
        let mut txn = self.read()?;
        let volset = txn
            .get(&self.key(&["vs", vsid]))?
            .ok_or_else(|| Error::NotFound(format!("no volume set with id {vsid}")))?;
        let changes = match since {
            Some(since) => self.changes_in(&mut txn, vsid, since)?,
            None => None,
        };
        let revision = match &changes {
            Some(c) => Some(c.revision.clone()),
            None => txn.get(&self.key(&["srev", vsid]))?.map(text),
        };
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(b"{\"volumeset\":");
        out.extend_from_slice(&volset);
        let list = |out: &mut Vec<u8>, name: &str, items: &mut dyn Iterator<Item = Vec<u8>>| {
            out.extend_from_slice(format!(",\"{name}\":[").as_bytes());
            for (i, value) in items.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&value);
            }
            out.push(b']');
        };
        let branches = txn.prefix(&self.key(&["br", vsid, ""]))?;
        list(&mut out, "branches", &mut branches.into_iter().map(|(_, v)| v));
        match changes {
            Some(changes) => {
                list(&mut out, "snapshots", &mut changes.changed.into_iter());
                let deleted = changes.deleted.iter().map(encode);
                list(&mut out, "deleted_snapshots", &mut deleted.into_iter());
                out.extend_from_slice(b",\"since\":");
                out.extend_from_slice(&encode(&since));
            }
            None => {
                let snaps = txn.prefix(&self.key(&["s", vsid, ""]))?;
                list(&mut out, "snapshots", &mut snaps.into_iter().map(|(_, v)| v));
            }
        }
        out.extend_from_slice(b",\"revision\":");
        out.extend_from_slice(&encode(&revision));
        out.push(b'}');
        Ok(out)
    }

    /// The synced copies of the snapshots among `ids` that have one.
    pub fn snapshot_inits(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, SnapshotMeta>> {
        let mut txn = self.read()?;
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(meta) = self.get_json(&mut txn, &["init", "snap", id])? {
                out.insert(id.to_string(), meta);
            }
        }
        Ok(out)
    }

    /// The metadata of `kind` (`vs`, `snap`, `br`) `id` as last synced.
    pub fn init<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>> {
        self.get_json(&mut self.read()?, &["init", kind, id])
    }

    /// Every synced copy of `kind`, by id.
    pub fn inits<T: DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<std::collections::HashMap<String, T>> {
        let prefix = self.key(&["init", kind, ""]);
        let mut out = std::collections::HashMap::new();
        for (key, value) in self.read()?.prefix(&prefix)? {
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            out.insert(id, decode(kind, &value)?);
        }
        Ok(out)
    }

    /// Where this store and the hub stood at the end of the last sync of `vsid`, if known.
    pub fn sync_mark(&self, vsid: &str) -> Result<Option<SyncMark>> {
        self.get_json(&mut self.read()?, &["init", "mark", vsid])
    }

    /// Records where this store and the hub stood at the end of a sync of `vsid`.
    pub fn set_sync_mark(&self, vsid: &str, mark: &SyncMark) -> Result<()> {
        self.store.with_txn(|txn| {
            txn.put(&self.key(&["init", "mark", vsid]), &encode(mark));
            Ok::<_, Error>(())
        })
    }

    /// Records the synced copies a push or pull settled, and `mark` for `vsid` with the last
    /// of them, in as few durable commits as the store's transaction size allows.
    pub fn set_synced(
        &self,
        vsid: &str,
        volsets: &[(String, VolumeSetMeta)],
        snapshots: &[(String, SnapshotMeta)],
        branches: &[(String, BranchMeta)],
        mark: Option<&SyncMark>,
    ) -> Result<()> {
        let mut puts: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let init = |kind: &str, id: &str| self.key(&["init", kind, id]);
        puts.extend(volsets.iter().map(|(id, m)| (init("vs", id), encode(m))));
        puts.extend(snapshots.iter().map(|(id, m)| (init("snap", id), encode(m))));
        puts.extend(branches.iter().map(|(id, m)| (init("br", id), encode(m))));
        puts.extend(mark.map(|m| (init("mark", vsid), encode(m))));
        for chunk in puts.chunks(self.chunk() * 4) {
            self.store.with_txn(|txn| {
                for (key, value) in chunk {
                    txn.put(key, value);
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }

    /// Forgets the metadata last synced of the objects `ids` of `kind` (`snap`, `br`): for
    /// objects deleted with their volume set, so a later pull makes them anew.
    pub fn forget_inits(&self, kind: &str, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(self.chunk() * 4) {
            self.store.with_txn(|txn| {
                for id in chunk {
                    txn.delete(&self.key(&["init", kind, id]));
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }

    /// Records the metadata of `kind` `id` as last synced, for many objects at once.
    pub fn set_inits<T: Serialize>(&self, kind: &str, items: &[(String, T)]) -> Result<()> {
        for chunk in items.chunks(self.chunk() * 4) {
            self.store.with_txn(|txn| {
                for (id, meta) in chunk {
                    txn.put(&self.key(&["init", kind, id]), &encode(meta));
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }
}
