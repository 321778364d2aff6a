//! The errors of block volumes: those of the parts they join, and their own, each in one
//! category.

use strata_error::{Categorized, Category};

/// What went wrong, in words that say what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is not valid (a volume set of another kind, an ambiguous name).
    #[error("{0}")]
    InvalidArgument(String),
    /// No such snapshot or volume set.
    #[error("{0}")]
    NotFound(String),
    /// The operation cannot run in the present state (a blob not pulled, a disk not
    /// closed cleanly).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The hub's records.
    #[error(transparent)]
    Hub(#[from] strata_hub::Error),
    /// The vdisk records or images.
    #[error(transparent)]
    Nbd(#[from] strata_nbd::Error),
    /// The tlog.
    #[error("tlog: {0}")]
    Tlog(#[from] strata_tlog::Error),
    /// The blob store.
    #[error("blobs: {0}")]
    Volume(#[from] strata_volume::Error),
}

impl Error {
    /// The category transports map to their codes.
    pub fn category(&self) -> Category {
        match self {
            Error::InvalidArgument(_) => Category::InvalidArgument,
            Error::NotFound(_) => Category::NotFound,
            Error::FailedPrecondition(_) => Category::FailedPrecondition,
            Error::Hub(e) => e.category(),
            Error::Nbd(e) => e.category(),
            Error::Tlog(e) => e.category(),
            Error::Volume(e) => e.category(),
        }
    }
}

impl Categorized for Error {
    fn error_category(&self) -> Option<Category> {
        Some(Error::category(self))
    }
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
