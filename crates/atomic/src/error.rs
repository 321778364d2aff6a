//! Errors of the atomic writer: payloads refused before anything changed, and failures of
//! opening a target or of a write.
//!
//! This is not where exit codes live: only the CLI maps these errors to its own codes.

use std::io;
use std::path::PathBuf;

/// Why a payload was refused; nothing on disk has changed when a write returns one.
///
/// Paths are the payload's keys as given, quoted, so an empty or odd one stays visible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The path is empty, or cleans to nothing (`.`, `./.`).
    #[error("payload path {path:?}: must not be empty")]
    Empty {
        /// The path as given.
        path: PathBuf,
    },
    /// The path starts with `/`.
    #[error("payload path {path:?}: must be relative")]
    Absolute {
        /// The path as given.
        path: PathBuf,
    },
    /// The path holds a NUL byte, which no file name can hold.
    #[error("payload path {path:?}: must not contain a NUL byte")]
    Nul {
        /// The path as given.
        path: PathBuf,
    },
    /// The path is longer than [`MAX_PATH_LEN`](crate::MAX_PATH_LEN) bytes.
    #[error("payload path {path:?}: {len} bytes, more than the limit of {limit}")]
    TooLong {
        /// The path as given.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// One element of the path is longer than [`MAX_ELEMENT_LEN`](crate::MAX_ELEMENT_LEN) bytes.
    #[error("payload path {path:?}: an element of {len} bytes, more than the limit of {limit}")]
    ElementTooLong {
        /// The path as given.
        path: PathBuf,
        /// The length of the longest element in bytes.
        len: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// An element of the path is `..`.
    #[error("payload path {path:?}: must not contain a `..` element")]
    ParentElement {
        /// The path as given.
        path: PathBuf,
    },
    /// The first element of the clean path starts with `..`, a name the writer reserves.
    #[error("payload path {path:?}: must not start with `..`, which the writer reserves")]
    Reserved {
        /// The path as given.
        path: PathBuf,
    },
    /// Two keys of the payload clean to the same path.
    #[error("payload path {path:?}: names the same file as {other:?}")]
    Duplicate {
        /// One of the two keys as given.
        path: PathBuf,
        /// The other key as given.
        other: PathBuf,
    },
    /// A path is a file and also a parent directory of another path of the payload.
    #[error("payload path {path:?}: is a file and also a directory of {other:?}")]
    FileIsDirectory {
        /// The clean path of the file.
        path: PathBuf,
        /// The clean path of a file under it.
        other: PathBuf,
    },
    /// The mode has bits outside the permission bits `0o777`.
    #[error("payload path {path:?}: mode {mode:#o} has bits outside 0o777")]
    Mode {
        /// The path as given.
        path: PathBuf,
        /// The mode given.
        mode: u32,
    },
}

/// Everything opening a target or writing to it can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The payload was refused before anything on disk changed.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The target directory does not exist; the writer does not create it.
    #[error("{}: target directory not found", .path.display())]
    TargetNotFound {
        /// The target directory.
        path: PathBuf,
    },
    /// The target exists but is not a directory.
    #[error("{}: target is not a directory", .path.display())]
    TargetNotADirectory {
        /// The target.
        path: PathBuf,
    },
    /// Another writer, in this process or another one, holds the target's lock file.
    #[error("{}: locked by another writer", .path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A user-visible name the payload needs is taken by something the writer did not make.
    #[error("{}: exists and is not a link into ..data; refusing to replace it", .path.display())]
    Occupied {
        /// The taken name in the target.
        path: PathBuf,
    },
    /// The writer's own entries are not in a shape it ever leaves them in.
    #[error("{}: {reason}", .path.display())]
    Corrupted {
        /// The entry in the target.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An earlier fsync failed, so what is on disk is unknown; the writer refuses to write
    /// until the target is opened again.
    #[error("{}: writer poisoned by an earlier failed sync ({cause}); open the target again", .path.display())]
    Poisoned {
        /// The target directory.
        path: PathBuf,
        /// The error of the failed sync.
        cause: String,
    },
    /// A file system operation failed.
    #[error("{}: {op}", .path.display())]
    Io {
        /// What was being done, such as `create directory`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error of the operation.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        use strata_error::Category;
        Some(match self {
            Error::Payload(_) => Category::InvalidArgument,
            Error::TargetNotFound { .. } => Category::NotFound,
            Error::Corrupted { .. } => Category::Corrupted,
            Error::TargetNotADirectory { .. }
            | Error::Locked { .. }
            | Error::Occupied { .. }
            | Error::Poisoned { .. } => Category::FailedPrecondition,
            _ => return None,
        })
    }
}

impl strata_error::Categorized for PayloadError {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(strata_error::Category::InvalidArgument)
    }
}
