//! Where aggregates are kept. The server appends to a [`Storage`]; the player reads it.
//!
//! Engines: [`segment::SegmentStore`], append-only segment files in a directory (the
//! embedded default), and [`redis::RedisStore`], erasure-coded across k+m Redis-protocol servers.

pub mod redis;
pub mod segment;

use crate::Result;
use crate::aggregate::{Hash, Header, Sealed};

/// One stored aggregate, as listed by [`Storage::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The aggregate's name.
    pub hash: Hash,
    /// Its envelope header.
    pub header: Header,
    /// Its size in bytes as stored.
    pub len: u64,
}

/// Where a store will put the next envelope of a vdisk ([`Storage::placement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The file offset of the next envelope.
    pub next: u64,
    /// The bytes between one envelope's end and the next one's start.
    pub framing: u64,
}

/// A durable home for the aggregates of many vdisks.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Stores `sealed` as the new head of `vdisk`, durably: when this returns, both the
    /// aggregate and the new head survive a crash. Its `prev` must be the current head.
    fn append(&self, vdisk: &str, sealed: &Sealed) -> Result<()>;

    /// Stores the aggregates `next` yields, in order, each chaining to the one before, as
    /// [`Storage::append`] would, durably when this returns. An engine may make them durable
    /// together (one sync for all); after a crash before it returns, any prefix of them may
    /// be there. `next` is called only once the previous aggregate was taken; the server's
    /// `next` hands over aggregates it sealed ahead (and, when it yields `None`, lets the
    /// vdisk's next flush begin sealing while this call writes and syncs).
    fn append_many(
        &self,
        vdisk: &str,
        next: &mut dyn FnMut(&Hash) -> Result<Option<Sealed>>,
        head: Hash,
    ) -> Result<Hash> {
        let mut head = head;
        while let Some(sealed) = next(&head)? {
            self.append(vdisk, &sealed)?;
            head = *sealed.hash();
        }
        Ok(head)
    }

    /// Where the envelope appended next to `vdisk` would start in its file, for an engine
    /// that writes an envelope sealed for its place (`Aggregate::seal_placed`) straight
    /// from the envelope's buffer instead of copying it. Read without waiting for an
    /// append under way; a prediction (the next append may start a new file), which costs
    /// only that copy when wrong. `None` (the default) where placing does not help.
    fn placement(&self, _vdisk: &str) -> Option<Placement> {
        None
    }

    /// The newest aggregate of `vdisk`, if it has any.
    fn head(&self, vdisk: &str) -> Result<Option<Stored>>;

    /// The stored bytes of the aggregate `hash` of `vdisk`.
    fn get(&self, vdisk: &str, hash: &Hash) -> Result<Vec<u8>>;

    /// Every aggregate of `vdisk`, oldest first.
    fn list(&self, vdisk: &str) -> Result<Vec<Stored>>;

    /// The vdisks that have aggregates.
    fn vdisks(&self) -> Result<Vec<String>>;
}

/// Checks that a vdisk id is usable as a name everywhere (file names, Redis keys): 1 to 128
/// characters of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn check_vdisk_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!("vdisk id {id:?} must have 1 to 128 characters"));
    }
    if id.starts_with('.') {
        return Err(format!("vdisk id {id:?} must not start with a dot"));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!("vdisk id {id:?} has {bad:?}; use letters, digits, '.', '_', '-'"));
    }
    Ok(())
}
