//! [`BlockDiff`]: gathers the changes made to a disk and writes them as one block blob.
//!
//! Changes are kept as an interval map of changed ranges (a later change replaces the
//! ranges it covers); written data goes to a sparse scratch file at the disk offset it was
//! written at, so memory grows with the number of changed ranges, not with their bytes.
//! Not the reader of blobs: that is `materialize.rs`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tempfile::NamedTempFile;

use crate::blob_id::BlobId;
use crate::block::format::{BlockHeader, COPY_CHUNK, Extent, ZERO_CHUNK, ZSTD_LEVEL};
use crate::error::{Error, Result};
use crate::store::BlobStore;

/// Builds the blob of a block snapshot from the changes made to a disk, in the order they
/// were made.
///
/// After an error from [`write`](BlockDiff::write) or [`zero`](BlockDiff::zero) the change
/// may be recorded in part: drop the diff (which removes its scratch file) rather than
/// finish it.
#[derive(Debug)]
pub struct BlockDiff {
    blobs: BlobStore,
    size: u64,
    full: bool,
    /// Changed ranges: start → (end, whether data). Sorted, non-overlapping; adjacent ranges
    /// of one kind are merged as they are inserted.
    ranges: BTreeMap<u64, (u64, bool)>,
    scratch: NamedTempFile,
}

/// A block blob stored by [`BlockDiff::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockBlob {
    /// The blob's id.
    pub id: BlobId,
    /// Its header.
    pub header: BlockHeader,
    /// Its size in bytes (what a push sends).
    pub stored: u64,
}

impl BlockDiff {
    /// A diff of a disk of `size` bytes (the disk's size at the snapshot). `full`: the blob
    /// applies onto an all-zero disk (a root snapshot): zero extents are left out (holes stay
    /// holes). Otherwise it applies onto its parent's disk and zero extents are kept.
    /// Scratch space (a temporary file) lives in `blobs.dir()`.
    pub fn new(blobs: &BlobStore, size: u64, full: bool) -> Result<BlockDiff> {
        let dir = blobs.dir();
        let scratch = tempfile::Builder::new()
            .prefix(".tmp-block-")
            .tempfile_in(dir)
            .map_err(Error::io(dir, "create a block diff's scratch file in the blob store"))?;
        Ok(BlockDiff { blobs: blobs.clone(), size, full, ranges: BTreeMap::new(), scratch })
    }

