//! The snapshot metastore: containerd's `snapshots/storage` operations, as free functions
//! over a KV transaction. Pass the transaction explicitly; nothing here commits.
//!
//! Every rule of the contract holds on every KV engine because each operation reads what it
//! depends on inside the transaction: creating a child reads the parent's record, and
//! removing a parent reads the record and scans its child links, so the two conflict and
//! one of them retries. No orphan and no unremovable parent can result.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::SystemTime;

use strata_kv::{Read, WriteTxn};

use crate::filter::Filters;
use crate::info::{Info, Kind, Snapshot, Usage};
use crate::schema::{self, Record};
use crate::{Error, Result};

/// The longest key or name accepted.
pub const MAX_NAME: usize = 4096;
/// The most bytes one label's key and value may take together (containerd's limit).
pub const MAX_LABEL: usize = 4096;

/// Creates an active or view snapshot `key` on the committed `parent` (empty: none).
pub fn create_snapshot(
    txn: &mut WriteTxn,
    kind: Kind,
    key: &str,
    parent: &str,
    labels: BTreeMap<String, String>,
) -> Result<Snapshot> {
    if kind == Kind::Committed {
        return Err(Error::InvalidArgument(format!(
            "snapshot {key}: only active and view snapshots can be created, not {kind}"
        )));
    }
    check_name(key)?;
    check_labels(&labels)?;
    let (parent_id, mut parent_ids) = if parent.is_empty() {
        (None, Vec::new())
    } else {
        let record =
            load(txn, parent)?.ok_or_else(|| Error::NotFound(format!("parent {parent}")))?;
        if record.kind()? != Kind::Committed {
            return Err(Error::InvalidArgument(format!(
                "snapshot {key}: parent {parent} is not a committed snapshot"
            )));
        }
        let mut chain = vec![record.id];
        chain.extend(record.parent_ids);
        (Some(record.id), chain)
    };
    if txn.contains(&schema::snapshot_key(key))? {
        return Err(Error::AlreadyExists(key.to_string()));
    }
    let id = new_id(txn)?;
    let mut record = Record::new(id, kind, parent.to_string(), parent_ids.clone());
    record.labels = labels.into_iter().collect();
    store(txn, key, &record);
    txn.put(&schema::id_key(id), key.as_bytes());
    if let Some(parent_id) = parent_id {
        txn.put(&schema::child_key(parent_id, id), b"");
    }
    Ok(Snapshot {
        id: id.to_string(),
        kind,
        parent_ids: parent_ids.drain(..).map(|p| p.to_string()).collect(),
    })
}

