//! Each operation repeated inside one open write transaction, as containerd's own
//! `Benchmarks` run them inside one bolt transaction: no commit, no disk; what is timed is
//! the metastore's work and the engine's reads.
//!
//! As in containerd's benchmarks, a fresh store per operation, and only the operation
//! itself is timed: the create before a commit or remove, and the remove after a create or
//! commit, run untimed, as containerd's run between `b.StopTimer` and `b.StartTimer`. One
//! difference: the snapshots the reads read are set up and committed before the
//! transaction opens (containerd creates them in the same transaction), so a stat reads
//! the engine, not the transaction's own write buffer. The transaction is rolled back at
//! the end.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use strata_kv::{Store, WriteTxn};
use strata_kv_bench::measure::Summary;
use strata_snapshots::{Kind, Usage, metastore};

use crate::ops::{self, ACTIVE, CHAIN_ACTIVE, COMMITTED, Op};

/// The key the write operations create, commit and remove, over and over.
const NEW: &str = "new-active";
/// What [`NEW`] is committed as.
const NEW_COMMITTED: &str = "new-committed";

/// Runs `op` `count` times inside one write transaction of `store`, a fresh store the
/// fixture is set up on first. Go reports `ns/op` only, and so does this: the summary has
/// the count and the time the operations took, no percentiles.
pub fn measure(store: &Store, op: Op, count: u64) -> anyhow::Result<Summary> {
    ops::setup(store)?;
    let mut txn = store.write()?;
    let spent = match op {
        Op::StatActive => repeat(count, || Ok(black_box(metastore::get_info(&mut txn, ACTIVE)?)))?,
        Op::StatCommitted => {
            repeat(count, || Ok(black_box(metastore::get_info(&mut txn, COMMITTED)?)))?
        }
        Op::GetActive => {
            repeat(count, || Ok(black_box(metastore::get_snapshot(&mut txn, CHAIN_ACTIVE)?)))?
        }
        Op::CreateActive => timed_cycles(&mut txn, count, |txn| {
            let began = Instant::now();
            create(txn)?;
            let spent = began.elapsed();
            metastore::remove(txn, NEW)?;
            Ok(spent)
        })?,
        Op::Commit => timed_cycles(&mut txn, count, |txn| {
            create(txn)?;
            let began = Instant::now();
            metastore::commit_active(txn, NEW, NEW_COMMITTED, Usage::default(), BTreeMap::new())?;
            let spent = began.elapsed();
            metastore::remove(txn, NEW_COMMITTED)?;
            Ok(spent)
        })?,
        Op::Remove => timed_cycles(&mut txn, count, |txn| {
            create(txn)?;
            let began = Instant::now();
            metastore::remove(txn, NEW)?;
            Ok(began.elapsed())
        })?,
    };
    txn.rollback();
    Ok(Summary { count, elapsed: spent, p50: None, p99: None })
}

/// Times `count` calls of `read` together: reads need no untimed steps between them.
fn repeat<T>(count: u64, mut read: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let began = Instant::now();
    for _ in 0..count {
        read()?;
    }
    Ok(began.elapsed())
}

/// Runs `cycle` `count` times; each returns the time of its timed part, and they add up.
fn timed_cycles(
    txn: &mut WriteTxn,
    count: u64,
    mut cycle: impl FnMut(&mut WriteTxn) -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    (0..count).try_fold(Duration::ZERO, |spent, _| Ok(spent + cycle(txn)?))
}

fn create(txn: &mut WriteTxn) -> anyhow::Result<()> {
    metastore::create_snapshot(txn, Kind::Active, NEW, "", BTreeMap::new())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_runs_its_count_in_one_transaction() -> anyhow::Result<()> {
        for op in Op::ALL {
            let store = Store::memory()?;
            let summary = measure(&store, op, 50)?;
            assert_eq!(summary.count, 50, "{op:?}");
            assert!(summary.elapsed > Duration::ZERO, "{op:?}");
            // Nothing was committed: the new snapshot never reached the store.
            assert!(metastore::get_info(&mut store.read()?, NEW).is_err(), "{op:?}");
        }
        Ok(())
    }
}
