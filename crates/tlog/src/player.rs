//! The player: replays a vdisk's log into a raw image (or hands its blocks to a visitor),
//! verifies a log, lists it.
//!
//! A replay walks the chain from the head back along `prev` using only the envelope
//! headers the storage lists, checking every link, down to the first aggregate it needs;
//! then it opens the aggregates oldest first (on a second thread, so decoding overlaps
//! writing) and applies their blocks: writes with `pwrite`, discards as punched holes (or
//! zeros where the file system cannot punch), growing the sparse image as needed.
//!
//! Bounds are checked per block, in chain order: blocks before a lower bound are skipped,
//! and the replay stops at the first block past an upper bound, so the image is always the
//! disk as it was after some prefix of its writes. Sequence bounds compare the block's
//! sequence, time bounds its timestamp (the client's clock, Unix nanoseconds).
//! The player reads storage; it never changes it.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use bytes::Bytes;
use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::aggregate::{Aggregate, Hash, Key, NO_PREV, hex};
use crate::message::{Block, operation};
use crate::storage::{Storage, Stored};
use crate::{Error, Result};

/// The most threads that open aggregates at once.
const MAX_DECODERS: usize = 4;

/// Which blocks a replay applies; every bound is optional and inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Skip blocks with a smaller sequence.
    pub from_seq: Option<u64>,
    /// Stop at the first block with a larger sequence.
    pub to_seq: Option<u64>,
    /// Skip blocks written earlier (Unix nanoseconds).
    pub from_time: Option<u64>,
    /// Stop at the first block written later (Unix nanoseconds).
    pub to_time: Option<u64>,
    /// Replay across gaps and overlaps in the sequences that the chain does not record as
    /// a reset (otherwise they are an error naming them); see [`check_sequences`].
    pub allow_gaps: bool,
}

/// How far a replay is, reported after each aggregate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Aggregates processed so far.
    pub aggregates: u64,
    /// Aggregates the replay may need (it can stop earlier at a time bound).
    pub aggregates_total: u64,
    /// Stored bytes of the aggregates processed.
    pub bytes: u64,
    /// Stored bytes of the aggregates the replay may need.
    pub bytes_total: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// The sequence of the last block applied; `None` when none was.
    pub last_sequence: Option<u64>,
    /// Aggregates opened.
    pub aggregates: u64,
    /// Blocks applied (writes and discards).
    pub blocks: u64,
    /// Bytes written by write blocks.
    pub bytes: u64,
    /// Bytes discarded by discard blocks.
    pub discarded: u64,
}

/// What a successful verification checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Aggregates on the chain (all of them opened and checked).
    pub aggregates: u64,
    /// Of which encrypted.
    pub encrypted: u64,
    /// Blocks in them.
    pub blocks: u64,
    /// Stored bytes.
    pub bytes: u64,
    /// The oldest aggregate's first sequence.
    pub first_sequence: Option<u64>,
    /// The newest aggregate's last sequence.
    pub last_sequence: Option<u64>,
    /// The head's name.
    pub head: Option<Hash>,
    /// Gaps and overlaps the chain does not record as resets, allowed by `allow_gaps`.
    pub gaps: u64,
}

/// Replays `vdisk` into the raw image at `image` (created if missing; blocks are applied
/// onto what it holds, so give a new file for a full image), within `bounds`, calling
/// `progress` after each aggregate. `key` opens encrypted aggregates.
pub fn replay(
    storage: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    bounds: Bounds,
    image: &Path,
    progress: impl FnMut(Progress),
) -> Result<Replayed> {
    // The image is made only once the walk and the sequence checks passed: at the first
    // block, or after a visit of none.
    let mut opened = None;
    let done = visit(storage, vdisk, key, bounds, progress, |block| {
        let image = match &mut opened {
            Some(image) => image,
            None => opened.insert(Image::open(image)?),
        };
        match block.operation {
            operation::WRITE => image.write(block.offset, &block.data),
            _ => image.discard(block.offset, block.size),
        }
    })?;
    let image = match opened {
        Some(image) => image,
        None => Image::open(image)?,
    };
    image.finish()?;
    Ok(done)
}

