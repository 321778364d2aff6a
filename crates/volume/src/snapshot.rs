//! Making a snapshot: scan a directory against the parent's manifest and stream the diff,
//! as one zstd-compressed tar, into the blob store.
//!
//! Files that are new, or changed in size, are hashed while they are copied into the tar, so
//! a first snapshot reads each file once. This is not where blobs are applied (`apply.rs`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::blob_id::BlobId;
use crate::error::{Error, Result};
use crate::format::{
    DIFF_ENTRY, DiffHeader, MANIFEST_ENTRY, TREE_PREFIX, VERSION, ZSTD_LEVEL, parent_of,
};
use crate::manifest::{Entry, Kind, Manifest, Walked, hash_file, walk};
use crate::store::{BlobStore, BlobWriter};

/// Read buffer over a file being copied into a blob.
const READ_BUFFER: usize = 1 << 20;

/// A snapshot written into the blob store.
#[derive(Debug, Clone)]
pub struct Snapshotted {
    /// The diff blob.
    pub blob: BlobId,
    /// The manifest of the snapshotted tree, with stat caches: pass it as the base of the next
    /// snapshot of the same directory.
    pub manifest: Manifest,
    /// Bytes of the blob.
    pub size: u64,
    /// Paths added.
    pub added: u64,
    /// Paths changed (content, mode, kind or link target).
    pub changed: u64,
    /// Paths deleted, counting every path under a deleted directory.
    pub deleted: u64,
}

/// Diff `dir` against `base` (the manifest of the parent snapshot; [`Manifest::empty`] for
/// none), write the diff as one compressed tar blob into `blobs`, and return it with the new
/// manifest.
pub fn snapshot(dir: &Path, base: &Manifest, blobs: &BlobStore) -> Result<Snapshotted> {
    let walked = walk(dir)?;
    let mut plan = Vec::with_capacity(walked.len());
    let (mut added, mut changed) = (0, 0);
    for w in walked {
        let step = plan_one(w, base)?;
        match &step.change {
            Change::Same => {}
            Change::Added => added += 1,
            Change::Changed => changed += 1,
        }
        plan.push(step);
    }
    let present: BTreeMap<&str, ()> = plan.iter().map(|s| (s.walked.rel.as_str(), ())).collect();
    let gone: Vec<&str> =
        base.iter().map(|(p, _)| p).filter(|p| !present.contains_key(p)).collect();
    let deleted_count = gone.len() as u64;
    let deleted = top_level(&gone);

    let mut tar = tar::Builder::new(encoder(blobs.writer()?, blobs)?);
    let header = DiffHeader { version: VERSION, deleted };
    append_json(&mut tar, DIFF_ENTRY, &header, blobs)?;
    let mut entries = BTreeMap::new();
    for step in plan {
        let Step { walked: Walked { rel, full, mut entry }, change } = step;
        if !matches!(change, Change::Same) {
            append_entry(&mut tar, &rel, &full, &mut entry, blobs)?;
        }
        entries.insert(rel, entry);
    }
    let manifest = Manifest::from_entries(entries);
    append_json(&mut tar, MANIFEST_ENTRY, &manifest.without_stat(), blobs)?;
    let writer = finish_tar(tar, blobs)?;
    let size = writer.len();
    let blob = writer.finish()?;
    tracing::info!(dir = %dir.display(), %blob, size, added, changed, deleted = deleted_count, "snapshot written");
    Ok(Snapshotted { blob, manifest, size, added, changed, deleted: deleted_count })
}

/// One walked path and how it differs from the base.
struct Step {
    walked: Walked,
    change: Change,
}

enum Change {
    /// Identical to the base's entry; not in the diff.
    Same,
    /// Not in the base.
    Added,
    /// In the base, different here.
    Changed,
}

/// Decides whether `w` changed since `base`, hashing a file only when its stat changed but its
/// size did not (a file of another size changed anyway and is hashed while it is copied).
fn plan_one(mut w: Walked, base: &Manifest) -> Result<Step> {
    let Some(old) = base.get(&w.rel) else {
        return Ok(Step { walked: w, change: Change::Added });
    };
    if w.entry.kind == Kind::File && old.kind == Kind::File && old.size == w.entry.size {
        w.entry.hash = match base.cached_hash(&w.rel, &w.entry) {
            Some(hash) => Some(hash),
            None => Some(hash_file(&w.full)?),
        };
    }
    let change = if &w.entry == old { Change::Same } else { Change::Changed };
    Ok(Step { walked: w, change })
}

