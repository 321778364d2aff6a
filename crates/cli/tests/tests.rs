//! End-to-end tests of the `strata` binary, run as a separate process the way users run it.

mod ckpt;
mod errors;
mod hub;
mod kv;
mod project;
mod serve;
mod snapshot;
mod tidy;
mod tlog;
mod util;
mod vdisk;
