//! The six operations of containerd's metastore `Benchmarks` (metastore_bench_test.go), on
//! strata's metastore, and the snapshots they run on.
//!
//! The names are containerd's, so each figure pairs with the Go benchmark of the same name.
//! How the operations are timed (inside one transaction, or each in its own) is up to
//! `in_txn` and `own_txn`; this module names them and sets up what they read.

use std::collections::BTreeMap;

use strata_kv::Store;
use strata_snapshots::{Kind, metastore};

/// One of containerd's metastore benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GetInfo` of an active snapshot whose parent is committed.
    StatActive,
    /// `GetInfo` of a committed snapshot.
    StatCommitted,
    /// `CreateSnapshot` of an active snapshot with no parent.
    CreateActive,
    /// `CommitActive` of an active snapshot.
    Commit,
    /// `Remove` of a snapshot without children.
    Remove,
    /// `GetSnapshot` of an active snapshot on a chain of 10 committed snapshots.
    GetActive,
}

impl Op {
    /// Every operation, in the order of the issue and of the tables.
    pub const ALL: [Op; 6] = [
        Op::StatActive,
        Op::StatCommitted,
        Op::CreateActive,
        Op::Commit,
        Op::Remove,
        Op::GetActive,
    ];

    /// containerd's benchmark name: `StatActive`, ....
    pub fn go_name(self) -> &'static str {
        match self {
            Op::StatActive => "StatActive",
            Op::StatCommitted => "StatCommitted",
            Op::CreateActive => "CreateActive",
            Op::Commit => "Commit",
            Op::Remove => "Remove",
            Op::GetActive => "GetActive",
        }
    }

    /// What the tables call it.
    pub fn title(self) -> &'static str {
        match self {
            Op::StatActive => "stat active",
            Op::StatCommitted => "stat committed",
            Op::CreateActive => "create active",
            Op::Commit => "commit",
            Op::Remove => "remove",
            Op::GetActive => "get active (10-deep chain)",
        }
    }
}

/// One figure per operation, in [`Op::ALL`] order.
#[derive(Debug, Clone)]
pub struct PerOp<T>(Vec<T>);

impl<T: Copy> PerOp<T> {
    /// Measures every operation with `measure`, in [`Op::ALL`] order.
    pub fn measure(mut measure: impl FnMut(Op) -> anyhow::Result<T>) -> anyhow::Result<PerOp<T>> {
        Ok(PerOp(Op::ALL.into_iter().map(&mut measure).collect::<anyhow::Result<_>>()?))
    }

    /// The figure of `op`.
    pub fn get(&self, op: Op) -> T {
        // `Op`'s variants are declared in `Op::ALL` order, so the discriminant is the index.
        self.0[op as usize]
    }
}

/// The active snapshot [`Op::StatActive`] reads; its parent is the committed `base`.
pub const ACTIVE: &str = "active";
/// The committed snapshot [`Op::StatCommitted`] reads; its parent is `base`.
pub const COMMITTED: &str = "committed";
/// The active snapshot [`Op::GetActive`] resolves, on `base-10`, which is on `base-9`, ...
/// down to `base-1`, which has no parent.
pub const CHAIN_ACTIVE: &str = "chain-active";

/// Creates [`ACTIVE`], [`COMMITTED`] and [`CHAIN_ACTIVE`] with their parents, each step a
/// committed transaction of its own, as bench/go's snapbench sets up its bolt file.
pub fn setup(store: &Store) -> anyhow::Result<()> {
    create(store, "bottom", "")?;
    commit(store, "bottom", "base")?;
    create(store, ACTIVE, "base")?;
    create(store, "tmp", "base")?;
    commit(store, "tmp", COMMITTED)?;
    let mut base = String::new();
    for i in 1..=10 {
        create(store, "tmp", &base)?;
        base = format!("base-{i}");
        commit(store, "tmp", &base)?;
    }
    create(store, CHAIN_ACTIVE, &base)
}

fn create(store: &Store, key: &str, parent: &str) -> anyhow::Result<()> {
    store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::Active, key, parent, BTreeMap::new())
    })?;
    Ok(())
}

fn commit(store: &Store, key: &str, name: &str) -> anyhow::Result<()> {
    store.with_txn(|txn| {
        metastore::commit_active(txn, key, name, Default::default(), BTreeMap::new())
    })?;
    Ok(())
}
