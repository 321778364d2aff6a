//! Errors of the checkpoint service and its client, each with a [`Category`].
//!
//! This is not where HTTP status codes are chosen: the server's `service` module maps an
//! error to a status, and the client maps a status back to [`Error::Rejected`].

use strata_kv::Category;

/// Everything the checkpoint service, its configuration and its client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: a missing or invalid header, transaction id or path.
    #[error("{0}")]
    InvalidRequest(String),
    /// The HTTP method is none of HEAD, GET, PUT, DELETE, POST.
    #[error("method {0}: not allowed (HEAD, GET, PUT, DELETE, POST are)")]
    MethodNotAllowed(String),
    /// The request body is larger than `max_body_bytes`.
    #[error("request body: larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request body did not arrive within the idle timeout, or broke off.
    #[error("request body: {0}")]
    BodyIncomplete(String),
    /// The storage URL is not on an object store of `storage_hosts`.
    #[error(
        "storage url {url}: not on an object store this service is configured for \
         (ckpt.storage_hosts, StorageHosts in [ICKPT])"
    )]
    StorageUrlNotAllowed {
        /// The storage URL of the request.
        url: String,
    },
    /// `authorization = "container"` and the storage URL names no object in a container.
    #[error("storage url {url}: names no object in a container (/v1/ACCOUNT/CONTAINER/OBJECT)")]
    NoContainer {
        /// The storage URL of the request.
        url: String,
    },
    /// The request has no token, or the object store refused it (401).
    #[error("storage url {url}: unauthorized ({reason})")]
    Unauthorized {
        /// The storage URL of the request.
        url: String,
        /// "no X-Auth-Token" or "the object store answered 401".
        reason: &'static str,
    },
    /// The object store accepted the token but denied access to the object (403).
    #[error("storage url {url}: forbidden by the object store")]
    Forbidden {
        /// The storage URL of the request.
        url: String,
    },
    /// The object store has no object at the storage URL (404).
    #[error("storage url {url}: no such object in the object store")]
    ObjectNotFound {
        /// The storage URL of the request.
        url: String,
    },
    /// The object store answered with a status the protocol gives no meaning to.
    #[error("storage url {url}: the object store answered {status}")]
    StoreRefused {
        /// The storage URL of the request.
        url: String,
        /// The store's status code.
        status: u16,
    },
    /// The object at the storage URL is larger than the service returns.
    #[error("storage url {url}: the object is larger than the limit of {limit} bytes")]
    ObjectTooLarge {
        /// The storage URL of the request.
        url: String,
        /// The configured limit, `max_body_bytes`.
        limit: usize,
    },
    /// The object store could not be reached, or kept failing, through every retry.
    #[error("storage url {url}: object store unavailable after {attempts} attempts: {cause}")]
    StoreUnavailable {
        /// The storage URL of the request.
        url: String,
        /// How many requests were made.
        attempts: u32,
        /// What went wrong the last time.
        cause: String,
    },
    /// A POST names a transaction with no staged change: never staged, expired, or
    /// committed already.
    #[error("transaction {txid}: {reason}")]
    NoStagedChange {
        /// The transaction id of the POST.
        txid: String,
        /// Which of the cases it is, as far as the service knows.
        reason: &'static str,
    },
    /// Staged changes already hold `max_staged_bytes`; retry after some commit or expire.
    #[error("staging is full ({limit} bytes of staged changes); retry later")]
    StagingFull {
        /// The configured limit.
        limit: usize,
    },
    /// The KV layer failed to read or commit.
    #[error("kv: {0}")]
    Kv(strata_kv::Error),
    /// A committed record in the KV store is not what this service wrote.
    #[error("committed value of {url}: {reason}")]
    Corrupted {
        /// The storage URL whose record is bad.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is invalid or cannot be read.
    #[error("ckpt config: {0}")]
    Config(String),
    /// TLS material could not be loaded or a TLS configuration not built.
    #[error("tls: {0}")]
    Tls(String),
    /// A socket could not be bound or another I/O step failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause (in the message, not repeated as a source).
        cause: std::io::Error,
    },
    /// The checkpoint server could not be reached by the client.
    #[error("ckpt server {server}: {cause}")]
    ServerUnreachable {
        /// The server's URL.
        server: String,
        /// What went wrong.
        cause: String,
    },
    /// The checkpoint server answered the client with an error status.
    #[error("ckpt server: {status}: {message}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// The server's message, its response body.
        message: String,
    },
}

impl Error {
    /// The category callers and transports act on.
    pub fn category(&self) -> Category {
        match self {
            Error::InvalidRequest(_)
            | Error::StorageUrlNotAllowed { .. }
            | Error::NoContainer { .. }
            | Error::MethodNotAllowed(_)
            | Error::BodyTooLarge { .. }
            | Error::BodyIncomplete(_)
            | Error::Config(_)
            | Error::Tls(_) => Category::InvalidArgument,
            Error::Forbidden { .. } | Error::NoStagedChange { .. } => Category::FailedPrecondition,
            Error::StoreRefused { .. } | Error::ObjectTooLarge { .. } => {
                Category::FailedPrecondition
            }
            Error::ObjectNotFound { .. } => Category::NotFound,
            Error::Unauthorized { .. } => Category::Unauthenticated,
            Error::StoreUnavailable { .. }
            | Error::StagingFull { .. }
            | Error::Io { .. }
            | Error::ServerUnreachable { .. } => Category::Unavailable,
            Error::Kv(err) => err.category(),
            Error::Corrupted { .. } => Category::Corrupted,
            Error::Rejected { status, .. } => category_of_status(*status),
        }
    }

    /// The HTTP status of a [`Error::Rejected`], for clients that act on it.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The category of an error status the service answers with; the inverse of the
/// service's mapping as far as a status can tell.
fn category_of_status(status: u16) -> Category {
    match status {
        401 => Category::Unauthenticated,
        404 => Category::NotFound,
        403 | 409 | 500 | 502 => Category::FailedPrecondition,
        503 | 504 => Category::Unavailable,
        _ => Category::InvalidArgument,
    }
}

impl From<strata_kv::Error> for Error {
    fn from(err: strata_kv::Error) -> Error {
        Error::Kv(err)
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
