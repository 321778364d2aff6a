//! Segment files: the embedded storage engine.
//!
//! Each vdisk has a directory of append-only segment files under the store's directory;
//! each record is one sealed aggregate behind a header carrying its length and name, so a
//! scan verifies it. An append writes one record and `fdatasync`s before it returns; the
//! index (name to location, in chain order) and the chain head live in memory and are
//! rebuilt by a scan on open, so `get`, `head` and `list` never scan. On open a torn tail
//! (a last record that is partial or does not verify, with nothing valid after it) is cut
//! back with a warning; damage with valid records after it is [`Error::Corrupted`]. Layout
//! and invariants: `docs/design/tlog-format.md`, "Segment files".
//!
//! A writable store ([`SegmentStore::open`]) holds an exclusive lock on `<dir>/.lock`, so
//! two servers cannot share a directory. A read-only store
//! ([`SegmentStore::open_read_only`]) takes no lock, changes nothing, and sees each vdisk
//! as it was when first asked about it; it works beside a running server or after a crash.
//! This is not a general-purpose file store: it keeps only what [`Storage`] needs.

mod format;
mod scan;
mod vdisk;
mod writer;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::fs::FlockOperation;

use crate::aggregate::{Hash, Sealed, hex};
use crate::storage::segment::format::RECORD_HEADER_LEN;
use crate::storage::segment::vdisk::{Location, Mode, Vdisk, create_dir_durably};
use crate::storage::{Placement, Storage, Stored, check_vdisk_id};
use crate::{Error, Result};

/// The lock file of a writable store. Vdisk ids never start with a dot, so no vdisk
/// directory can take its name.
const LOCK_FILE: &str = ".lock";

/// How often a read-only open looks again at damage in a last segment, which may be a
/// record a running server is writing at that moment.
const READ_ONLY_RETRIES: u32 = 3;

/// Settings of a writable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// A segment is closed and the next started when a record would take it past this
    /// size. A record larger than this gets a segment of its own.
    pub segment_size: u64,
    /// Write records with `O_DIRECT` where the file system allows it (it falls back to the
    /// page cache by itself where not); `false` always goes through the page cache.
    pub direct_io: bool,
}

impl Default for SegmentConfig {
    fn default() -> SegmentConfig {
        SegmentConfig { segment_size: 256 << 20, direct_io: true }
    }
}