/// Calls `f` with every block of `vdisk` within `bounds`, in chain order: exactly the
/// blocks [`replay`] applies, after the same walk and sequence checks, and `progress`
/// after each aggregate. An error from `f` stops the visit and is returned. Returns what
/// was visited, as a replay reports it.
pub fn visit(
    storage: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    bounds: Bounds,
    mut progress: impl FnMut(Progress),
    mut f: impl FnMut(&Block) -> Result<()>,
) -> Result<Replayed> {
    let needed = |s: &Stored| {
        bounds.from_time.is_some() || bounds.from_seq.is_none_or(|f| s.header.last_sequence >= f)
    };
    let mut todo = walk(storage, vdisk, needed)?;
    // The replay stops at the first aggregate that starts past the upper sequence bound.
    if let Some(to) = bounds.to_seq
        && let Some(stop) = todo.iter().position(|s| s.header.first_sequence > to)
    {
        todo.truncate(stop);
    }
    // Aggregates wholly before the lower sequence bound need not be opened.
    if let (Some(from), None) = (bounds.from_seq, bounds.from_time) {
        todo.retain(|s| s.header.last_sequence >= from);
    }
    // Checked over what is replayed, before anything is applied: a gap after the data a
    // replay applies is reported all the same.
    check_sequences(vdisk, &todo, bounds.allow_gaps)?;
    let mut done = Replayed::default();
    let mut at = Progress {
        aggregates_total: todo.len() as u64,
        bytes_total: todo.iter().map(|s| s.len).sum(),
        ..Progress::default()
    };
    for_each_opened(storage, vdisk, key, &todo, |_, stored, aggregate| {
        done.aggregates += 1;
        let finished = within(&aggregate.blocks, &bounds, &mut done, &mut f)?;
        at.aggregates += 1;
        at.bytes += stored.len;
        progress(at);
        Ok(!finished)
    })?;
    Ok(done)
}

/// Verifies `vdisk`: every link from the head back to the first aggregate, that every
/// stored aggregate is on that chain (no fork), that sequences run on without a gap or an
/// overlap except where the chain records a reset (unless `allow_gaps`), and that each
/// aggregate's hash, decryption, decoding and blocks check. An error names the first bad
/// aggregate and its position.
pub fn verify(
    storage: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    allow_gaps: bool,
) -> Result<VerifyReport> {
    let listed = storage.list(vdisk)?;
    if listed.is_empty() {
        return Err(Error::NotFound(format!("vdisk {vdisk}: no aggregates")));
    }
    let chain = walk(storage, vdisk, |_| true)?;
    if chain.len() != listed.len() {
        let on_chain: std::collections::HashSet<Hash> = chain.iter().map(|s| s.hash).collect();
        let (i, stray) = listed
            .iter()
            .enumerate()
            .find(|(_, s)| !on_chain.contains(&s.hash))
            .unwrap_or((0, &listed[0]));
        return Err(Error::Corrupted(format!(
            "vdisk {vdisk}: aggregate {} of {} ({}) is stored but not on the chain from the head",
            i + 1,
            listed.len(),
            hex(&stray.hash)
        )));
    }
    let gaps = check_sequences(vdisk, &chain, allow_gaps)?;
    let mut report = VerifyReport {
        gaps,
        first_sequence: chain.first().map(|s| s.header.first_sequence),
        last_sequence: chain.last().map(|s| s.header.last_sequence),
        head: chain.last().map(|s| s.hash),
        ..VerifyReport::default()
    };
    for_each_opened(storage, vdisk, key, &chain, |i, stored, aggregate| {
        let increasing = aggregate.blocks.windows(2).all(|w| w[0].sequence < w[1].sequence);
        if !increasing {
            return Err(Error::Corrupted(format!(
                "vdisk {vdisk}: aggregate {} of {} ({}): its blocks are not in sequence order",
                i + 1,
                chain.len(),
                hex(&stored.hash)
            )));
        }
        report.aggregates += 1;
        report.encrypted += u64::from(stored.header.encrypted);
        report.blocks += aggregate.blocks.len() as u64;
        report.bytes += stored.len;
        Ok(true)
    })?;
    Ok(report)
}

