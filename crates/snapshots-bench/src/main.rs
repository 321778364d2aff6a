//! `strata-snapshots-bench`: measures strata's snapshot metastore side by side with
//! containerd's bolt metastore, in one run, and prints markdown tables for
//! docs/benchmarks.md (section "snapshots").
//!
//! The six operations of containerd's metastore `Benchmarks` run two ways: repeated inside
//! one open write transaction, as containerd's own benchmarks do, and each in a transaction
//! of its own, from 1 and from many clients, as a snapshotter uses the store. The bolt side
//! is containerd's compiled benchmark and bench/go's snapbench, built from Debian's Go
//! sources; run it through scripts/bench-snapshots, which builds them and passes their
//! paths. Bolt and redb alternate in rounds, each figure of bolt right next to redb's
//! (which goes first alternates too), so both see the same disk and the same neighbours;
//! the etcd figures (one local etcd) run once, after.
//!
//! It is not a criterion suite, for the reason crates/kv-bench gives: the figures are
//! wall-clock runs next to Go programs, summarized the way Go's `testing` summarizes its
//! own. The suite itself mirrors containerd's `Benchmarks(b, name, factory)`: the same
//! code runs every operation on redb and on etcd, each on a fresh store.

mod in_txn;
mod ops;
mod own_txn;
mod peers;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use strata_kv::{EtcdConfig, Store};
use strata_kv_bench::measure::Summary;
use strata_kv_bench::{cli, disk};
use strata_testkit::Etcd;

use crate::ops::PerOp;
use crate::own_txn::Clients;
use crate::peers::Snapbench;
use crate::report::{Both, EtcdFigures, Figures, Rounds};

/// The name progress and errors are reported under.
const PROGRAM: &str = "strata-snapshots-bench";

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Benchmarks strata's snapshot metastore next to containerd's; prints markdown")]
struct Args {
    /// containerd's compiled metastore benchmark
    /// (`go test -c github.com/containerd/containerd/snapshots/storage`).
    #[arg(long)]
    containerd_bench: PathBuf,
    /// The compiled `snapbench` program of bench/go.
    #[arg(long)]
    snapbench: PathBuf,
    /// Seconds each operation runs for, at most, per side and round, each in its own
    /// transaction.
    #[arg(long, default_value_t = 0.15)]
    seconds: f64,
    /// Rounds of the own-transaction figures on bolt and redb.
    #[arg(long, default_value_t = 12)]
    rounds: u32,
    /// Rounds of the one-transaction figures on bolt and redb.
    #[arg(long, default_value_t = 3)]
    in_txn_rounds: u32,
    /// Operations per figure inside one transaction, on bolt and redb.
    #[arg(long, default_value_t = 20_000)]
    in_txn_ops: u64,
    /// Operations per figure inside one transaction, on etcd, where each read is a request.
    #[arg(long, default_value_t = 200)]
    etcd_in_txn_ops: u64,
    /// Seconds each operation runs for, at most, on etcd, each in its own transaction.
    #[arg(long, default_value_t = 0.6)]
    etcd_seconds: f64,
    /// Concurrent clients of the many-clients figures.
    #[arg(long, default_value_t = 16)]
    clients: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit(PROGRAM, || run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("strata-snapshots-bench-").tempdir()?;
    let dir = dir.path();
    let d = Duration::from_secs_f64(args.seconds);
    let disk = step("4 KiB write + fdatasync", || disk::fdatasync_floor(dir, 4 * d))?;

    let mut in_txn = Vec::new();
    for round in 0..args.in_txn_rounds {
        eprintln!("{PROGRAM}: one transaction, round {} of {}", round + 1, args.in_txn_rounds);
        in_txn.push(in_txn_round(args, dir, round)?);
    }
    let (one, many) = own_txn_rounds(args, dir, d)?;
    let etcd = step("start etcd", Etcd::start)?;
    let etcd = etcd_figures(args, &etcd.endpoint())?;

    let figures = Figures {
        clients: args.clients,
        in_txn_ops: args.in_txn_ops,
        etcd_in_txn_ops: args.etcd_in_txn_ops,
        disk,
        in_txn,
        one,
        many,
        etcd,
    };
    cli::print_report(&report::render(&figures))
}

/// containerd's `Benchmarks` and the same operations on redb, inside one transaction.
fn in_txn_round(args: &Args, dir: &Path, round: u32) -> anyhow::Result<PerOp<Both>> {
    let count = args.in_txn_ops;
    let (bolt, redb) = pair(
        round,
        || {
            step("bolt: containerd's Benchmarks", || {
                peers::containerd_benchmarks(&args.containerd_bench, count)
            })
        },
        || {
            step("strata redb: the same operations", || {
                PerOp::measure(|op| with_redb(dir, |store| in_txn::measure(&store, op, count)))
            })
        },
    )?;
    PerOp::measure(|op| Ok(Both { bolt: bolt.get(op), strata: redb.get(op) }))
}

/// Every operation in its own transaction, from 1 and from many clients, bolt and redb in
/// turn: rounds of every operation, the bolt and redb runs of one operation back to back.
fn own_txn_rounds(args: &Args, dir: &Path, d: Duration) -> anyhow::Result<(Rounds, Rounds)> {
    let start = |clients| -> anyhow::Result<_> {
        let bolt = Snapbench::start(&args.snapbench, clients)?;
        let dir = tempfile::Builder::new().prefix("redb-").tempdir_in(dir)?;
        let redb = Clients::new(Store::redb(&dir.path().join("kv.redb"))?, clients)?;
        Ok((bolt, redb, dir))
    };
    let mut sides = [start(1)?, start(args.clients)?];
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        eprintln!("{PROGRAM}: own transactions, round {} of {}", round + 1, args.rounds);
        for (clients, (bolt, redb, _)) in sides.iter_mut().enumerate() {
            let measured = PerOp::measure(|op| {
                let (bolt, strata) = pair(round, || bolt.run(op, d), || redb.run(op, d))?;
                Ok(Both { bolt, strata })
            })?;
            if clients == 0 { &mut one } else { &mut many }.push(measured);
        }
    }
    Ok((one, many))
}

