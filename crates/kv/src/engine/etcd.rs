//! The etcd v3 engine: serializable optimistic transactions under a key namespace.
//!
//! A transaction's first read fixes the etcd revision it reads at; later reads ask for that
//! revision, so a transaction sees one consistent snapshot. Commit is one etcd `Txn`:
//! it compares the `mod_revision` of every key read (0 for a key found absent, which also
//! catches a key deleted since), compares every scanned range to have no key modified after
//! the snapshot (which catches phantoms: keys inserted into the range), and applies the
//! writes only when every comparison holds. Otherwise the commit fails with `Conflict`.
//!
//! Every key is stored under the configured prefix, so many strata instances can share one
//! etcd. etcd limits the operations of one `Txn` (`--max-txn-ops`, 128 by default); compares
//! and writes each count, and a larger transaction fails with a clear `InvalidArgument`.

use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp};

use crate::engine::{Commit, Engine, Entry, Found, Snapshot};
use crate::txn::prefix_end;
use crate::{Error, EtcdConfig, Result};

/// See the module documentation.
pub(crate) struct EtcdEngine {
    /// The runtime the etcd client runs on; shut down in the background on drop, so dropping
    /// the engine inside another runtime is safe.
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

/// What the engine and its snapshots share.
struct Shared {
    handle: tokio::runtime::Handle,
    client: KvClient,
    prefix: Vec<u8>,
    timeout: Duration,
    max_txn_ops: usize,
}

impl std::fmt::Debug for EtcdEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdEngine")
            .field("prefix", &String::from_utf8_lossy(&self.shared.prefix))
            .finish_non_exhaustive()
    }
}

impl EtcdEngine {
    /// Connects to the endpoints of `config`.
    pub(crate) fn connect(config: &EtcdConfig) -> Result<EtcdEngine> {
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "etcd engine: no endpoints given (set kv.etcd.endpoints or --etcd-endpoints)"
                    .into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-etcd")
            .enable_all()
            .build()
            .map_err(|err| Error::Unavailable(format!("cannot start the etcd runtime: {err}")))?;
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .with_timeout(timeout);
        let endpoints = config.endpoints.clone();
        let client = runtime
            .block_on(async move {
                tokio::time::timeout(
                    timeout * 2,
                    Client::connect(endpoints.as_slice(), Some(options)),
                )
                .await
            })
            .map_err(|_| {
                Error::Unavailable(format!("etcd {:?}: connect timed out", config.endpoints))
            })?
            .map_err(|err| {
                Error::Unavailable(format!("etcd {:?}: cannot connect: {err}", config.endpoints))
            })?;
        let shared = Arc::new(Shared {
            handle: runtime.handle().clone(),
            client: client.kv_client(),
            prefix: config.prefix.as_bytes().to_vec(),
            timeout,
            max_txn_ops: config.max_txn_ops,
        });
        let engine = EtcdEngine { runtime: Some(runtime), shared };
        // Fail at open, not at the first transaction, when etcd does not answer.
        engine.snapshot()?.range(Bound::Unbounded, Bound::Unbounded, 1)?;
        Ok(engine)
    }
}

impl Drop for EtcdEngine {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Shared {
    /// Runs `fut` on the engine's runtime and waits for it from this (synchronous) thread.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        self.handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, fut).await {
                Ok(result) => result,
                Err(_) => {
                    Err(Error::Unavailable(format!("etcd did not answer within {timeout:?}")))
                }
            };
            let _ = tx.send(result);
        });
        rx.recv().map_err(|_| Error::Unavailable("the etcd engine is shut down".into()))?
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    /// The etcd `[key, range_end)` pair for user bounds.
    fn span(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> (Vec<u8>, Vec<u8>) {
        let key = match start {
            Bound::Included(s) => self.key(s),
            Bound::Excluded(s) => {
                let mut k = self.key(s);
                k.push(0);
                k
            }
            Bound::Unbounded if self.prefix.is_empty() => vec![0],
            Bound::Unbounded => self.prefix.clone(),
        };
        let range_end = match end {
            Bound::Excluded(e) => self.key(e),
            Bound::Included(e) => {
                let mut k = self.key(e);
                k.push(0);
                k
            }
            // "\0" as range end means "every key from `key` on" to etcd.
            Bound::Unbounded => prefix_end(&self.prefix).unwrap_or_else(|| vec![0]),
        };
        (key, range_end)
    }

    fn strip(&self, key: &[u8]) -> Result<Vec<u8>> {
        key.strip_prefix(self.prefix.as_slice()).map(<[u8]>::to_vec).ok_or_else(|| {
            Error::Corrupted("etcd returned a key outside the configured prefix".into())
        })
    }
}

