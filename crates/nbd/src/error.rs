//! The errors of the vdisk layer and the NBD server, each in one `strata_kv::Category`.

use strata_kv::Category;

/// What went wrong, in words that say what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is not valid (a name, a size, a bound).
    #[error("{0}")]
    InvalidArgument(String),
    /// The vdisk does not exist.
    #[error("vdisk {0:?} does not exist (see `strata vdisk ls`)")]
    NotFound(String),
    /// A vdisk with this name exists already.
    #[error("vdisk {0:?} exists already (pick another name or `strata vdisk rm` it first)")]
    AlreadyExists(String),
    /// The operation cannot run now (for example the vdisk is being served).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The record store or the tlog cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A stored record cannot be decoded.
    #[error(
        "vdisk record {key}: {message} (the record is damaged; remove it with `strata kv del`)"
    )]
    Corrupted {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// An error of the kv layer.
    #[error("vdisk records: {0}")]
    Kv(strata_kv::Error),
    /// An error of the tlog (client, storage or player).
    #[error("tlog: {0}")]
    Tlog(strata_tlog::Error),
    /// An error of the blob store (a base snapshot's blobs).
    #[error("blobs: {0}")]
    Volume(strata_volume::Error),
    /// A file operation failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause (in the message, not repeated as a source).
        cause: std::io::Error,
    },
}

impl From<strata_kv::Error> for Error {
    fn from(err: strata_kv::Error) -> Error {
        Error::Kv(err)
    }
}

impl From<strata_tlog::Error> for Error {
    fn from(err: strata_tlog::Error) -> Error {
        Error::Tlog(err)
    }
}

impl From<strata_volume::Error> for Error {
    fn from(err: strata_volume::Error) -> Error {
        Error::Volume(err)
    }
}

impl Error {
    /// The category transports map to their codes.
    pub fn category(&self) -> Category {
        match self {
            Error::InvalidArgument(_) => Category::InvalidArgument,
            Error::NotFound(_) => Category::NotFound,
            Error::AlreadyExists(_) => Category::AlreadyExists,
            Error::FailedPrecondition(_) => Category::FailedPrecondition,
            Error::Unavailable(_) | Error::Io { .. } => Category::Unavailable,
            Error::Corrupted { .. } => Category::Corrupted,
            Error::Kv(e) => e.category(),
            Error::Tlog(e) => e.category(),
            Error::Volume(e) => e.category(),
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |cause| Error::Io { what, cause }
    }
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(Error::category(self))
    }
}