/// Checks that the sequences of `chain` (oldest first) run on: each aggregate holds
/// `last - first + 1` blocks, and each starts right after the one before it, unless its
/// header records the start of a new run (a reset). Anything else is a gap (sequences that
/// were never stored) or an overlap (sequences stored twice: a fork of the writers), an
/// error naming both aggregates and the sequences; with `allow_gaps` each is logged as a
/// warning instead and counted.
pub fn check_sequences(vdisk: &str, chain: &[Stored], allow_gaps: bool) -> Result<u64> {
    let mut found = 0;
    let mut report = |message: String| {
        if !allow_gaps {
            return Err(Error::Corrupted(format!(
                "{message}; if the sequences were skipped on purpose, give --allow-gaps"
            )));
        }
        tracing::warn!(vdisk, "{message}");
        found += 1;
        Ok(())
    };
    for (i, stored) in chain.iter().enumerate() {
        let h = &stored.header;
        let span = h.last_sequence.checked_sub(h.first_sequence).map(|d| d + 1);
        if span != Some(u64::from(h.blocks)) {
            report(format!(
                "vdisk {vdisk}: aggregate {} ({}) holds {} blocks for sequences {} to {}",
                i + 1,
                hex(&stored.hash),
                h.blocks,
                h.first_sequence,
                h.last_sequence
            ))?;
        }
        let Some(before) = i.checked_sub(1).map(|j| &chain[j]) else { continue };
        let expected = before.header.last_sequence.saturating_add(1);
        if h.first_sequence == expected || h.run_start {
            continue;
        }
        let what = if h.first_sequence > expected {
            format!("a gap: sequences {expected} to {} were never stored", h.first_sequence - 1)
        } else {
            format!(
                "an overlap: sequences {} to {} are stored twice (a fork of the writers)",
                h.first_sequence,
                before.header.last_sequence.min(h.last_sequence)
            )
        };
        report(format!(
            "vdisk {vdisk}: between aggregates {} ({}) and {} ({}), {what}",
            i,
            hex(&before.hash),
            i + 1,
            hex(&stored.hash)
        ))?;
    }
    Ok(found)
}

/// The aggregates of `vdisk`, oldest first, from their headers (no key needed).
pub fn list(storage: &dyn Storage, vdisk: &str) -> Result<Vec<Stored>> {
    storage.list(vdisk)
}

/// Walks from the head back along `prev` while `needed` says the aggregate is, checking
/// that every link names a stored aggregate. Returns the needed ones, oldest first.
fn walk(
    storage: &dyn Storage,
    vdisk: &str,
    needed: impl Fn(&Stored) -> bool,
) -> Result<Vec<Stored>> {
    let listed = storage.list(vdisk)?;
    let by_hash: std::collections::HashMap<Hash, &Stored> =
        listed.iter().map(|s| (s.hash, s)).collect();
    let mut chain = Vec::new();
    // The newest listed, not `head()`: a log that grows meanwhile must not break the walk.
    let mut at = listed.last().copied();
    while let Some(stored) = at.filter(|s| needed(s)) {
        chain.push(stored);
        if stored.header.prev == NO_PREV {
            break;
        }
        if chain.len() > listed.len() {
            return Err(Error::Corrupted(format!(
                "vdisk {vdisk}: the chain loops at aggregate {}",
                hex(&stored.hash)
            )));
        }
        let prev = by_hash.get(&stored.header.prev).ok_or_else(|| {
            Error::Corrupted(format!(
                "vdisk {vdisk}: aggregate {} ({} back from the head) names prev {}, which is not stored",
                hex(&stored.hash),
                chain.len() - 1,
                hex(&stored.header.prev)
            ))
        })?;
        at = Some(**prev);
    }
    chain.reverse();
    Ok(chain)
}

