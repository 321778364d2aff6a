//! Volumes: a content-addressed blob store, filesystem snapshot diffs (added, changed and
//! deleted entries as a compressed tar) made from and applied to directories, and block
//! blobs (the changed extents of a disk) made from a disk's changes and applied to images.
//!
//! A filesystem volume is a plain directory. [`snapshot`] scans it ([`Manifest::scan_against`]), diffs
//! it against the manifest of the parent snapshot and streams the diff, as one
//! zstd-compressed tar, into a [`BlobStore`]; [`apply`] and [`materialize`] turn blobs back
//! into trees. The blob format is in `docs/design/volume.md`.
//!
//! A block volume is a disk image. [`BlockDiff`] gathers the writes and discards made to a
//! disk and streams them, as one zstd frame of header, extent table and data, into the same
//! store; [`materialize_disk`] applies a chain of them to a sparse image and
//! [`block_header`] reads one's header. The format is in `docs/design/block-volumes.md`.
//!
//! This crate knows nothing of hubs, remotes or snapshot names: it stores and applies
//! blobs, and the hub decides which chain of blobs makes a snapshot.

mod apply;
mod blob_id;
mod block;
mod error;
mod format;
mod fsutil;
mod manifest;
mod snapshot;
mod store;

pub use crate::apply::{apply, manifest_of, materialize};
pub use crate::blob_id::BlobId;
pub use crate::block::{BlockBlob, BlockDiff, BlockHeader, block_header, materialize_disk};
pub use crate::error::{Error, Result};
pub use crate::manifest::{Entry, Kind, Manifest, Stat};
pub use crate::snapshot::{Snapshotted, snapshot};
pub use crate::store::{BlobStore, BlobWriter};
