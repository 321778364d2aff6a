//! Vdisk records and where they live.
//!
//! A record (JSON under `nbd/vdisk/<name>`) names the disk's size, block size, creation
//! time, image file, tlog id, the next sequence a serving session may start at, and the
//! logs it was restored from ([`Origin`]). On the embedded default the records live in their
//! own small redb file, `DATA-DIR/vdisks/vdisks.redb`, which every user (the server at
//! negotiation, `strata vdisk create`) opens only for the moment of one transaction, so a
//! disk can be created while a server runs. On etcd they live in the shared kv store.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strata_kv::{AsConflict, Read, Store, WriteTxn};

use crate::{Error, Result};

/// Where record keys start.
const PREFIX: &str = "nbd/vdisk/";

/// How many sequences one serving session reserves at a time (see [`Records::reserve`]).
pub const SESSION_SPAN: u64 = 1 << 32;

/// The largest block size accepted.
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;

/// How long opening the embedded record file is retried while another process holds it.
const OPEN_RETRY_FOR: Duration = Duration::from_secs(10);

/// One virtual disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vdisk {
    /// The disk's name, also its NBD export name.
    pub name: String,
    /// Size in bytes (a multiple of `block_size`).
    pub size: u64,
    /// The preferred block size advertised to clients.
    pub block_size: u32,
    /// When the disk was created (Unix nanoseconds).
    pub created: u64,
    /// The sparse image holding the disk's data.
    pub image: PathBuf,
    /// The tlog vdisk id its writes are journaled under.
    pub tlog_id: String,
    /// The first sequence the next serving session may use.
    pub next_sequence: u64,
    /// The logs replayed before `tlog_id` to rebuild the disk, oldest first: set when the
    /// disk was made by a restore.
    #[serde(default)]
    pub origin: Vec<Origin>,
    /// Set while a serving session has the disk open, cleared when it closes cleanly (the
    /// image synced, every write durable in the log). Found set when a session opens, the
    /// last one crashed or lost its tlog, so the image may hold writes its log lacks.
    #[serde(default)]
    pub session_open: bool,
    /// The block snapshot the disk's image was made from (`strata vdisk create --from`):
    /// a restore or rebuild materializes it before replaying the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
    /// The hub snapshot the disk's next snapshot is taken on top of, and where in the
    /// disk's lineage it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked: Option<Tracked>,
}

/// The block snapshot a disk's image started from. The hub names it; the record keeps
/// what rebuilding the image needs without the hub: the chain of blobs, root first, and
/// the blob store they are in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Its volume set.
    pub volset_id: String,
    /// The snapshot.
    pub snapshot_id: String,
    /// The blob store holding `chain`.
    pub blobs_dir: PathBuf,
    /// The blob ids of the snapshot's chain, root first.
    pub chain: Vec<String>,
}

/// The last hub snapshot of a disk (taken of it, or the one it was made from) and the
/// point of the disk's lineage it holds: every block of the logs before `tlog_id`, and of
/// `tlog_id` up to and including sequence `seq` (0: none of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// Its volume set.
    pub volset_id: String,
    /// The snapshot.
    pub snapshot_id: String,
    /// The log the point is in.
    pub tlog_id: String,
    /// The last sequence of that log the snapshot holds.
    pub seq: u64,
}

/// One log a restored disk descends from, and how far of it was replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The tlog vdisk id.
    pub tlog_id: String,
    /// Replayed up to and including this sequence (`None`: all of it at restore time).
    pub to_seq: Option<u64>,
    /// Replayed up to this time, Unix nanoseconds (`None`: no time bound).
    pub to_time: Option<u64>,
}

/// Where vdisk records live; see the module documentation.
#[derive(Debug, Clone)]
pub struct Records {
    place: Place,
    images: PathBuf,
}

#[derive(Debug, Clone)]
enum Place {
    /// A redb file opened per transaction.
    File(PathBuf),
    /// A store held open (etcd, or memory in tests).
    Store(Store),
}

impl Records {
    /// Records in `DATA-DIR/vdisks/vdisks.redb`, images in `DATA-DIR/vdisks/`.
    pub fn embedded(data_dir: &Path) -> Records {
        let dir = data_dir.join("vdisks");
        Records { place: Place::File(dir.join("vdisks.redb")), images: dir }
    }

