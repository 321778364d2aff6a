//! The block blob format's constants and its fixed little-endian encoding: the header and
//! the extent table, with the checks a reader applies to them.
//!
//! This is not the reader or the writer of whole blobs (`diff.rs`, `materialize.rs`); it only
//! turns header and extent bytes into values and back.

use serde::{Deserialize, Serialize};

/// First bytes of every block blob's content (inside the zstd frame).
pub(crate) const MAGIC: [u8; 8] = *b"STRATABK";
/// The only format version.
pub(crate) const VERSION: u32 = 1;
/// Flag bit: the blob applies onto an all-zero disk.
pub(crate) const FLAG_FULL: u32 = 1;
/// Length of magic, version, flags and the four counts.
pub(crate) const HEADER_LEN: usize = 48;
/// Length of one extent in the table: offset, length, kind.
pub(crate) const EXTENT_LEN: usize = 17;
/// Kind byte of an extent whose bytes follow the table.
pub(crate) const KIND_DATA: u8 = 1;
/// Kind byte of an extent made zero.
pub(crate) const KIND_ZERO: u8 = 2;
/// Most extents a reader accepts in one blob: bounds the memory a hostile table can take.
pub(crate) const MAX_EXTENTS: u64 = 1 << 26;
/// zstd level; fixed, so the same changes always compress to the same bytes.
pub(crate) const ZSTD_LEVEL: i32 = 3;
/// Granularity of zero detection in writes, aligned to disk offsets.
pub(crate) const ZERO_CHUNK: u64 = 4096;
/// Bytes copied at a time between scratch, blob and image.
pub(crate) const COPY_CHUNK: usize = 1 << 20;

/// What a block blob's header says: the disk's size and what the extent table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The disk's size in bytes once the blob is applied.
    pub size: u64,
    /// Whether the blob applies onto an all-zero disk (a root snapshot) rather than onto its
    /// parent's disk; a full blob has no zero extents.
    pub full: bool,
    /// Extents in the table.
    pub extents: u64,
    /// Bytes of the data extents (the data that follows the table).
    pub data_bytes: u64,
    /// Bytes of the zero extents.
    pub zero_bytes: u64,
}

/// One extent of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    /// First byte on the disk.
    pub(crate) offset: u64,
    /// Bytes, at least 1.
    pub(crate) len: u64,
    /// Whether data follows (else the range is made zero).
    pub(crate) data: bool,
}

impl BlockHeader {
    /// The header's bytes, magic first.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if self.full { FLAG_FULL } else { 0 };
        out[12..16].copy_from_slice(&flags.to_le_bytes());
        for (i, v) in [self.size, self.extents, self.data_bytes, self.zero_bytes].iter().enumerate()
        {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The header in `bytes`, or why they are not the header of a block blob this version reads.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Result<BlockHeader, String> {
        if bytes[..8] != MAGIC {
            return Err("not a strata block blob (no block magic at its start)".to_owned());
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(format!(
                "block blob version {version}; this strata reads version {VERSION}"
            ));
        }
        let flags = u32_at(bytes, 12);
        if flags & !FLAG_FULL != 0 {
            return Err(format!("unknown header flags {flags:#x}"));
        }
        let header = BlockHeader {
            size: u64_at(bytes, 16),
            full: flags & FLAG_FULL != 0,
            extents: u64_at(bytes, 24),
            data_bytes: u64_at(bytes, 32),
            zero_bytes: u64_at(bytes, 40),
        };
        header.check()?;
        Ok(header)
    }

    /// Whether the counts are possible for a disk of this size.
    fn check(&self) -> Result<(), String> {
        let covered = self.data_bytes.checked_add(self.zero_bytes);
        if covered.is_none_or(|c| c > self.size) {
            return Err(format!(
                "header: {} data and {} zero bytes do not fit a disk of {} bytes",
                self.data_bytes, self.zero_bytes, self.size
            ));
        }
        if self.full && self.zero_bytes != 0 {
            return Err("header: a full blob with zero extents".to_owned());
        }
        if self.extents > covered.unwrap_or(0) || self.extents > MAX_EXTENTS {
            return Err(format!(
                "header: {} extents for {} bytes (at most one per byte and {MAX_EXTENTS} in all)",
                self.extents,
                covered.unwrap_or(0)
            ));
        }
        Ok(())
    }
}

impl Extent {
    /// The extent's bytes in the table.
    pub(crate) fn encode(&self) -> [u8; EXTENT_LEN] {
        let mut out = [0u8; EXTENT_LEN];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16] = if self.data { KIND_DATA } else { KIND_ZERO };
        out
    }

    /// The extent in `bytes`, checked against the one before it (`prev`) and the header.
    pub(crate) fn decode(
        bytes: &[u8; EXTENT_LEN],
        prev: Option<&Extent>,
        header: &BlockHeader,
    ) -> Result<Extent, String> {
        let offset = u64_at(bytes, 0);
        let len = u64_at(bytes, 8);
        let data = match bytes[16] {
            KIND_DATA => true,
            KIND_ZERO if !header.full => false,
            KIND_ZERO => return Err(format!("zero extent at {offset} in a full blob")),
            kind => return Err(format!("extent at {offset}: unknown kind {kind}")),
        };
        let extent = Extent { offset, len, data };
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > header.size) {
            return Err(format!(
                "extent of {len} bytes at {offset}: empty or past the disk's size {}",
                header.size
            ));
        }
        if let Some(p) = prev {
            let prev_end = p.offset + p.len;
            if offset < prev_end {
                return Err(format!(
                    "extent at {offset}: overlaps or precedes the one ending at {prev_end}"
                ));
            }
            if offset == prev_end && data == p.data {
                return Err(format!(
                    "extent at {offset}: not merged with the adjacent one before it"
                ));
            }
        }
        Ok(extent)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}
