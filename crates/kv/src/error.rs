//! Errors of the KV layer and the categories every strata part shares.
//!
//! This is not where transports live: only the CLI, gRPC and HTTP layers map a
//! [`Category`] to an exit code or a status code.

pub use strata_error::Category;

/// Everything a KV operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another transaction committed a change to something this transaction read.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The request cannot be carried out as given (a key that is too long, a transaction
    /// larger than the engine allows, a write in a read-only transaction).
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing to be made exists already (a backup's file).
    #[error("{0}")]
    AlreadyExists(String),
    /// The engine could not be reached or is shutting down.
    #[error("kv engine unavailable: {0}")]
    Unavailable(String),
    /// The store failed to make a commit durable earlier; it refuses writes until reopened.
    #[error("kv store is poisoned by an earlier failed commit ({0}); reopen it")]
    Poisoned(String),
    /// Stored data could not be decoded.
    #[error("kv store corrupted: {0}")]
    Corrupted(String),
    /// The embedded engine failed (I/O error, file locked by another process, ...).
    #[error("redb: {0}")]
    Redb(String),

    /// Another process has the redb file open (redb allows one at a time).
    #[error("{0}")]
    Busy(String),
    /// The etcd engine answered with an error.
    #[error("etcd: {0}")]
    Etcd(String),
}

impl Error {
    /// The category callers and transports act on.
    pub fn category(&self) -> Category {
        match self {
            Error::Conflict(_) => Category::Conflict,
            Error::InvalidArgument(_) => Category::InvalidArgument,
            Error::AlreadyExists(_) => Category::AlreadyExists,
            Error::Unavailable(_) | Error::Etcd(_) | Error::Busy(_) => Category::Unavailable,
            Error::Poisoned(_) | Error::Redb(_) => Category::FailedPrecondition,
            Error::Corrupted(_) => Category::Corrupted,
        }
    }

    /// True when retrying the whole transaction may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}

macro_rules! redb_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(err: $ty) -> Error {
                Error::Redb(err.to_string())
            }
        }
    )*};
}

redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(Error::category(self))
    }
}
