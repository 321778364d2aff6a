//! Reading one segment file back: the scan that rebuilds the index on open. It checks every
//! record's framing, envelope header and chain link, and (when asked, for the segment a
//! crash may have torn) every record's hash. It reports where and why it stopped; telling a
//! torn tail from damage is the caller's business, helped by [`valid_record_after`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::aggregate::{HEADER_LEN, Hash, Header, Namer, hex};
use crate::storage::segment::format::{
    Boundary, RECORD_HEADER_LEN, RECORD_MAGIC, SEGMENT_HEADER_LEN, check_segment_header,
    parse_boundary,
};
use crate::{Error, Result};

/// How much of a file one read takes when hashing or searching.
const CHUNK: usize = 1 << 20;

/// One record the scan accepted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    /// The aggregate's name.
    pub(super) hash: Hash,
    /// Its envelope header.
    pub(super) header: Header,
    /// Where its envelope starts in the file.
    pub(super) offset: u64,
    /// The envelope's length.
    pub(super) len: u32,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// At zeros or at the end of the file: the segment is open for appends.
    End,
    /// At a seal that matches what precedes it: the segment is full.
    Sealed,
    /// At something that is not a valid record.
    Bad {
        /// Where the bad bytes start.
        offset: u64,
        /// What is wrong with them.
        reason: String,
        /// True when no torn write can explain it (a record whose hash verifies but does
        /// not chain), so it is damage whatever follows.
        definite: bool,
    },
}

/// What a scan found.
#[derive(Debug)]
pub(super) struct SegmentScan {
    /// The valid records, in file order.
    pub(super) records: Vec<Found>,
    /// Where the valid part ends (the offset of the stop).
    pub(super) end: u64,
    /// Why the scan stopped.
    pub(super) stop: Stop,
}

/// Scans segment `number` in `file`. `prev` is the name the first record must chain to
/// (`None`: any, for a vdisk's first segment). With `verify`, every record's envelope is
/// hashed too; without, only its framing, header and chain link are checked.
pub(super) fn scan_segment(
    file: &File,
    path: &Path,
    number: u64,
    mut prev: Option<Hash>,
    verify: bool,
) -> Result<SegmentScan> {
    let file_len = file.metadata().map_err(Error::file(path))?.len();
    let mut records = Vec::new();
    let head_len = file_len.min(SEGMENT_HEADER_LEN) as usize;
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    read_at(file, path, &mut head[..head_len], 0)?;
    if let Err(reason) = check_segment_header(&head[..head_len], number) {
        let stop =
            Stop::Bad { offset: 0, reason: format!("segment header: {reason}"), definite: false };
        return Ok(SegmentScan { records, end: 0, stop });
    }
    let mut off = SEGMENT_HEADER_LEN;
    let mut last: Hash = [0; 32];
    let bad = |offset: u64, reason: String| Stop::Bad { offset, reason, definite: false };
    let stop = loop {
        if off == file_len {
            break Stop::End;
        }
        let mut b = [0u8; RECORD_HEADER_LEN as usize];
        if off + RECORD_HEADER_LEN > file_len {
            let rest = &mut b[..(file_len - off) as usize];
            read_at(file, path, rest, off)?;
            if rest.iter().all(|&x| x == 0) {
                break Stop::End;
            }
            break bad(off, "partial record header at the end of the file".into());
        }
        read_at(file, path, &mut b, off)?;
        let (len, hash) = match parse_boundary(&b) {
            Boundary::End => break Stop::End,
            Boundary::Garbage => break bad(off, "no record header here".into()),
            Boundary::Seal { records: n, last: sealed_last } => {
                if n as usize == records.len() && sealed_last == last {
                    break Stop::Sealed;
                }
                break bad(
                    off,
                    format!(
                        "the seal says {n} records ending with {}, the segment holds {} ending with {}",
                        hex(&sealed_last),
                        records.len(),
                        hex(&last)
                    ),
                );
            }
            Boundary::Record { len, hash } => (len, hash),
        };
        match check_record(file, path, off, len, &hash, file_len, verify)? {
            Err(reason) => break bad(off, reason),
            Ok(header) => {
                if let Some(p) = prev.filter(|p| *p != header.prev) {
                    let reason = format!(
                        "aggregate {} names prev {}, but the aggregate before it is {}",
                        hex(&hash),
                        hex(&header.prev),
                        hex(&p)
                    );
                    break Stop::Bad { offset: off, reason, definite: verify };
                }
                records.push(Found { hash, header, offset: off + RECORD_HEADER_LEN, len });
                prev = Some(hash);
                last = hash;
                off += RECORD_HEADER_LEN + u64::from(len);
            }
        }
    };
    Ok(SegmentScan { records, end: off, stop })
}

