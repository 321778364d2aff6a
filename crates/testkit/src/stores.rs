//! KV stores for conformance suites, one factory per engine, and the [`conformance!`] macro
//! that runs one list of cases on each.
//!
//! [`conformance!`]: crate::conformance

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_kv::{EtcdConfig, Store};

/// A store and the temporary directory that lives as long as it (the redb file's home, or
/// a scratch directory for the suite's own files on the other engines).
#[derive(Debug)]
pub struct StoreFixture {
    /// The engine's name: `memory`, `redb` or `etcd`.
    pub engine: &'static str,
    /// The store.
    pub store: Store,
    /// A directory that lives as long as the fixture.
    pub dir: tempfile::TempDir,
}

/// A store in memory.
pub fn memory_store() -> anyhow::Result<StoreFixture> {
    Ok(StoreFixture { engine: "memory", store: Store::memory()?, dir: tempfile::tempdir()? })
}

/// A store in a new redb file.
pub fn redb_store() -> anyhow::Result<StoreFixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::redb(&dir.path().join("kv.redb"))?;
    Ok(StoreFixture { engine: "redb", store, dir })
}

/// A store on the test process's etcd ([`crate::shared_etcd`]) under a prefix no other test
/// uses, allowing `max_txn_ops` operations per transaction (etcd's own default is 128).
pub fn etcd_store(max_txn_ops: usize) -> anyhow::Result<StoreFixture> {
    let store = Store::etcd(&etcd_config(max_txn_ops))?;
    Ok(StoreFixture { engine: "etcd", store, dir: tempfile::tempdir()? })
}

/// A store on the test process's etcd that allows 20,000 operations per transaction, for
/// suites that are not about etcd's limit.
pub fn etcd_suite_store() -> anyhow::Result<StoreFixture> {
    etcd_store(20_000)
}

/// An etcd engine configuration on the test process's etcd with a fresh prefix.
pub fn etcd_config(max_txn_ops: usize) -> EtcdConfig {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    EtcdConfig {
        endpoints: vec![crate::shared_etcd().endpoint()],
        prefix: format!("test-{}-{}/", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
        max_txn_ops,
        ..EtcdConfig::default()
    }
}

/// Runs the same cases on one fixture each: `conformance!(MODULE, FACTORY, fixture => ARG;
/// case, ...)` makes `mod MODULE` with one `#[test]` per case that builds a fixture with
/// `FACTORY()` and calls `super::case(ARG)`, ARG an expression of `fixture`.
/// `conformance!(every_engine, fixture => ARG; case, ...)` does so on a memory, a redb and
/// an etcd store ([`etcd_suite_store`]), in modules named after them.
///
/// ```text
/// strata_testkit::conformance!(every_engine, f => &f.store; reads, writes);
/// strata_testkit::conformance!(on_disk, crate::disk_fixture, f => &f.path; reads);
/// ```
#[macro_export]
macro_rules! conformance {
    (every_engine, $fixture:ident => $arg:expr; $($case:ident),* $(,)?) => {
        $crate::conformance!(memory, $crate::memory_store, $fixture => $arg; $($case),*);
        $crate::conformance!(redb, $crate::redb_store, $fixture => $arg; $($case),*);
        $crate::conformance!(etcd, $crate::etcd_suite_store, $fixture => $arg; $($case),*);
    };
    ($module:ident, $factory:path, $fixture:ident => $arg:expr; $($case:ident),* $(,)?) => {
        mod $module {
            $(
                #[test]
                fn $case() -> anyhow::Result<()> {
                    let $fixture = $factory()?;
                    super::$case($arg)
                }
            )*
        }
    };
}
