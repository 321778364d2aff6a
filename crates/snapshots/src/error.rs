//! Errors of the snapshot metastore and snapshotter, each with its category.

use std::path::PathBuf;

use strata_kv::Category;

/// Everything a snapshot operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named snapshot (or parent) does not exist.
    #[error("snapshot {0}: not found")]
    NotFound(String),
    /// A snapshot with that key or name exists already.
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    /// The request is malformed: a wrong kind, an invalid filter or label path, a bad key.
    #[error("{0}")]
    InvalidArgument(String),
    /// The snapshot is not in a state that allows the request (committing a view, removing
    /// a parent, getting the mounts of a committed snapshot).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A stored record could not be decoded.
    #[error("snapshot metadata corrupted: {0}")]
    Corrupted(String),
    /// The KV layer failed.
    #[error(transparent)]
    Kv(#[from] strata_kv::Error),
    /// A filesystem operation of the snapshotter failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// What the operating system said (in the message, not repeated as a source).
        cause: std::io::Error,
    },
}

impl Error {
    /// The category transports map to their codes.
    pub fn category(&self) -> Category {
        match self {
            Error::NotFound(_) => Category::NotFound,
            Error::AlreadyExists(_) => Category::AlreadyExists,
            Error::InvalidArgument(_) => Category::InvalidArgument,
            Error::FailedPrecondition(_) => Category::FailedPrecondition,
            Error::Corrupted(_) => Category::Corrupted,
            Error::Kv(err) => err.category(),
            Error::Io { .. } => Category::Unavailable,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |cause| Error::Io { path, cause }
    }
}

impl strata_kv::AsConflict for Error {
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Kv(err) if err.is_conflict())
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(Error::category(self))
    }
}
