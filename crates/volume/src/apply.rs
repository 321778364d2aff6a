//! Applying diff blobs to directories: a verifying pass over the whole blob that changes
//! nothing, then a writing pass; and materializing a chain of blobs into a new directory.
//!
//! The verifying pass checks the blob's hash against its id, the zstd checksum, the tar
//! structure, every path (no absolute paths, no `..`), every entry type (no hard links, no
//! devices), every file's content hash and the agreement of entries with the manifest, so a
//! corrupt, truncated or malicious blob is refused before the tree is touched.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::blob_id::BlobId;
use crate::error::{Error, Result};
use crate::format::{
    DIFF_ENTRY, DiffHeader, MANIFEST_ENTRY, MAX_JSON, TREE_PREFIX, VERSION, parent_of, unsafe_path,
};
use crate::fsutil::{remove_tree, sync_dir};
use crate::manifest::{Entry, Kind, Manifest};
use crate::store::BlobStore;

/// Read buffer over a blob file.
const READ_BUFFER: usize = 1 << 20;
/// Prefix of the temporary file a file entry is written to before it is renamed into place.
const TEMP_PREFIX: &str = ".strata-apply-";

/// Apply one diff blob on top of `dir` (which holds the parent's tree).
///
/// The blob is verified in full before anything changes; a corrupt, truncated or malicious
/// blob leaves `dir` as it was. An I/O error while writing (a full disk) can leave `dir`
/// between the two trees; applying the same blob again finishes the job, because every entry
/// is set to its final state whatever was there.
pub fn apply(blobs: &BlobStore, blob: &BlobId, dir: &Path) -> Result<()> {
    apply_one(blobs, blob, dir).map(|_| ())
}

/// Build a tree from nothing: apply `chain` (root snapshot's blob first) into an empty or
/// missing `dir`, and return the manifest of the result.
///
/// The tree is built in a sibling directory and renamed into place when every blob has
/// been applied, so on any error `dir` is left as it was (missing, or empty).
pub fn materialize(blobs: &BlobStore, chain: &[BlobId], dir: &Path) -> Result<Manifest> {
    let existing_mode = match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut children = fs::read_dir(dir).map_err(Error::io(dir, "list"))?;
            if children.next().is_some() {
                return Err(bad_dir(
                    dir,
                    "not empty; materialize needs an empty or missing directory",
                ));
            }
            Some(meta.permissions().mode() & 0o7777)
        }
        Ok(_) => {
            return Err(bad_dir(
                dir,
                "not a directory; materialize needs an empty or missing directory",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::Io { path: dir.to_owned(), op: "stat", cause: e }),
    };
    let (parent, name) = split_dir(dir)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.strata-materialize-"))
        .tempdir_in(&parent)
        .map_err(Error::io(&parent, "create a staging directory"))?;
    let mut manifest = Manifest::empty();
    for id in chain {
        match apply_one(blobs, id, staging.path()) {
            Ok(m) => manifest = m,
            Err(e) => {
                // Read-only directories would defeat `TempDir`'s own removal.
                if let Err(rm) = remove_tree(staging.path()) {
                    tracing::warn!(path = %staging.path().display(), error = %rm, "cannot remove a staging directory");
                }
                return Err(e);
            }
        }
    }
    let mode = existing_mode.unwrap_or(0o755);
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(mode))
        .map_err(Error::io(staging.path(), "chmod"))?;
    if existing_mode.is_some() {
        fs::remove_dir(dir).map_err(Error::io(dir, "remove the empty directory"))?;
    }
    let built = staging.keep();
    fs::rename(&built, dir).map_err(Error::io(dir, "rename the built tree into place"))?;
    sync_dir(&parent)?;
    tracing::info!(dir = %dir.display(), blobs = chain.len(), entries = manifest.len(), "materialized");
    Ok(manifest)
}

/// The manifest of the whole tree as of this blob (each blob carries it), after verifying
/// the blob in full.
pub fn manifest_of(blobs: &BlobStore, blob: &BlobId) -> Result<Manifest> {
    verify(blobs, blob).map(|v| v.manifest)
}

fn apply_one(blobs: &BlobStore, id: &BlobId, dir: &Path) -> Result<Manifest> {
    let meta = fs::metadata(dir).map_err(Error::io(dir, "stat the volume directory"))?;
    if !meta.is_dir() {
        return Err(bad_dir(dir, "not a directory"));
    }
    let verified = verify(blobs, id)?;
    write(blobs, id, dir, &verified)?;
    tracing::debug!(%id, dir = %dir.display(), "applied");
    Ok(verified.manifest)
}