/// The paths of `gone` (sorted) that have no ancestor in `gone`; sorted too, so
/// [`has_listed_ancestor`] can search it.
fn top_level(gone: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for path in gone {
        if !has_listed_ancestor(path, &out) {
            out.push((*path).to_owned());
        }
    }
    out
}

fn has_listed_ancestor(path: &str, listed: &[String]) -> bool {
    let mut p = path;
    while let Some(parent) = parent_of(p) {
        if listed.binary_search_by(|l| l.as_str().cmp(parent)).is_ok() {
            return true;
        }
        p = parent;
    }
    false
}

type Encoder = zstd::stream::write::Encoder<'static, BlobWriter>;

fn encoder(writer: BlobWriter, blobs: &BlobStore) -> Result<Encoder> {
    let mut enc = Encoder::new(writer, ZSTD_LEVEL).map_err(Error::io(blobs.dir(), "start zstd"))?;
    enc.include_checksum(true).map_err(Error::io(blobs.dir(), "start zstd"))?;
    Ok(enc)
}

fn finish_tar(tar: tar::Builder<Encoder>, blobs: &BlobStore) -> Result<BlobWriter> {
    let enc = tar.into_inner().map_err(Error::io(blobs.dir(), "write a blob"))?;
    enc.finish().map_err(Error::io(blobs.dir(), "write a blob"))
}

/// A tar header with everything but the type, mode and size fixed, for deterministic bytes.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_json<T: serde::Serialize>(
    tar: &mut tar::Builder<Encoder>,
    name: &str,
    value: &T,
    blobs: &BlobStore,
) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Io {
        path: blobs.dir().to_owned(),
        op: "encode a diff's JSON",
        cause: io::Error::other(e),
    })?;
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, name, bytes.as_slice()).map_err(Error::io(blobs.dir(), "write a blob"))
}

/// Appends one tree entry; for a file, hashes its content as it is copied if not hashed yet.
fn append_entry(
    tar: &mut tar::Builder<Encoder>,
    rel: &str,
    full: &Path,
    entry: &mut Entry,
    blobs: &BlobStore,
) -> Result<()> {
    let name = format!("{TREE_PREFIX}{rel}");
    let write_err = Error::io(blobs.dir(), "write a blob");
    match entry.kind {
        Kind::Dir => {
            let mut h = header(tar::EntryType::Directory, entry.mode, 0);
            tar.append_data(&mut h, &name, io::empty()).map_err(write_err)
        }
        Kind::Symlink => {
            let mut h = header(tar::EntryType::Symlink, entry.mode, 0);
            let target = entry.target.as_deref().unwrap_or_default();
            tar.append_link(&mut h, &name, target).map_err(write_err)
        }
        Kind::File => {
            let file = File::open(full).map_err(Error::io(full, "open"))?;
            let mut h = header(tar::EntryType::Regular, entry.mode, entry.size);
            let mut reader = Exact::new(file, entry.size, full);
            if let Err(e) = tar.append_data(&mut h, &name, &mut reader) {
                return Err(reader.error.take().unwrap_or_else(|| write_err(e)));
            }
            let hash = reader.hasher.finalize().to_hex().to_string();
            if entry.hash.as_ref().is_some_and(|h| h != &hash) {
                return Err(Error::Changed { path: full.to_owned() });
            }
            entry.hash = Some(hash);
            Ok(())
        }
    }
}

/// Reads exactly `left` bytes of a file, hashing them; a file that ends early is an error,
/// bytes past `left` (the file grew) are ignored.
struct Exact {
    file: BufReader<File>,
    left: u64,
    hasher: blake3::Hasher,
    path: PathBuf,
    error: Option<Error>,
}

impl Exact {
    fn new(file: File, left: u64, path: &Path) -> Exact {
        let file = BufReader::with_capacity(READ_BUFFER, file);
        Exact { file, left, hasher: blake3::Hasher::new(), path: path.to_owned(), error: None }
    }
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.file.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.error = Some(Error::Io {
                    path: self.path.clone(),
                    op: "read",
                    cause: io::Error::new(e.kind(), e.to_string()),
                });
                return Err(e);
            }
        };
        if n == 0 {
            self.error = Some(Error::Changed { path: self.path.clone() });
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}
