//! The Go peers, run as child processes in the same run: containerd's metastore benchmark
//! `WriteTransaction` on bbolt, and `boltupdate` (bench/go), which commits small bbolt
//! transactions from many goroutines.
//!
//! scripts/bench-kv builds both with Debian's Go and Go sources and passes their paths; this
//! module only says how to run them and what their output means.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_kv_bench::go;
use strata_kv_bench::measure::Summary;

/// How bbolt committed in one `boltupdate` run.
#[derive(Debug, Clone, Copy)]
pub enum BoltCommit {
    /// `DB.Update`: every transaction commits and syncs on its own.
    Update,
    /// `DB.Batch`: bbolt's own group commit, which gathers calls for up to 10 ms.
    Batch,
}

/// Runs containerd's `BenchmarkSuite/WriteTransaction` from its compiled test binary
/// (`go test -c github.com/containerd/containerd/snapshots/storage`) for about `duration`.
/// Go reports operations and `ns/op` only, so the summary has no percentiles.
pub fn containerd_write_transaction(
    test_binary: &Path,
    duration: Duration,
) -> anyhow::Result<Summary> {
    let benchtime = format!("{}ms", duration.as_millis());
    let output = go::run_benchmarks(test_binary, "Suite/WriteTransaction$", &benchtime)?;
    go::benchmark(&output, "Suite/WriteTransaction")
}

/// Runs `boltupdate` with `goroutines` committing for `duration`.
pub fn bolt_update(
    binary: &Path,
    goroutines: u32,
    duration: Duration,
    commit: BoltCommit,
) -> anyhow::Result<Summary> {
    let mut command = Command::new(binary);
    command
        .arg(format!("-goroutines={goroutines}"))
        .arg(format!("-duration={}ms", duration.as_millis()));
    if let BoltCommit::Batch = commit {
        command.arg("-batch");
    }
    Ok(go::run_peer::<go::PeerRun>(command)?.into())
}
