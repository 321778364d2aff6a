//! The embedded engine: one redb file, with group commit.
//!
//! Reads go straight to redb read transactions (MVCC snapshots). Read-write transactions are
//! validated and applied by one committer thread: it takes every transaction waiting in its
//! queue, checks each against the recent-writes index, applies the ones that pass in a single
//! redb write transaction and answers them all after that one durable commit. Concurrent
//! committers so share fsyncs, and none is answered before its data is durable.
//!
//! The file holds two tables: `data` (the user's keys and values) and `meta` (`revision`: the
//! number of batches committed since the file was created).

use std::ops::Bound;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::engine::recent::RecentWrites;
use crate::engine::{Commit, Engine, Entry, Found, Snapshot, empty_span};
use crate::{Error, Result};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// How many transactions one batch takes at most.
const MAX_BATCH: usize = 512;
/// How many recent writes the conflict index remembers.
const RECENT_CAPACITY: usize = 1 << 20;

/// A transaction waiting for the committer.
struct Pending {
    commit: Commit,
    reply: mpsc::SyncSender<Result<()>>,
}

/// See the module documentation.
pub(crate) struct RedbEngine {
    db: Arc<Database>,
    /// The newest read view, shared by every reader until the next commit.
    views: Arc<ViewCache>,
    /// Feeds the committer thread; `None` once shut down.
    queue: Mutex<Option<mpsc::Sender<Pending>>>,
    /// The committer thread, joined on drop.
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedbEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbEngine").finish_non_exhaustive()
    }
}

impl RedbEngine {
    /// Opens or creates the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<RedbEngine> {
        if !path.exists() {
            create_whole(path)?;
        }
        let db = Database::builder().create(path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Busy(format!(
                "{}: already open in another process; stop it or use another --data-dir",
                path.display()
            )),
            other => Error::Redb(format!("{}: {other}", path.display())),
        })?;
        RedbEngine::start(db)
    }

    /// An engine over memory only, for tests.
    pub(crate) fn in_memory() -> Result<RedbEngine> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        RedbEngine::start(db)
    }

    fn start(db: Database) -> Result<RedbEngine> {
        let revision = open_tables(&db)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let views = Arc::new(ViewCache::default());
        let committer =
            Committer { db: db.clone(), views: views.clone(), revision, poisoned: None };
        let handle = std::thread::Builder::new()
            .name("strata-kv-commit".into())
            .spawn(move || committer.run(rx))
            .map_err(|err| Error::Redb(format!("cannot start the committer thread: {err}")))?;
        Ok(RedbEngine {
            db,
            views,
            queue: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(handle)),
        })
    }
}

/// Makes the tables (a no-op once made) and returns the revision stored in `meta`.
fn open_tables(db: &Database) -> Result<u64> {
    let wtx = db.begin_write()?;
    let revision = {
        wtx.open_table(DATA)?;
        let meta = wtx.open_table(META)?;
        meta.get(REVISION)?.map_or(0, |guard| guard.value())
    };
    wtx.commit()?;
    Ok(revision)
}

/// Creates a new database file at `path` whole: built and synced under a temporary name,
/// then renamed into place (never over a file another process made meanwhile). A process
/// killed while creating leaves only the temporary file, never a `path` that is not yet a
/// database and would refuse every later open.
fn create_whole(path: &Path) -> Result<()> {
    let io = |what: &str, at: &Path, err: std::io::Error| {
        Error::Redb(format!("{what} {}: {err}", at.display()))
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique to this call: threads of one process may create the same file at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = path.with_file_name(format!(".{name}.{}.{call}.new", std::process::id()));
    sweep_abandoned(path, &name);
    let db = Database::builder()
        .create(&partial)
        .map_err(|err| Error::Redb(format!("{}: {err}", partial.display())))?;
    open_tables(&db)?;
    drop(db);
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", &partial, e))?;
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &partial,
        rustix::fs::CWD,
        path,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    match renamed {
        Ok(()) => {}
        // Another process made it first: use theirs.
        Err(rustix::io::Errno::EXIST) => {
            let _ = std::fs::remove_file(&partial);
        }
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(io("create", path, err.into()));
        }
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("sync", dir, e))?;
    }
    Ok(())
}

/// Removes the temporary files of creations of `path` (named `.NAME.PID.N.new`) whose
/// process is gone: what a process killed while creating the file left behind.
fn sweep_abandoned(path: &Path, name: &str) {
    let Some(dir) =
        path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d })
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else { continue };
        let Some(pid) = rest.strip_suffix(".new").and_then(|r| r.split('.').next()) else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            tracing::debug!(file = %entry.path().display(), "removing an abandoned creation");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for RedbEngine {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        if let Some(handle) = self.committer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

impl Engine for RedbEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        Ok(Box::new(RedbSnapshot { view: self.views.current(&self.db)? }))
    }

    fn commit(&self, commit: Commit) -> Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let queue = self.queue.lock().map_err(|_| shut_down())?;
            let queue = queue.as_ref().ok_or_else(shut_down)?;
            queue.send(Pending { commit, reply }).map_err(|_| shut_down())?;
        }
        answer.recv().map_err(|_| shut_down())?
    }

    fn name(&self) -> &'static str {
        "redb"
    }

    fn max_txn_ops(&self) -> Option<usize> {
        None
    }

    fn reads_are_local(&self) -> bool {
        true
    }

    fn validates_scans_by_key(&self) -> bool {
        false
    }
}

