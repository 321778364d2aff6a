//! `strata-kv-bench`: measures strata-kv's engines side by side with their peers, in one
//! run, and prints markdown tables for docs/benchmarks.md.
//!
//! The peers are Go programs built from Debian's Go sources (containerd's metastore
//! benchmark on bbolt, and bench/go's `boltupdate`) and plain etcd-client puts against the
//! same local etcd. Run it through scripts/bench-kv, which builds the Go programs and passes
//! their paths. Files go to a temporary directory under `TMPDIR`, where the Go peers put
//! theirs too. It is not a criterion suite: the figures are wall-clock runs of a fixed
//! duration, summarized the way Go's `testing` summarizes its own. The commit figures run
//! in rounds that alternate peer and strata-kv, so both see the same disk and the same
//! neighbours.

mod embedded;
mod etcd;
mod peers;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use strata_kv_bench::{cli, disk};

use crate::peers::BoltCommit;
use crate::report::{Figures, GroupRound, SingleRound};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Benchmarks strata-kv next to bbolt and plain etcd puts; prints markdown")]
struct Args {
    /// containerd's compiled metastore benchmark
    /// (`go test -c github.com/containerd/containerd/snapshots/storage`).
    #[arg(long)]
    containerd_bench: PathBuf,
    /// The compiled `boltupdate` program of bench/go.
    #[arg(long)]
    boltupdate: PathBuf,
    /// Seconds each figure is measured for, in each round.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Rounds of the commit figures.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Concurrent committers in the group-commit figures.
    #[arg(long, default_value_t = 16)]
    threads: u32,
}

/// The name progress and errors are reported under.
const PROGRAM: &str = "strata-kv-bench";

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit(PROGRAM, || run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let d = Duration::from_secs_f64(args.seconds);
    let dir = tempfile::Builder::new().prefix("strata-kv-bench-").tempdir()?;
    let dir = dir.path();

    let disk = step("4 KiB write + fdatasync", || disk::fdatasync_floor(dir, d))?;
    let mut single = Vec::new();
    let mut group = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("strata-kv-bench: round {round} of {}", args.rounds);
        single.push(single_round(args, dir, d)?);
        group.push(group_round(args, dir, d)?);
    }
    let reads = step("redb: point reads", || embedded::point_reads(dir, d))?;
    let etcd = step("etcd: strata-kv transactions and plain requests", || etcd::measure(d))?;

    let figures = Figures { threads: args.threads, disk, single, reads, group, etcd };
    cli::print_report(&report::render(&figures))
}

fn single_round(args: &Args, dir: &Path, d: Duration) -> anyhow::Result<SingleRound> {
    Ok(SingleRound {
        containerd: step("bbolt: containerd WriteTransaction", || {
            peers::containerd_write_transaction(&args.containerd_bench, d)
        })?,
        bolt_update: step("bbolt: DB.Update, 1 goroutine", || {
            peers::bolt_update(&args.boltupdate, 1, d, BoltCommit::Update)
        })?,
        raw_redb: step("redb itself: commit, 1 thread", || embedded::raw_redb_commit(dir, d))?,
        strata: step("strata-kv redb: commit, 1 thread", || embedded::single_commit(dir, d))?,
    })
}

fn group_round(args: &Args, dir: &Path, d: Duration) -> anyhow::Result<GroupRound> {
    let n = args.threads;
    Ok(GroupRound {
        bolt_update: step("bbolt: DB.Update, many goroutines", || {
            peers::bolt_update(&args.boltupdate, n, d, BoltCommit::Update)
        })?,
        bolt_batch: step("bbolt: DB.Batch, many goroutines", || {
            peers::bolt_update(&args.boltupdate, n, d, BoltCommit::Batch)
        })?,
        strata: step("strata-kv redb: group commit", || embedded::group_commit(dir, n, d))?,
    })
}

/// Runs one measurement, saying on stderr what is being measured.
fn step<T>(what: &str, measure: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    cli::step(PROGRAM, what, measure)
}
