//! The bytes of a segment file: its header, the record header in front of each aggregate,
//! and the seal that closes a full segment. `docs/design/tlog-format.md` ("Segment files")
//! is the reference; this module only encodes and decodes, it does no I/O.

use crate::aggregate::Hash;

/// The magic at the start of a segment file.
pub(super) const SEGMENT_MAGIC: &[u8; 4] = b"STLS";
/// The segment format this code writes and reads.
pub(super) const SEGMENT_FORMAT: u8 = 1;
/// The size of the segment header.
pub(super) const SEGMENT_HEADER_LEN: u64 = 16;
/// The magic of a record header.
pub(super) const RECORD_MAGIC: &[u8; 4] = b"STLR";
/// The magic of a seal.
pub(super) const SEAL_MAGIC: &[u8; 4] = b"STLE";
/// The size of a record header and of a seal.
pub(super) const RECORD_HEADER_LEN: u64 = 40;
/// The file name extension of segment files.
pub(super) const SEGMENT_EXTENSION: &str = "seg";

/// What 40 bytes at a record boundary say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Boundary {
    /// All zeros: the end of the written part (preallocated space follows).
    End,
    /// A record of `len` envelope bytes named `hash` follows.
    Record { len: u32, hash: Hash },
    /// The segment is closed after `records` records, the last named `last`.
    Seal { records: u32, last: Hash },
    /// Anything else: damage, or a torn write.
    Garbage,
}

/// The segment file name of segment `number`: 20 decimal digits, so names sort by number.
pub(super) fn segment_name(number: u64) -> String {
    format!("{number:020}.{SEGMENT_EXTENSION}")
}

/// The number a segment file name carries, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `number`.
pub(super) fn segment_header(number: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..4].copy_from_slice(SEGMENT_MAGIC);
    h[4] = SEGMENT_FORMAT;
    h[8..16].copy_from_slice(&number.to_le_bytes());
    h
}

/// Checks a segment header read from the file named for `number`.
pub(super) fn check_segment_header(h: &[u8], number: u64) -> Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN as usize {
        return Err("shorter than a segment header".into());
    }
    if &h[0..4] != SEGMENT_MAGIC {
        return Err("not a strata tlog segment (bad magic)".into());
    }
    if h[4] != SEGMENT_FORMAT {
        return Err(format!("segment format {} (this strata reads {SEGMENT_FORMAT})", h[4]));
    }
    if h[5..8] != [0, 0, 0] {
        return Err("reserved header bytes are not zero".into());
    }
    let stored = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    if stored != number {
        return Err(format!("the header says segment {stored}, the file name {number}"));
    }
    Ok(())
}

/// The record header in front of an envelope of `len` bytes named `hash`.
pub(super) fn record_header(len: u32, hash: &Hash) -> [u8; RECORD_HEADER_LEN as usize] {
    boundary(RECORD_MAGIC, len, hash)
}

/// The seal of a segment holding `records` records, the last named `last`.
pub(super) fn seal(records: u32, last: &Hash) -> [u8; RECORD_HEADER_LEN as usize] {
    boundary(SEAL_MAGIC, records, last)
}

/// Reads the 40 bytes at a record boundary.
pub(super) fn parse_boundary(b: &[u8; RECORD_HEADER_LEN as usize]) -> Boundary {
    if b.iter().all(|&x| x == 0) {
        return Boundary::End;
    }
    let n = u32::from_le_bytes(b[4..8].try_into().unwrap_or_default());
    let hash: Hash = b[8..40].try_into().unwrap_or_default();
    match &b[0..4] {
        m if m == RECORD_MAGIC => Boundary::Record { len: n, hash },
        m if m == SEAL_MAGIC => Boundary::Seal { records: n, last: hash },
        _ => Boundary::Garbage,
    }
}

fn boundary(magic: &[u8; 4], n: u32, hash: &Hash) -> [u8; RECORD_HEADER_LEN as usize] {
    let mut b = [0u8; RECORD_HEADER_LEN as usize];
    b[0..4].copy_from_slice(magic);
    b[4..8].copy_from_slice(&n.to_le_bytes());
    b[8..40].copy_from_slice(hash);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_round_trip() {
        let hash = [9u8; 32];
        assert_eq!(parse_boundary(&record_header(77, &hash)), Boundary::Record { len: 77, hash });
        assert_eq!(parse_boundary(&seal(3, &hash)), Boundary::Seal { records: 3, last: hash });
        assert_eq!(parse_boundary(&[0; 40]), Boundary::End);
        let mut torn = record_header(77, &hash);
        torn[0] = b'X';
        assert_eq!(parse_boundary(&torn), Boundary::Garbage);
    }

    #[test]
    fn segment_names_and_headers() {
        assert_eq!(segment_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(7)), Some(7));
        assert_eq!(parse_segment_name("7.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000007.tmp"), None);
        assert!(check_segment_header(&segment_header(7), 7).is_ok());
        assert!(check_segment_header(&segment_header(7), 8).unwrap_err().contains("file name"));
        assert!(check_segment_header(&[0; 16], 1).unwrap_err().contains("magic"));
    }
}
