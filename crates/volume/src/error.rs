//! The error of every operation of this crate, each variant with a [`Category`].
//!
//! This is not where exit codes live: only transports map categories to codes.

use std::io;
use std::path::PathBuf;

use strata_error::Category;

use crate::blob_id::BlobId;

/// The result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a blob-store, scan, snapshot, apply, block diff or disk image operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation on `path` failed.
    #[error("{path}: {op}: {cause}")]
    Io {
        /// The file or directory operated on.
        path: PathBuf,
        /// What was being done, e.g. `open`, `rename into the blob store`.
        op: &'static str,
        /// The operating system's error (in the message, not repeated as a source).
        cause: io::Error,
    },
    /// A string is not a blob id (64 lowercase hex digits).
    #[error("blob id {id:?}: not 64 lowercase hex digits (a BLAKE3-256 hash)")]
    InvalidBlobId {
        /// The string as given.
        id: String,
    },
    /// The store holds no blob of this id.
    #[error("blob {id}: not in the blob store {store}; pull it from a remote first")]
    BlobNotFound {
        /// The id asked for.
        id: BlobId,
        /// The store's directory.
        store: PathBuf,
    },
    /// Bytes written for an expected blob id hash to another id; nothing was stored.
    #[error(
        "blob {expected}: the bytes received hash to {actual}; nothing was stored, fetch it again"
    )]
    BlobMismatch {
        /// The id the bytes were meant to have.
        expected: BlobId,
        /// The id they have.
        actual: BlobId,
    },
    /// A blob is truncated, corrupt, or not a volume diff; nothing was applied.
    #[error("blob {id}: corrupt: {reason}; remove it and fetch it again")]
    Corrupt {
        /// The blob.
        id: BlobId,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob holds an entry that `apply` refuses (a path escaping the directory, a hard link,
    /// a device); nothing was applied.
    #[error("blob {id}: entry {path:?} refused: {reason}")]
    Refused {
        /// The blob.
        id: BlobId,
        /// The entry's name in the tar, as found.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A file in a volume is of a kind a snapshot cannot hold (socket, fifo, device).
    #[error(
        "{path}: a {kind}, which a volume snapshot cannot hold; remove it or move it out of the volume"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Its kind.
        kind: &'static str,
    },
    /// A file name in a volume is not UTF-8.
    #[error("{path:?}: the name is not UTF-8, which volume snapshots require; rename it")]
    NonUtf8Name {
        /// The file.
        path: PathBuf,
    },
    /// A file shrank while it was being snapshotted.
    #[error("{path}: changed while being snapshotted; snapshot again when writers are quiet")]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// A change to a block diff reaches past the disk's size.
    #[error("a change of {len} bytes at offset {offset} ends past the disk's size of {size} bytes")]
    OutOfRange {
        /// Where the change starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The disk's size.
        size: u64,
    },
    /// A disk image was asked for from no blobs.
    #[error(
        "{image}: no block blobs to make the disk image from; give at least the root snapshot's"
    )]
    EmptyChain {
        /// The image that was to be made.
        image: PathBuf,
    },
    /// A directory in the volume's place on disk is not what the operation needs.
    #[error("{path}: {reason}")]
    BadDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },
}

impl Error {
    /// The category of this error, for transports to map to their codes.
    pub fn category(&self) -> Category {
        match self {
            Error::Io { cause, .. } if cause.kind() == io::ErrorKind::NotFound => {
                Category::NotFound
            }
            Error::Io { .. } => Category::Unavailable,
            Error::InvalidBlobId { .. }
            | Error::Refused { .. }
            | Error::OutOfRange { .. }
            | Error::EmptyChain { .. } => Category::InvalidArgument,
            Error::BlobNotFound { .. } => Category::NotFound,
            Error::BlobMismatch { .. } | Error::Corrupt { .. } => Category::Corrupted,
            Error::Unsupported { .. } | Error::NonUtf8Name { .. } | Error::BadDirectory { .. } => {
                Category::FailedPrecondition
            }
            Error::Changed { .. } => Category::Conflict,
        }
    }

    /// An [`Error::Io`] on `path`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |cause| Error::Io { path, op, cause }
    }
}

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(Error::category(self))
    }
}
