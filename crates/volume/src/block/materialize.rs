//! Reading block blobs: [`block_header`] (the beginning only) and [`materialize_disk`]
//! (a chain applied to a sparse disk image, every blob checked as it is applied).
//!
//! Not the writer of blobs: that is `diff.rs`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::blob_id::BlobId;
use crate::block::format::{BlockHeader, COPY_CHUNK, EXTENT_LEN, Extent, HEADER_LEN};
use crate::error::{Error, Result};
use crate::store::BlobStore;

/// Extents reserved up front, whatever a header claims.
const RESERVE_EXTENTS: usize = 1 << 12;
/// Zeros written where holes cannot be punched.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The header of block blob `id`, reading only its beginning.
///
/// A blob that is not a block blob (a filesystem snapshot's tar blob, say) is an
/// [`Error::Corrupt`] naming it. The rest of the blob is not checked.
pub fn block_header(blobs: &BlobStore, id: &BlobId) -> Result<BlockHeader> {
    let file = blobs.open_blob(id)?;
    let mut dec = zstd::Decoder::new(file)
        .map_err(|e| corrupt(id, format!("not a zstd frame: {e}")))?
        .single_frame();
    read_header(&mut dec, id)
}

/// Makes the disk image at `image` (created, or truncated when it exists) from `chain`,
/// root first: each blob applied onto the result of those before it (a `full` blob onto an
/// all-zero disk: everything before it is discarded, and not read).
///
/// The image ends `size` of the last blob long, sparse: zero extents are punched holes,
/// never written zeros where the file system can punch. Every blob applied is checked (its
/// bytes hash to its id, zstd checksum, header, extents sorted, non-overlapping, within
/// size, data lengths) as it is applied; on any error the image's content is unspecified
/// and the caller deletes it. `progress(done, total)` counts blob bytes.
pub fn materialize_disk(
    blobs: &BlobStore,
    chain: &[BlobId],
    image: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<BlockHeader> {
    let Some(last) = chain.last() else {
        return Err(Error::EmptyChain { image: image.to_owned() });
    };
    // Blobs before the last full one are discarded by it: start there.
    let mut start = 0;
    for (i, id) in chain.iter().enumerate() {
        if block_header(blobs, id)?.full {
            start = i;
        }
    }
    let applied = &chain[start..];
    let mut total = 0;
    for id in applied {
        total += blobs.size(id)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(image)
        .map_err(Error::io(image, "create the disk image"))?;
    let mut disk = Image { file: &file, path: image, len: 0, punch: true };
    let mut done = 0;
    let mut header = None;
    for id in applied {
        header = Some(apply_blob(blobs, id, &mut disk, &mut |n| progress(done + n, total))?);
        done += blobs.size(id)?;
        progress(done, total);
    }
    file.sync_all().map_err(Error::io(image, "fsync the disk image"))?;
    let header = header.ok_or_else(|| Error::EmptyChain { image: image.to_owned() })?;
    tracing::debug!(image = %image.display(), blobs = applied.len(), size = header.size, %last,
        "disk image materialized");
    Ok(header)
}

/// The image being made, with its current length and whether holes can be punched in it.
struct Image<'a> {
    file: &'a File,
    path: &'a Path,
    len: u64,
    punch: bool,
}

/// Applies blob `id` onto `disk`, checking it all; `progress` gets blob bytes read so far.
fn apply_blob(
    blobs: &BlobStore,
    id: &BlobId,
    disk: &mut Image<'_>,
    progress: &mut impl FnMut(u64),
) -> Result<BlockHeader> {
    let path = blobs.path_of(id);
    let file = blobs.open_blob(id)?;
    let hashing = Hashing { file, hasher: blake3::Hasher::new(), read: 0, failed: None };
    let mut dec = zstd::Decoder::with_buffer(BufReader::with_capacity(COPY_CHUNK, hashing))
        .map_err(|e| corrupt(id, format!("not a zstd frame: {e}")))?
        .single_frame();
    let applied = apply_frame(&mut dec, id, disk, progress);
    // A read error of the file itself surfaces through the decoder as corruption: say what it was.
    if let Some(cause) = dec.get_mut().get_mut().failed.take() {
        return Err(Error::Io { path, op: "read a block blob", cause });
    }
    let header = applied?;
    let mut rest = dec.finish();
    let mut trailing = Vec::new();
    let n = (&mut rest).take(1).read_to_end(&mut trailing);
    let hashing = rest.into_inner();
    match n {
        Ok(0) => {}
        Ok(_) => return Err(corrupt(id, "bytes after its zstd frame".to_owned())),
        Err(cause) => return Err(Error::Io { path, op: "read a block blob", cause }),
    }
    let actual = BlobId::from_hash(&hashing.hasher.finalize());
    if &actual != id {
        return Err(corrupt(id, format!("its bytes hash to {actual}")));
    }
    Ok(header)
}

/// Applies the frame's content onto `disk`, up to and including the end of the frame.
fn apply_frame<R: Read>(
    dec: &mut zstd::Decoder<'_, BufReader<Hashing<R>>>,
    id: &BlobId,
    disk: &mut Image<'_>,
    progress: &mut impl FnMut(u64),
) -> Result<BlockHeader> {
    let header = read_header(dec, id)?;
    if header.full {
        disk.resize(0)?;
    }
    disk.resize(header.size)?;
    let data = read_table(dec, id, &header, disk)?;
    let mut buf = vec![0u8; COPY_CHUNK.min(header.data_bytes as usize)];
    for e in &data {
        let mut at = e.offset;
        let end = e.offset + e.len;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            read_blob(dec, &mut buf[..n], id, "data")?;
            disk.file
                .write_all_at(&buf[..n], at)
                .map_err(Error::io(disk.path, "write the disk image"))?;
            at += n as u64;
            progress(dec.get_ref().get_ref().read);
        }
    }
    // The frame must end here, with its checksum right.
    let mut extra = [0u8; 1];
    match dec.read(&mut extra) {
        Ok(0) => Ok(header),
        Ok(_) => Err(corrupt(id, "bytes after the data of the last extent".to_owned())),
        Err(e) => Err(corrupt(id, format!("at the end of its zstd frame: {e}"))),
    }
}