/// The active or view snapshot `key`, with its parent chain.
pub fn get_snapshot(txn: &mut impl Read, key: &str) -> Result<Snapshot> {
    let record = load(txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    let kind = record.kind()?;
    if kind == Kind::Committed {
        return Err(Error::FailedPrecondition(format!(
            "snapshot {key} is committed, not active or view"
        )));
    }
    Ok(Snapshot {
        id: record.id.to_string(),
        kind,
        parent_ids: record.parent_ids.iter().map(u64::to_string).collect(),
    })
}

/// The id, info and usage of snapshot `key`.
pub fn get_info(txn: &mut impl Read, key: &str) -> Result<(String, Info, Usage)> {
    let record = load(txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    let usage = Usage { size: record.size, inodes: record.inodes };
    Ok((record.id.to_string(), info_of(key, &record)?, usage))
}

/// Updates the labels of `info.name`: all of them when `fieldpaths` is empty or names
/// `labels`, one per `labels.<key>` path (removed when `info` has no value for it). Any
/// other path is an invalid argument. Returns the updated info.
pub fn update_info(txn: &mut WriteTxn, info: &Info, fieldpaths: &[String]) -> Result<Info> {
    let name = &info.name;
    let mut record = load(txn, name)?.ok_or_else(|| Error::NotFound(name.clone()))?;
    let mut labels: BTreeMap<String, String> = record.labels.into_iter().collect();
    if fieldpaths.is_empty() {
        labels = info.labels.clone();
    }
    for path in fieldpaths {
        if path == "labels" {
            labels = info.labels.clone();
        } else if let Some(label) = path.strip_prefix("labels.") {
            match info.labels.get(label).filter(|v| !v.is_empty()) {
                Some(value) => labels.insert(label.to_string(), value.clone()),
                None => labels.remove(label),
            };
        } else {
            return Err(Error::InvalidArgument(format!(
                "snapshot {name}: cannot update field {path:?}; only labels and labels.<key> can be"
            )));
        }
    }
    check_labels(&labels)?;
    record.labels = labels.into_iter().collect();
    record.updated = schema::to_nanos(SystemTime::now());
    store(txn, name, &record);
    info_of(name, &record)
}

/// Calls `visit` with the info of every snapshot that matches `filters`, in name order.
pub fn walk_info(
    txn: &mut impl Read,
    filters: &Filters,
    mut visit: impl FnMut(Info) -> Result<()>,
) -> Result<()> {
    for (key, value) in txn.prefix(&schema::snapshots_prefix())? {
        let name = schema::name_of(&key)?;
        let info = info_of(&name, &Record::decode(&name, &value)?)?;
        if filters.matches(&info) {
            visit(info)?;
        }
    }
    Ok(())
}

/// Commits the active snapshot `key` as `name`: same id, fresh times, `usage` stored, and
/// exactly `labels` (nothing inherited from the active snapshot). Returns the id.
pub fn commit_active(
    txn: &mut WriteTxn,
    key: &str,
    name: &str,
    usage: Usage,
    labels: BTreeMap<String, String>,
) -> Result<String> {
    check_name(name)?;
    check_labels(&labels)?;
    if txn.contains(&schema::snapshot_key(name))? {
        return Err(Error::AlreadyExists(name.to_string()));
    }
    let record = load(txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    let kind = record.kind()?;
    if kind != Kind::Active {
        return Err(Error::FailedPrecondition(format!(
            "snapshot {key} is {kind}; only active snapshots can be committed"
        )));
    }
    let mut committed = Record::new(record.id, Kind::Committed, record.parent, record.parent_ids);
    committed.size = usage.size;
    committed.inodes = usage.inodes;
    committed.labels = labels.into_iter().collect();
    txn.delete(&schema::snapshot_key(key));
    store(txn, name, &committed);
    txn.put(&schema::id_key(record.id), name.as_bytes());
    Ok(record.id.to_string())
}

/// Removes snapshot `key`; refused while it has children. Returns its id and kind.
pub fn remove(txn: &mut WriteTxn, key: &str) -> Result<(String, Kind)> {
    let record = load(txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    let children = schema::children_prefix(record.id);
    let end = strata_kv::prefix_end(&children).unwrap_or_default();
    let child = txn.scan(Bound::Included(&children), Bound::Excluded(&end), 1)?;
    if !child.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "cannot remove snapshot {key}: it has a child snapshot"
        )));
    }
    txn.delete(&schema::snapshot_key(key));
    txn.delete(&schema::id_key(record.id));
    if let Some(parent) = record.parent_ids.first() {
        txn.delete(&schema::child_key(*parent, record.id));
    }
    Ok((record.id.to_string(), record.kind()?))
}

/// Every snapshot's id, mapped to its key or name.
pub fn id_map(txn: &mut impl Read) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (key, value) in txn.prefix(&schema::ids_prefix())? {
        let name = String::from_utf8(value)
            .map_err(|_| Error::Corrupted("a name in the id map is not UTF-8".into()))?;
        map.insert(schema::id_of(&key)?.to_string(), name);
    }
    Ok(map)
}

fn load(txn: &mut impl Read, name: &str) -> Result<Option<Record>> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("snapshot key must not be empty".into()));
    }
    txn.get(&schema::snapshot_key(name))?.map(|bytes| Record::decode(name, &bytes)).transpose()
}

fn store(txn: &mut WriteTxn, name: &str, record: &Record) {
    txn.put(&schema::snapshot_key(name), &record.encode());
}

fn info_of(name: &str, record: &Record) -> Result<Info> {
    Ok(Info {
        name: name.to_string(),
        parent: record.parent.clone(),
        kind: record.kind()?,
        labels: record.labels.iter().cloned().collect(),
        created: schema::from_nanos(record.created),
        updated: schema::from_nanos(record.updated),
    })
}

/// A fresh random id no snapshot has. Random ids, unlike a shared counter, let concurrent
/// creates commit without conflicting with each other.
fn new_id(txn: &mut WriteTxn) -> Result<u64> {
    loop {
        let id = fastrand::u64(1..u64::MAX >> 11);
        if !txn.contains(&schema::id_key(id))? {
            return Ok(id);
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("snapshot key must not be empty".into()));
    }
    if name.len() > MAX_NAME {
        return Err(Error::InvalidArgument(format!(
            "snapshot key of {} bytes is longer than {MAX_NAME}",
            name.len()
        )));
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in labels {
        if key.is_empty() {
            return Err(Error::InvalidArgument("label keys must not be empty".into()));
        }
        if key.len() + value.len() > MAX_LABEL {
            return Err(Error::InvalidArgument(format!(
                "label {key:?}: key and value together exceed {MAX_LABEL} bytes"
            )));
        }
    }
    Ok(())
}
