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
    /// The engine's name: `memory`, `redb`, `shared` or `etcd`.
    pub engine: &'static str,
    /// The store.
    pub store: Store,
    /// A directory that lives as long as the fixture.
    pub dir: tempfile::TempDir,
    /// The server sharing the store, for a store opened through one; stopped on drop.
    pub server: Option<ShareServer>,
}

/// A kv sharing server on a thread of its own ([`shared_store`]); stops when dropped.
#[derive(Debug)]
pub struct ShareServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ShareServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A store in memory.
pub fn memory_store() -> anyhow::Result<StoreFixture> {
    let dir = tempfile::tempdir()?;
    Ok(StoreFixture { engine: "memory", store: Store::memory()?, dir, server: None })
}

/// A store in a new redb file.
pub fn redb_store() -> anyhow::Result<StoreFixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::redb(&dir.path().join("kv.redb"))?;
    Ok(StoreFixture { engine: "redb", store, dir, server: None })
}

/// A store in a new redb file that a sharing server (`strata_kv::share`) in this process
/// holds, opened through its unix socket, as a command opens the store of a running
/// `strata serve`.
pub fn shared_store() -> anyhow::Result<StoreFixture> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.redb");
    let mut shared = strata_kv::share::Shared::default();
    shared.add(&file, Store::redb(&file)?)?;
    let socket = dir.path().join("share.sock");
    let listening = socket.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, bound) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => return drop(ready.send(Err(err))),
        };
        runtime.block_on(async {
            let listener = match tokio::net::UnixListener::bind(&listening) {
                Ok(listener) => listener,
                Err(err) => return drop(ready.send(Err(err))),
            };
            let _ = ready.send(Ok(()));
            strata_kv::share::serve(listener, shared, async {
                let _ = stopped.await;
            })
            .await;
        });
    });
    let server = ShareServer { stop: Some(stop), thread: Some(thread) };
    bound.recv()??;
    let store = Store::connect(&socket, &file)?;
    Ok(StoreFixture { engine: "shared", store, dir, server: Some(server) })
}

/// A store on the test process's etcd ([`crate::shared_etcd`]) under a prefix no other test
/// uses, allowing `max_txn_ops` operations per transaction (etcd's own default is 128).
pub fn etcd_store(max_txn_ops: usize) -> anyhow::Result<StoreFixture> {
    let store = Store::etcd(&etcd_config(max_txn_ops))?;
    Ok(StoreFixture { engine: "etcd", store, dir: tempfile::tempdir()?, server: None })
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
/// `conformance!(every_engine, fixture => ARG; case, ...)` does so on a memory, a redb, a
/// shared redb ([`shared_store`]) and an etcd store ([`etcd_suite_store`]), in modules
/// named after them.
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
        $crate::conformance!(shared, $crate::shared_store, $fixture => $arg; $($case),*);
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