/// Aggregates in append-only segment files, one directory per vdisk.
#[derive(Debug)]
pub struct SegmentStore {
    /// The store's directory.
    dir: PathBuf,
    config: SegmentConfig,
    mode: Mode,
    /// The open, flocked lock file of a writable store; dropping it releases the lock.
    _lock: Option<File>,
    /// Loaded vdisks. The outer lock is held only to find or load a vdisk; each vdisk's
    /// own lock serializes its appends, so vdisks append in parallel.
    vdisks: Mutex<HashMap<String, Arc<Mutex<Vdisk>>>>,
    /// Each loaded vdisk's [`Vdisk::placement`], readable while it appends.
    placements: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl SegmentStore {
    /// Refuses writes to a store opened read-only.
    fn check_writable(&self) -> Result<()> {
        if self.mode == Mode::ReadOnly {
            return Err(Error::InvalidArgument(format!(
                "{}: the store is open read-only; only a server appends",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Opens (creating it if needed) the store in `dir` for writing, with default settings.
    pub fn open(dir: &Path) -> Result<SegmentStore> {
        SegmentStore::open_with(dir, SegmentConfig::default())
    }

    /// Opens the store in `dir` for writing: takes the directory's lock, scans every
    /// vdisk, and cuts back torn tails.
    pub fn open_with(dir: &Path, config: SegmentConfig) -> Result<SegmentStore> {
        if config.segment_size < 4096 {
            return Err(Error::InvalidArgument(format!(
                "segment size {} is too small; use at least 4096 bytes",
                config.segment_size
            )));
        }
        create_dir_durably(dir)?;
        let lock = lock(dir)?;
        let store = SegmentStore {
            dir: dir.to_path_buf(),
            config,
            mode: Mode::Writable,
            _lock: Some(lock),
            vdisks: Mutex::new(HashMap::new()),
            placements: Mutex::new(HashMap::new()),
        };
        for id in store.vdisk_dirs()? {
            store.vdisk(&id)?;
        }
        Ok(store)
    }

    /// Opens the store in `dir` for reading only. A missing directory is an empty store.
    pub fn open_read_only(dir: &Path) -> Result<SegmentStore> {
        Ok(SegmentStore {
            dir: dir.to_path_buf(),
            config: SegmentConfig::default(),
            mode: Mode::ReadOnly,
            _lock: None,
            vdisks: Mutex::new(HashMap::new()),
            placements: Mutex::new(HashMap::new()),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loaded state of `id`, loading it on first use.
    fn vdisk(&self, id: &str) -> Result<Arc<Mutex<Vdisk>>> {
        check_vdisk_id(id).map_err(Error::InvalidArgument)?;
        let mut vdisks = lock_state(&self.vdisks)?;
        if let Some(vdisk) = vdisks.get(id) {
            return Ok(vdisk.clone());
        }
        let loaded = self.load(id)?;
        lock_state(&self.placements)?.insert(id.to_string(), loaded.placement());
        let vdisk = Arc::new(Mutex::new(loaded));
        vdisks.insert(id.to_string(), vdisk.clone());
        Ok(vdisk)
    }

    fn load(&self, id: &str) -> Result<Vdisk> {
        let mut tries = 0;
        loop {
            match Vdisk::load(&self.dir, id, self.mode) {
                Err(Error::Corrupted(_))
                    if self.mode == Mode::ReadOnly && tries < READ_ONLY_RETRIES =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// The names of the directories that may be vdisks.
    fn vdisk_dirs(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound && self.mode == Mode::ReadOnly => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(Error::file(&self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::file(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == LOCK_FILE || !entry.file_type().map_err(Error::file(&self.dir))?.is_dir() {
                continue;
            }
            match check_vdisk_id(name) {
                Ok(()) => ids.push(name.to_string()),
                Err(e) => tracing::warn!(dir = %self.dir.display(), "ignoring a directory: {e}"),
            }
        }
        ids.sort();
        Ok(ids)
    }
}

impl Storage for SegmentStore {
    fn append(&self, vdisk: &str, sealed: &Sealed) -> Result<()> {
        self.check_writable()?;
        let state = self.vdisk(vdisk)?;
        let mut state = lock_state(&state)?;
        state.append(sealed, &self.config)
    }

    /// One sync for all of them: written one after another, then made durable together.
    fn append_many(
        &self,
        vdisk: &str,
        next: &mut dyn FnMut(&Hash) -> Result<Option<Sealed>>,
        head: Hash,
    ) -> Result<Hash> {
        self.check_writable()?;
        let state = self.vdisk(vdisk)?;
        let mut state = lock_state(&state)?;
        let mut head = head;
        let mut written = false;
        loop {
            let sealed = match next(&head) {
                Ok(Some(sealed)) => sealed,
                Ok(None) => break,
                Err(err) => {
                    if written {
                        // Unsynced records the caller will not count as stored.
                        state.poison();
                    }
                    return Err(err);
                }
            };
            head = *sealed.hash();
            state.append_owned(sealed, &self.config)?;
            written = true;
        }
        if written {
            state.sync()?;
        }
        Ok(head)
    }

    /// Envelopes are framed by a record header, and a new segment starts after its own.
    fn placement(&self, vdisk: &str) -> Option<Placement> {
        let next = lock_state(&self.placements).ok()?.get(vdisk)?.load(Ordering::Relaxed);
        (next != u64::MAX).then_some(Placement { next, framing: RECORD_HEADER_LEN })
    }

    fn head(&self, vdisk: &str) -> Result<Option<Stored>> {
        let state = self.vdisk(vdisk)?;
        let state = lock_state(&state)?;
        Ok(state.head())
    }

    fn get(&self, vdisk: &str, hash: &Hash) -> Result<Vec<u8>> {
        let state = self.vdisk(vdisk)?;
        let location = lock_state(&state)?.locate(hash);
        let Some(at) = location else {
            return Err(Error::NotFound(format!("vdisk {vdisk}: aggregate {}", hex(hash))));
        };
        read_record(&at, hash)
    }

    fn list(&self, vdisk: &str) -> Result<Vec<Stored>> {
        let state = self.vdisk(vdisk)?;
        let state = lock_state(&state)?;
        Ok(state.list())
    }

    fn vdisks(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for id in self.vdisk_dirs()? {
            let state = self.vdisk(&id)?;
            if !lock_state(&state)?.is_empty() {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// Reads the envelope at `at` into a new buffer, without zeroing it first.
fn read_record(at: &Location, hash: &Hash) -> Result<Vec<u8>> {
    let len = usize::try_from(at.len).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let offset = at.offset + bytes.len() as u64;
        let n = rustix::io::pread(&*at.file, spare_capacity(&mut bytes), offset)
            .map_err(|e| Error::file(&at.path)(e.into()))?;
        if n == 0 {
            return Err(Error::Corrupted(format!(
                "{}: offset {}: the file ends inside aggregate {}",
                at.path.display(),
                at.offset,
                hex(hash)
            )));
        }
    }
    // The buffer's capacity may exceed the record, and so may the last read.
    bytes.truncate(len);
    Ok(bytes)
}

/// Takes the exclusive lock of a writable store's directory.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(Error::file(&path))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::Unavailable(format!(
            "{}: locked by another process (a tlog server already uses this directory); \
             stop it or choose another data directory",
            path.display()
        ))),
        Err(e) => Err(Error::file(&path)(e.into())),
    }
}

/// Locks a mutex; a poisoned one means a thread panicked while changing the state.
fn lock_state<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| {
        Error::Unavailable("a thread panicked while using the tlog store; reopen it".into())
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::aggregate::{Aggregate, Key, NO_PREV};
    use crate::message::Block;

    /// Envelopes sealed for their place are written from their own buffers, between
    /// records copied into batches, across segment rotations that make the placement
    /// wrong; every record reads back and opens after a reopen.
    #[test]
    fn records_written_in_place_read_back() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let key = Key::from_bytes(&[5; 32]);
        let config = SegmentConfig { segment_size: 24 << 20, direct_io: true };
        let mut rng = fastrand::Rng::with_seed(9);
        let mut expected = Vec::new();
        {
            let store = SegmentStore::open_with(dir.path(), config.clone())?;
            let mut head = NO_PREV;
            let mut sequence = 1;
            for round in 0..12 {
                // Sizes from a few bytes to several MiB, so records end anywhere in a block
                // and batches fill, and some rounds copied (not placed) in between.
                let sizes = [1 + rng.usize(..5000), rng.usize(4096..3 << 20), 5 << 20, 700];
                let placed = round % 3 != 2;
                let mut aggregates = Vec::new();
                for size in sizes {
                    let data: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(size).collect();
                    let block = Block::write(sequence, 0, Bytes::from(data), sequence);
                    sequence += 1;
                    aggregates.push(Aggregate {
                        vdisk_id: "vd".into(),
                        timestamp: round,
                        blocks: vec![block],
                        prev: NO_PREV,
                    });
                }
                let mut aggregates = aggregates.into_iter();
                let mut next = |prev: &Hash| -> Result<Option<Sealed>> {
                    let Some(mut aggregate) = aggregates.next() else { return Ok(None) };
                    aggregate.prev = *prev;
                    let sealed = match store.placement("vd").filter(|_| placed) {
                        Some(place) => aggregate.seal_placed(Some(&key), false, place.next)?,
                        None => aggregate.seal(Some(&key))?,
                    };
                    expected.push((*sealed.hash(), aggregate));
                    Ok(Some(sealed))
                };
                head = store.append_many("vd", &mut next, head)?;
            }
            let state = store.vdisk("vd")?;
            let in_place = lock_state(&state)?.in_place;
            assert!(in_place >= 10, "only {in_place} records were written in place");
        }
        let store = SegmentStore::open_with(dir.path(), config)?;
        let listed = store.list("vd")?;
        assert_eq!(listed.len(), expected.len());
        assert!(std::fs::read_dir(dir.path().join("vd"))?.count() > 2, "segments rotated");
        for ((hash, aggregate), stored) in expected.iter().zip(&listed) {
            assert_eq!(&stored.hash, hash);
            let bytes = store.get("vd", hash)?;
            assert_eq!(&Aggregate::open("vd", hash, &bytes, Some(&key))?, aggregate);
        }
        Ok(())
    }
}