    /// Records in `store` (etcd, say), images in `images`.
    pub fn shared(store: Store, images: &Path) -> Records {
        Records { place: Place::Store(store), images: images.to_path_buf() }
    }

    /// The directory new images are made in.
    pub fn images_dir(&self) -> &Path {
        &self.images
    }

    fn with_store<T>(&self, body: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        match &self.place {
            Place::Store(store) => body(store),
            Place::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(Error::io(format!("create {}", dir.display())))?;
                }
                // Another process may hold the file for its own brief transaction.
                let store = Store::redb_waiting(path, OPEN_RETRY_FOR).map_err(|err| {
                    Error::Unavailable(format!("open vdisk records {}: {err}", path.display()))
                })?;
                body(&store)
            }
        }
    }

    fn txn<T>(&self, mut body: impl FnMut(&mut WriteTxn) -> Result<T>) -> Result<T> {
        self.with_store(|store| store.with_txn(&mut body))
    }

    /// The record of `name`.
    pub fn get(&self, name: &str) -> Result<Vdisk> {
        self.with_store(|store| {
            let mut read = store.read()?;
            load(&mut read, name)?.ok_or_else(|| Error::NotFound(name.to_string()))
        })
    }

    /// Every record, by name.
    pub fn list(&self) -> Result<Vec<Vdisk>> {
        self.with_store(|store| {
            let mut read = store.read()?;
            read.prefix(PREFIX.as_bytes())?.iter().map(|(k, v)| decode(k, v)).collect()
        })
    }

    /// Creates a vdisk: a new sparse image of `size` bytes, then its record.
    pub fn create(&self, name: &str, size: u64, block_size: u32) -> Result<Vdisk> {
        self.create_from(name, size, block_size, None, |_| Ok(()))
    }

    /// Creates a vdisk whose image starts as snapshot `base` (when given): a new sparse
    /// image of `size` bytes that `fill` writes (the snapshot's blobs), then its record,
    /// which tracks that snapshot as the base of the disk's next one. The image is removed
    /// again when `fill` or the record fails.
    pub fn create_from(
        &self,
        name: &str,
        size: u64,
        block_size: u32,
        base: Option<Base>,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Vdisk> {
        check_name(name)?;
        check_geometry(size, block_size)?;
        if self.get(name).is_ok() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let created = now_nanos();
        let tlog_id = tlog_id_for(name, created);
        let image = self.new_image(&tlog_id, size)?;
        if let Err(err) = fill(&image) {
            let _ = std::fs::remove_file(&image);
            return Err(err);
        }
        let tracked = base.as_ref().map(|b| Tracked {
            volset_id: b.volset_id.clone(),
            snapshot_id: b.snapshot_id.clone(),
            tlog_id: tlog_id.clone(),
            seq: 0,
        });
        let vdisk = Vdisk {
            name: name.to_string(),
            size,
            block_size,
            created,
            image: image.clone(),
            tlog_id,
            next_sequence: 1,
            origin: Vec::new(),
            session_open: false,
            base,
            tracked,
        };
        match self.insert(&vdisk) {
            Ok(()) => Ok(vdisk),
            Err(err) => {
                let _ = std::fs::remove_file(&image);
                Err(err)
            }
        }
    }

    /// Makes a new empty sparse image for a disk logged under `tlog_id`.
    pub(crate) fn new_image(&self, tlog_id: &str, size: u64) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.images)
            .map_err(Error::io(format!("create {}", self.images.display())))?;
        let images = std::fs::canonicalize(&self.images)
            .map_err(Error::io(format!("resolve {}", self.images.display())))?;
        let image = images.join(format!("{tlog_id}.img"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&image)
            .map_err(Error::io(format!("create image {}", image.display())))?;
        file.set_len(size).map_err(Error::io(format!("size image {}", image.display())))?;
        file.sync_all().map_err(Error::io(format!("sync image {}", image.display())))?;
        Ok(image)
    }

    /// Stores a new record; fails when the name is taken.
    pub(crate) fn insert(&self, vdisk: &Vdisk) -> Result<()> {
        let value = encode(vdisk)?;
        self.txn(|txn| {
            if txn.get(key(&vdisk.name).as_bytes())?.is_some() {
                return Err(Error::AlreadyExists(vdisk.name.clone()));
            }
            txn.put(key(&vdisk.name).as_bytes(), &value);
            Ok(())
        })
    }

    /// Replaces the record of `vdisk.name`, which must exist and still have `expected_tlog`
    /// (so a concurrent restore or rm is not overwritten).
    pub(crate) fn replace(&self, vdisk: &Vdisk, expected_tlog: &str) -> Result<()> {
        let value = encode(vdisk)?;
        self.txn(|txn| {
            let current =
                load(txn, &vdisk.name)?.ok_or_else(|| Error::NotFound(vdisk.name.clone()))?;
            if current.tlog_id != expected_tlog {
                return Err(Error::FailedPrecondition(format!(
                    "vdisk {:?} changed meanwhile (restored or recreated); retry",
                    vdisk.name
                )));
            }
            txn.put(key(&vdisk.name).as_bytes(), &value);
            Ok(())
        })
    }

    /// Records `tracked` as the last hub snapshot of `name`, which must still log under
    /// `tracked.tlog_id`'s lineage as it did when the snapshot was taken (`expected_tlog`):
    /// a disk restored or recreated meanwhile is left alone.
    pub fn set_tracked(&self, name: &str, expected_tlog: &str, tracked: Tracked) -> Result<Vdisk> {
        self.txn(|txn| {
            let mut vdisk = load(txn, name)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            if vdisk.tlog_id != expected_tlog {
                return Err(Error::FailedPrecondition(format!(
                    "vdisk {name:?} was restored or recreated while its snapshot was taken; \
                     take the snapshot again"
                )));
            }
            vdisk.tracked = Some(tracked.clone());
            txn.put(key(name).as_bytes(), &encode(&vdisk)?);
            Ok(vdisk)
        })
    }

    /// Grows `name` to `size` bytes (a multiple of its block size): its image, then its
    /// record. Refused while a session serves it (or its last one did not close cleanly),
    /// and for a smaller size (shrinking would drop written data that the log still
    /// replays). Clients see the new size on their next connection; a restore rebuilds the
    /// image at the record's size, so it gives the grown disk. Returns the new record.
    pub fn resize(&self, name: &str, size: u64) -> Result<Vdisk> {
        self.txn(|txn| {
            let mut vdisk = load(txn, name)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            check_geometry(size, vdisk.block_size)?;
            if size < vdisk.size {
                return Err(Error::FailedPrecondition(format!(
                    "vdisk {name:?} is {} bytes: it can grow, not shrink to {size}",
                    vdisk.size
                )));
            }
            if vdisk.session_open {
                return Err(Error::FailedPrecondition(format!(
                    "vdisk {name:?} is being served, or its last session did not close \
                     cleanly: stop serving it (or `strata vdisk restore` it) first"
                )));
            }
            if size == vdisk.size {
                return Ok(vdisk);
            }
            // Growing a sparse file only adds zeros; if the commit then fails, the image is
            // longer than its record, which nothing reads past.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&vdisk.image)
                .map_err(Error::io(format!("open image {}", vdisk.image.display())))?;
            let image = vdisk.image.display();
            file.set_len(size).map_err(Error::io(format!("size image {image}")))?;
            file.sync_all().map_err(Error::io(format!("sync image {image}")))?;
            vdisk.size = size;
            txn.put(key(name).as_bytes(), &encode(&vdisk)?);
            Ok(vdisk)
        })
    }

    /// Removes the record of `name`, then its image. Returns the removed record.
    pub fn remove(&self, name: &str) -> Result<Vdisk> {
        let removed = self.txn(|txn| {
            let vdisk = load(txn, name)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            txn.delete(key(name).as_bytes());
            Ok(vdisk)
        })?;
        match std::fs::remove_file(&removed.image) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(image = %removed.image.display(), error = %err, "could not remove the image")
            }
        }
        Ok(removed)
    }

    /// Starts a serving session of `name` logging under `tlog_id`: reserves its first span
    /// of sequences (see [`Records::reserve`]) and marks the record open. Returns the span
    /// and whether the record was open already (the last session did not close cleanly).
    pub fn begin_session(&self, name: &str, tlog_id: &str) -> Result<(u64, u64, bool)> {
        self.txn(|txn| {
            let mut vdisk = load(txn, name)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            let unclean = vdisk.session_open;
            let (start, end) = reserve_in(&mut vdisk, name, tlog_id, None)?;
            vdisk.session_open = true;
            txn.put(key(name).as_bytes(), &encode(&vdisk)?);
            Ok((start, end, unclean))
        })
    }

    /// Ends the serving session of `name` cleanly: its image and log agree.
    pub fn end_session(&self, name: &str, tlog_id: &str) -> Result<()> {
        self.txn(|txn| {
            let mut vdisk = load(txn, name)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            if vdisk.tlog_id == tlog_id {
                vdisk.session_open = false;
                txn.put(key(name).as_bytes(), &encode(&vdisk)?);
            }
            Ok(())
        })
    }

    /// Reserves [`SESSION_SPAN`] sequences for a serving session of `name` logging under
    /// `tlog_id`: returns the first; the record's `next_sequence` moves past the span, so
    /// no later session reuses a sequence this one may have sent, even after a crash.
    pub fn reserve(&self, name: &str, tlog_id: &str, from: Option<u64>) -> Result<(u64, u64)> {
        self.txn(|txn| {
            let mut vdisk = load(txn, name)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            let span = reserve_in(&mut vdisk, name, tlog_id, from)?;
            txn.put(key(name).as_bytes(), &encode(&vdisk)?);
            Ok(span)
        })
    }
}

