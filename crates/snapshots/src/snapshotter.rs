//! The overlayfs snapshotter: snapshot metadata in the metastore, layers in directories.
//!
//! Layout under the root directory: `snapshots/<id>/fs` is a snapshot's own layer (the
//! upper directory of an active snapshot), `snapshots/<id>/work` the overlay work directory
//! of an active one. A snapshot with no parent is a bind mount of its `fs`; one with
//! committed parents is an overlay whose lower directories are the parents' `fs`, nearest
//! first; a view has no upper directory, so it is read-only.
//!
//! Ordering against crashes: a record is committed before its directory is made, and
//! removed before its directory is deleted. A crash in between leaves an empty directory
//! missing (made again on demand: the snapshot was empty) or a directory no record names
//! (deleted by [`Snapshotter::cleanup`]).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_kv::Store;

use crate::filter::Filters;
use crate::info::{Info, Kind, Usage};
use crate::mount::Mount;
use crate::{Error, Result, metastore};

/// See the module documentation. Cheap to clone; clones share the store.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    store: Store,
    root: PathBuf,
}

impl Snapshotter {
    /// A snapshotter keeping layers under `root` and metadata in `store`.
    pub fn new(root: &Path, store: Store) -> Result<Snapshotter> {
        let layers = root.join("snapshots");
        std::fs::create_dir_all(&layers).map_err(Error::io(&layers))?;
        Ok(Snapshotter { store, root: root.to_path_buf() })
    }

    /// The metadata store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a writable snapshot `key` on `parent` (empty: none) and returns its mounts.
    pub fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// Creates a read-only view `key` of `parent` and returns its mounts.
    pub fn view(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let snapshot = self
            .store
            .with_txn(|txn| metastore::create_snapshot(txn, kind, key, parent, labels.clone()))?;
        if let Err(err) = self.make_dirs(&snapshot.id, kind) {
            // Leave no record without its directories behind.
            let _ = self.store.with_txn(|txn| metastore::remove(txn, key));
            return Err(err);
        }
        Ok(self.mounts_of(&snapshot))
    }

    /// The mounts of the active or view snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let snapshot = metastore::get_snapshot(&mut self.store.read()?, key)?;
        self.make_dirs(&snapshot.id, snapshot.kind)?;
        Ok(self.mounts_of(&snapshot))
    }

    /// Commits the active snapshot `key` as `name`, with its disk usage measured now.
    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let snapshot = metastore::get_snapshot(&mut self.store.read()?, key)?;
        if snapshot.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key} is a view; only active snapshots can be committed"
            )));
        }
        let usage = disk_usage(&self.layer(&snapshot.id))?;
        self.store.with_txn(|txn| {
            let id = metastore::commit_active(txn, key, name, usage, labels.clone())?;
            if id != snapshot.id {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key} was replaced while it was being committed"
                )));
            }
            Ok(())
        })?;
        // The work directory is only needed while the snapshot is writable.
        let _ = std::fs::remove_dir_all(self.dir(&snapshot.id).join("work"));
        Ok(())
    }

    /// Removes snapshot `key` and its layer; refused while it has children.
    pub fn remove(&self, key: &str) -> Result<()> {
        let (id, _) = self.store.with_txn(|txn| metastore::remove(txn, key))?;
        self.remove_dir(&id)
    }

    /// The info of snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(metastore::get_info(&mut self.store.read()?, key)?.1)
    }

    /// Updates labels; see [`metastore::update_info`].
    pub fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info> {
        self.store.with_txn(|txn| metastore::update_info(txn, info, fieldpaths))
    }

    /// Disk usage of `key`: stored at commit for committed snapshots, measured now for
    /// active and view ones.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let (id, info, usage) = metastore::get_info(&mut self.store.read()?, key)?;
        if info.kind == Kind::Committed {
            return Ok(usage);
        }
        disk_usage(&self.layer(&id))
    }

    /// The info of every snapshot matching `filters`, in name order.
    pub fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        let mut all = Vec::new();
        metastore::walk_info(&mut self.store.read()?, filters, |info| {
            all.push(info);
            Ok(())
        })?;
        Ok(all)
    }

    /// Deletes layer directories that no snapshot record names (left by crashes).
    pub fn cleanup(&self) -> Result<Vec<String>> {
        // Directories first, records second: a record is always committed before its
        // directory is made, so a snapshot prepared meanwhile is in the id map read after.
        let layers = self.root.join("snapshots");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&layers).map_err(Error::io(&layers))? {
            let entry = entry.map_err(Error::io(&layers))?;
            found.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
        }
        let known: HashSet<String> =
            metastore::id_map(&mut self.store.read()?)?.into_keys().collect();
        let mut removed = Vec::new();
        for (name, path) in found {
            if !known.contains(&name) {
                match std::fs::remove_dir_all(&path) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&path)(err));
                    }
                    _ => {}
                }
                tracing::info!(dir = %path.display(), "removed a layer no snapshot names");
                removed.push(name);
            }
        }
        Ok(removed)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }

    fn layer(&self, id: &str) -> PathBuf {
        self.dir(id).join("fs")
    }

    fn make_dirs(&self, id: &str, kind: Kind) -> Result<()> {
        let layer = self.layer(id);
        std::fs::create_dir_all(&layer).map_err(Error::io(&layer))?;
        if kind == Kind::Active {
            let work = self.dir(id).join("work");
            std::fs::create_dir_all(&work).map_err(Error::io(&work))?;
        }
        Ok(())
    }

    fn remove_dir(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir)(err)),
            _ => Ok(()),
        }
    }

    fn mounts_of(&self, snapshot: &crate::Snapshot) -> Vec<Mount> {
        let readonly = snapshot.kind == Kind::View;
        match snapshot.parent_ids.as_slice() {
            [] => vec![Mount::bind(&self.layer(&snapshot.id), readonly)],
            [only] if readonly => vec![Mount::bind(&self.layer(only), true)],
            parents => {
                let lower: Vec<String> =
                    parents.iter().map(|p| self.layer(p).display().to_string()).collect();
                let mut options = Vec::new();
                if !readonly {
                    let dir = self.dir(&snapshot.id);
                    options.push(format!("workdir={}", dir.join("work").display()));
                    options.push(format!("upperdir={}", dir.join("fs").display()));
                }
                options.push(format!("lowerdir={}", lower.join(":")));
                vec![Mount { kind: "overlay".into(), source: "overlay".into(), options }]
            }
        }
    }
}

/// Bytes (allocated blocks) and inodes under `dir`, each inode counted once.
fn disk_usage(dir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(Error::io(&path))?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += i64::try_from(meta.blocks() * 512).unwrap_or(i64::MAX);
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(Error::io(&path))? {
                stack.push(entry.map_err(Error::io(&path))?.path());
            }
        }
    }
    Ok(usage)
}