    /// `data` written at `offset`; a later change over the same bytes replaces it.
    ///
    /// Each 4 KiB-aligned chunk of `data` (and the partial chunks at its ends) that is all
    /// zeros is recorded as a zero extent instead.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let end = self.check_range(offset, data.len() as u64)?;
        let mut at = offset;
        while at < end {
            let run_data = !is_zero_chunk(data, offset, at, end);
            let mut run_end = next_chunk(at, end);
            while run_end < end && is_zero_chunk(data, offset, run_end, end) != run_data {
                run_end = next_chunk(run_end, end);
            }
            if run_data {
                let bytes = &data[(at - offset) as usize..(run_end - offset) as usize];
                self.scratch
                    .as_file()
                    .write_all_at(bytes, at)
                    .map_err(Error::io(self.scratch.path(), "write a block diff's scratch file"))?;
            }
            self.insert(at, run_end, run_data);
            at = run_end;
        }
        Ok(())
    }

    /// `len` bytes at `offset` made zero (a discard / trim / write-zeroes).
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = self.check_range(offset, len)?;
        if len > 0 {
            self.insert(offset, end, false);
        }
        Ok(())
    }

    /// Writes the blob into the store (deterministic bytes: the same changes give the same
    /// blob id wherever made) and removes the scratch space.
    pub fn finish(self) -> Result<BlockBlob> {
        let extents: Vec<Extent> = self
            .ranges
            .iter()
            .map(|(&offset, &(end, data))| Extent { offset, len: end - offset, data })
            .filter(|e| e.data || !self.full)
            .collect();
        let header = BlockHeader {
            size: self.size,
            full: self.full,
            extents: extents.len() as u64,
            data_bytes: extents.iter().filter(|e| e.data).map(|e| e.len).sum(),
            zero_bytes: extents.iter().filter(|e| !e.data).map(|e| e.len).sum(),
        };
        let writer = self.blobs.writer()?;
        let store_dir = self.blobs.dir().to_owned();
        let write_err = |e: std::io::Error| Error::Io {
            path: store_dir.clone(),
            op: "write a block blob",
            cause: e,
        };
        let mut enc = zstd::Encoder::new(writer, ZSTD_LEVEL).map_err(write_err)?;
        enc.include_checksum(true).map_err(write_err)?;
        enc.write_all(&header.encode()).map_err(write_err)?;
        for e in &extents {
            enc.write_all(&e.encode()).map_err(write_err)?;
        }
        let scratch = self.scratch.as_file();
        let mut buf = vec![0u8; COPY_CHUNK];
        for e in extents.iter().filter(|e| e.data) {
            copy_range(scratch, self.scratch.path().to_owned(), e, &mut buf, &mut enc).map_err(
                |err| match err {
                    Copy::Read(path, cause) => {
                        Error::Io { path, op: "read a block diff's scratch file", cause }
                    }
                    Copy::Write(cause) => write_err(cause),
                },
            )?;
        }
        let writer = enc.finish().map_err(write_err)?;
        let stored = writer.len();
        let id = writer.finish()?;
        tracing::debug!(%id, stored, extents = header.extents, data = header.data_bytes,
            zero = header.zero_bytes, full = header.full, "block blob stored");
        Ok(BlockBlob { id, header, stored })
    }

    /// The end of `len` bytes at `offset`, or an error if they pass the disk's size.
    fn check_range(&self, offset: u64, len: u64) -> Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(end),
            _ => Err(Error::OutOfRange { offset, len, size: self.size }),
        }
    }

    /// Records `[start, end)` as data or zero, replacing what the map held there and merging
    /// with adjacent ranges of the same kind.
    fn insert(&mut self, start: u64, end: u64, data: bool) {
        // Every range that overlaps or touches `[start, end]`: the one beginning before
        // `start` if it reaches it, and those beginning inside.
        let mut touched: Vec<(u64, u64, bool)> = Vec::new();
        if let Some((&s, &(e, d))) = self.ranges.range(..start).next_back()
            && e >= start
        {
            touched.push((s, e, d));
        }
        touched.extend(self.ranges.range(start..=end).map(|(&s, &(e, d))| (s, e, d)));
        let (mut new_start, mut new_end) = (start, end);
        for (s, e, d) in touched {
            self.ranges.remove(&s);
            if d == data {
                new_start = new_start.min(s);
                new_end = new_end.max(e);
                continue;
            }
            // Of the other kind: what lies outside `[start, end)` stays.
            if s < start {
                self.ranges.insert(s, (start.min(e), d));
            }
            if e > end {
                self.ranges.insert(end.max(s), (e, d));
            }
        }
        self.ranges.insert(new_start, (new_end, data));
    }
}

/// Why copying a data extent into the blob failed.
enum Copy {
    Read(PathBuf, std::io::Error),
    Write(std::io::Error),
}

/// Copies extent `e`'s bytes from the scratch file into the blob, a chunk at a time.
fn copy_range(
    scratch: &File,
    path: PathBuf,
    e: &Extent,
    buf: &mut [u8],
    out: &mut impl Write,
) -> std::result::Result<(), Copy> {
    let end = e.offset + e.len;
    let mut at = e.offset;
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        read_full_at(scratch, &mut buf[..n], at).map_err(|c| Copy::Read(path.clone(), c))?;
        out.write_all(&buf[..n]).map_err(Copy::Write)?;
        at += n as u64;
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `at`; bytes past the scratch file's end (never written, which
/// a data range cannot be) would read as zeros rather than fail.
fn read_full_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64)? {
            0 => {
                buf[done..].fill(0);
                return Ok(());
            }
            n => done += n,
        }
    }
    Ok(())
}

/// The next 4 KiB boundary after `at`, or `end`.
fn next_chunk(at: u64, end: u64) -> u64 {
    ((at / ZERO_CHUNK + 1) * ZERO_CHUNK).min(end)
}

/// Whether the chunk of `data` (written at `base`) from disk offset `at` to the next
/// boundary is all zeros.
fn is_zero_chunk(data: &[u8], base: u64, at: u64, end: u64) -> bool {
    let chunk = &data[(at - base) as usize..(next_chunk(at, end) - base) as usize];
    chunk.iter().all(|&b| b == 0)
}
