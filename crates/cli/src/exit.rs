//! Exit codes: one per error category, so scripts can tell "not found" from "try again".

use std::process::ExitCode;

use strata_error::{Categorized, Category};

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
  7  unavailable (a server or engine could not be reached, or an address is taken; retry
     later or choose another)
  8  corrupted data
  9  unauthenticated (a token or credential was refused)";

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
    err.chain().find_map(|cause| categorized_as(cause).flatten())
}

/// `Some(category)` when `cause` is one of strata's error types (which say their category
/// through [`Categorized`]), `None` when it is some other error.
fn categorized_as(cause: &(dyn std::error::Error + 'static)) -> Option<Option<Category>> {
    macro_rules! first_of {
        ($($error:ty),* $(,)?) => {
            $(if let Some(err) = cause.downcast_ref::<$error>() {
                return Some(err.error_category());
            })*
        };
    }
    first_of!(
        strata_kv::Error,
        strata_snapshots::Error,
        strata_tlog::Error,
        strata_nbd::Error,
        strata_hub::Error,
        strata_volume::Error,
        strata_ckpt::Error,
        strata_atomic::Error,
        strata_atomic::PayloadError,
        strata_atomic::SourceError,
    );
    cause.downcast_ref::<Failure>().map(|f| Some(f.category))
}

/// `err` as an `anyhow::Error` that keeps its category and message (for errors that cross
/// a boundary which would otherwise hide their type).
pub(crate) fn categorized<E: Categorized>(err: E) -> anyhow::Error {
    let category = err.error_category();
    match category {
        Some(category) => anyhow::Error::new(Failure { category, message: err.to_string() }),
        None => anyhow::anyhow!("{err}"),
    }
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
        Some(Category::Unauthenticated) => 9,
        _ if err.chain().any(|c| c.downcast_ref::<crate::config::ConfigError>().is_some()) => 2,
        _ if is_unavailable_io(err) => 7,
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

/// An I/O error that means a server cannot be had now (its address is taken, or a peer
/// refused or dropped the connection): exit code 7 (unavailable), like an error a library
/// categorizes so, whichever command met it.
fn is_unavailable_io(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::*;
    err.chain().filter_map(|cause| cause.downcast_ref::<std::io::Error>()).any(|io| {
        matches!(
            io.kind(),
            AddrInUse
                | AddrNotAvailable
                | ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | NotConnected
                | TimedOut
        )
    })
}

/// The message `strata` prints for `err`: its chain of causes joined by `: `, like `{:#}`,
/// but without a cause whose text the message already ends with (an error that displays
/// its source and also returns it from `source()` would otherwise print it twice).
pub(crate) fn message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.is_empty() {
            message = text;
        } else if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
