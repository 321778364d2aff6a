//! The error seam every strata library shares.
//!
//! A [`Category`] says what a caller can do about an error: retry it (`Conflict`,
//! `Unavailable`), fix the request (`InvalidArgument`, `NotFound`, ...), get a credential
//! that is accepted (`Unauthenticated`), or stop and repair (`Corrupted`). Every library's error type implements [`Categorized`]; transports (the
//! CLI's exit codes, gRPC and HTTP status codes) map categories to their own codes and know
//! nothing else of the libraries' errors.
//!
//! This crate depends on nothing, so a library can name categories without compiling any
//! other part of strata.

#![deny(missing_docs)]

use std::fmt;

/// The small fixed set of error categories all strata parts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Category {
    /// The named thing does not exist.
    NotFound,
    /// The named thing exists already.
    AlreadyExists,
    /// The request is malformed or names something of the wrong kind.
    InvalidArgument,
    /// The request is well formed but the current state does not allow it.
    FailedPrecondition,
    /// A concurrent transaction changed what this one read; retrying may succeed.
    Conflict,
    /// A server or engine could not be reached or refused service; retrying later may succeed.
    Unavailable,
    /// Stored data is not what strata wrote.
    Corrupted,
    /// A token or other credential was missing, unknown or revoked: the request may succeed
    /// with one the server accepts (HTTP 401, gRPC `UNAUTHENTICATED`).
    Unauthenticated,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Category::NotFound => "not found",
            Category::AlreadyExists => "already exists",
            Category::InvalidArgument => "invalid argument",
            Category::FailedPrecondition => "failed precondition",
            Category::Conflict => "conflict",
            Category::Unavailable => "unavailable",
            Category::Corrupted => "corrupted",
            Category::Unauthenticated => "unauthenticated",
        })
    }
}

/// An error that knows its [`Category`]: every strata library's error type.
pub trait Categorized: std::error::Error {
    /// The category callers and transports act on; `None` when none fits (an unexpected
    /// I/O failure, say), which transports treat as a plain failure.
    fn error_category(&self) -> Option<Category>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_read_as_words() {
        assert_eq!(Category::FailedPrecondition.to_string(), "failed precondition");
        assert_eq!(Category::Unavailable.to_string(), "unavailable");
        assert_eq!(Category::Unauthenticated.to_string(), "unauthenticated");
    }
}
