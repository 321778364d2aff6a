//! Container snapshots: containerd's snapshot metadata model on strata's KV layer, and an
//! overlayfs snapshotter on top of it.
//!
//! # Brief overview
//!
//! - [`metastore`]: the metadata operations (create, get, info, update, walk, commit,
//!   remove, id map) as free functions over a [`strata_kv::WriteTxn`], with containerd's
//!   rules and error categories on every KV engine.
//! - [`Snapshotter`]: prepare, view, mounts, commit, remove, usage, list and cleanup of
//!   overlayfs layers under a root directory.
//! - [`Filters`]: containerd's filter syntax for listing.
//! - [`Info`], [`Kind`], [`Usage`], [`Mount`]: the model.
//! - [`Error`]: every failure, with its [`strata_kv::Category`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use strata_snapshots::{Kind, metastore};
//!
//! let store = strata_kv::Store::memory()?;
//! store.with_txn(|txn| {
//!     metastore::create_snapshot(txn, Kind::Active, "layer-1", "", BTreeMap::new())?;
//!     metastore::commit_active(txn, "layer-1", "base", Default::default(), BTreeMap::new())
//! })?;
//! let (_, info, _) = metastore::get_info(&mut store.read()?, "base")?;
//! assert_eq!(info.kind, Kind::Committed);
//! # Ok::<(), strata_snapshots::Error>(())
//! ```

#![deny(missing_docs)]

mod error;
mod filter;
pub mod grpc;
mod info;
pub mod metastore;
mod mount;
mod schema;
mod snapshotter;

pub use crate::error::{Error, Result};
pub use crate::filter::Filters;
pub use crate::info::{Info, Kind, Snapshot, Usage};
pub use crate::mount::{Mount, unmount};
pub use crate::snapshotter::Snapshotter;
