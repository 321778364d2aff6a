//! The model's operations on `strata-kv`: every key is declared here (see the layout
//! below), and every rule of the model is checked here, inside the transaction that makes
//! the change.
//!
//! Layout, under the hub's prefix:
//!
//! | key | value |
//! |---|---|
//! | `vs/{vsid}` | [`VolumeSet`] (JSON) |
//! | `snap/{snapid}` | the snapshot's volume set id |
//! | `s/{vsid}/{snapid}` | [`Snapshot`] (JSON) |
//! | `br/{vsid}/{brid}` | [`Branch`] (JSON) |
//! | `brname/{vsid}/{name}` | branch id (only non-empty names) |
//! | `tip/{vsid}/{snapid}` | id of the branch whose tip it is |
//! | `child/{snapid}/{childid}` | empty: the child links, so a parent is never deleted |
//! | `vsblob/{vsid}/{blobid}` | empty: blobs a volume set refers to (download permission) |
//! | `vol/{volid}` | [`Volume`] (JSON) |
//! | `grant/{vsid}/{user}` | empty: users the owner shared the set with |
//! | `init/vs/{id}`, `init/snap/{id}`, `init/br/{id}` | the metadata last synced (local store) |
//! | `init/mark/{vsid}` | [`SyncMark`] (JSON): both sides' revisions at the end of the last sync |
//! | `srev/{vsid}` | the set's snapshot revision, `EPOCH:N` (N counts snapshot changes) |
//! | `slog/{vsid}/{N:016x}` | id of the snapshot created, changed or deleted at revision N |
//!
//! Every write of a snapshot record bumps its set's revision and logs the snapshot's id
//! in the same transaction, so "what changed since revision R" is one range scan of the
//! log. The epoch (a random id made with the counter) tells one store's revisions from
//! another's: a revision of another epoch is unknown here, and the caller falls back to
//! reading everything.
//!
//! Snapshots' parent, volume set and depth never change once written, so ancestry is read
//! outside write transactions; a branch move re-reads the branch in its transaction and
//! moves only from the tip it checked (compare and swap).

use std::collections::BTreeSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_kv::{Read, ReadTxn, Store, WriteTxn, prefix_end};

use crate::model::{
    Attrs, Branch, BranchMeta, Bush, Snapshot, SnapshotMeta, Volume, VolumeSet, VolumeSetMeta,
    new_id, now, validate_branch_name, validate_id, validate_name,
};
use crate::{Error, Result};

/// Snapshots imported per transaction: small enough for etcd's default `--max-txn-ops`.
pub const IMPORT_CHUNK: usize = 20;

/// A volume set, snapshot and branch store on one KV store.
#[derive(Debug, Clone)]
pub struct Hub {
    store: Store,
    prefix: String,
}

/// What a new snapshot is made of.
#[derive(Debug, Clone, Default)]
pub struct NewSnapshot {
    /// Its id; a fresh one when `None`.
    pub id: Option<String>,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Attributes.
    pub attrs: Attrs,
    /// Blob size.
    pub size: u64,
    /// Its blob, when already stored.
    pub blob_id: Option<String>,
    /// Who made it.
    pub creator: String,
}

/// How an imported branch relates to what the store had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchOutcome {
    /// The branch was new here.
    Created,
    /// The tip moved forward.
    Extended,
    /// The store already had this tip.
    Unchanged,
    /// The store's tip is ahead of the offered one: nothing to do.
    TargetAhead,
}

/// How a listing is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// By creation time (the default).
    #[default]
    Created,
    /// By name.
    Name,
    /// By size.
    Size,
    /// By depth (snapshots; volume sets sort by creation).
    Depth,
}

