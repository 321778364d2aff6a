//! The hub's errors, each with the category transports map to a status or exit code.

pub use strata_kv::Category;

/// Everything the hub's model, sync, server and client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named object does not exist (or the caller may not see it).
    #[error("{0}")]
    NotFound(String),
    /// The object exists already with other contents.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed: a bad name, a bad id, bad JSON.
    #[error("{0}")]
    InvalidArgument(String),
    /// The state does not allow the request (extend off a tip, delete of a parent, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A branch was changed on both sides since they were last synced.
    #[error("history diverged: {0}; pull (or sync) first, or fork a new branch")]
    Diverged(String),
    /// A snapshot already has a different blob (the compare-and-swap rule).
    #[error("already have blob: snapshot {snapshot} has blob {have}, not {offered}")]
    AlreadyHaveBlob {
        /// The snapshot.
        snapshot: String,
        /// Its blob.
        have: String,
        /// The blob that was offered.
        offered: String,
    },
    /// The bearer token is missing, unknown or revoked (here, or on the remote hub).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The KV layer failed.
    #[error(transparent)]
    Kv(#[from] strata_kv::Error),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(String),
    /// A volume's files or blobs could not be read, written or applied.
    #[error(transparent)]
    Volume(#[from] strata_volume::Error),
    /// A file or socket operation failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause (in the message, not repeated as a source).
        cause: std::io::Error,
    },
    /// A stored record or a server answer could not be decoded.
    #[error("corrupted: {0}")]
    Corrupted(String),
    /// The remote hub could not be reached or answered with a server error.
    #[error("hub unavailable: {0}")]
    Unavailable(String),
    /// The remote hub rejected a request.
    #[error("hub answered {status}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The error message from the body.
        message: String,
    },
}

/// The hub's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// What a caller can do about the error.
    pub fn category(&self) -> Category {
        match self {
            Error::NotFound(_) => Category::NotFound,
            Error::AlreadyExists(_) => Category::AlreadyExists,
            Error::InvalidArgument(_) => Category::InvalidArgument,
            Error::Unauthorized(_) => Category::Unauthenticated,
            Error::FailedPrecondition(_) | Error::Diverged(_) | Error::AlreadyHaveBlob { .. } => {
                Category::FailedPrecondition
            }
            Error::Kv(err) => err.category(),
            Error::Volume(err) => err.category(),
            Error::Blob(_) | Error::Io { .. } | Error::Unavailable(_) => Category::Unavailable,
            Error::Corrupted(_) => Category::Corrupted,
            Error::Rejected { status, .. } => match status {
                401 => Category::Unauthenticated,
                400 | 422 => Category::InvalidArgument,
                404 => Category::NotFound,
                409 => Category::FailedPrecondition,
                _ => Category::Unavailable,
            },
        }
    }

    /// The HTTP status the server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Unauthorized(_) => 401,
            Error::Rejected { status, .. } => *status,
            _ => match self.category() {
                Category::NotFound => 404,
                Category::AlreadyExists | Category::FailedPrecondition | Category::Conflict => 409,
                Category::InvalidArgument => 400,
                Category::Unauthenticated => 401,
                Category::Corrupted => 500,
                _ => 503,
            },
        }
    }

    pub(crate) fn blob(err: impl std::fmt::Display) -> Error {
        Error::Blob(err.to_string())
    }

    pub(crate) fn io(what: impl Into<String>, cause: std::io::Error) -> Error {
        Error::Io { what: what.into(), cause }
    }
}

impl strata_kv::AsConflict for Error {
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Kv(err) if err.is_conflict())
    }
}

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(Error::category(self))
    }
}
