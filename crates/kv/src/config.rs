//! Configuration of the KV layer, as it appears in `strata.toml` under `[kv]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which engine holds the data, and its settings (`[kv]` in `strata.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// `redb` (embedded, the default) or `etcd`.
    pub engine: EngineKind,
    /// Settings of the redb engine (`[kv.redb]`).
    pub redb: RedbConfig,
    /// Settings of the etcd engine (`[kv.etcd]`).
    pub etcd: EtcdConfig,
}

impl KvConfig {
    /// The redb file this configuration names: `redb.path` taken from `data_dir` when
    /// relative, else `kv.redb` in `data_dir`.
    pub fn redb_file(&self, data_dir: &std::path::Path) -> PathBuf {
        match &self.redb.path {
            Some(path) => data_dir.join(path),
            None => data_dir.join("kv.redb"),
        }
    }
}

/// The engine names accepted in configuration and on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// One redb file in the data directory.
    #[default]
    Redb,
    /// An etcd v3 cluster.
    Etcd,
}

/// `[kv.redb]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedbConfig {
    /// The database file; relative paths are taken from the data directory.
    /// Unset: `kv.redb` in the data directory.
    pub path: Option<PathBuf>,
}

/// `[kv.etcd]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Every key strata stores is put under this prefix, so several strata instances (or
    /// other programs) can share one etcd.
    pub prefix: String,
    /// How long to wait for a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long one etcd request may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// The etcd server's `--max-txn-ops`: a transaction with more writes, or more reads to
    /// validate, fails with a clear error before it is sent.
    pub max_txn_ops: usize,
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "strata/".into(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            max_txn_ops: 128,
        }
    }
}
