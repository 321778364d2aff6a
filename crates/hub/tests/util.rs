//! Stores on every engine, and a local/remote pair of hubs on one of them.

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_hub::{Hub, HubService, InProcess, Local};
use strata_volume::BlobStore;

/// A store and the directory that holds its files.
pub use strata_testkit::StoreFixture as Engine;

/// Numbers the stores' prefixes, so pairs on one engine never share keys.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Every engine, with etcd's default transaction size limit (128 operations).
pub fn engines() -> anyhow::Result<Vec<Engine>> {
    let etcd_default = strata_kv::EtcdConfig::default().max_txn_ops;
    Ok(vec![
        strata_testkit::memory_store()?,
        strata_testkit::redb_store()?,
        strata_testkit::etcd_store(etcd_default)?,
    ])
}

/// A local store and a remote hub, both on `engine` under different prefixes.
pub struct Pair {
    pub local: Local,
    pub remote: InProcess,
}

pub fn pair(engine: &Engine, user: &str) -> anyhow::Result<Pair> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let local = Local {
        hub: Hub::new(engine.store.clone(), format!("local{n}/")),
        blobs: BlobStore::open(&engine.dir.path().join(format!("local{n}-blobs")))?,
    };
    let remote = InProcess {
        service: HubService::new(
            Hub::new(engine.store.clone(), format!("remote{n}/")),
            BlobStore::open(&engine.dir.path().join(format!("remote{n}-blobs")))?,
        ),
        user: user.into(),
    };
    Ok(Pair { local, remote })
}

/// Another local store against the same remote.
pub fn another_local(engine: &Engine) -> anyhow::Result<Local> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(Local {
        hub: Hub::new(engine.store.clone(), format!("other{n}/")),
        blobs: BlobStore::open(&engine.dir.path().join(format!("other{n}-blobs")))?,
    })
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

pub fn snap(name: &str) -> strata_hub::NewSnapshot {
    strata_hub::NewSnapshot { name: name.into(), creator: "tester".into(), ..Default::default() }
}