/// What the verifying pass learnt of a blob.
#[derive(Debug)]
struct Verified {
    /// Paths to delete, sorted.
    deleted: Vec<String>,
    /// The manifest of the resulting tree.
    manifest: Manifest,
}

/// One tree entry as the tar holds it.
#[derive(Debug)]
struct TreeEntry {
    rel: String,
    kind: Kind,
    mode: u32,
    target: Option<String>,
}

/// The verifying pass: reads the whole blob and changes nothing.
fn verify(blobs: &BlobStore, id: &BlobId) -> Result<Verified> {
    let file = blobs.open_blob(id)?;
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(READ_BUFFER, file),
        hasher: blake3::Hasher::new(),
    };
    let parsed = parse(id, &mut hashing);
    let drained = io::copy(&mut hashing, &mut io::sink());
    let actual = BlobId::from_hash(&hashing.hasher.finalize());
    if let Err(e) = drained {
        return Err(Error::Io { path: blobs.path_of(id), op: "read", cause: e });
    }
    if &actual != id {
        return Err(corrupt(id, format!("its bytes hash to {actual} (truncated or damaged)")));
    }
    parsed
}

/// Parses and checks the blob's content; `hashing` is left wherever the zstd frame ended.
fn parse(id: &BlobId, hashing: &mut Hashing) -> Result<Verified> {
    let decoder =
        zstd::stream::read::Decoder::new(hashing).map_err(|e| corrupt(id, format!("zstd: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let mut header: Option<DiffHeader> = None;
    let mut manifest: Option<Manifest> = None;
    let mut tree: Vec<(TreeEntry, Option<String>, u64)> = Vec::new();
    let entries = archive.entries().map_err(|e| corrupt(id, format!("tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(id, format!("tar: {e}")))?;
        let name = entry_name(id, &entry)?;
        if manifest.is_some() {
            return Err(corrupt(id, format!("entry {name:?} after the manifest")));
        }
        if header.is_none() {
            if name != DIFF_ENTRY {
                return Err(corrupt(
                    id,
                    format!("first entry is {name:?}, not {DIFF_ENTRY}: not a strata volume diff"),
                ));
            }
            header = Some(read_json(id, &mut entry, DIFF_ENTRY)?);
        } else if name == MANIFEST_ENTRY {
            manifest = Some(read_json(id, &mut entry, MANIFEST_ENTRY)?);
        } else {
            let (te, hash, size) = read_tree_entry(id, &name, &mut entry)?;
            if let Some((prev, _, _)) = tree.last()
                && prev.rel >= te.rel
            {
                return Err(corrupt(id, format!("entry {:?} out of order or repeated", te.rel)));
            }
            tree.push((te, hash, size));
        }
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| corrupt(id, format!("zstd: {e}")))?;
    let Some(header) = header else {
        return Err(corrupt(id, "empty tar: not a strata volume diff".into()));
    };
    let Some(manifest) = manifest else {
        return Err(corrupt(id, "no manifest at the end (truncated?)".into()));
    };
    if header.version != VERSION {
        return Err(corrupt(
            id,
            format!("format version {}, this strata reads {VERSION}", header.version),
        ));
    }
    check_consistent(id, &header, &manifest, &tree)?;
    Ok(Verified { deleted: header.deleted, manifest })
}

fn entry_name<R: Read>(id: &BlobId, entry: &tar::Entry<'_, R>) -> Result<String> {
    let bytes = entry.path_bytes();
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(refused(id, &String::from_utf8_lossy(&bytes), "name is not UTF-8")),
    }
}

fn read_json<T: serde::de::DeserializeOwned, R: Read>(
    id: &BlobId,
    entry: &mut tar::Entry<'_, R>,
    name: &str,
) -> Result<T> {
    if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > MAX_JSON {
        return Err(corrupt(
            id,
            format!("{name} is not a regular entry of at most {MAX_JSON} bytes"),
        ));
    }
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| corrupt(id, format!("{name}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(id, format!("{name}: {e}")))
}

/// Checks one tree entry's name and type, and hashes a file's content.
fn read_tree_entry<R: Read>(
    id: &BlobId,
    name: &str,
    entry: &mut tar::Entry<'_, R>,
) -> Result<(TreeEntry, Option<String>, u64)> {
    let Some(rel) = name.strip_prefix(TREE_PREFIX) else {
        return Err(refused(id, name, "not a strata diff entry (tree/…)"));
    };
    let ty = entry.header().entry_type();
    let rel = if ty.is_dir() { rel.strip_suffix('/').unwrap_or(rel) } else { rel };
    if let Some(reason) = unsafe_path(rel) {
        return Err(refused(id, name, reason));
    }
    let mode =
        entry.header().mode().map_err(|e| corrupt(id, format!("{name}: mode: {e}")))? & 0o7777;
    let te = |kind, target| TreeEntry { rel: rel.to_owned(), kind, mode, target };
    match ty {
        tar::EntryType::Regular => {
            let size = entry.size();
            let mut hasher = blake3::Hasher::new();
            let n =
                io::copy(entry, &mut hasher).map_err(|e| corrupt(id, format!("{name}: {e}")))?;
            if n != size {
                return Err(corrupt(id, format!("{name}: {n} content bytes, header says {size}")));
            }
            Ok((te(Kind::File, None), Some(hasher.finalize().to_hex().to_string()), size))
        }
        tar::EntryType::Directory => Ok((te(Kind::Dir, None), None, 0)),
        tar::EntryType::Symlink => {
            let target = entry.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
            let Ok(target) = String::from_utf8(target) else {
                return Err(refused(id, name, "link target is not UTF-8"));
            };
            if target.is_empty() || target.contains('\0') {
                return Err(refused(id, name, "empty link target"));
            }
            Ok((te(Kind::Symlink, Some(target)), None, 0))
        }
        tar::EntryType::Link => Err(refused(id, name, "hard links are not allowed")),
        tar::EntryType::Char | tar::EntryType::Block => {
            Err(refused(id, name, "devices are not allowed"))
        }
        tar::EntryType::Fifo => Err(refused(id, name, "fifos are not allowed")),
        other => Err(refused(id, name, &format!("tar entry type {other:?} is not allowed"))),
    }
}

/// Checks that the entries, deletions and manifest describe one consistent tree.
fn check_consistent(
    id: &BlobId,
    header: &DiffHeader,
    manifest: &Manifest,
    tree: &[(TreeEntry, Option<String>, u64)],
) -> Result<()> {
    for (path, entry) in manifest.iter() {
        if let Some(reason) = unsafe_path(path) {
            return Err(refused(id, path, reason));
        }
        let shape_ok = match entry.kind {
            Kind::File => {
                entry.hash.as_deref().is_some_and(BlobId::is_valid) && entry.target.is_none()
            }
            Kind::Dir => entry.size == 0 && entry.hash.is_none() && entry.target.is_none(),
            Kind::Symlink => entry.size == 0 && entry.hash.is_none() && entry.target.is_some(),
        };
        if !shape_ok || entry.mode > 0o7777 {
            return Err(corrupt(id, format!("manifest entry {path:?} is malformed")));
        }
        if let Some(parent) = parent_of(path)
            && manifest.get(parent).is_none_or(|p| p.kind != Kind::Dir)
        {
            return Err(corrupt(
                id,
                format!("manifest entry {path:?} has no parent directory {parent:?}"),
            ));
        }
    }
    for (te, hash, size) in tree {
        let found = Entry {
            kind: te.kind,
            mode: te.mode,
            size: *size,
            hash: hash.clone(),
            target: te.target.clone(),
            stat: None,
        };
        if manifest.get(&te.rel) != Some(&found) {
            return Err(corrupt(id, format!("entry {:?} does not match the manifest", te.rel)));
        }
    }
    let mut prev: Option<&str> = None;
    for path in &header.deleted {
        if let Some(reason) = unsafe_path(path) {
            return Err(refused(id, path, reason));
        }
        if prev.is_some_and(|p| p >= path.as_str()) || manifest.get(path).is_some() {
            return Err(corrupt(
                id,
                format!(
                    "deletion of {path:?} is repeated, out of order or of a path the tree keeps"
                ),
            ));
        }
        prev = Some(path);
    }
    Ok(())
}

/// The writing pass: deletions, then entries in order, then directory modes, deepest first.
fn write(blobs: &BlobStore, id: &BlobId, dir: &Path, verified: &Verified) -> Result<()> {
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for rel in &verified.deleted {
        if let Some(parent) = real_parent(dir, rel)? {
            writable(&parent)?;
            remove_if_present(&parent.join(last_element(rel)))?;
            touched.extend(parent_of(rel).map(str::to_owned));
        }
    }
    let file = blobs.open_blob(id)?;
    let decoder =
        zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(READ_BUFFER, file))
            .map_err(|e| corrupt(id, format!("zstd: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let entries = archive.entries().map_err(|e| corrupt(id, format!("tar: {e}")))?;
    // Entries are sorted, so siblings follow each other and a directory comes before what is
    // in it: the parent checked last stays valid while the entries stay in it.
    let mut last_parent: Option<(String, PathBuf)> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(id, format!("tar: {e}")))?;
        let name = entry_name(id, &entry)?;
        let Some(rel) = name.strip_prefix(TREE_PREFIX) else { continue };
        let rel = rel.strip_suffix('/').unwrap_or(rel);
        let parent_rel = parent_of(rel).unwrap_or_default();
        let parent = match &last_parent {
            Some((cached, path)) if cached == parent_rel => path.clone(),
            _ => {
                let Some(parent) = real_parent(dir, rel)? else {
                    return Err(bad_dir(
                        &dir.join(rel),
                        "its parent is not a directory: the tree is not the parent snapshot's; materialize it afresh",
                    ));
                };
                writable(&parent)?;
                touched.extend(parent_of(rel).map(str::to_owned));
                last_parent = Some((parent_rel.to_owned(), parent.clone()));
                parent
            }
        };
        let path = parent.join(last_element(rel));
        let mode =
            entry.header().mode().map_err(|e| corrupt(id, format!("{name}: mode: {e}")))? & 0o7777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                write_dir(&path)?;
                touched.insert(rel.to_owned());
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()))
                    .unwrap_or_default();
                remove_if_present(&path)?;
                symlink(&target, &path).map_err(Error::io(&path, "create the symlink"))?;
            }
            _ => write_file(&parent, &path, &mut entry, mode)?,
        }
    }
    for rel in touched.iter().rev() {
        if let Some(e) = verified.manifest.get(rel).filter(|e| e.kind == Kind::Dir) {
            let path = dir.join(rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(e.mode))
                .map_err(Error::io(&path, "chmod"))?;
        }
    }
    Ok(())
}

fn write_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => remove_tree(path).map_err(Error::io(path, "remove"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { path: path.to_owned(), op: "stat", cause: e }),
    }
    fs::create_dir(path).map_err(Error::io(path, "create the directory"))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(Error::io(path, "chmod"))
}

/// Writes a file: straight into a new file when nothing is at `path`, else into a temporary
/// file beside it renamed into place, so a reader sees the old content or the new.
fn write_file(parent: &Path, path: &Path, content: &mut impl Read, mode: u32) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_tree(path).map_err(Error::io(path, "remove"))?,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(Error::io(path, "create"))?;
            io::copy(content, &mut file).map_err(Error::io(path, "write"))?;
            return file
                .set_permissions(fs::Permissions::from_mode(mode))
                .map_err(Error::io(path, "chmod"));
        }
        Err(e) => return Err(Error::Io { path: path.to_owned(), op: "stat", cause: e }),
    }
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(parent)
        .map_err(Error::io(parent, "create a temporary file"))?;
    io::copy(content, temp.as_file_mut()).map_err(Error::io(path, "write"))?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(Error::io(path, "chmod"))?;
    temp.persist(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        op: "rename into place",
        cause: e.error,
    })?;
    Ok(())
}

