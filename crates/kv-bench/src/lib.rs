//! The harness strata's benchmark binaries share: timing loops and their summaries, the
//! disk's floor, running the Go peers, and the markdown tables the reports are made of.
//!
//! It is not a benchmark itself: `strata-kv-bench` (this package's binary) and
//! `strata-snapshots-bench` (crates/snapshots-bench) measure with it and print their own
//! reports. Nothing here knows about a particular store.
//!
//! # Brief overview
//!
//! - [`measure`]: [`measure::Summary`] (median, p99, time per operation, rate) and the
//!   fixed-duration loops that produce it, from one thread or many.
//! - [`go`]: runs a compiled Go test binary's benchmarks or a Go peer program and reads its
//!   results.
//! - [`table`]: markdown rows, durations and rates formatted alike, PASS/MISS marks.
//! - [`disk`]: how long a 4 KiB write plus `fdatasync` takes where the files are.
//! - [`cli`]: the progress lines and exit handling both binaries use.

#![deny(missing_docs)]

pub mod cli;
pub mod disk;
pub mod go;
pub mod measure;
pub mod table;
