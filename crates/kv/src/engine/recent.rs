//! The recent-writes index: which keys were written by which revision, for validating
//! optimistic transactions on an engine that keeps no per-key revisions (redb).
//!
//! A transaction that read at revision `r` conflicts when a key it read, or a key inside a
//! range it scanned, was written by a commit with a revision above `r`. The index keeps the
//! newest write revision of recently written keys and forgets the oldest when it grows past
//! its capacity; a transaction older than what was forgotten cannot be validated and is
//! treated as a conflict (its retry starts from a fresh snapshot).

use std::collections::{BTreeMap, VecDeque};

use crate::engine::{Key, ReadSet, in_range};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct RecentWrites {
    /// Newest write revision of each remembered key.
    last_write: BTreeMap<Key, u64>,
    /// Remembered writes in commit order, for forgetting the oldest first.
    order: VecDeque<(u64, Key)>,
    /// Transactions that read below this revision cannot be validated.
    floor: u64,
    /// How many writes to remember.
    capacity: usize,
}

impl RecentWrites {
    pub(crate) fn new(revision: u64, capacity: usize) -> RecentWrites {
        RecentWrites {
            last_write: BTreeMap::new(),
            order: VecDeque::new(),
            floor: revision,
            capacity,
        }
    }

    /// Why a transaction that read `reads` at `revision` may not commit, or `None` if it may.
    pub(crate) fn conflict(&self, revision: u64, reads: &ReadSet) -> Option<String> {
        if reads.is_empty() {
            return None;
        }
        if revision < self.floor {
            return Some(format!(
                "transaction read at revision {revision}, older than the oldest change still \
                 tracked ({})",
                self.floor
            ));
        }
        for key in reads.keys.keys() {
            if self.last_write.get(key).is_some_and(|&rev| rev > revision) {
                return Some(format!("key {} changed since it was read", show(key)));
            }
        }
        for (start, end) in &reads.ranges {
            let changed = self
                .last_write
                .range::<[u8], _>((
                    start.as_ref().map(Vec::as_slice),
                    end.as_ref().map(Vec::as_slice),
                ))
                .find(|(key, rev)| **rev > revision && in_range(key, start, end));
            if let Some((key, _)) = changed {
                return Some(format!("key {} changed inside a range that was scanned", show(key)));
            }
        }
        None
    }

    /// Remembers that `keys` were written at `revision`.
    pub(crate) fn record<'a>(&mut self, revision: u64, keys: impl Iterator<Item = &'a Key>) {
        for key in keys {
            self.last_write.insert(key.clone(), revision);
            self.order.push_back((revision, key.clone()));
        }
        while self.order.len() > self.capacity {
            let Some((rev, key)) = self.order.pop_front() else { break };
            if self.last_write.get(&key) == Some(&rev) {
                self.last_write.remove(&key);
            }
            self.floor = self.floor.max(rev);
        }
    }
}

/// A key for messages: UTF-8 where it is, escaped bytes elsewhere.
pub(crate) fn show(key: &[u8]) -> String {
    format!("{:?}", key.escape_ascii().to_string())
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;

    fn reads(keys: &[&[u8]], ranges: &[(&[u8], &[u8])]) -> ReadSet {
        ReadSet {
            keys: keys.iter().map(|k| (k.to_vec(), None)).collect(),
            ranges: ranges
                .iter()
                .map(|(s, e)| (Bound::Included(s.to_vec()), Bound::Excluded(e.to_vec())))
                .collect(),
        }
    }

    #[test]
    fn later_write_to_read_key_conflicts() {
        let mut recent = RecentWrites::new(0, 100);
        recent.record(5, [b"a".to_vec()].iter());
        assert!(recent.conflict(4, &reads(&[b"a"], &[])).is_some());
        assert!(recent.conflict(5, &reads(&[b"a"], &[])).is_none());
        assert!(recent.conflict(4, &reads(&[b"b"], &[])).is_none());
    }

    #[test]
    fn write_inside_scanned_range_conflicts() {
        let mut recent = RecentWrites::new(0, 100);
        recent.record(3, [b"m".to_vec()].iter());
        assert!(recent.conflict(2, &reads(&[], &[(b"a", b"z")])).is_some());
        assert!(recent.conflict(2, &reads(&[], &[(b"n", b"z")])).is_none());
    }

    #[test]
    fn forgotten_history_conflicts_conservatively() {
        let mut recent = RecentWrites::new(0, 2);
        recent.record(1, [b"a".to_vec()].iter());
        recent.record(2, [b"b".to_vec()].iter());
        recent.record(3, [b"c".to_vec()].iter());
        assert!(recent.conflict(0, &reads(&[b"zzz"], &[])).is_some());
        assert!(recent.conflict(1, &reads(&[b"zzz"], &[])).is_none());
        assert!(recent.conflict(0, &ReadSet::default()).is_none());
    }
}
