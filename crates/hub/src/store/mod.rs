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
//!
//! [`VolumeSet`]: crate::model::VolumeSet
//! [`Branch`]: crate::model::Branch
//! [`Volume`]: crate::model::Volume

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_kv::{Read, ReadTxn, Store};

use crate::model::{Attrs, Snapshot};
use crate::{Error, Result};

mod blob;
mod branch;
mod snapshot;
mod sync;
mod volset;
mod volume;

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

    fn read(&self) -> Result<ReadTxn> {
        Ok(self.store.read()?)
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