impl AsConflict for Error {
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Kv(e) if e.is_conflict())
    }
}

/// Moves `vdisk`'s `next_sequence` past a new span from `from` (or its next sequence).
fn reserve_in(
    vdisk: &mut Vdisk,
    name: &str,
    tlog_id: &str,
    from: Option<u64>,
) -> Result<(u64, u64)> {
    if vdisk.tlog_id != tlog_id {
        return Err(Error::FailedPrecondition(format!(
            "vdisk {name:?} was restored or recreated while served; reconnect"
        )));
    }
    let start = from.unwrap_or(vdisk.next_sequence).max(vdisk.next_sequence).max(1);
    let end = start.checked_add(SESSION_SPAN).ok_or_else(|| {
        Error::FailedPrecondition(format!("vdisk {name:?} has used up its sequences"))
    })?;
    vdisk.next_sequence = end;
    Ok((start, end))
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn load(txn: &mut impl Read, name: &str) -> Result<Option<Vdisk>> {
    let k = key(name);
    txn.get(k.as_bytes())?.map(|v| decode(k.as_bytes(), &v)).transpose()
}

fn encode(vdisk: &Vdisk) -> Result<Vec<u8>> {
    serde_json::to_vec(vdisk).map_err(|e| Error::InvalidArgument(format!("encode record: {e}")))
}

fn decode(key: &[u8], value: &[u8]) -> Result<Vdisk> {
    serde_json::from_slice(value).map_err(|e| Error::Corrupted {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

/// A tlog id unique to this incarnation of `name`, so a disk removed and made again (or
/// restored) never appends to an older log.
pub(crate) fn tlog_id_for(name: &str, created: u64) -> String {
    let base: String = name.chars().take(100).collect();
    format!("{base}.{created:x}{:04x}", fastrand::u16(..))
}

/// Vdisk names: what a tlog id allows (letters, digits, `.`, `_`, `-`), 1 to 100 characters.
pub fn check_name(name: &str) -> Result<()> {
    if name.len() > 100 {
        return Err(Error::InvalidArgument(format!(
            "vdisk name {name:?} is longer than 100 characters"
        )));
    }
    strata_tlog::storage::check_vdisk_id(name)
        .map_err(|e| Error::InvalidArgument(e.replace("vdisk id", "vdisk name")))
}

fn check_geometry(size: u64, block_size: u32) -> Result<()> {
    if !block_size.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(Error::InvalidArgument(format!(
            "block size {block_size} must be a power of two from 512 to {MAX_BLOCK_SIZE}"
        )));
    }
    if size == 0 || !size.is_multiple_of(u64::from(block_size)) || size > i64::MAX as u64 {
        return Err(Error::InvalidArgument(format!(
            "size {size} must be a positive multiple of the block size {block_size}"
        )));
    }
    Ok(())
}

/// Now, in Unix nanoseconds.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked() {
        assert!(check_geometry(1 << 20, 4096).is_ok());
        assert!(check_geometry(1000, 4096).is_err());
        assert!(check_geometry(1 << 20, 3000).is_err());
        assert!(check_geometry(0, 4096).is_err());
    }
}