fn shut_down() -> Error {
    Error::Unavailable("the redb committer has stopped".into())
}

/// Read views, shared. Beginning a redb read transaction takes a lock inside redb, which
/// many concurrent readers contend on; between two commits every reader can share one view.
/// The committer moves to a new generation after each durable batch and before it answers
/// the batch, so a reader that begins after a commit returned never gets an older view.
#[derive(Default)]
struct ViewCache {
    generation: std::sync::atomic::AtomicU64,
    current: std::sync::RwLock<Option<(u64, Arc<View>)>>,
}

impl ViewCache {
    fn current(&self, db: &Database) -> Result<Arc<View>> {
        use std::sync::atomic::Ordering;
        let generation = self.generation.load(Ordering::Acquire);
        if let Ok(current) = self.current.read()
            && let Some((cached, view)) = current.as_ref()
            && *cached == generation
        {
            return Ok(view.clone());
        }
        let txn = db.begin_read()?;
        let table = txn.open_table(DATA)?;
        let view = Arc::new(View { txn, table, revision: std::sync::OnceLock::new() });
        if let Ok(mut current) = self.current.write() {
            // Only ever move forward: a slow reader must not put back an older view.
            if current.as_ref().is_none_or(|(cached, _)| *cached <= generation) {
                *current = Some((generation, view.clone()));
            }
        }
        Ok(view)
    }

    /// Called by the committer after a durable batch, before answering it.
    fn advance(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut current) = self.current.write() {
            // Let the old view's pages go as soon as its last reader is done.
            *current = None;
        }
    }
}

/// One redb read transaction with its data table open.
struct View {
    txn: redb::ReadTransaction,
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// Read from `meta` on first use only: plain reads never need it.
    revision: std::sync::OnceLock<u64>,
}

struct RedbSnapshot {
    view: Arc<View>,
}

impl Snapshot for RedbSnapshot {
    fn get(&mut self, key: &[u8]) -> Result<Option<Found>> {
        Ok(self
            .view
            .table
            .get(key)?
            .map(|value| Found { value: value.value().to_vec(), mod_revision: 0 }))
    }

    fn range(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        if empty_span(start, end) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.view.table.range::<&[u8]>((start, end))?.take(limit) {
            let (key, value) = item?;
            out.push(Entry {
                key: key.value().to_vec(),
                value: value.value().to_vec(),
                mod_revision: 0,
            });
        }
        Ok(out)
    }

    fn revision(&self) -> Option<u64> {
        let read = || -> Option<u64> {
            Some(self.view.txn.open_table(META).ok()?.get(REVISION).ok()?.map_or(0, |g| g.value()))
        };
        // A revision that cannot be read is reported as 0: the oldest possible, so a commit
        // that depends on it is refused as a conflict rather than wrongly accepted.
        Some(*self.view.revision.get_or_init(|| read().unwrap_or(0)))
    }
}

/// The committer thread's state.
struct Committer {
    db: Arc<Database>,
    views: Arc<ViewCache>,
    /// The revision of the last batch made durable.
    revision: u64,
    /// Set when a commit failed: every later commit is refused until the store is reopened.
    poisoned: Option<String>,
}

impl Committer {
    fn run(mut self, queue: mpsc::Receiver<Pending>) {
        let mut recent = RecentWrites::new(self.revision, RECENT_CAPACITY);
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut recent, batch);
        }
    }

    fn commit_batch(&mut self, recent: &mut RecentWrites, batch: Vec<Pending>) {
        if let Some(reason) = &self.poisoned {
            for pending in batch {
                let _ = pending.reply.send(Err(Error::Poisoned(reason.clone())));
            }
            return;
        }
        let next = self.revision + 1;
        let mut accepted = Vec::with_capacity(batch.len());
        for pending in batch {
            let conflict =
                pending.commit.revision.and_then(|rev| recent.conflict(rev, &pending.commit.reads));
            match conflict {
                Some(reason) => {
                    let _ = pending.reply.send(Err(Error::Conflict(reason)));
                }
                None => {
                    recent.record(next, pending.commit.writes.keys());
                    accepted.push(pending);
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let applied = apply(&self.db, next, &accepted);
        metrics::histogram!("strata_kv_durable_write_duration_seconds", "engine" => "redb")
            .record(started.elapsed());
        metrics::histogram!("strata_kv_commits_per_durable_write", "engine" => "redb")
            .record(accepted.len() as f64);
        match applied {
            Ok(()) => {
                self.revision = next;
                self.views.advance();
                for pending in accepted {
                    let _ = pending.reply.send(Ok(()));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "kv commit failed; refusing further writes");
                self.poisoned = Some(err.to_string());
                for pending in accepted {
                    let _ = pending.reply.send(Err(Error::Poisoned(err.to_string())));
                }
            }
        }
    }
}

/// Applies every accepted transaction in one durable redb write transaction.
fn apply(db: &Database, revision: u64, accepted: &[Pending]) -> Result<()> {
    let mut wtx = db.begin_write()?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|err| Error::Redb(format!("cannot request durable commits: {err}")))?;
    {
        let mut data = wtx.open_table(DATA)?;
        for pending in accepted {
            for (key, value) in &pending.commit.writes {
                match value {
                    Some(value) => data.insert(key.as_slice(), value.as_slice())?,
                    None => data.remove(key.as_slice())?,
                };
            }
        }
        wtx.open_table(META)?.insert(REVISION, revision)?;
    }
    wtx.commit()?;
    Ok(())
}