impl Engine for EtcdEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        Ok(Box::new(EtcdSnapshot { shared: self.shared.clone(), revision: None }))
    }

    fn commit(&self, commit: Commit) -> Result<()> {
        let shared = &self.shared;
        let mut compares = Vec::new();
        for (key, revision) in &commit.reads.keys {
            let seen = revision.map_or(0, |r| r as i64);
            compares.push(Compare::mod_revision(shared.key(key), CompareOp::Equal, seen));
        }
        if let Some(revision) = commit.revision {
            for (start, end) in &commit.reads.ranges {
                let (key, range_end) =
                    shared.span(start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice));
                if key >= range_end && range_end != [0] {
                    continue;
                }
                let newer = revision as i64 + 1;
                compares
                    .push(Compare::mod_revision(key, CompareOp::Less, newer).with_range(range_end));
            }
        }
        let ops: Vec<TxnOp> = commit
            .writes
            .iter()
            .map(|(key, value)| match value {
                Some(value) => TxnOp::put(shared.key(key), value.clone(), None),
                None => TxnOp::delete(shared.key(key), None),
            })
            .collect();
        if compares.len() > shared.max_txn_ops || ops.len() > shared.max_txn_ops {
            return Err(too_many_ops(compares.len(), ops.len(), shared.max_txn_ops));
        }
        if compares.is_empty() && commit.writes.len() == 1 {
            return self.blind_write(commit.writes);
        }
        let (n_compares, n_ops, max) = (compares.len(), ops.len(), shared.max_txn_ops);
        let mut client = shared.client.clone();
        let txn = Txn::new().when(compares).and_then(ops);
        let response = shared.block(async move {
            client.txn(txn).await.map_err(|err| match map_error(err) {
                Error::InvalidArgument(msg) if msg.contains("too many operations") => {
                    too_many_ops(n_compares, n_ops, max)
                }
                other => other,
            })
        })?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "a key or range read at etcd revision {} changed before commit",
                commit.revision.unwrap_or_default()
            )))
        }
    }

    fn name(&self) -> &'static str {
        "etcd"
    }

    fn max_txn_ops(&self) -> Option<usize> {
        Some(self.shared.max_txn_ops)
    }

    fn reads_are_local(&self) -> bool {
        false
    }

    fn validates_scans_by_key(&self) -> bool {
        true
    }
}

impl EtcdEngine {
    /// One write with nothing read to validate needs no `Txn`: a plain put or delete is
    /// atomic on its own and about twice as fast on etcd 3.4.
    fn blind_write(
        &self,
        writes: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<()> {
        let Some((key, value)) = writes.into_iter().next() else { return Ok(()) };
        let key = self.shared.key(&key);
        let mut client = self.shared.client.clone();
        self.shared.block(async move {
            match value {
                Some(value) => client.put(key, value, None).await.map(drop),
                None => client.delete(key, None).await.map(drop),
            }
            .map_err(map_error)
        })
    }
}

fn too_many_ops(compares: usize, writes: usize, max: usize) -> Error {
    Error::InvalidArgument(format!(
        "transaction too large for etcd: {writes} writes and {compares} reads to validate, \
         etcd allows {max} of each per transaction (raise etcd's --max-txn-ops and \
         kv.etcd.max_txn_ops, or split the work into smaller transactions)"
    ))
}

fn map_error(err: etcd_client::Error) -> Error {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message().to_string();
            match status.code() as i32 {
                // OutOfRange: the snapshot's revision was compacted away; a retry reads anew.
                11 => Error::Conflict(format!("snapshot revision no longer available: {message}")),
                3 => Error::InvalidArgument(format!("etcd refused the request: {message}")),
                _ => Error::Unavailable(format!("etcd: {message}")),
            }
        }
        other => Error::Unavailable(other.to_string()),
    }
}

/// A lazily pinned view: the first read fixes the revision.
struct EtcdSnapshot {
    shared: Arc<Shared>,
    revision: Option<i64>,
}

impl EtcdSnapshot {
    fn read(&mut self, key: Vec<u8>, options: GetOptions) -> Result<Vec<Entry>> {
        let options = match self.revision {
            Some(rev) => options.with_revision(rev),
            None => options,
        };
        let mut client = self.shared.client.clone();
        let mut response = self
            .shared
            .block(async move { client.get(key, Some(options)).await.map_err(map_error) })?;
        if self.revision.is_none() {
            self.revision = response.header().map(|h| h.revision());
        }
        let mut out = Vec::with_capacity(response.kvs().len());
        for kv in response.take_kvs() {
            let mod_revision = kv.mod_revision() as u64;
            let (key, value) = kv.into_key_value();
            out.push(Entry { key: self.shared.strip(&key)?, value, mod_revision });
        }
        Ok(out)
    }
}

impl Snapshot for EtcdSnapshot {
    fn get(&mut self, key: &[u8]) -> Result<Option<Found>> {
        let full = self.shared.key(key);
        if full.is_empty() {
            return Err(Error::InvalidArgument("etcd cannot store an empty key".into()));
        }
        let entry = self.read(full, GetOptions::new())?.into_iter().next();
        Ok(entry.map(|e| Found { value: e.value, mod_revision: e.mod_revision }))
    }

    fn range(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let (key, range_end) = self.shared.span(start, end);
        if key >= range_end && range_end != [0] {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(key, GetOptions::new().with_range(range_end).with_limit(limit))
    }

    fn revision(&self) -> Option<u64> {
        self.revision.map(|r| r as u64)
    }
}
