//! Block volumes: the blob of a vdisk snapshot, made from the changes written to a disk and
//! applied, as a chain, to make a disk image.
//!
//! A block blob is one zstd frame holding a header, a sorted table of extents (data or zero)
//! and the data of the data extents; the layout is in `docs/design/block-volumes.md`.
//! [`BlockDiff`] gathers changes (in memory only as an interval map; data goes to a sparse
//! scratch file) and streams the blob into a [`BlobStore`](crate::BlobStore);
//! [`materialize_disk`] checks every blob of a chain as it applies it to a sparse image.
//!
//! This module knows nothing of tlogs, NBD or hubs: it makes and applies blobs.

mod diff;
mod format;
mod materialize;

pub use crate::block::diff::{BlockBlob, BlockDiff};
pub use crate::block::format::BlockHeader;
pub use crate::block::materialize::{block_header, materialize_disk};
