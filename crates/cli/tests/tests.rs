//! End-to-end tests of the `strata` binary, run as a separate process the way users run it.

mod admin;
mod block;
mod ckpt;
mod errors;
mod generate;
mod hub;
mod kv;
mod logging;
mod metrics;
mod notify;
mod packaging;
mod project;
mod serve;
mod snapshot;
mod tidy;
mod tlog;
mod util;
mod vdisk;
