//! Transactions: read-only views and buffered read-write transactions.
//!
//! Transactions are values. A [`WriteTxn`] buffers its writes in memory and remembers what it
//! read; [`WriteTxn::commit`] consumes it and hands both to the engine, which applies the writes
//! only if nothing the transaction read has changed since its snapshot. Dropping a transaction
//! without committing discards it. The same code serves every engine; engines differ only in
//! how they validate and apply.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::Result;
use crate::engine::{Commit, Engine, ReadSet, Snapshot, empty_span};

/// How many entries a scan asks the engine for at a time.
const PAGE: usize = 1024;

/// A key and its value, as scans return them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Reading, the same in read-only and read-write transactions.
pub trait Read {
    /// The value of `key`, or `None` when it is absent.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Up to `limit` entries with keys within `(start, end)`, in ascending key order.
    fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>>;

    /// Every entry with a key in `[start, end)`, in ascending key order.
    fn range(&mut self, start: &[u8], end: &[u8]) -> Result<Vec<KeyValue>> {
        self.scan(Bound::Included(start), Bound::Excluded(end), usize::MAX)
    }

    /// Every entry whose key starts with `prefix`, in ascending key order.
    fn prefix(&mut self, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        let end = prefix_end(prefix);
        let end = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        self.scan(Bound::Included(prefix), end, usize::MAX)
    }

    /// True when `key` is present.
    fn contains(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is
/// none (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A read-only transaction: a consistent view of the store as of its start.
pub struct ReadTxn {
    snapshot: Box<dyn Snapshot>,
}

impl fmt::Debug for ReadTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTxn").field("revision", &self.snapshot.revision()).finish()
    }
}

impl ReadTxn {
    pub(crate) fn new(snapshot: Box<dyn Snapshot>) -> ReadTxn {
        ReadTxn { snapshot }
    }

    /// The engine revision this transaction reads at: on redb the number of commit batches
    /// made durable so far, on etcd the cluster revision (`None` before the first read).
    pub fn revision(&self) -> Option<u64> {
        self.snapshot.revision()
    }
}

impl Read for ReadTxn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get(key)?.map(|entry| entry.value))
    }

    fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        let mut cursor: Bound<Vec<u8>> = start.map(<[u8]>::to_vec);
        while out.len() < limit {
            let want = PAGE.min(limit - out.len());
            let page = self.snapshot.range(as_ref(&cursor), end, want)?;
            let exhausted = page.len() < want;
            if let Some(last) = page.last() {
                cursor = Bound::Excluded(last.key.clone());
            }
            out.extend(page.into_iter().map(|entry| (entry.key, entry.value)));
            if exhausted {
                break;
            }
        }
        Ok(out)
    }
}