/// A listing's filter, order and page.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct Query {
    /// Only records with this name.
    pub name: Option<String>,
    /// Only snapshots on this branch (name or id); snapshot listings only.
    pub branch: Option<String>,
    /// Sort key.
    pub sort: SortBy,
    /// Newest/largest first when true.
    pub descending: bool,
    /// Records skipped.
    pub offset: usize,
    /// At most this many records (0: all).
    pub limit: usize,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::Corrupted(format!("{what}: {err}")))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A set's snapshot revision, `EPOCH:N`, parsed.
fn parse_revision(revision: &str) -> Option<(&str, u64)> {
    let (epoch, n) = revision.rsplit_once(':')?;
    Some((epoch, n.parse().ok()?))
}

/// Where a local store and a hub stood at the end of the last sync of a set: every
/// snapshot was the same on both sides as of these two revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SyncMark {
    /// The hub's revision of the set, as the sync's export read it.
    pub remote: String,
    /// This store's revision of the set when the sync began.
    pub local: String,
}

/// The snapshots of a set changed after a revision.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// The set's revision now.
    pub revision: String,
    /// Snapshots created or changed since.
    pub changed: Vec<Snapshot>,
    /// Snapshots deleted since.
    pub deleted: Vec<String>,
}

/// [`Changes`] with the records as stored (JSON).
#[derive(Debug, Clone, Default)]
struct RawChanges {
    /// The set's revision now.
    pub revision: String,
    /// Snapshots created or changed since, as stored.
    pub changed: Vec<Vec<u8>>,
    /// Snapshots deleted since.
    pub deleted: Vec<String>,
}

impl Hub {
    /// A hub on `store`, its keys under `prefix` (may be empty).
    pub fn new(store: Store, prefix: impl Into<String>) -> Hub {
        Hub { store, prefix: prefix.into() }
    }

    /// Records written per transaction by bulk operations: small where the engine bounds a
    /// transaction's operations (etcd's default `--max-txn-ops` is 128), large where it does
    /// not (redb, where each commit is a durable write).
    fn chunk(&self) -> usize {
        if self.store.max_txn_ops().is_some() { IMPORT_CHUNK } else { 50 * IMPORT_CHUNK }
    }

