//! Strata's transactional key-value layer.
//!
//! Ordered byte keys and values, and serializable transactions over two engines: redb, one
//! embedded file and the default, and etcd v3, for a cluster. Every metadata part of strata
//! (snapshots, hub, ckpt) stores its records here.
//!
//! # Brief overview
//!
//! - [`Store`] opens an engine and begins transactions; [`Store::with_txn`] retries a
//!   transaction that lost a conflict.
//! - [`ReadTxn`] is a consistent read-only view; [`WriteTxn`] buffers writes and commits them
//!   at once with [`WriteTxn::commit`]. Dropping a transaction rolls it back.
//! - [`Read`] is what both kinds of transaction read with: `get`, `scan`, `range`, `prefix`.
//! - [`share`] lets a server share its stores with other processes over a unix socket;
//!   [`Store::connect`] opens one there.
//! - [`Error`] carries a [`Category`] that transports map to their own codes.
//!
//! Transactions are optimistic on every engine: reads are remembered, writes buffered, and
//! commit applies the writes only if nothing read has changed since the transaction began.
//! On redb one committer thread applies many transactions in one durable write (group
//! commit); on etcd commit is one etcd `Txn` comparing revisions.
//!
//! ```
//! use strata_kv::{Read, Store};
//!
//! let store = Store::memory()?;
//! store.with_txn(|txn| {
//!     let n = txn.get(b"counter")?.map_or(0, |v| v[0]);
//!     txn.put(b"counter", &[n + 1]);
//!     Ok::<_, strata_kv::Error>(())
//! })?;
//! assert_eq!(store.read()?.get(b"counter")?, Some(vec![1]));
//! # Ok::<(), strata_kv::Error>(())
//! ```

#![deny(missing_docs)]

mod config;
mod engine;
mod error;
pub mod share;
mod store;
mod txn;

pub use crate::config::{EngineKind, EtcdConfig, KvConfig, RedbConfig};
pub use crate::error::{Category, Error, Result};
pub use crate::store::{AsConflict, Backup, Store};
pub use crate::txn::{KeyValue, Read, ReadTxn, WriteTxn, prefix_end};
