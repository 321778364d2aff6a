//! Exit codes: one per error category, so scripts can tell "not found" from "try again".

use std::process::ExitCode;

use strata_kv::Category;

/// The exit codes `strata` uses, as documented in `strata --help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  invalid arguments or configuration
  3  not found
  4  already exists
  5  failed precondition (the current state does not allow the request)
  6  conflict (a concurrent change won; retrying may succeed)
  7  unavailable (a server or engine could not be reached; retry later)
  8  corrupted data";

/// A failure the command itself detects, with its category (a key that is absent, say).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    pub(crate) category: Category,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn not_found(what: impl std::fmt::Display) -> anyhow::Error {
        anyhow::Error::new(Failure {
            category: Category::NotFound,
            message: format!("{what}: not found"),
        })
    }
}

/// The category of the first error in the chain that has one.
pub(crate) fn category(err: &anyhow::Error) -> Option<Category> {
    err.chain().find_map(|cause| {
        if let Some(kv) = cause.downcast_ref::<strata_kv::Error>() {
            return Some(kv.category());
        }
        if let Some(snapshots) = cause.downcast_ref::<strata_snapshots::Error>() {
            return Some(snapshots.category());
        }
        if let Some(tlog) = cause.downcast_ref::<strata_tlog::Error>() {
            return Some(tlog.category());
        }
        if let Some(nbd) = cause.downcast_ref::<strata_nbd::Error>() {
            return Some(nbd.category());
        }
        if let Some(hub) = cause.downcast_ref::<strata_hub::Error>() {
            return Some(hub.category());
        }
        if let Some(atomic) = cause.downcast_ref::<strata_atomic::Error>() {
            return atomic_category(atomic);
        }
        if cause.downcast_ref::<strata_atomic::PayloadError>().is_some() {
            return Some(Category::InvalidArgument);
        }
        cause.downcast_ref::<Failure>().map(|f| f.category)
    })
}

/// The atomic writer knows nothing of categories (it depends on no other part of strata).
fn atomic_category(err: &strata_atomic::Error) -> Option<Category> {
    use strata_atomic::Error as E;
    Some(match err {
        E::Payload(_) => Category::InvalidArgument,
        E::TargetNotFound { .. } => Category::NotFound,
        E::Corrupted { .. } => Category::Corrupted,
        E::TargetNotADirectory { .. }
        | E::Locked { .. }
        | E::Occupied { .. }
        | E::Poisoned { .. } => Category::FailedPrecondition,
        _ => return None,
    })
}

pub(crate) fn code_for(err: &anyhow::Error) -> ExitCode {
    let code = match category(err) {
        Some(Category::InvalidArgument) => 2,
        Some(Category::NotFound) => 3,
        Some(Category::AlreadyExists) => 4,
        Some(Category::FailedPrecondition) => 5,
        Some(Category::Conflict) => 6,
        Some(Category::Unavailable) => 7,
        Some(Category::Corrupted) => 8,
        _ if err.chain().any(|c| c.downcast_ref::<crate::config::ConfigError>().is_some()) => 2,
        _ => 1,
    };
    ExitCode::from(code)
}

/// Output cut short by a closed pipe (`strata kv ls | head`) is not a failure.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
