//! What the log holds under a sequence, for answering a block a client sends again: the
//! server answers `FlushOK` to such a duplicate only when the chain holds that very block
//! (same sequence, operation, offset, size, data hash and timestamp), and checks a keyed
//! log's head before it serves the vdisk. Not the ordering or the flushing (`vdisk`).
//!
//! The log is looked at as a replay would see the sequences: walking back from the head,
//! the newest aggregate whose first sequence is at or below the block's decides. When it
//! holds the sequence, its block is compared; when it ends below it, the sequence was
//! skipped by a reset (or, in an old log, by a gap) and was never stored in the current
//! order of the sequences, whatever older runs hold.

use std::collections::{HashMap, VecDeque};

use crate::aggregate::{Aggregate, Hash, Header, NO_PREV, hex};
use crate::message::Block;
use crate::server::Shared;
use crate::storage::Stored;
use crate::{Error, Result};

/// The most aggregate headers remembered.
const MAX_HEADERS: usize = 4096;
/// The most opened aggregates whose blocks are remembered.
const MAX_OPENED: usize = 4;

/// What the log holds under a block's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// That very block: it is durable.
    Same,
    /// Another block (a client that lost a reset, or another writer): this one is not.
    Different,
    /// Nothing: the sequence was skipped (a reset or a gap), so it was never stored.
    Never,
}

/// What a block is compared by: everything a replay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest {
    sequence: u64,
    operation: u8,
    offset: u64,
    size: u64,
    hash: Hash,
    timestamp: u64,
}

/// Headers and opened aggregates a vdisk task has read, so that a burst of resent blocks
/// reads each aggregate once. Names are content hashes, so nothing here goes stale.
#[derive(Debug, Default)]
pub(crate) struct StoredBlocks {
    headers: HashMap<Hash, Header>,
    /// The blocks of the last aggregates opened, newest last.
    opened: VecDeque<(Hash, Vec<Digest>)>,
}

impl StoredBlocks {
    /// Looks `block` up in the chain of `vdisk` that ends at `head`.
    pub(crate) fn find(
        &mut self,
        shared: &Shared,
        vdisk: &str,
        head: Hash,
        block: &Block,
    ) -> Result<Found> {
        let wanted = Digest::of(block);
        let mut at = head;
        while at != NO_PREV {
            let header = self.header(shared, vdisk, &at)?;
            if header.first_sequence <= wanted.sequence {
                if header.last_sequence < wanted.sequence {
                    return Ok(Found::Never);
                }
                let blocks = self.blocks(shared, vdisk, &at)?;
                return Ok(match blocks.binary_search_by_key(&wanted.sequence, |d| d.sequence) {
                    Ok(i) if blocks[i] == wanted => Found::Same,
                    Ok(_) => Found::Different,
                    Err(_) => Found::Never,
                });
            }
            at = header.prev;
        }
        Ok(Found::Never)
    }

    fn header(&mut self, shared: &Shared, vdisk: &str, name: &Hash) -> Result<Header> {
        if let Some(header) = self.headers.get(name) {
            return Ok(*header);
        }
        let bytes = shared.storage.get(vdisk, name)?;
        let header = Header::decode(&bytes).map_err(|e| {
            Error::Corrupted(format!("vdisk {vdisk}: aggregate {}: {e}", hex(name)))
        })?;
        if self.headers.len() >= MAX_HEADERS {
            self.headers.clear();
        }
        self.headers.insert(*name, header);
        Ok(header)
    }

    fn blocks(&mut self, shared: &Shared, vdisk: &str, name: &Hash) -> Result<&[Digest]> {
        let known = self.opened.iter().position(|(hash, _)| hash == name);
        if known.is_none() {
            let bytes = shared.storage.get(vdisk, name)?;
            let aggregate = Aggregate::open(vdisk, name, &bytes, shared.config.key.as_ref())?;
            let mut digests: Vec<Digest> = aggregate.blocks.iter().map(Digest::of).collect();
            digests.sort_by_key(|d| d.sequence);
            if self.opened.len() >= MAX_OPENED {
                self.opened.pop_front();
            }
            self.opened.push_back((*name, digests));
        }
        let i = known.unwrap_or(self.opened.len() - 1);
        Ok(&self.opened[i].1)
    }
}

impl Digest {
    fn of(block: &Block) -> Digest {
        Digest {
            sequence: block.sequence,
            operation: block.operation,
            offset: block.offset,
            size: block.size,
            // Blocks from a client in this process carry no hash (`Block::write_in_process`).
            hash: block.data_hash(),
            timestamp: block.timestamp,
        }
    }
}

/// Checks the head a server with a key is about to chain onto: it must be encrypted and
/// open with the key. Whoever can write the storage but has no key can append an aggregate
/// that names the head as `prev` (its name is a plain hash); the key is what tells it from
/// the server's own, and chaining new blocks after it would make them unreadable.
pub(crate) fn check_head(shared: &Shared, vdisk: &str, head: &Stored) -> Result<()> {
    let Some(key) = shared.config.key.as_ref() else { return Ok(()) };
    let refuse = |why: String| {
        Error::Corrupted(format!(
            "vdisk {vdisk}: the head aggregate {} {why}: it was forged, or written without \
             this key; refusing the vdisk (check it with `strata tlog verify`)",
            hex(&head.hash)
        ))
    };
    if !head.header.encrypted {
        return Err(refuse("is not encrypted, but this server has a key".into()));
    }
    let bytes = shared.storage.get(vdisk, &head.hash)?;
    Aggregate::open(vdisk, &head.hash, &bytes, Some(key))
        .map(drop)
        .map_err(|e| refuse(format!("does not open with the key ({e})")))
}