/// Opens the aggregates of `todo` on worker threads (as many as there are cores, at most
/// [`MAX_DECODERS`]; aggregate `i` goes to worker `i mod n`) and hands each to `each`, in
/// order, with its position, on this thread, until `each` returns `false` or fails.
fn for_each_opened(
    storage: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    todo: &[Stored],
    mut each: impl FnMut(usize, &Stored, Aggregate) -> Result<bool>,
) -> Result<()> {
    let workers =
        std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_DECODERS);
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(workers);
        for worker in 0..workers {
            // One opened aggregate waiting per worker: overlap with little memory.
            let (tx, rx) = sync_channel(1);
            queues.push(rx);
            scope.spawn(move || {
                for (i, stored) in todo.iter().enumerate().skip(worker).step_by(workers) {
                    let opened = open(storage, vdisk, key, stored, i == 0)
                        .map_err(|e| at_position(e, vdisk, i, todo.len()));
                    let failed = opened.is_err();
                    // A closed queue means the consumer stopped: so does the worker.
                    if tx.send(opened).is_err() || failed {
                        break;
                    }
                }
            });
        }
        for (i, stored) in todo.iter().enumerate() {
            let opened = queues[i % workers].recv().map_err(|_| {
                Error::Unavailable(format!("vdisk {vdisk}: a decoding thread stopped early"))
            })?;
            if !each(i, stored, opened?)? {
                break;
            }
        }
        // Dropping the queues here stops workers that are ahead.
        drop(queues);
        Ok(())
    })
}

/// Reads and opens one aggregate. A decryption failure of intact bytes in the `first`
/// aggregate opened is a wrong key, not damage, and says so; in a later one (the errors
/// are reported in order, so the key opened every aggregate before it) it is a forgery:
/// an aggregate made without the key, whose plain BLAKE3 name anyone can compute.
fn open(
    storage: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    stored: &Stored,
    first: bool,
) -> Result<Aggregate> {
    let bytes = storage.get(vdisk, &stored.hash)?;
    Aggregate::open(vdisk, &stored.hash, &bytes, key).map_err(|e| match e {
        Error::Corrupted(m)
            if m.contains("decryption failed")
                && crate::aggregate::name_of(&bytes) == Some(stored.hash) =>
        {
            let name = hex(&stored.hash);
            if first {
                Error::InvalidArgument(format!(
                    "aggregate {name}: its bytes are intact but the key does not decrypt them: \
                     wrong key file (or the log was written for another vdisk id)"
                ))
            } else {
                Error::Corrupted(format!(
                    "aggregate {name}: the key opens the aggregates before it but not this one: \
                     it was forged (or sealed with another key); refusing it"
                ))
            }
        }
        other => other,
    })
}

/// Adds the position of the aggregate an error is about.
fn at_position(e: Error, vdisk: &str, i: usize, n: usize) -> Error {
    let prefix = format!("vdisk {vdisk}: aggregate {} of {n}", i + 1);
    match e {
        Error::Corrupted(m) => Error::Corrupted(format!("{prefix}: {m}")),
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{prefix}: {m}")),
        other => other,
    }
}

/// Hands the blocks within `bounds` to `f`; returns true when an upper bound was passed.
fn within(
    blocks: &[Block],
    bounds: &Bounds,
    done: &mut Replayed,
    f: &mut impl FnMut(&Block) -> Result<()>,
) -> Result<bool> {
    for block in blocks {
        let past = bounds.to_seq.is_some_and(|t| block.sequence > t)
            || bounds.to_time.is_some_and(|t| block.timestamp > t);
        if past {
            return Ok(true);
        }
        let before = bounds.from_seq.is_some_and(|f| block.sequence < f)
            || bounds.from_time.is_some_and(|f| block.timestamp < f);
        if before {
            continue;
        }
        f(block)?;
        match block.operation {
            operation::WRITE => done.bytes += block.size,
            _ => done.discarded += block.size,
        }
        done.blocks += 1;
        done.last_sequence = Some(block.sequence);
    }
    Ok(false)
}