    /// The KV store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn key(&self, parts: &[&str]) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join("/"));
        key.into_bytes()
    }

    fn get_json<T: DeserializeOwned>(
        &self,
        txn: &mut impl Read,
        parts: &[&str],
    ) -> Result<Option<T>> {
        match txn.get(&self.key(parts))? {
            Some(bytes) => Ok(Some(decode(&parts.join("/"), &bytes)?)),
            None => Ok(None),
        }
    }

    fn list_json<T: DeserializeOwned>(
        &self,
        txn: &mut impl Read,
        parts: &[&str],
    ) -> Result<Vec<T>> {
        let prefix = self.key(parts);
        txn.prefix(&prefix)?
            .into_iter()
            .map(|(key, value)| decode(&String::from_utf8_lossy(&key), &value))
            .collect()
    }

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

    fn read(&self) -> Result<ReadTxn> {
        Ok(self.store.read()?)
    }

    // ---- volume sets ----

    /// Creates a volume set named `name` owned by `user`. Names are unique per owner.
    pub fn create_volset(&self, name: &str, description: &str, user: &str) -> Result<VolumeSet> {
        validate_name("volume set", name)?;
        let at = now();
        let volset = VolumeSet {
            id: new_id(),
            name: name.into(),
            prefix: String::new(),
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

    // ---- snapshots ----

    /// The snapshot `id`.
    pub fn snapshot(&self, id: &str) -> Result<Snapshot> {
        self.snapshot_in(&mut self.read()?, id)?
            .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))
    }

    fn snapshot_in(&self, txn: &mut impl Read, id: &str) -> Result<Option<Snapshot>> {
        let Some(vsid) = txn.get(&self.key(&["snap", id]))? else { return Ok(None) };
        self.get_json(txn, &["s", &text(vsid), id])
    }

    /// The snapshot of `vsid` whose id or name is `name_or_id` (the newest of that name).
    pub fn find_snapshot(&self, vsid: &str, name_or_id: &str) -> Result<Snapshot> {
        let all = self.snapshots(vsid, &Query::default())?;
        all.into_iter()
            .filter(|s| s.id == name_or_id || s.name == name_or_id)
            .max_by_key(|s| (s.id == name_or_id, s.created_at))
            .ok_or_else(|| {
                Error::NotFound(format!("no snapshot named {name_or_id:?} in the volume set"))
            })
    }

    /// The snapshots of `vsid`, filtered, sorted and paged by `query`.
    pub fn snapshots(&self, vsid: &str, query: &Query) -> Result<Vec<Snapshot>> {
        let mut txn = self.read()?;
        let mut all: Vec<Snapshot> = self.list_json(&mut txn, &["s", vsid, ""])?;
        if let Some(branch) = &query.branch {
            let branch = self.find_branch_in(&mut txn, vsid, branch)?;
            let on: BTreeSet<String> = self.chain(&branch.tip)?.into_iter().map(|s| s.id).collect();
            all.retain(|s| on.contains(&s.id));
        }
        if let Some(name) = &query.name {
            all.retain(|s| &s.name == name);
        }
        all.sort_by(|a, b| {
            match query.sort {
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::Size => a.size.cmp(&b.size),
                SortBy::Depth => a.depth.cmp(&b.depth),
                SortBy::Created => a.created_at.cmp(&b.created_at),
            }
            .then_with(|| a.depth.cmp(&b.depth))
            .then_with(|| a.id.cmp(&b.id))
        });
        Ok(page(all, query))
    }

    /// The snapshots among `ids` that this store has, read at one point in time.
    pub fn snapshots_by_id(&self, ids: &[&str]) -> Result<Vec<Snapshot>> {
        let mut txn = self.read()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(snap) = self.snapshot_in(&mut txn, id)? {
                out.push(snap);
            }
        }
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

    /// The snapshots from the root to `id`, root first.
    pub fn chain(&self, id: &str) -> Result<Vec<Snapshot>> {
        let mut txn = self.read()?;
        let mut chain = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(id) = next {
            let snap = self
                .snapshot_in(&mut txn, &id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            next = snap.parent_id.clone();
            chain.push(snap);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The snapshots of branch `branch` (name or id) from its tip to its root.
    pub fn snapshots_by_branch(&self, vsid: &str, branch: &str) -> Result<Vec<Snapshot>> {
        let branch = self.find_branch_in(&mut self.read()?, vsid, branch)?;
        let mut chain = self.chain(&branch.tip)?;
        chain.reverse();
        Ok(chain)
    }

    /// True when `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        let mut txn = self.read()?;
        let Some(top) = self.snapshot_in(&mut txn, ancestor)? else { return Ok(false) };
        let mut next = Some(descendant.to_string());
        while let Some(id) = next {
            if id == ancestor {
                return Ok(true);
            }
            let Some(snap) = self.snapshot_in(&mut txn, &id)? else { return Ok(false) };
            if snap.depth <= top.depth {
                return Ok(false);
            }
            next = snap.parent_id;
        }
        Ok(false)
    }

    fn make_snapshot(
        &self,
        txn: &mut WriteTxn,
        vsid: &str,
        parent: Option<&Snapshot>,
        spec: &NewSnapshot,
    ) -> Result<Snapshot> {
        let volset: VolumeSet = self
            .get_json(txn, &["vs", vsid])?
            .ok_or_else(|| Error::NotFound(format!("no volume set with id {vsid}")))?;
        let id = spec.id.clone().unwrap_or_else(new_id);
        validate_id("snapshot", &id)?;
        if txn.contains(&self.key(&["snap", &id]))? {
            return Err(Error::AlreadyExists(format!("snapshot {id} exists already")));
        }
        let at = now();
        let snap = Snapshot {
            id,
            parent_id: parent.map(|p| p.id.clone()),
            volset_id: vsid.into(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            attrs: spec.attrs.clone(),
            size: spec.size,
            creator: spec.creator.clone(),
            owner: volset.owner.clone(),
            created_at: at,
            updated_at: at,
            blob_id: spec.blob_id.clone(),
            prev_blob_id: parent.and_then(|p| p.blob_id.clone()),
            depth: parent.map_or(1, |p| p.depth + 1),
        };
        self.write_new_snapshot(txn, &snap)?;
        Ok(snap)
    }

    fn write_new_snapshot(&self, txn: &mut WriteTxn, snap: &Snapshot) -> Result<()> {
        txn.put(&self.key(&["snap", &snap.id]), snap.volset_id.as_bytes());
        self.put_snapshot(txn, snap)?;
        if let Some(parent) = &snap.parent_id {
            txn.put(&self.key(&["child", parent, &snap.id]), b"");
        }
        if let Some(blob) = &snap.blob_id {
            txn.put(&self.key(&["vsblob", &snap.volset_id, blob]), b"");
        }
        Ok(())
    }

    /// Writes a snapshot's record and logs the change.
    fn put_snapshot(&self, txn: &mut WriteTxn, snap: &Snapshot) -> Result<()> {
        txn.put(&self.key(&["s", &snap.volset_id, &snap.id]), &encode(snap));
        self.log_snapshot(txn, &snap.volset_id, &snap.id)
    }

    /// Bumps `vsid`'s snapshot revision and logs that snapshot `id` changed at it.
    fn log_snapshot(&self, txn: &mut WriteTxn, vsid: &str, id: &str) -> Result<()> {
        let key = self.key(&["srev", vsid]);
        let current = txn.get(&key)?.map(text);
        let (epoch, n) = match current.as_deref().and_then(parse_revision) {
            Some((epoch, n)) => (epoch.to_string(), n + 1),
            None => (new_id(), 1),
        };
        txn.put(&key, format!("{epoch}:{n}").as_bytes());
        txn.put(&self.key(&["slog", vsid, &format!("{n:016x}")]), id.as_bytes());
        Ok(())
    }

    /// `vsid`'s snapshot revision now (`None` while no snapshot of it was ever written).
    pub fn revision(&self, vsid: &str) -> Result<Option<String>> {
        Ok(self.read()?.get(&self.key(&["srev", vsid]))?.map(text))
    }

    /// The snapshots of `vsid` created, changed or deleted after revision `since`, read in
    /// `txn`; `None` when `since` is not a revision of this store's (another epoch, ahead of
    /// it, malformed): then only a full read will do.
    fn changes_in(
        &self,
        txn: &mut impl Read,
        vsid: &str,
        since: &str,
    ) -> Result<Option<RawChanges>> {
        let Some(revision) = txn.get(&self.key(&["srev", vsid]))?.map(text) else {
            return Ok(None);
        };
        let (Some((epoch, now)), Some((their_epoch, from))) =
            (parse_revision(&revision), parse_revision(since))
        else {
            return Ok(None);
        };
        if epoch != their_epoch || from > now {
            return Ok(None);
        }
        let start = self.key(&["slog", vsid, &format!("{:016x}", from + 1)]);
        let end = prefix_end(&self.key(&["slog", vsid, ""]))
            .ok_or_else(|| Error::Corrupted("the change log's key has no end".into()))?;
        let mut seen = std::collections::HashSet::new();
        let mut out = RawChanges { revision: revision.clone(), ..RawChanges::default() };
        for (_, id) in txn.range(&start, &end)? {
            let id = text(id);
            if !seen.insert(id.clone()) {
                continue;
            }
            match txn.get(&self.key(&["s", vsid, &id]))? {
                Some(record) => out.changed.push(record),
                None => out.deleted.push(id),
            }
        }
        Ok(Some(out))
    }

    /// The snapshots of `vsid` created, changed or deleted after revision `since`; `None`
    /// when `since` is not a revision of this store's (another epoch, ahead, malformed).
    pub fn changes(&self, vsid: &str, since: &str) -> Result<Option<Changes>> {
        let Some(raw) = self.changes_in(&mut self.read()?, vsid, since)? else {
            return Ok(None);
        };
        let changed = raw.changed.iter().map(|r| decode("snapshot", r)).collect::<Result<_>>()?;
        Ok(Some(Changes { revision: raw.revision, changed, deleted: raw.deleted }))
    }

    fn write_branch(&self, txn: &mut WriteTxn, old: Option<&Branch>, branch: &Branch) {
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

    /// Imports snapshots made elsewhere, oldest first, keeping their ids. Idempotent: a
    /// snapshot already here is left as it is (its blob may be set by the compare-and-swap
    /// rule). `creator`, when given, overrides the records' creator (a hub takes it from the
    /// token). Returns how many were new.
    pub fn import_snapshots(
        &self,
        vsid: &str,
        snaps: &[Snapshot],
        creator: Option<&str>,
    ) -> Result<usize> {
        let mut added = 0;
        for chunk in snaps.chunks(self.chunk()) {
            added += self.store.with_txn(|txn| {
                let volset: VolumeSet = self
                    .get_json(txn, &["vs", vsid])?
                    .ok_or_else(|| Error::NotFound(format!("no volume set with id {vsid}")))?;
                let mut added = 0;
                let mut made: Vec<Snapshot> = Vec::new();
                for offered in chunk {
                    validate_id("snapshot", &offered.id)?;
                    if offered.volset_id != vsid {
                        return Err(Error::InvalidArgument(format!(
                            "snapshot {} belongs to volume set {}, not {vsid}",
                            offered.id, offered.volset_id
                        )));
                    }
                    if let Some(have) = self.snapshot_in(txn, &offered.id)? {
                        if have.volset_id != vsid {
                            // Never touch, nor describe, a snapshot of another set.
                            return Err(Error::AlreadyExists(format!(
                                "snapshot id {} is taken; snapshots get new ids",
                                offered.id
                            )));
                        }
                        if have.parent_id != offered.parent_id {
                            return Err(Error::AlreadyExists(format!(
                                "snapshot {} exists already with another parent",
                                offered.id
                            )));
                        }
                        if let Some(blob) = &offered.blob_id {
                            // The offered blob may only replace "none" (compare and swap).
                            self.set_blob_in(txn, have, None, blob)?;
                        }
                        continue;
                    }
                    let parent = match &offered.parent_id {
                        None => None,
                        Some(pid) => match made.iter().find(|s| &s.id == pid) {
                            Some(p) => Some(p.clone()),
                            // A parent in another set is as missing as one nowhere.
                            None => Some(
                                self.snapshot_in(txn, pid)?
                                    .filter(|p| p.volset_id == vsid)
                                    .ok_or_else(|| {
                                        Error::FailedPrecondition(format!(
                                            "snapshot {}'s parent {pid} is missing; import \
                                             parents first",
                                            offered.id
                                        ))
                                    })?,
                            ),
                        },
                    };
                    let mut snap = offered.clone();
                    snap.depth = parent.as_ref().map_or(1, |p| p.depth + 1);
                    snap.owner = volset.owner.clone();
                    if let Some(creator) = creator {
                        snap.creator = creator.into();
                    }
                    self.write_new_snapshot(txn, &snap)?;
                    made.push(snap);
                    added += 1;
                }
                Ok::<_, Error>(added)
            })?;
        }
        Ok(added)
    }

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

    fn set_blob_in(
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

    /// Replaces a snapshot's metadata.
    pub fn update_snapshot_meta(&self, id: &str, meta: &SnapshotMeta) -> Result<Snapshot> {
        self.store.with_txn(|txn| {
            let mut snap = self
                .snapshot_in(txn, id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            snap.set_meta(meta);
            self.put_snapshot(txn, &snap)?;
            Ok(snap)
        })
    }

    /// Deletes a snapshot with no children. When it was a branch's tip, the branch moves
    /// to its parent, or is deleted with its root.
    pub fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.store.with_txn(|txn| {
            let snap = self
                .snapshot_in(txn, id)?
                .ok_or_else(|| Error::NotFound(format!("no snapshot with id {id}")))?;
            if !txn
                .scan(
                    std::ops::Bound::Included(&self.key(&["child", id, ""])),
                    strata_kv::prefix_end(&self.key(&["child", id, ""]))
                        .as_deref()
                        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                    1,
                )?
                .is_empty()
            {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {id} has children; delete them first"
                )));
            }
            let vsid = snap.volset_id.clone();
            if let Some(branch_id) = txn.get(&self.key(&["tip", &vsid, id]))? {
                let old: Branch =
                    self.get_json(txn, &["br", &vsid, &text(branch_id)])?.ok_or_else(|| {
                        Error::Corrupted(format!("tip index of {id} names a missing branch"))
                    })?;
                txn.delete(&self.key(&["tip", &vsid, id]));
                match &snap.parent_id {
                    Some(parent) if !txn.contains(&self.key(&["tip", &vsid, parent]))? => {
                        let mut branch = old.clone();
                        branch.tip = parent.clone();
                        self.write_branch(txn, Some(&old), &branch);
                    }
                    _ => {
                        txn.delete(&self.key(&["br", &vsid, &old.id]));
                        if !old.name.is_empty() {
                            txn.delete(&self.key(&["brname", &vsid, &old.name]));
                        }
                    }
                }
            }
            if let Some(parent) = &snap.parent_id {
                txn.delete(&self.key(&["child", parent, id]));
            }
            txn.delete(&self.key(&["snap", id]));
            txn.delete(&self.key(&["s", &vsid, id]));
            self.log_snapshot(txn, &vsid, id)
        })
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

    // ---- branches ----

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

    fn find_branch_in(&self, txn: &mut impl Read, vsid: &str, name_or_id: &str) -> Result<Branch> {
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

    // ---- volumes ----

    /// Records a volume.
    pub fn put_volume(&self, volume: &Volume) -> Result<()> {
        validate_id("volume", &volume.id)?;
        self.store.with_txn(|txn| {
            let all: Vec<Volume> = self.list_json(txn, &["vol", ""])?;
            if !volume.name.is_empty()
                && all.iter().any(|v| v.name == volume.name && v.id != volume.id)
            {
                return Err(Error::AlreadyExists(format!(
                    "a volume named {:?} exists already; choose another name",
                    volume.name
                )));
            }
            txn.put(&self.key(&["vol", &volume.id]), &encode(volume));
            Ok(())
        })
    }

    /// Every volume, oldest first.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let mut all: Vec<Volume> = self.list_json(&mut self.read()?, &["vol", ""])?;
        all.sort_by_key(|v| v.created_at);
        Ok(all)
    }

    /// The volume whose name, id or path is `what`.
    pub fn find_volume(&self, what: &str) -> Result<Volume> {
        let canonical = std::fs::canonicalize(what).ok();
        self.volumes()?
            .into_iter()
            .find(|v| {
                v.id == what
                    || v.name == what
                    || v.path == what
                    || canonical.as_deref() == Some(std::path::Path::new(&v.path))
            })
            .ok_or_else(|| {
                Error::NotFound(format!("no volume {what:?}; `strata volume ls` lists them"))
            })
    }

    /// Removes a volume's record.
    pub fn delete_volume(&self, id: &str) -> Result<()> {
        self.store.with_txn(|txn| {
            txn.delete(&self.key(&["vol", id]));
            Ok(())
        })
    }

    // ---- the "initial" copies of what was last synced ----

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

fn page<T>(all: Vec<T>, query: &Query) -> Vec<T> {
    let mut all = all;
    if query.descending {
        all.reverse();
    }
    let it = all.into_iter().skip(query.offset);
    if query.limit == 0 { it.collect() } else { it.take(query.limit).collect() }
}
