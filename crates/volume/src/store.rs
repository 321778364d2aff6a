//! The blob store: a directory of immutable files, each named by the BLAKE3-256 hash of its
//! bytes, and the writer that streams a blob in.
//!
//! A blob is written to a temporary file in the store, fsynced, renamed to its hash name and
//! the directory fsynced, so a name in the store always holds the bytes it names. This is
//! not a cache with eviction: what to remove is the hub's decision.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

use crate::blob_id::BlobId;
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;

/// Prefix of temporary files in the store; no blob name starts with it.
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this, left by a crashed writer, are removed by [`BlobStore::open`].
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// Buffer between the blob's producer and its temporary file.
const WRITE_BUFFER: usize = 256 << 10;

/// A directory of blobs named by their ids.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens the store in `dir`, creating the directory if it is missing, and removes
    /// temporary files that crashed writers left more than a day ago.
    pub fn open(dir: &Path) -> Result<BlobStore> {
        fs::create_dir_all(dir).map_err(Error::io(dir, "create the blob store directory"))?;
        let store = BlobStore { dir: dir.to_owned() };
        store.remove_stale_temps()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A writer that stores what is written to it as one blob when finished.
    pub fn writer(&self) -> Result<BlobWriter> {
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(Error::io(&self.dir, "create a temporary file in the blob store"))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: BufWriter::with_capacity(WRITE_BUFFER, temp),
            hasher: blake3::Hasher::new(),
            len: 0,
        })
    }

    /// Copies the file at `path` into the store as one blob.
    pub fn put_file(&self, path: &Path) -> Result<BlobId> {
        let mut file = File::open(path).map_err(Error::io(path, "open"))?;
        let mut writer = self.writer()?;
        io::copy(&mut file, &mut writer).map_err(Error::io(path, "copy into the blob store"))?;
        writer.finish()
    }

    /// Whether the store holds blob `id`.
    pub fn has(&self, id: &BlobId) -> bool {
        self.path_of(id).is_file()
    }

    /// Opens blob `id` for reading.
    pub fn open_blob(&self, id: &BlobId) -> Result<File> {
        let path = self.path_of(id);
        File::open(&path).map_err(|e| self.not_found_or(id, &path, "open", e))
    }

    /// The size of blob `id` in bytes.
    pub fn size(&self, id: &BlobId) -> Result<u64> {
        let path = self.path_of(id);
        let meta = fs::metadata(&path).map_err(|e| self.not_found_or(id, &path, "stat", e))?;
        Ok(meta.len())
    }

    /// Removes blob `id`; [`Error::BlobNotFound`] if the store does not hold it.
    pub fn remove(&self, id: &BlobId) -> Result<()> {
        let path = self.path_of(id);
        fs::remove_file(&path).map_err(|e| self.not_found_or(id, &path, "remove", e))?;
        sync_dir(&self.dir)
    }

    /// The ids of every blob in the store, sorted.
    pub fn list(&self) -> Result<Vec<BlobId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(Error::io(&self.dir, "list"))? {
            let entry = entry.map_err(Error::io(&self.dir, "list"))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<BlobId>().ok()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Where blob `id` lives.
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    fn not_found_or(&self, id: &BlobId, path: &Path, op: &'static str, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::BlobNotFound { id: id.clone(), store: self.dir.clone() }
        } else {
            Error::Io { path: path.to_owned(), op, cause: e }
        }
    }

    fn remove_stale_temps(&self) -> Result<()> {
        let now = SystemTime::now();
        for entry in fs::read_dir(&self.dir).map_err(Error::io(&self.dir, "list"))? {
            let entry = entry.map_err(Error::io(&self.dir, "list"))?;
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if stale {
                tracing::info!(path = %entry.path().display(), "removing a stale temporary blob");
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Streams one blob into a [`BlobStore`], hashing it as it is written.
///
/// Dropping it without [`finish`](BlobWriter::finish) stores nothing and removes the
/// temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    file: BufWriter<NamedTempFile>,
    hasher: blake3::Hasher,
    len: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores the blob under its hash: fsync, rename to the hash name, fsync the directory.
    /// If the store holds that blob already, the copy is dropped and the id returned.
    pub fn finish(self) -> Result<BlobId> {
        let id = BlobId::from_hash(&self.hasher.finalize());
        self.store_as(id)
    }

    /// Like [`finish`](BlobWriter::finish), but for bytes that must hash to `id` (a download):
    /// if they hash to another id, nothing is stored and [`Error::BlobMismatch`] is returned.
    pub fn finish_expecting(self, id: &BlobId) -> Result<BlobId> {
        let actual = BlobId::from_hash(&self.hasher.finalize());
        if &actual != id {
            return Err(Error::BlobMismatch { expected: id.clone(), actual });
        }
        self.store_as(actual)
    }

    fn store_as(self, id: BlobId) -> Result<BlobId> {
        let store = self.store;
        let target = store.path_of(&id);
        let temp = self.file.into_inner().map_err(|e| Error::Io {
            path: store.dir.clone(),
            op: "write a blob",
            cause: e.into_error(),
        })?;
        if target.is_file() {
            tracing::debug!(%id, "blob already stored");
            return Ok(id);
        }
        let file = temp.as_file();
        file.sync_all().map_err(Error::io(temp.path(), "fsync a blob"))?;
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(Error::io(temp.path(), "make a blob read-only"))?;
        temp.persist(&target).map_err(|e| Error::Io {
            path: target.clone(),
            op: "rename into the blob store",
            cause: e.error,
        })?;
        sync_dir(&store.dir)?;
        tracing::debug!(%id, "blob stored");
        Ok(id)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