/// The directory that holds `rel` under `dir`, if every ancestor is a real directory (not a
/// symlink); `None` if an ancestor is missing or not a directory.
fn real_parent(dir: &Path, rel: &str) -> Result<Option<PathBuf>> {
    let mut path = dir.to_owned();
    let Some(parent) = parent_of(rel) else { return Ok(Some(path)) };
    for part in parent.split('/') {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io { path, op: "stat", cause: e }),
        }
    }
    Ok(Some(path))
}

/// Gives the owner write and search permission on `dir` if it lacks them; the final mode is
/// set when the blob is applied.
fn writable(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(Error::io(dir, "stat"))?;
    let mode = meta.permissions().mode();
    if mode & 0o300 != 0o300 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))
            .map_err(Error::io(dir, "chmod"))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match remove_tree(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path: path.to_owned(), op: "remove", cause: e }),
    }
}

fn last_element(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

fn split_dir(dir: &Path) -> Result<(PathBuf, String)> {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Err(bad_dir(dir, "needs a final UTF-8 name to materialize into"));
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_owned()))
}

fn corrupt(id: &BlobId, reason: String) -> Error {
    Error::Corrupt { id: id.clone(), reason }
}

fn refused(id: &BlobId, path: &str, reason: &str) -> Error {
    Error::Refused { id: id.clone(), path: path.to_owned(), reason: reason.to_owned() }
}

fn bad_dir(path: &Path, reason: &str) -> Error {
    Error::BadDirectory { path: path.to_owned(), reason: reason.to_owned() }
}

/// Hashes what is read through it.
struct Hashing {
    inner: BufReader<File>,
    hasher: blake3::Hasher,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
