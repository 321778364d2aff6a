//! The manifest of a tree: every path under a volume's directory with its kind, mode, size,
//! content hash or link target, and a stat cache that makes rescans cheap.
//!
//! Paths are relative, `/`-separated and UTF-8; the volume's directory itself is not an
//! entry. This is not the diff: `snapshot` compares two manifests.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A file whose mtime or ctime is this close to the scan's start may change again within the
/// same timestamp tick, so its stat is not cached and the next scan hashes it again.
const RACY_NS: i64 = 2_000_000_000;

/// The manifest of a tree: path → entry, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    entries: BTreeMap<String, Entry>,
}

/// What a manifest records of one path.
///
/// Equality compares the tree (kind, mode, size, hash, target), not the stat cache.
#[derive(Debug, Clone, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// File, directory or symlink.
    pub kind: Kind,
    /// Permission bits (`0o7777` at most); `0o777` for symlinks.
    pub mode: u32,
    /// Content length for files; 0 for directories and symlinks.
    pub size: u64,
    /// Lowercase hex BLAKE3-256 of the content, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The link target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the file looked like when it was hashed, for files; only in manifests made by a
    /// scan on this machine, never in blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
}

/// The kind of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// The stat fields that say a file is unchanged since it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub dev: u64,
}

/// One path found by [`walk`], before its content is hashed.
#[derive(Debug)]
pub(crate) struct Walked {
    /// The relative path.
    pub(crate) rel: String,
    /// The full path on disk.
    pub(crate) full: PathBuf,
    /// The entry, with no hash yet for files.
    pub(crate) entry: Entry,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.size == other.size
            && self.hash == other.hash
            && self.target == other.target
    }
}

impl Manifest {
    /// The manifest of an empty tree, the base of a first snapshot.
    pub fn empty() -> Manifest {
        Manifest::default()
    }

    /// Scans `dir` and hashes every file.
    pub fn scan(dir: &Path) -> Result<Manifest> {
        Manifest::scan_against(dir, &Manifest::empty())
    }

    /// Scans `dir`, reusing the hash of `base`'s entry for a file whose size and stat (mtime,
    /// ctime, inode, device) are unchanged, and hashing the others.
    pub fn scan_against(dir: &Path, base: &Manifest) -> Result<Manifest> {
        let mut entries = BTreeMap::new();
        for mut w in walk(dir)? {
            if w.entry.kind == Kind::File {
                w.entry.hash = match base.cached_hash(&w.rel, &w.entry) {
                    Some(hash) => Some(hash),
                    None => Some(hash_file(&w.full)?),
                };
            }
            entries.insert(w.rel, w.entry);
        }
        Ok(Manifest { entries })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `path` (relative, `/`-separated).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Total content bytes of the files.
    pub fn file_bytes(&self) -> u64 {
        self.entries.values().filter(|e| e.kind == Kind::File).map(|e| e.size).sum()
    }

    /// The hash of `base`'s entry at `rel` if `found` (a walked file) is unchanged since it.
    pub(crate) fn cached_hash(&self, rel: &str, found: &Entry) -> Option<String> {
        let old = self.entries.get(rel)?;
        let unchanged = old.kind == Kind::File
            && old.size == found.size
            && old.stat.is_some()
            && old.stat == found.stat;
        if unchanged { old.hash.clone() } else { None }
    }

    /// This manifest without stat caches, as blobs carry it.
    pub(crate) fn without_stat(&self) -> Manifest {
        let mut m = self.clone();
        for e in m.entries.values_mut() {
            e.stat = None;
        }
        m
    }

    pub(crate) fn from_entries(entries: BTreeMap<String, Entry>) -> Manifest {
        Manifest { entries }
    }
}

/// Every path under `dir`, sorted, with files not yet hashed.
pub(crate) fn walk(dir: &Path) -> Result<Vec<Walked>> {
    let meta = fs::metadata(dir).map_err(Error::io(dir, "stat the volume directory"))?;
    if !meta.is_dir() {
        return Err(Error::BadDirectory { path: dir.to_owned(), reason: "not a directory".into() });
    }
    let racy_after = now_ns() - RACY_NS;
    let mut out = Vec::new();
    walk_into(dir, "", racy_after, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk_into(dir: &Path, prefix: &str, racy_after: i64, out: &mut Vec<Walked>) -> Result<()> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(dir, "list"))? {
        let entry = entry.map_err(Error::io(dir, "list"))?;
        let full = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(Error::NonUtf8Name { path: full });
        };
        children.push((name, full));
    }
    for (name, full) in children {
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let meta = fs::symlink_metadata(&full).map_err(Error::io(&full, "stat"))?;
        let entry = entry_of(&full, &meta, racy_after)?;
        let is_dir = entry.kind == Kind::Dir;
        out.push(Walked { rel: rel.clone(), full: full.clone(), entry });
        if is_dir {
            walk_into(&full, &rel, racy_after, out)?;
        }
    }
    Ok(())
}

fn entry_of(full: &Path, meta: &fs::Metadata, racy_after: i64) -> Result<Entry> {
    let ft = meta.file_type();
    let mode = meta.mode() & 0o7777;
    let plain = |kind| Entry { kind, mode, size: 0, hash: None, target: None, stat: None };
    if ft.is_dir() {
        Ok(plain(Kind::Dir))
    } else if ft.is_symlink() {
        let target = fs::read_link(full).map_err(Error::io(full, "read the link"))?;
        let Some(target) = target.to_str().map(str::to_owned) else {
            return Err(Error::NonUtf8Name { path: full.to_owned() });
        };
        Ok(Entry { mode: 0o777, target: Some(target), ..plain(Kind::Symlink) })
    } else if ft.is_file() {
        let stat = Stat {
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
            inode: meta.ino(),
            dev: meta.dev(),
        };
        let racy = stat.mtime_ns >= racy_after || stat.ctime_ns >= racy_after;
        Ok(Entry { size: meta.len(), stat: (!racy).then_some(stat), ..plain(Kind::File) })
    } else {
        let kind = if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_block_device() {
            "block device"
        } else {
            "character device"
        };
        Err(Error::Unsupported { path: full.to_owned(), kind })
    }
}

/// The lowercase hex BLAKE3-256 of the file at `path`.
pub(crate) fn hash_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(Error::io(path, "open"))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&mut file).map_err(Error::io(path, "read"))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn now_ns() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}
