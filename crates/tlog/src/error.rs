//! Errors of the tlog, each with its category.

use std::path::PathBuf;

use strata_error::Category;

/// Everything a tlog operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A Cap'n Proto message could not be decoded.
    #[error("malformed message: {0}")]
    Decode(capnp::Error),
    /// The server refused the handshake.
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// A request or configuration is not valid.
    #[error("{0}")]
    InvalidArgument(String),
    /// A vdisk, aggregate or key was not found.
    #[error("{0}: not found")]
    NotFound(String),
    /// Stored data is damaged: a hash, chain link, decryption or frame check failed.
    #[error("tlog data corrupted: {0}")]
    Corrupted(String),
    /// An append named a `prev` that is no longer the head: another writer appended since
    /// this one read the head (a fenced, stale writer). Nothing was made head.
    #[error("stale writer: {0}")]
    StaleHead(String),
    /// A server could not be reached, or a flush failed.
    #[error("{0}")]
    Unavailable(String),
    /// A file operation failed.
    #[error("{}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, not repeated as a source).
        cause: std::io::Error,
    },
    /// A network operation failed.
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

impl From<capnp::Error> for Error {
    fn from(err: capnp::Error) -> Error {
        Error::Decode(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::Io(err)
    }
}

impl Error {
    /// The category transports map to their codes.
    pub fn category(&self) -> Category {
        match self {
            Error::Protocol(_) | Error::Decode(_) | Error::InvalidArgument(_) => {
                Category::InvalidArgument
            }
            Error::Handshake(_) | Error::StaleHead(_) => Category::FailedPrecondition,
            Error::NotFound(_) => Category::NotFound,
            Error::Corrupted(_) => Category::Corrupted,
            Error::Unavailable(_) | Error::Io(_) | Error::File { .. } => Category::Unavailable,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |cause| Error::File { path, cause }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(Error::category(self))
    }
}
