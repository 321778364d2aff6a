//! The writer: opening and locking a target, and the write protocol itself.
//!
//! This is not thread-safe by design: a write takes `&mut self`, and the lock file keeps a
//! second writer out, in this process or another. The steps below are numbered in
//! `docs/design/atomic.md`, which says what a reader sees if a crash lands between any two.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::compare;
use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::layout::{self, DATA_LINK, DATA_TMP_LINK, LOCK_FILE};
use crate::links;
use crate::payload::{CheckedPayload, DIR_MODE, Payload};

/// How long the old version survives the switch at least.
///
/// A reader's path lookup that read `..data` just before the rename goes on into the old
/// version; removing it at once would fail such a lookup with `ENOENT`. Lookups take
/// microseconds, so a short grace closes the window unless the reader is descheduled in the
/// middle of one. On a disk the fsync after the rename takes part of it already.
const REMOVAL_GRACE: Duration = Duration::from_millis(2);

/// Projects payloads into one target directory, atomically.
///
/// Opening heals what a crashed writer left behind; see the crate documentation for the
/// layout and `docs/design/atomic.md` for the protocol.
#[derive(Debug)]
pub struct AtomicWriter<F: Fs = RealFs> {
    /// The directory projected into.
    target: PathBuf,
    /// The open lock file. Its exclusive `flock` is held for the writer's life and released
    /// by the kernel when the process dies, however it dies.
    _lock: File,
    /// Every change on disk goes through it.
    fs: F,
    /// Set when an fsync failed: the state of the disk is then unknown, so the writer refuses
    /// further writes until the target is opened again.
    poisoned: Option<String>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The current version already held the payload; at most missing links were healed.
    Unchanged,
    /// A new version was written and made current.
    Written,
}

impl AtomicWriter<RealFs> {
    /// Opens the existing directory `target` on the real file system; see [`Self::with_fs`].
    pub fn open(target: impl Into<PathBuf>) -> Result<AtomicWriter<RealFs>> {
        AtomicWriter::with_fs(target, RealFs)
    }
}

impl<F: Fs> AtomicWriter<F> {
    /// Opens the existing directory `target`, making every change through `fs`.
    ///
    /// Takes the lock file, failing with [`Error::Locked`] at once if another writer holds it,
    /// then heals the target: removes leftovers of interrupted writes and makes the
    /// user-visible links match the current version.
    pub fn with_fs(target: impl Into<PathBuf>, fs: F) -> Result<AtomicWriter<F>> {
        let target = target.into();
        match std::fs::metadata(&target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(Error::TargetNotADirectory { path: target }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(Error::TargetNotFound { path: target });
            }
            Err(err) => return Err(Error::io("stat target", target)(err)),
        }
        let lock = lock(&target)?;
        let mut writer = AtomicWriter { target, _lock: lock, fs, poisoned: None };
        writer.heal()?;
        Ok(writer)
    }

