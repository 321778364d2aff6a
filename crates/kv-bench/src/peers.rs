//! The Go peers, run as child processes in the same run: containerd's metastore benchmark
//! `WriteTransaction` on bbolt, and `boltupdate` (bench/go), which commits small bbolt
//! transactions from many goroutines.
//!
//! scripts/bench-kv builds both with Debian's Go and Go sources and passes their paths; this
//! module only runs them and reads their output.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::measure::Summary;

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
    let output = Command::new(test_binary)
        .args(["-test.run", "X", "-test.bench", "Suite/WriteTransaction$"])
        .arg(format!("-test.benchtime={}ms", duration.as_millis()))
        .output()
        .with_context(|| format!("run {}", test_binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{stdout}{}",
            test_binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (count, ns_per_op) = go_result(&stdout, "WriteTransaction")
        .with_context(|| format!("no WriteTransaction result in:\n{stdout}"))?;
    let elapsed = Duration::from_secs_f64(count as f64 * ns_per_op / 1e9);
    Ok(Summary { count, elapsed, p50: None, p99: None })
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
    let output = command.output().with_context(|| format!("run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let run: BoltRun = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parse the output of {}", binary.display()))?;
    Ok(Summary {
        count: run.commits,
        elapsed: Duration::from_secs_f64(run.seconds),
        p50: Some(Duration::from_nanos(run.p50_ns)),
        p99: Some(Duration::from_nanos(run.p99_ns)),
    })
}

/// What `boltupdate` prints.
#[derive(Debug, Deserialize)]
struct BoltRun {
    commits: u64,
    seconds: f64,
    p50_ns: u64,
    p99_ns: u64,
}

/// The operation count and `ns/op` of benchmark `name` in `go test -bench` output, whose
/// result lines read `BenchmarkSuite/WriteTransaction-2   3652   546594 ns/op`.
fn go_result(output: &str, name: &str) -> Option<(u64, f64)> {
    output.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [bench, count, ns, "ns/op", ..] if bench.contains(name) => {
                Some((count.parse().ok()?, ns.parse().ok()?))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_bench_output() {
        let output = "goos: linux\n\
            BenchmarkSuite/WriteTransaction-2   \t    3652\t    546594 ns/op\n\
            PASS\n";
        assert_eq!(go_result(output, "WriteTransaction"), Some((3652, 546594.0)));
        assert_eq!(go_result(output, "ReadTransaction"), None);
    }
}
