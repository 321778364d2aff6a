//! How snapshot metadata is laid out in the KV store. Every key and record format is
//! declared here and nowhere else; `docs/design/snapshots-metastore.md` describes it byte by
//! byte.
//!
//! Keys (all under `snapshots/v1/`):
//!
//! | key | value |
//! |---|---|
//! | `s/<name>` | the snapshot's [`Record`] |
//! | `c/<parent id: u64 BE><child id: u64 BE>` | empty: the parent→child index |
//! | `i/<id: u64 BE>` | the snapshot's name: the id map |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::info::Kind;
use crate::{Error, Result};

const PREFIX: &[u8] = b"snapshots/v1/";
/// The record format version written first in every record.
const RECORD_VERSION: u8 = 1;

/// One snapshot's record, stored compactly (postcard) under `s/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) version: u8,
    pub(crate) id: u64,
    pub(crate) kind: u8,
    /// The parent's name, empty for none.
    pub(crate) parent: String,
    /// Ids of the parent chain, nearest first. Stored so that resolving an active snapshot
    /// is one read; a committed snapshot never changes, so the chain never goes stale.
    pub(crate) parent_ids: Vec<u64>,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    pub(crate) size: i64,
    pub(crate) inodes: i64,
    pub(crate) labels: Vec<(String, String)>,
}

impl Record {
    pub(crate) fn new(id: u64, kind: Kind, parent: String, parent_ids: Vec<u64>) -> Record {
        let now = to_nanos(SystemTime::now());
        Record {
            version: RECORD_VERSION,
            id,
            kind: kind.to_byte(),
            parent,
            parent_ids,
            created: now,
            updated: now,
            size: 0,
            inodes: 0,
            labels: Vec::new(),
        }
    }

    pub(crate) fn kind(&self) -> Result<Kind> {
        Kind::from_byte(self.kind)
            .ok_or_else(|| Error::Corrupted(format!("record {} has kind {}", self.id, self.kind)))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these field types.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<Record> {
        let record: Record = postcard::from_bytes(bytes)
            .map_err(|err| Error::Corrupted(format!("record of {name:?}: {err}")))?;
        if record.version != RECORD_VERSION {
            return Err(Error::Corrupted(format!(
                "record of {name:?} has format version {}, this strata reads {RECORD_VERSION}",
                record.version
            )));
        }
        Ok(record)
    }
}

/// `s/<name>`.
pub(crate) fn snapshot_key(name: &str) -> Vec<u8> {
    key(b"s/", name.as_bytes())
}

/// The prefix of every snapshot record.
pub(crate) fn snapshots_prefix() -> Vec<u8> {
    key(b"s/", b"")
}

/// Strips the record prefix from a key found by a scan.
pub(crate) fn name_of(key: &[u8]) -> Result<String> {
    let prefix = snapshots_prefix();
    let raw = key.strip_prefix(prefix.as_slice()).unwrap_or(key);
    String::from_utf8(raw.to_vec())
        .map_err(|_| Error::Corrupted(format!("snapshot name {:?} is not UTF-8", raw)))
}

/// `c/<parent><child>`.
pub(crate) fn child_key(parent: u64, child: u64) -> Vec<u8> {
    let mut ids = [0u8; 16];
    ids[..8].copy_from_slice(&parent.to_be_bytes());
    ids[8..].copy_from_slice(&child.to_be_bytes());
    key(b"c/", &ids)
}

/// `c/<parent>`: the prefix of every child link of `parent`.
pub(crate) fn children_prefix(parent: u64) -> Vec<u8> {
    key(b"c/", &parent.to_be_bytes())
}

/// `i/<id>`.
pub(crate) fn id_key(id: u64) -> Vec<u8> {
    key(b"i/", &id.to_be_bytes())
}

/// The prefix of the id map.
pub(crate) fn ids_prefix() -> Vec<u8> {
    key(b"i/", b"")
}

/// The id in an `i/<id>` key.
pub(crate) fn id_of(key: &[u8]) -> Result<u64> {
    let prefix = ids_prefix();
    key.strip_prefix(prefix.as_slice())
        .and_then(|raw| <[u8; 8]>::try_from(raw).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupted(format!("id map key {:?}", key.escape_ascii().to_string())))
}

fn key(table: &[u8], rest: &[u8]) -> Vec<u8> {
    [PREFIX, table, rest].concat()
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn to_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`to_nanos`].
pub(crate) fn from_nanos(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_other_versions() {
        let mut record = Record::new(7, Kind::Active, "base".into(), vec![3, 1]);
        record.labels = vec![("a".into(), "b".into())];
        let bytes = record.encode();
        assert_eq!(Record::decode("x", &bytes).unwrap(), record);
        record.version = 9;
        assert!(matches!(Record::decode("x", &record.encode()), Err(Error::Corrupted(_))));
        assert!(matches!(Record::decode("x", b"\x01"), Err(Error::Corrupted(_))));
    }

    #[test]
    fn child_keys_sort_under_their_parent() {
        let prefix = children_prefix(5);
        assert!(child_key(5, u64::MAX).starts_with(&prefix));
        assert!(!child_key(6, 0).starts_with(&prefix));
    }
}
