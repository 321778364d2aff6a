//! Each operation in a transaction of its own, as a snapshotter uses the metastore, from
//! one client or many at once: what bench/go's snapbench does on bolt, on strata's store.
//!
//! Writes (create, commit, remove) each run in `Store::with_txn`, which commits durably
//! before it returns; reads (stat, get) each in a read transaction of their own, as
//! strata's `Snapshotter` does for `stat` and `mounts` (and containerd's overlay snapshotter
//! with a read-only bolt transaction). Clients are threads sharing one [`Store`].
//!
//! [`Clients`] keeps one store over many runs, so runs can alternate with snapbench's:
//! client `t` creates `active-t-<i>`, commits them, oldest first, as `committed-t-<i>` and
//! removes those, so no two clients touch the same snapshot. Commit and remove work through
//! what the operation before them left; the first client to run out ends the run for all
//! (see [`Flow::Exhausted`]).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_kv::Store;
use strata_kv_bench::measure::{Flow, Summary, run_threads_until};
use strata_snapshots::{Kind, Usage, metastore};

use crate::ops::{self, ACTIVE, CHAIN_ACTIVE, COMMITTED, Op};

/// Clients of one store, and how far each has got.
#[derive(Debug)]
pub struct Clients {
    store: Store,
    clients: u32,
    /// Per client: snapshots created so far, the next `active-t-<i>`.
    created: Vec<AtomicU64>,
    /// Per client: snapshots committed so far, the next `active-t-<i>` to commit.
    committed: Vec<AtomicU64>,
    /// Per client: snapshots removed so far, the next `committed-t-<i>` to remove.
    removed: Vec<AtomicU64>,
}

impl Clients {
    /// Sets up the fixture on `store`, a fresh store, for `clients` threads.
    pub fn new(store: Store, clients: u32) -> anyhow::Result<Clients> {
        ops::setup(&store)?;
        let counters = || (0..clients).map(|_| AtomicU64::new(0)).collect();
        Ok(Clients {
            store,
            clients,
            created: counters(),
            committed: counters(),
            removed: counters(),
        })
    }

    /// Runs `op` from every client for at most `duration`.
    pub fn run(&self, op: Op, duration: Duration) -> anyhow::Result<Summary> {
        run_threads_until(self.clients, duration, |t, _| self.one(op, t as usize))
    }

    /// Client `t`'s next `op`.
    fn one(&self, op: Op, t: usize) -> anyhow::Result<Flow> {
        let store = &self.store;
        let next = |counter: &[AtomicU64]| counter[t].load(Ordering::Relaxed);
        match op {
            Op::StatActive => read(|| Ok(metastore::get_info(&mut store.read()?, ACTIVE)?))?,
            Op::StatCommitted => read(|| Ok(metastore::get_info(&mut store.read()?, COMMITTED)?))?,
            Op::GetActive => {
                read(|| Ok(metastore::get_snapshot(&mut store.read()?, CHAIN_ACTIVE)?))?
            }
            Op::CreateActive => {
                let key = active(t, next(&self.created));
                store.with_txn(|txn| {
                    metastore::create_snapshot(txn, Kind::Active, &key, "", BTreeMap::new())
                })?;
                self.created[t].fetch_add(1, Ordering::Relaxed);
            }
            Op::Commit if next(&self.committed) < next(&self.created) => {
                let i = next(&self.committed);
                let (key, name) = (active(t, i), committed_name(t, i));
                store.with_txn(|txn| {
                    metastore::commit_active(txn, &key, &name, Usage::default(), BTreeMap::new())
                })?;
                self.committed[t].fetch_add(1, Ordering::Relaxed);
            }
            Op::Remove if next(&self.removed) < next(&self.committed) => {
                let name = committed_name(t, next(&self.removed));
                store.with_txn(|txn| metastore::remove(txn, &name))?;
                self.removed[t].fetch_add(1, Ordering::Relaxed);
            }
            Op::Commit | Op::Remove => return Ok(Flow::Exhausted),
        }
        Ok(Flow::Done)
    }
}

fn read<T>(read: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<()> {
    black_box(read()?);
    Ok(())
}

/// Client `t`'s `i`th active snapshot.
fn active(t: usize, i: u64) -> String {
    format!("active-{t}-{i}")
}

/// What client `t` commits its `i`th active snapshot as.
fn committed_name(t: usize, i: u64) -> String {
    format!("committed-{t}-{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_remove_use_up_what_create_left() -> anyhow::Result<()> {
        let clients = Clients::new(Store::memory()?, 3)?;
        let long = Duration::from_secs(30);
        let created = clients.run(Op::CreateActive, Duration::from_millis(30))?.count;
        assert!(created > 0);
        // Each run ends as soon as one client has nothing left, well before `long`.
        let committed = clients.run(Op::Commit, long)?;
        assert!(committed.count > 0 && committed.count <= created);
        assert!(committed.elapsed < long);
        let removed = clients.run(Op::Remove, long)?.count;
        assert!(removed > 0 && removed <= committed.count);
        for op in [Op::StatActive, Op::StatCommitted, Op::GetActive] {
            assert!(clients.run(op, Duration::from_millis(5))?.count > 0, "{op:?}");
        }
        let names = metastore::id_map(&mut clients.store.read()?)?.into_values();
        let left = names.filter(|name| name.starts_with("committed-")).count() as u64;
        assert_eq!(left, committed.count - removed);
        Ok(())
    }
}
