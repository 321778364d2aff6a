//! Store factories for the conformance suite: one per engine, each with what must outlive it.

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_kv::{EtcdConfig, Store};

/// A store and whatever keeps it alive (a temporary directory).
pub struct Fixture {
    pub store: Store,
    _keep: Option<tempfile::TempDir>,
}

pub fn memory() -> anyhow::Result<Fixture> {
    Ok(Fixture { store: Store::memory()?, _keep: None })
}

pub fn redb() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::redb(&dir.path().join("kv.redb"))?;
    Ok(Fixture { store, _keep: Some(dir) })
}

/// A store on the test process's etcd, under a prefix no other test uses.
pub fn etcd() -> anyhow::Result<Fixture> {
    let store = Store::etcd(&etcd_config(20_000))?;
    Ok(Fixture { store, _keep: None })
}

/// An etcd engine configuration with a fresh prefix on the shared server.
pub fn etcd_config(max_txn_ops: usize) -> EtcdConfig {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let etcd = strata_testkit::shared_etcd();
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: format!("test-{}-{}/", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
        max_txn_ops,
        ..EtcdConfig::default()
    }
}
