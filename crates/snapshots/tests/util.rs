//! KV stores for the suites: one factory per engine, each with what must outlive the store.

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_kv::{EtcdConfig, Store};

/// A store and whatever keeps it alive (a temporary directory).
pub struct Fixture {
    pub store: Store,
    /// A directory that lives as long as the store: a snapshotter root for tests.
    pub dir: tempfile::TempDir,
}

pub fn memory() -> anyhow::Result<Fixture> {
    Ok(Fixture { store: Store::memory()?, dir: tempfile::tempdir()? })
}

pub fn redb() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::redb(&dir.path().join("metadata.redb"))?;
    Ok(Fixture { store, dir })
}

/// A store on the test process's etcd, under a prefix no other test uses.
pub fn etcd() -> anyhow::Result<Fixture> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let config = EtcdConfig {
        endpoints: vec![strata_testkit::shared_etcd().endpoint()],
        prefix: format!("snap-{}-{}/", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
        max_txn_ops: 20_000,
        ..EtcdConfig::default()
    };
    Ok(Fixture { store: Store::etcd(&config)?, dir: tempfile::tempdir()? })
}
