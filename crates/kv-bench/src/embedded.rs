//! The redb engine's figures: a durable commit on one thread, a point read inside an open
//! read transaction, and group commit from many threads; and, to tell strata-kv's cost from
//! redb's, the same commit made on redb directly.
//!
//! Every run opens a fresh redb file in a directory of its own, as containerd's benchmark
//! opens a fresh bbolt file per benchmark. Transactions are the smallest that write
//! anything: one put of a 12-byte key and a 100-byte value.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use ::redb::{Database, Durability, ReadableDatabase, TableDefinition};
use strata_kv::{Read, Store};

use strata_kv_bench::measure::{Summary, VALUE, key, run_threads, warm_then_run, warm_up};

/// Keys loaded before the point reads.
const READ_KEYS: u64 = 100_000;
/// Point reads timed together, so the clock's own cost stays out of the figure.
const READ_ROUND: u64 = 10_000;

/// What many threads committing at once achieved.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// The commits.
    pub summary: Summary,
    /// Durable redb write transactions (batches) that carried them, when the store reports it.
    pub batches: Option<u64>,
}

/// Commits one-put transactions, one after the other, for `duration`.
pub fn single_commit(dir: &Path, duration: Duration) -> anyhow::Result<Summary> {
    let dir = fresh(dir)?;
    let store = Store::redb(&dir.path().join("kv.redb"))?;
    warm_then_run(1, duration, |thread, n| put_one(&store, thread, n))
}

/// What [`single_commit`] does, on redb itself: one durable (`Durability::Immediate`) write
/// transaction per put, no strata-kv in between.
pub fn raw_redb_commit(dir: &Path, duration: Duration) -> anyhow::Result<Summary> {
    const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
    let dir = fresh(dir)?;
    let db = Database::create(dir.path().join("raw.redb"))?;
    warm_then_run(1, duration, |thread, n| {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(TABLE)?.insert(key(thread, n).as_slice(), VALUE.as_slice())?;
        txn.commit()?;
        Ok(())
    })
}

/// Commits one-put transactions from `threads` threads at once, for `duration`; no two
/// transactions touch the same key, so none conflicts.
pub fn group_commit(dir: &Path, threads: u32, duration: Duration) -> anyhow::Result<GroupCommit> {
    let dir = fresh(dir)?;
    let store = Store::redb(&dir.path().join("kv.redb"))?;
    let op = |thread: u32, n: u64| put_one(&store, thread, n);
    warm_up(threads, duration, &op)?;
    let before = store.read()?.revision();
    let summary = run_threads(threads, duration, op)?;
    let after = store.read()?.revision();
    let batches = before.zip(after).map(|(before, after)| after - before);
    Ok(GroupCommit { summary, batches })
}

/// Point reads inside one open read transaction: mean nanoseconds per `get` of an existing
/// key, random among 100,000 keys.
#[derive(Debug, Clone, Copy)]
pub struct PointReads {
    /// strata-kv's `ReadTxn::get`.
    pub strata_ns: f64,
    /// redb's `ReadOnlyTable::get`, copying the value out as strata-kv does.
    pub raw_ns: f64,
}

/// Measures [`PointReads`] for `duration` each.
pub fn point_reads(dir: &Path, duration: Duration) -> anyhow::Result<PointReads> {
    const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
    let dir = fresh(dir)?;
    let store = Store::redb(&dir.path().join("kv.redb"))?;
    let db = Database::create(dir.path().join("raw.redb"))?;
    for chunk in 0..READ_KEYS / 10_000 {
        let (mut txn, raw) = (store.write()?, db.begin_write()?);
        {
            let mut table = raw.open_table(TABLE)?;
            for n in chunk * 10_000..(chunk + 1) * 10_000 {
                txn.put(&key(0, n), &VALUE);
                table.insert(key(0, n).as_slice(), VALUE.as_slice())?;
            }
        }
        txn.commit()?;
        raw.commit()?;
    }
    let mut txn = store.read()?;
    let strata_ns = time_reads(duration, |key| Ok(txn.get(key)?))?;
    let table = db.begin_read()?.open_table(TABLE)?;
    let raw_ns =
        time_reads(duration, |key| Ok(table.get(key.as_slice())?.map(|v| v.value().to_vec())))?;
    Ok(PointReads { strata_ns, raw_ns })
}

/// Calls `get` on random loaded keys for `duration`; the mean nanoseconds per call.
fn time_reads(
    duration: Duration,
    mut get: impl FnMut(&[u8; 12]) -> anyhow::Result<Option<Vec<u8>>>,
) -> anyhow::Result<f64> {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut reads, mut spent) = (0_u64, Duration::ZERO);
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let keys: Vec<[u8; 12]> =
            (0..READ_ROUND).map(|_| key(0, random.next() % READ_KEYS)).collect();
        let began = Instant::now();
        for key in &keys {
            let value = get(key)?;
            anyhow::ensure!(value.is_some(), "a loaded key is missing");
            black_box(value);
        }
        spent += began.elapsed();
        reads += READ_ROUND;
    }
    Ok(spent.as_nanos() as f64 / reads as f64)
}

/// A new directory in `dir`, removed when dropped.
fn fresh(dir: &Path) -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("redb-").tempdir_in(dir)?)
}

fn put_one(store: &Store, thread: u32, n: u64) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    txn.put(&key(thread, n), &VALUE);
    txn.commit()?;
    Ok(())
}

/// A small, fast pseudo-random sequence (xorshift64), so picking keys costs next to nothing.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