/// The etcd engine's figures, one pass of each.
fn etcd_figures(args: &Args, endpoint: &str) -> anyhow::Result<EtcdFigures> {
    let n = args.clients;
    let d = Duration::from_secs_f64(args.etcd_seconds);
    let own_txn = |clients| -> anyhow::Result<PerOp<Summary>> {
        let clients = Clients::new(etcd_store(endpoint)?, clients)?;
        PerOp::measure(|op| clients.run(op, d))
    };
    Ok(EtcdFigures {
        in_txn: step("strata etcd: one transaction", || {
            PerOp::measure(|op| in_txn::measure(&etcd_store(endpoint)?, op, args.etcd_in_txn_ops))
        })?,
        one: step("strata etcd: own transactions, 1 thread", || own_txn(1))?,
        many: step(&format!("strata etcd: own transactions, {n} threads"), || own_txn(n))?,
    })
}

/// Runs `bolt` and `strata`, bolt first in even rounds and strata first in odd ones, so
/// neither always meets what the other left behind.
fn pair<B, S>(
    round: u32,
    bolt: impl FnOnce() -> anyhow::Result<B>,
    strata: impl FnOnce() -> anyhow::Result<S>,
) -> anyhow::Result<(B, S)> {
    if round.is_multiple_of(2) {
        let bolt = bolt()?;
        Ok((bolt, strata()?))
    } else {
        let strata = strata()?;
        Ok((bolt()?, strata))
    }
}

/// Runs `measure` on a fresh redb store in a new directory under `dir`.
fn with_redb<T>(dir: &Path, measure: impl FnOnce(Store) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let dir = tempfile::Builder::new().prefix("redb-").tempdir_in(dir)?;
    measure(Store::redb(&dir.path().join("kv.redb"))?)
}

/// A fresh store on the etcd at `endpoint`: a key prefix no other store of this run uses.
fn etcd_store(endpoint: &str) -> anyhow::Result<Store> {
    static STORES: AtomicU64 = AtomicU64::new(0);
    let n = STORES.fetch_add(1, Ordering::Relaxed);
    let config = EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        prefix: format!("bench/snapshots/{n}/"),
        ..EtcdConfig::default()
    };
    Store::etcd(&config).with_context(|| format!("connect to etcd at {endpoint}"))
}

/// Runs one measurement, saying on stderr what is being measured.
fn step<T>(what: &str, measure: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    cli::step(PROGRAM, what, measure)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn rounds_alternate_which_side_goes_first() {
        let order = |round| {
            let seen = RefCell::new(Vec::new());
            let run = |side| {
                seen.borrow_mut().push(side);
                Ok(())
            };
            let (bolt, strata) = (|| run("bolt"), || run("strata"));
            pair(round, bolt, strata).unwrap();
            seen.into_inner()
        };
        assert_eq!(order(0), ["bolt", "strata"]);
        assert_eq!(order(1), ["strata", "bolt"]);
    }
}