/// Where the first valid record after `from` starts, if any: a record header whose length
/// fits the file, whose envelope header decodes and whose envelope hashes to its name.
/// Finding one means the bytes at `from` are damage, not a torn last write.
pub(super) fn valid_record_after(file: &File, path: &Path, from: u64) -> Result<Option<u64>> {
    let file_len = file.metadata().map_err(Error::file(path))?.len();
    let mut buf = vec![0u8; CHUNK];
    let mut start = from;
    while start < file_len {
        let n = (file_len - start).min(CHUNK as u64) as usize;
        read_at(file, path, &mut buf[..n], start)?;
        for i in 0..n.saturating_sub(RECORD_MAGIC.len() - 1) {
            if &buf[i..i + RECORD_MAGIC.len()] != RECORD_MAGIC {
                continue;
            }
            let at = start + i as u64;
            if at + RECORD_HEADER_LEN > file_len {
                return Ok(None);
            }
            let mut b = [0u8; RECORD_HEADER_LEN as usize];
            read_at(file, path, &mut b, at)?;
            if let Boundary::Record { len, hash } = parse_boundary(&b)
                && check_record(file, path, at, len, &hash, file_len, true)?.is_ok()
            {
                return Ok(Some(at));
            }
        }
        // Overlap by the magic's length less one, so a magic across chunks is found.
        if n < CHUNK {
            break;
        }
        start += (n - (RECORD_MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

/// Names the last record `scan` found, for a scan made without `verify`: a last record
/// whose bytes do not hash to its name is a write still under way (or torn), and the scan
/// then ends before it, as a verifying scan would have. The records before it were written
/// before it; each is checked against its own name when it is read.
pub(super) fn verify_last(file: &File, path: &Path, scan: &mut SegmentScan) -> Result<()> {
    let Some(last) = scan.records.last().copied() else { return Ok(()) };
    if name_range(file, path, &last.header, last.offset, u64::from(last.len))? == last.hash {
        return Ok(());
    }
    scan.records.pop();
    let offset = last.offset - RECORD_HEADER_LEN;
    let reason = format!("aggregate {}: its bytes do not hash to its name", hex(&last.hash));
    scan.end = offset;
    scan.stop = Stop::Bad { offset, reason, definite: false };
    Ok(())
}

/// Checks the record at `off` whose header says `len` and `hash`: that it fits the file,
/// that its envelope header decodes, and (with `verify`) that the envelope hashes to `hash`.
/// The outer `Result` is I/O; the inner says what is wrong with the record.
fn check_record(
    file: &File,
    path: &Path,
    off: u64,
    len: u32,
    hash: &Hash,
    file_len: u64,
    verify: bool,
) -> Result<std::result::Result<Header, String>> {
    let body = off + RECORD_HEADER_LEN;
    if (len as usize) < HEADER_LEN {
        return Ok(Err(format!("record length {len} is shorter than an envelope header")));
    }
    if body + u64::from(len) > file_len {
        return Ok(Err(format!(
            "a record of {len} bytes runs past the end of the file ({file_len} bytes)"
        )));
    }
    let mut h = [0u8; HEADER_LEN];
    read_at(file, path, &mut h, body)?;
    let header = match Header::decode(&h) {
        Ok(header) => header,
        Err(e) => return Ok(Err(format!("aggregate {}: {e}", hex(hash)))),
    };
    if verify && name_range(file, path, &header, body, u64::from(len))? != *hash {
        return Ok(Err(format!("aggregate {}: its bytes do not hash to its name", hex(hash))));
    }
    Ok(Ok(header))
}

/// The name of the envelope of `len` bytes at `off` in `file`, whose header is `header`,
/// read a chunk at a time.
fn name_range(file: &File, path: &Path, header: &Header, off: u64, len: u64) -> Result<Hash> {
    let mut hasher = Namer::new(header);
    let mut buf = vec![0u8; (len as usize).min(CHUNK)];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        read_at(file, path, &mut buf[..n], off + done)?;
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hasher.finish())
}

/// Reads exactly `buf.len()` bytes at `off`.
pub(super) fn read_at(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<()> {
    file.read_exact_at(buf, off).map_err(Error::file(path))
}
