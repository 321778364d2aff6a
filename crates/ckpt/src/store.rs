//! Committed checkpoints in the KV layer: one record per storage URL.
//!
//! Key: `ckpt/v1/value/` followed by the normalized storage URL. Record: a format byte
//! (`1`), a kind byte (`0` a value, `1` deleted), the revision as a big-endian `u64`, then
//! for a value its bytes. The revision counts the commits of that URL, starting at 1, so
//! clients can order what they read; a deletion keeps a record (a tombstone) so the count
//! goes on. The KV API is synchronous: commits, and reads on etcd, run on tokio's blocking
//! pool; reads on redb run in place (see [`Committed`]). Nothing staged is kept here.

use bytes::Bytes;
use strata_kv::{Read, Store};

use crate::staging::Change;
use crate::{Error, Result, StorageUrl};

/// The prefix every key of this service starts with.
pub const KEY_PREFIX: &[u8] = b"ckpt/v1/value/";

const FORMAT: u8 = 1;
const KIND_VALUE: u8 = 0;
const KIND_DELETED: u8 = 1;
const HEADER_LEN: usize = 10;

/// What is committed for one storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// How many commits the URL has had, this one included.
    pub(crate) revision: u64,
    /// The value, or `None` after a committed DELETE.
    pub(crate) value: Option<Bytes>,
}

/// The committed values of one server, in its KV store.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    store: Store,
    /// Whether reads run on the calling task: true on redb, whose reads are a few
    /// microseconds of MVCC page reads that never wait for writers (measured: the hand-off
    /// to the blocking pool cost a GET more than the read). On etcd a read is a network
    /// round trip and goes to the blocking pool.
    inline_reads: bool,
}

impl Committed {
    pub(crate) fn new(store: Store) -> Committed {
        let inline_reads = store.reads_are_local();
        Committed { store, inline_reads }
    }

    /// The record of `url`, if it ever had a commit.
    pub(crate) async fn get(&self, url: &StorageUrl) -> Result<Option<Record>> {
        let store = self.store.clone();
        let url = url.clone();
        let read = move || {
            let raw = store.read()?.get(&key(&url))?;
            raw.map(|raw| decode(&url, &raw)).transpose()
        };
        if self.inline_reads {
            return read();
        }
        blocking(read).await
    }

    /// Applies `change` durably and returns the new revision.
    pub(crate) async fn commit(&self, url: &StorageUrl, change: &Change) -> Result<u64> {
        let store = self.store.clone();
        let url = url.clone();
        let change = change.clone();
        blocking(move || {
            let key = key(&url);
            store.with_txn(|txn| {
                let previous = match txn.get(&key)? {
                    Some(raw) => decode(&url, &raw)?.revision,
                    None => 0,
                };
                let revision = previous + 1;
                txn.put(&key, &encode(revision, &change));
                Ok::<_, Error>(revision)
            })
        })
        .await
    }
}

/// The key of `url`'s record.
pub fn key(url: &StorageUrl) -> Vec<u8> {
    [KEY_PREFIX, url.as_str().as_bytes()].concat()
}

fn encode(revision: u64, change: &Change) -> Vec<u8> {
    let (kind, value): (u8, &[u8]) = match change {
        Change::Put(value) => (KIND_VALUE, value),
        Change::Delete => (KIND_DELETED, &[]),
    };
    let mut record = Vec::with_capacity(HEADER_LEN + value.len());
    record.extend_from_slice(&[FORMAT, kind]);
    record.extend_from_slice(&revision.to_be_bytes());
    record.extend_from_slice(value);
    record
}

fn decode(url: &StorageUrl, raw: &[u8]) -> Result<Record> {
    let corrupted = |reason: String| Error::Corrupted { url: url.to_string(), reason };
    if raw.len() < HEADER_LEN {
        return Err(corrupted(format!("record of {} bytes is shorter than its header", raw.len())));
    }
    let mut revision = [0; 8];
    revision.copy_from_slice(&raw[2..HEADER_LEN]);
    let revision = u64::from_be_bytes(revision);
    let value = match (raw[0], raw[1]) {
        (FORMAT, KIND_VALUE) => Some(Bytes::copy_from_slice(&raw[HEADER_LEN..])),
        (FORMAT, KIND_DELETED) if raw.len() == HEADER_LEN => None,
        (format, kind) => return Err(corrupted(format!("unknown format {format} kind {kind}"))),
    };
    Ok(Record { revision, value })
}

/// Runs a KV call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call).await.map_err(|err| {
        Error::Kv(strata_kv::Error::Unavailable(format!("kv call did not finish: {err}")))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_corrupted() {
        let url = StorageUrl::parse("http://h/v1/a/c/o").unwrap();
        let put = encode(7, &Change::Put(Bytes::from_static(b"v")));
        assert_eq!(put, [1, 0, 0, 0, 0, 0, 0, 0, 0, 7, b'v']);
        let record = decode(&url, &put).unwrap();
        assert_eq!(record, Record { revision: 7, value: Some(Bytes::from_static(b"v")) });
        let deleted = decode(&url, &encode(8, &Change::Delete)).unwrap();
        assert_eq!(deleted, Record { revision: 8, value: None });
        assert!(matches!(decode(&url, &[1, 0]), Err(Error::Corrupted { .. })));
        assert!(matches!(decode(&url, &[2; 10]), Err(Error::Corrupted { .. })));
        assert_eq!(key(&url), b"ckpt/v1/value/http://h/v1/a/c/o");
    }
}