/// The raw image being written. Consecutive writes are gathered into one `pwritev`, and
/// writeback is started every [`WRITEBACK_EVERY`] bytes so the final sync has little left.
#[derive(Debug)]
struct Image {
    file: File,
    path: PathBuf,
    /// The file's length (regular files only; a block device never grows).
    len: u64,
    block_device: bool,
    /// Cleared when the file system cannot punch holes: discards then write zeros.
    punch: bool,
    /// Writes not yet issued: their data, back to back from `run_offset`.
    run: Vec<Bytes>,
    run_offset: u64,
    run_len: u64,
    /// Bytes written since writeback was last started.
    unsynced: u64,
}

/// The most buffers one `pwritev` takes (Linux's `IOV_MAX`).
const MAX_RUN: usize = 1024;
/// The most bytes one `pwritev` takes.
const MAX_RUN_BYTES: u64 = 8 << 20;
/// How many bytes are written between two starts of writeback.
const WRITEBACK_EVERY: u64 = 64 << 20;

/// Zeros for discards where holes cannot be punched.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

impl Image {
    fn open(path: &Path) -> Result<Image> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::file(path))?;
        let meta = file.metadata().map_err(Error::file(path))?;
        Ok(Image {
            file,
            path: path.to_path_buf(),
            len: meta.len(),
            block_device: meta.file_type().is_block_device(),
            punch: true,
            run: Vec::new(),
            run_offset: 0,
            run_len: 0,
            unsynced: 0,
        })
    }

    /// Writes `data` at `offset` (perhaps later, gathered with the writes that follow it).
    fn write(&mut self, offset: u64, data: &Bytes) -> Result<()> {
        let follows = offset == self.run_offset + self.run_len;
        if !follows || self.run.len() == MAX_RUN || self.run_len >= MAX_RUN_BYTES {
            self.flush()?;
            self.run_offset = offset;
        }
        self.run.push(data.clone());
        self.run_len += data.len() as u64;
        Ok(())
    }

    /// Issues the gathered writes.
    fn flush(&mut self) -> Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        let mut slices: Vec<IoSlice<'_>> = self.run.iter().map(|b| IoSlice::new(b)).collect();
        let mut remaining = &mut slices[..];
        let mut at = self.run_offset;
        while !remaining.is_empty() {
            let n = rustix::io::pwritev(&self.file, remaining, at)
                .map_err(|e| Error::file(&self.path)(e.into()))?;
            if n == 0 {
                let e =
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "the image takes no more");
                return Err(Error::file(&self.path)(e));
            }
            at += n as u64;
            IoSlice::advance_slices(&mut remaining, n);
        }
        self.len = self.len.max(at);
        self.unsynced += self.run_len;
        self.run.clear();
        self.run_len = 0;
        if self.unsynced >= WRITEBACK_EVERY {
            // Starts writeback of the dirty pages without waiting for it (and drops clean
            // ones: the image is not read back). Only a hint.
            let _ = rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::DontNeed);
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Makes `size` bytes at `offset` read as zeros, growing the image to cover them.
    fn discard(&mut self, offset: u64, size: u64) -> Result<()> {
        self.flush()?;
        let end = offset + size;
        let old_len = self.len;
        if !self.block_device && end > self.len {
            self.file.set_len(end).map_err(Error::file(&self.path))?;
            self.len = end;
        }
        // Bytes past the old length are a hole already.
        let zero_end = if self.block_device { end } else { end.min(old_len) };
        if offset >= zero_end {
            return Ok(());
        }
        let size = zero_end - offset;
        if self.punch {
            let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
            match rustix::fs::fallocate(&self.file, mode, offset, size) {
                Ok(()) => return Ok(()),
                Err(e) if [Errno::OPNOTSUPP, Errno::NOSYS, Errno::INVAL].contains(&e) => {
                    self.punch = false;
                }
                Err(e) => return Err(Error::file(&self.path)(e.into())),
            }
        }
        let mut at = offset;
        while at < zero_end {
            let n = (zero_end - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at).map_err(Error::file(&self.path))?;
            at += n as u64;
        }
        Ok(())
    }

    /// Issues what is gathered and makes the image durable.
    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_all().map_err(Error::file(&self.path))
    }
}