/// Reads the extent table: zero extents are applied at once, data extents returned in order.
fn read_table(
    dec: &mut impl Read,
    id: &BlobId,
    header: &BlockHeader,
    disk: &mut Image<'_>,
) -> Result<Vec<Extent>> {
    let mut data = Vec::with_capacity(RESERVE_EXTENTS.min(header.extents as usize));
    let (mut data_bytes, mut zero_bytes) = (0u64, 0u64);
    let mut prev: Option<Extent> = None;
    for _ in 0..header.extents {
        let mut bytes = [0u8; EXTENT_LEN];
        read_blob(dec, &mut bytes, id, "extent table")?;
        let e = Extent::decode(&bytes, prev.as_ref(), header).map_err(|r| corrupt(id, r))?;
        if e.data {
            data_bytes += e.len;
            data.push(e);
        } else {
            zero_bytes += e.len;
            disk.zero(e.offset, e.len)?;
        }
        prev = Some(e);
    }
    if data_bytes != header.data_bytes || zero_bytes != header.zero_bytes {
        return Err(corrupt(
            id,
            format!(
                "the extent table holds {data_bytes} data and {zero_bytes} zero bytes; the header says {} and {}",
                header.data_bytes, header.zero_bytes
            ),
        ));
    }
    Ok(data)
}

/// Reads and checks the header at the start of a decoder.
fn read_header(dec: &mut impl Read, id: &BlobId) -> Result<BlockHeader> {
    let mut bytes = [0u8; HEADER_LEN];
    read_blob(dec, &mut bytes, id, "header")?;
    BlockHeader::decode(&bytes).map_err(|r| corrupt(id, r))
}

/// Fills `buf` from the blob; a short or undecodable blob is corrupt.
fn read_blob(dec: &mut impl Read, buf: &mut [u8], id: &BlobId, what: &str) -> Result<()> {
    dec.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt(id, format!("truncated in its {what}")),
        _ => corrupt(id, format!("reading its {what}: {e}")),
    })
}

fn corrupt(id: &BlobId, reason: String) -> Error {
    Error::Corrupt { id: id.clone(), reason }
}

impl Image<'_> {
    /// Sets the image's length; bytes past the old length read as zeros (a hole).
    fn resize(&mut self, len: u64) -> Result<()> {
        if len != self.len {
            self.file.set_len(len).map_err(Error::io(self.path, "resize the disk image"))?;
            self.len = len;
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` zero: a punched hole, or written zeros where the file
    /// system cannot punch.
    fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        if self.punch {
            let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
            match rustix::fs::fallocate(self.file, mode, offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if [Errno::OPNOTSUPP, Errno::NOSYS, Errno::INVAL].contains(&e) => {
                    tracing::debug!(image = %self.path.display(), "cannot punch holes; writing zeros");
                    self.punch = false;
                }
                Err(e) => {
                    return Err(Error::io(self.path, "punch a hole in the disk image")(e.into()));
                }
            }
        }
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let n = ((end - at) as usize).min(ZEROS.len());
            self.file
                .write_all_at(&ZEROS[..n], at)
                .map_err(Error::io(self.path, "write zeros in the disk image"))?;
            at += n as u64;
        }
        Ok(())
    }
}

/// A blob file that hashes and counts the bytes read from it, and keeps its read error.
struct Hashing<R> {
    file: R,
    hasher: blake3::Hasher,
    read: u64,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}
