//! Prometheus metrics and health endpoints for strata's servers.
//!
//! The libraries record what they do through the [`metrics`] facade (`counter!`,
//! `histogram!`), which costs next to nothing while no recorder is installed. A serving
//! process that is asked to export binds an [`Endpoint`]: it installs the Prometheus
//! recorder once per process, with the histogram buckets the [`CATALOG`] gives each metric
//! (durations start at 50 µs), and serves over HTTP/1 on the shell every strata server
//! shares (`strata-net`):
//!
//! - `GET /metrics`: every series recorded so far, in Prometheus text format 0.0.4;
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 while [`Health`] says every service of the process is bound and
//!   serving, 503 before that and once it is stopping.
//!
//! # Brief overview
//!
//! - [`CATALOG`]: every `strata_*` metric with its type, labels and meaning (documented in
//!   `docs/operations.md`, which a test checks);
//! - [`Endpoint`]: the bound HTTP endpoint; [`Endpoint::run`] serves it until shutdown;
//! - [`Health`]: the readiness a process reports;
//! - [`MetricsConfig`]: `[metrics]` in `strata.toml`.
//!
//! This crate records nothing itself, and knows nothing of what the servers do.
//!
//! ```
//! # async fn example() -> strata_metrics::Result<()> {
//! let endpoint = strata_metrics::Endpoint::bind("127.0.0.1:0".parse().unwrap()).await?;
//! let health = endpoint.health();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let served = tokio::spawn(endpoint.run(async {
//!     let _ = stopped.await;
//! }));
//! // A library records where the work happens; GET /metrics shows it from now on.
//! metrics::counter!("strata_ckpt_requests_total", "method" => "GET", "code" => "200").increment(1);
//! health.set_ready(true); // every service serves: /readyz answers 200
//! health.set_ready(false); // stopping: 503 again
//! let _ = stop.send(());
//! let _ = served.await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod catalog;
mod config;
mod endpoint;
mod recorder;

pub use crate::catalog::{Buckets, CATALOG, Kind, Metric};
pub use crate::config::{DEFAULT_LISTEN, MetricsConfig, parse_listen};
pub use crate::endpoint::{Endpoint, Health};
pub use crate::recorder::install;

/// What can go wrong setting up the endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configured address is neither `HOST:PORT` nor `off`.
    #[error("metrics.listen {0:?}: not an address (IP:PORT) nor \"off\"")]
    InvalidListen(String),
    /// The address could not be bound.
    #[error("metrics: listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another metrics recorder was installed in this process before strata's.
    #[error("metrics: another recorder is installed already: {0}")]
    Recorder(String),
}

impl strata_error::Categorized for Error {
    fn error_category(&self) -> Option<strata_error::Category> {
        Some(match self {
            Error::InvalidListen(_) => strata_error::Category::InvalidArgument,
            Error::Bind { .. } => strata_error::Category::Unavailable,
            Error::Recorder(_) => strata_error::Category::FailedPrecondition,
        })
    }
}

/// A result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
