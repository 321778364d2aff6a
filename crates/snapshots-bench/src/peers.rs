//! The Go side, run as child processes in the same run: containerd's own metastore
//! `Benchmarks` on bolt (inside one transaction), and bench/go's snapbench (each operation
//! in a transaction of its own, from 1 or many goroutines).
//!
//! scripts/bench-snapshots builds both with Debian's Go and Go sources and passes their
//! paths; this module only says how to run them and what their output means.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_kv_bench::go::{self, Peer};
use strata_kv_bench::measure::Summary;

use crate::ops::{Op, PerOp};

/// Runs containerd's six operation benchmarks (`BenchmarkSuite/StatActive`, ...) from its
/// compiled test binary (`go test -c github.com/containerd/containerd/snapshots/storage`),
/// each for `count` operations (`-test.benchtime=<count>x`) inside one bolt transaction.
pub fn containerd_benchmarks(test_binary: &Path, count: u64) -> anyhow::Result<PerOp<Summary>> {
    let names: Vec<&str> = Op::ALL.iter().map(|op| op.go_name()).collect();
    let pattern = format!("Suite/^({})$", names.join("|"));
    let output = go::run_benchmarks(test_binary, &pattern, &format!("{count}x"))?;
    PerOp::measure(|op| go::benchmark(&output, &format!("Suite/{}", op.go_name())))
}

/// A running snapbench: containerd's metastore on a bolt file of its own, with its
/// goroutines waiting for the next operation to run.
#[derive(Debug)]
pub struct Snapbench(Peer);

impl Snapbench {
    /// Starts snapbench with `goroutines`; it sets up its fixture before its first answer.
    pub fn start(binary: &Path, goroutines: u32) -> anyhow::Result<Snapbench> {
        let mut command = Command::new(binary);
        command.arg(format!("-goroutines={goroutines}"));
        Ok(Snapbench(Peer::start(command)?))
    }

    /// Runs `op` from every goroutine for at most `duration`.
    pub fn run(&mut self, op: Op, duration: Duration) -> anyhow::Result<Summary> {
        let command = format!("{} {}us", op.go_name(), duration.as_micros());
        Ok(self.0.ask::<go::PeerRun>(&command)?.into())
    }
}