/// A read-write transaction. Writes are buffered and become visible to others, all at once,
/// when [`commit`](WriteTxn::commit) succeeds; reads see the transaction's own writes.
pub struct WriteTxn {
    engine: Arc<dyn Engine>,
    snapshot: Box<dyn Snapshot>,
    /// Whether the engine validates range reads key by key (etcd) and so needs every key a
    /// scan saw, or by range alone (redb).
    track_scanned_keys: bool,
    reads: ReadSet,
    /// Buffered writes: `Some(value)` puts, `None` deletes.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTxn")
            .field("engine", &self.engine.name())
            .field("revision", &self.snapshot.revision())
            .field("reads", &self.reads.keys.len())
            .field("ranges", &self.reads.ranges.len())
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl WriteTxn {
    pub(crate) fn new(engine: Arc<dyn Engine>, track_scanned_keys: bool) -> Result<WriteTxn> {
        let snapshot = engine.snapshot()?;
        Ok(WriteTxn {
            engine,
            snapshot,
            track_scanned_keys,
            reads: ReadSet::default(),
            writes: BTreeMap::new(),
        })
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Removes `key`; removing an absent key is not an error.
    pub fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    /// Commits: applies every buffered write at once, durably, or fails with
    /// [`Error::Conflict`](crate::Error::Conflict) when another transaction changed
    /// something this one read since it started.
    pub fn commit(self) -> Result<()> {
        if self.writes.is_empty() {
            // A transaction that writes nothing changes nothing: its reads came from one
            // consistent snapshot, so it serializes at that snapshot.
            return Ok(());
        }
        let revision = self.snapshot.revision();
        let commit = Commit { revision, reads: self.reads, writes: self.writes };
        let started = std::time::Instant::now();
        let committed = self.engine.commit(commit);
        let result = match &committed {
            Ok(()) => "ok",
            Err(err) if err.is_conflict() => "conflict",
            Err(_) => "error",
        };
        metrics::histogram!(
            "strata_kv_commit_duration_seconds",
            "engine" => self.engine.name(),
            "result" => result
        )
        .record(started.elapsed());
        committed
    }

    /// Discards the transaction. Dropping it does the same; this spells it out.
    pub fn rollback(self) {}

    /// How many writes are buffered.
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }
}

impl Read for WriteTxn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(buffered) = self.writes.get(key) {
            return Ok(buffered.clone());
        }
        let entry = self.snapshot.get(key)?;
        if !self.reads.keys.contains_key(key) {
            self.reads.keys.insert(key.to_vec(), entry.as_ref().map(|e| e.mod_revision));
        }
        Ok(entry.map(|e| e.value))
    }

    fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        if empty_span(start, end) {
            return Ok(Vec::new());
        }
        let mut out: Vec<KeyValue> = Vec::new();
        let mut cursor: Bound<Vec<u8>> = start.map(<[u8]>::to_vec);
        let end_owned: Bound<Vec<u8>> = end.map(<[u8]>::to_vec);
        // How far the scan has looked; becomes the recorded range read.
        let mut covered_to: Bound<Vec<u8>> = end_owned.clone();
        'pages: loop {
            let page = self.snapshot.range(as_ref(&cursor), end, PAGE)?;
            let exhausted = page.len() < PAGE;
            let page_end: Bound<Vec<u8>> = match (exhausted, page.last()) {
                (false, Some(last)) => Bound::Included(last.key.clone()),
                _ => end_owned.clone(),
            };
            if self.track_scanned_keys {
                for entry in &page {
                    self.reads.keys.entry(entry.key.clone()).or_insert(Some(entry.mod_revision));
                }
            }
            let span = (as_ref(&cursor), as_ref(&page_end));
            let buffered: Vec<_> = if empty_span(span.0, span.1) {
                Vec::new()
            } else {
                self.writes.range::<[u8], _>(span).map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            for (key, value) in merge(page, buffered) {
                if out.len() == limit {
                    covered_to = Bound::Excluded(key);
                    break 'pages;
                }
                out.push((key, value));
            }
            if exhausted {
                break;
            }
            cursor = match page_end {
                Bound::Included(last) => Bound::Excluded(last),
                other => other,
            };
        }
        if !empty_span(start, as_ref(&covered_to)) {
            self.reads.ranges.push((start.map(<[u8]>::to_vec), covered_to));
        }
        Ok(out)
    }
}

/// Merges a page read from the snapshot with the buffered writes over the same span, in key
/// order: a buffered put replaces or adds an entry, a buffered delete hides it.
fn merge(
    page: Vec<crate::engine::Entry>,
    buffered: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Vec<KeyValue> {
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
        page.into_iter().map(|entry| (entry.key, entry.value)).collect();
    for (key, value) in buffered {
        match value {
            Some(value) => merged.insert(key, value),
            None => merged.remove(&key),
        };
    }
    merged.into_iter().collect()
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    bound.as_ref().map(Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::in_range;

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn in_range_checks_both_bounds() {
        let start = Bound::Included(b"b".to_vec());
        let end = Bound::Excluded(b"d".to_vec());
        assert!(in_range(b"b", &start, &end));
        assert!(in_range(b"c", &start, &end));
        assert!(!in_range(b"d", &start, &end));
        assert!(!in_range(b"a", &start, &end));
    }
}
