//! The seam between transactions and storage engines.
//!
//! An engine offers consistent read views ([`Snapshot`]) and validates and applies
//! buffered transactions ([`Commit`]). Transactions themselves live in `crate::txn`
//! and are the same on every engine.

pub(crate) mod etcd;
pub(crate) mod recent;
pub(crate) mod redb;
pub(crate) mod remote;

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::Result;

/// A key as stored: raw bytes, ordered bytewise.
pub(crate) type Key = Vec<u8>;

/// One key and value found by a read, with the engine revision that last changed it
/// (0 where the engine does not track per-key revisions).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: Key,
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: u64,
}

/// A value found by a point read, with the engine revision that last changed it (0 where
/// the engine does not track per-key revisions).
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: u64,
}

/// A consistent, read-only view of the store at one revision.
pub(crate) trait Snapshot: Send {
    /// Reads one key.
    fn get(&mut self, key: &[u8]) -> Result<Option<Found>>;
    /// Reads up to `limit` entries in `[start, end)` in key order.
    fn range(&mut self, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize)
    -> Result<Vec<Entry>>;
    /// The revision this view reads at; `None` before the first read on lazy engines.
    fn revision(&self) -> Option<u64>;
}

/// What a transaction read, for validation at commit.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReadSet {
    /// Every key read, with the revision it had then (`None`: absent).
    pub(crate) keys: BTreeMap<Key, Option<u64>>,
    /// Every range scanned, as `(start, end)` bounds.
    pub(crate) ranges: Vec<(Bound<Key>, Bound<Key>)>,
}

impl ReadSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

/// A buffered read-write transaction handed to the engine at commit.
#[derive(Debug)]
pub(crate) struct Commit {
    /// The revision of the snapshot the transaction read from (`None` if it read nothing).
    pub(crate) revision: Option<u64>,
    /// What it read.
    pub(crate) reads: ReadSet,
    /// What it writes: `Some(value)` puts, `None` deletes.
    pub(crate) writes: BTreeMap<Key, Option<Vec<u8>>>,
}

/// A storage engine.
pub(crate) trait Engine: Send + Sync + std::fmt::Debug {
    /// Opens a read view.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>>;
    /// Validates `commit` against everything committed since its snapshot and, when nothing it
    /// read has changed, applies its writes durably. Fails with `Error::Conflict` otherwise.
    fn commit(&self, commit: Commit) -> Result<()>;
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;
    /// The most operations one transaction may carry, when the engine bounds them.
    fn max_txn_ops(&self) -> Option<usize>;
    /// Whether reads are served in this process (no network round trip).
    fn reads_are_local(&self) -> bool;
    /// Whether commits validate range reads key by key, so a scan must record every key
    /// it saw (rather than the range alone).
    fn validates_scans_by_key(&self) -> bool;
}

/// True when `key` lies within `(start, end)`.
pub(crate) fn in_range(key: &[u8], start: &Bound<Key>, end: &Bound<Key>) -> bool {
    let above = match start {
        Bound::Included(s) => key >= s.as_slice(),
        Bound::Excluded(s) => key > s.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match end {
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

/// True when no key lies within `(start, end)`: the start is past the end, or they meet
/// without both being inclusive. Ordered maps panic on such spans, so callers check first.
pub(crate) fn empty_span(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e) | Bound::Included(e)) => {
            s >= e
        }
        _ => false,
    }
}
