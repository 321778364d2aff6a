//! The store handle: opening an engine, beginning transactions, and retrying conflicts.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::engine::etcd::EtcdEngine;
use crate::engine::redb::RedbEngine;
use crate::engine::remote::RemoteEngine;
use crate::{EngineKind, Error, EtcdConfig, KvConfig, Read, ReadTxn, Result, WriteTxn};

/// How long [`Store::with_txn`] keeps retrying a transaction that lost conflicts.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The longest pause between two attempts: long enough to let the winner commit, short
/// enough not to idle while commits take well under a millisecond.
const MAX_PAUSE: Duration = Duration::from_millis(2);

/// A handle to one KV store. Cheap to clone; clones share the engine.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) engine: Arc<dyn Engine>,
}

impl Store {
    /// Opens the store `config` describes; relative redb paths are taken from `data_dir`.
    pub fn open(config: &KvConfig, data_dir: &Path) -> Result<Store> {
        match config.engine {
            EngineKind::Redb => Store::redb(&config.redb_file(data_dir)),
            EngineKind::Etcd => Store::etcd(&config.etcd),
        }
    }

    /// Opens or creates a redb file.
    pub fn redb(path: &Path) -> Result<Store> {
        Ok(Store { engine: Arc::new(RedbEngine::open(path)?) })
    }

    /// Opens or creates a redb file, waiting up to `wait` while another process has it
    /// open (for commands that open a file a server may hold for a moment).
    pub fn redb_waiting(path: &Path, wait: Duration) -> Result<Store> {
        let deadline = Instant::now() + wait;
        loop {
            match Store::redb(path) {
                Err(Error::Busy(why)) if Instant::now() < deadline => {
                    tracing::debug!(why, "redb file busy; retrying");
                    std::thread::sleep(Duration::from_millis(5 + fastrand::u64(0..20)));
                }
                other => return other,
            }
        }
    }

    /// Opens the store a running server shares on the unix socket `socket` (see
    /// [`share`](crate::share)): the one that server keeps in the redb file `file`.
    /// Transactions work as on a store of this process; the server's engine validates
    /// and applies them.
    pub fn connect(socket: &Path, file: &Path) -> Result<Store> {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        Ok(Store { engine: Arc::new(RemoteEngine::connect(socket, &file)?) })
    }

    /// Connects to etcd.
    pub fn etcd(config: &EtcdConfig) -> Result<Store> {
        Ok(Store { engine: Arc::new(EtcdEngine::connect(config)?) })
    }

    /// A store in memory only, gone when the last handle drops; for tests.
    pub fn memory() -> Result<Store> {
        Ok(Store { engine: Arc::new(RedbEngine::in_memory()?) })
    }

    /// The engine's name, `redb` or `etcd`: for logs and status reports. Code that adapts to
    /// the engine asks for its capabilities instead.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// The most operations (puts, deletes, and compares of what was read) one transaction
    /// may carry, when the engine bounds them (etcd's `--max-txn-ops`); `None`: unbounded.
    pub fn max_txn_ops(&self) -> Option<usize> {
        self.engine.max_txn_ops()
    }

    /// Whether reads are served in this process without a network round trip (redb), so a
    /// caller may read inline on an async task instead of on the blocking pool.
    pub fn reads_are_local(&self) -> bool {
        self.engine.reads_are_local()
    }

    /// Begins a read-only transaction.
    pub fn read(&self) -> Result<ReadTxn> {
        Ok(ReadTxn::new(self.engine.snapshot()?))
    }

    /// Begins a read-write transaction.
    pub fn write(&self) -> Result<WriteTxn> {
        WriteTxn::new(self.engine.clone(), self.engine.validates_scans_by_key())
    }

    /// Runs `body` in a read-write transaction and commits it. When the commit (or a read)
    /// loses a conflict, runs `body` again on a fresh transaction, with growing, jittered
    /// pauses, for up to 30 seconds. Any other error, from `body` or the commit, rolls the
    /// transaction back and is returned as it is.
    pub fn with_txn<T, E>(
        &self,
        mut body: impl FnMut(&mut WriteTxn) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<crate::Error> + AsConflict,
    {
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_micros(20);
        loop {
            let attempt = self.write().map_err(E::from).and_then(|mut txn| {
                let value = body(&mut txn)?;
                txn.commit().map_err(E::from)?;
                Ok(value)
            });
            match attempt {
                Err(err) if err.is_conflict() && Instant::now() < deadline => {
                    std::thread::sleep(pause.mul_f64(0.5 + fastrand::f64()));
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// Copies every key of this store, as of one read view, into `to`, in transactions of
    /// at most `to`'s operation limit (and 10,000 keys). Returns the number of keys and the
    /// revision the view read at. Keys `to` holds already are overwritten, others kept: copy
    /// into an empty store for an exact copy.
    pub fn copy_into(&self, to: &Store) -> Result<(u64, Option<u64>)> {
        const BATCH: usize = 10_000;
        let batch = to.max_txn_ops().unwrap_or(BATCH).clamp(1, BATCH);
        let mut view = self.read()?;
        let mut cursor: Bound<Vec<u8>> = Bound::Unbounded;
        let mut copied = 0u64;
        loop {
            let page = view.scan(cursor.as_ref().map(Vec::as_slice), Bound::Unbounded, batch)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Bound::Excluded(last.clone());
            let mut txn = to.write()?;
            for (key, value) in &page {
                txn.put(key, value);
            }
            txn.commit()?;
            copied += page.len() as u64;
            if page.len() < batch {
                break;
            }
        }
        Ok((copied, view.revision()))
    }

    /// Writes a consistent copy of this store (one read view) to a new redb file `file`:
    /// built as `FILE.partial`, synced, then renamed into place, so `file` is either absent
    /// or whole. Refuses a `file` that exists.
    pub fn backup(&self, file: &Path) -> Result<Backup> {
        if file.exists() {
            return Err(Error::AlreadyExists(format!(
                "{}: exists; name a new file for the backup",
                file.display()
            )));
        }
        let io = |what: &str, path: &Path, err: std::io::Error| {
            Error::Unavailable(format!("{what} {}: {err}", path.display()))
        };
        let partial = file.with_extension("partial");
        match std::fs::remove_file(&partial) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &partial, err));
            }
            _ => {}
        }
        let copy = Store::redb(&partial)?;
        let (keys, revision) = self.copy_into(&copy)?;
        drop(copy);
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|err| io("sync", &partial, err))?;
        std::fs::rename(&partial, file).map_err(|err| io("rename into", file, err))?;
        if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|err| io("sync", dir, err))?;
        }
        Ok(Backup { keys, revision })
    }

    /// Runs `body` in a read-only transaction.
    pub fn with_read<T, E>(
        &self,
        body: impl FnOnce(&mut ReadTxn) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<crate::Error>,
    {
        body(&mut self.read()?)
    }
}

/// What [`Store::backup`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// How many keys.
    pub keys: u64,
    /// The revision of the read view they were copied from (`None` for an empty store).
    pub revision: Option<u64>,
}

/// Errors that can say whether they are a lost conflict, so [`Store::with_txn`] can retry
/// them. Other crates implement it for their own error types.
pub trait AsConflict {
    /// True when the transaction lost a conflict and retrying it may succeed.
    fn is_conflict(&self) -> bool;
}

impl AsConflict for crate::Error {
    fn is_conflict(&self) -> bool {
        crate::Error::is_conflict(self)
    }
}