    /// The target directory.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Projects `payload` into the target, so that it holds exactly the payload's files.
    ///
    /// Does nothing but remove leftovers and heal links when the current version already holds
    /// the payload, with the same bytes and modes. Otherwise writes a new version, makes it durable, switches
    /// `..data` to it in one rename, then updates the user-visible links and removes the old
    /// version. An invalid payload, or a name taken by something the writer did not make,
    /// fails before anything on disk changes.
    pub fn write(&mut self, payload: &Payload) -> Result<Outcome> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { path: self.target.clone(), cause: cause.clone() });
        }
        let payload = CheckedPayload::new(payload)?;
        links::check_free(&self.target, &payload.top)?;
        let current = layout::read_current(&self.target)?;
        links::remove_stale(&mut self.fs, &self.target, current.as_deref())?;
        if let Some(current) = &current {
            let dir = self.target.join(current);
            if compare::holds(&dir, &payload).map_err(Error::io("compare with", dir))? {
                links::sync_links(&mut self.fs, &self.target, &payload.top)?;
                tracing::debug!(dir = %self.target.display(), "unchanged");
                return Ok(Outcome::Unchanged);
            }
        }
        let version = self.write_version(&payload)?;
        self.switch_to(&version, &payload.top)?;
        let switched = Instant::now();
        links::create_missing(&mut self.fs, &self.target, &payload.top)?;
        if let Some(rest) = REMOVAL_GRACE.checked_sub(switched.elapsed()) {
            std::thread::sleep(rest);
        }
        links::remove_stale(&mut self.fs, &self.target, Some(&version))?;
        tracing::debug!(dir = %self.target.display(), version = ?version, "written");
        Ok(Outcome::Written)
    }

    /// Removes leftovers and makes the links match the current version.
    fn heal(&mut self) -> Result<()> {
        let current = layout::read_current(&self.target)?;
        links::remove_stale(&mut self.fs, &self.target, current.as_deref())?;
        let names = match &current {
            Some(version) => links::version_names(&self.target, version)?,
            None => Default::default(),
        };
        links::sync_links(&mut self.fs, &self.target, &names)
    }

    /// Writes the payload into a new version directory and makes it durable; returns its name.
    fn write_version(&mut self, payload: &CheckedPayload<'_>) -> Result<OsString> {
        let version = self.create_version_dir()?;
        let root = self.target.join(&version);
        for dir in &payload.dirs {
            let path = root.join(dir);
            self.fs.create_dir(&path, DIR_MODE).map_err(Error::io("create directory", path))?;
        }
        for (path, file) in &payload.files {
            let path = root.join(path);
            let written = self.fs.write_file(&path, &file.data, file.mode);
            written.map_err(|err| self.poison(Error::io("write file", path)(err)))?;
        }
        // Children before parents, so each directory's entries are durable before the entry
        // that makes them reachable.
        for dir in payload.dirs.iter().rev() {
            self.sync_dir(&root.join(dir))?;
        }
        self.sync_dir(&root)?;
        Ok(version)
    }

    /// Creates an empty version directory with a fresh name; returns the name.
    fn create_version_dir(&mut self) -> Result<OsString> {
        loop {
            let name = layout::version_dir_name(SystemTime::now());
            let path = self.target.join(&name);
            match self.fs.create_dir(&path, DIR_MODE) {
                Ok(()) => return Ok(name.into()),
                // Two writes within one second drew the same random suffix; draw again.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(Error::io("create directory", path)(err)),
            }
        }
    }

    /// Points `..data` at `version`, whose top-level names are `names`, with one atomic
    /// rename, durably; removes the links of names that are gone just before.
    fn switch_to(&mut self, version: &OsStr, names: &BTreeSet<OsString>) -> Result<()> {
        let tmp = self.target.join(DATA_TMP_LINK);
        let data = self.target.join(DATA_LINK);
        self.fs.symlink(Path::new(version), &tmp).map_err(Error::io("create link", &tmp))?;
        // The new version's entry and the temporary link must be durable before the rename
        // can make them reachable.
        self.sync_dir(&self.target.clone())?;
        // A link whose name the new version lacks would dangle after the rename, so it goes
        // first, durably; a reader sees the name vanish a moment before the rest switches.
        if links::remove_gone(&mut self.fs, &self.target, names)? > 0 {
            self.sync_dir(&self.target.clone())?;
        }
        self.fs.rename(&tmp, &data).map_err(Error::io("rename to ..data", tmp))?;
        // The old version is removed next; the rename must be durable first.
        self.sync_dir(&self.target.clone())
    }

    /// Syncs the directory `path`, poisoning the writer if that fails.
    fn sync_dir(&mut self, path: &Path) -> Result<()> {
        let synced = self.fs.sync_dir(path);
        synced.map_err(|err| self.poison(Error::io("sync directory", path)(err)))
    }

    /// Marks the writer poisoned by `err`, which it returns.
    fn poison(&mut self, err: Error) -> Error {
        self.poisoned = Some(format!("{err}: {}", err_source(&err)));
        err
    }
}

/// Opens and locks the lock file of `target`.
///
/// `std`'s file lock is `flock(2)` on Linux: bound to the open file, so a second open in the
/// same process conflicts too, and released by the kernel when the process dies. No crate is
/// needed for it.
fn lock(target: &Path) -> Result<File> {
    let path = target.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(Error::io("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(TryLockError::Error(err)) => Err(Error::io("lock", path)(err)),
    }
}

/// The message of the source of `err`, or nothing.
fn err_source(err: &Error) -> String {
    std::error::Error::source(err).map(ToString::to_string).unwrap_or_default()
}
