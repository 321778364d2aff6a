//! The markdown report: one table per figure group, then the targets with a PASS or
//! MISS mark each. Formatting only; every number arrives measured in [`Figures`].
//!
//! Figures measured in several rounds are pooled in the tables (see [`Summary::pooled`]), and
//! targets are judged on the median round, as [`strata_kv_bench::table`] describes.

use std::time::Duration;

use strata_kv_bench::measure::Summary;
use strata_kv_bench::table::{
    at_least, at_most, count, disk_floor, dur, line, per_round, pool, rate, row,
};

use crate::embedded::{GroupCommit, PointReads};
use crate::etcd::{EtcdRow, Workload};

/// Commit time of strata-kv's redb engine may be at most this times bbolt's.
const COMMIT_RATIO_MAX: f64 = 1.2;
/// A point read inside an open read transaction must take less than this, in nanoseconds.
const READ_NS_MAX: f64 = 1_000.0;
/// Group commit must reach at least this times bbolt's `DB.Update` commits per second.
const GROUP_RATIO_MIN: f64 = 4.0;

/// Everything one run measured.
#[derive(Debug)]
pub struct Figures {
    /// Threads (and goroutines) of the group-commit figures.
    pub threads: u32,
    /// 4 KiB write plus fdatasync.
    pub disk: Summary,
    /// The one-thread commit figures, one entry per round.
    pub single: Vec<SingleRound>,
    /// Point reads, strata-kv and redb itself.
    pub reads: PointReads,
    /// The group-commit figures, one entry per round.
    pub group: Vec<GroupRound>,
    /// The etcd figures.
    pub etcd: Vec<EtcdRow>,
}

/// One round of one-thread commits, peers and strata-kv measured back to back.
#[derive(Debug, Clone, Copy)]
pub struct SingleRound {
    /// containerd's `WriteTransaction` on bbolt.
    pub containerd: Summary,
    /// bbolt `DB.Update` of one put, one goroutine.
    pub bolt_update: Summary,
    /// redb itself, one durable put per write transaction.
    pub raw_redb: Summary,
    /// strata-kv redb commit of one put.
    pub strata: Summary,
}

/// One round of concurrent commits, peers and strata-kv measured back to back.
#[derive(Debug, Clone, Copy)]
pub struct GroupRound {
    /// bbolt `DB.Update` from many goroutines.
    pub bolt_update: Summary,
    /// bbolt `DB.Batch` from many goroutines.
    pub bolt_batch: Summary,
    /// strata-kv redb commits from many threads.
    pub strata: GroupCommit,
}

/// Renders the report.
pub fn render(f: &Figures) -> String {
    let mut out = String::new();
    disk_floor(&mut out, &f.disk);
    single(&mut out, f);
    group(&mut out, f);
    etcd(&mut out, f);
    targets(&mut out, f);
    out
}

fn single(out: &mut String, f: &Figures) {
    line(out, &format!("#### redb engine, one thread ({} rounds pooled)\n", f.single.len()));
    line(out, "| operation | median | p99 | time per op | per second | vs containerd |");
    line(out, "|---|---:|---:|---:|---:|---:|");
    let base = pool(&f.single, |r| r.containerd);
    let rows: [(&str, Summary); 4] = [
        ("bbolt: containerd `WriteTransaction` (begin + commit a write transaction)", base),
        (
            "bbolt: `DB.Update` of a 1-put transaction (`boltupdate`)",
            pool(&f.single, |r| r.bolt_update),
        ),
        (
            "redb itself: 1-put write transaction, `Durability::Immediate`",
            pool(&f.single, |r| r.raw_redb),
        ),
        ("strata-kv redb: commit a 1-put write transaction", pool(&f.single, |r| r.strata)),
    ];
    for (name, s) in rows {
        let ratio = s.time_per_op().as_secs_f64() / base.time_per_op().as_secs_f64();
        line(
            out,
            &format!(
                "| {name} | {} | {} | {} | {} | {ratio:.2}x |",
                dur(s.p50),
                dur(s.p99),
                dur(Some(s.time_per_op())),
                rate(&s)
            ),
        );
    }
    line(out, "\n| point read (100,000 keys, random) | time per get | per second |");
    line(out, "|---|---:|---:|");
    let reads = [
        ("redb itself: `ReadOnlyTable::get`, value copied out", f.reads.raw_ns),
        ("strata-kv redb: `ReadTxn::get` in an open read transaction", f.reads.strata_ns),
    ];
    for (name, ns) in reads {
        row(out, &[name.into(), dur(Some(Duration::from_nanos(ns as u64))), count(1e9 / ns)]);
    }
    line(out, "");
}

fn group(out: &mut String, f: &Figures) {
    let n = f.threads;
    line(
        out,
        &format!(
            "#### Group commit, {n} concurrent committers ({} rounds pooled)\n",
            f.group.len()
        ),
    );
    line(
        out,
        "| committers | commits per second | median | p99 | commits per durable write \
               | vs bbolt `DB.Update` |\n|---|---:|---:|---:|---:|---:|",
    );
    let base = pool(&f.group, |r| r.bolt_update);
    let strata = pool(&f.group, |r| r.strata.summary);
    let batches: Option<u64> = f.group.iter().map(|r| r.strata.batches).sum();
    let per_write =
        batches.map_or("n/a".into(), |b| format!("{:.1}", strata.count as f64 / b as f64));
    let rows = [
        (format!("bbolt `DB.Update`, {n} goroutines"), base, "1".to_string()),
        (
            format!("bbolt `DB.Batch`, {n} goroutines (bbolt's group commit, for reference)"),
            pool(&f.group, |r| r.bolt_batch),
            String::new(),
        ),
        (format!("strata-kv redb, {n} threads, 1-put transactions"), strata, per_write),
    ];
    for (name, s, per_write) in rows {
        let ratio = s.per_second() / base.per_second();
        line(
            out,
            &format!(
                "| {name} | {} | {} | {} | {per_write} | {ratio:.2}x |",
                rate(&s),
                dur(s.p50),
                dur(s.p99)
            ),
        );
    }
    line(out, "");
}

fn etcd(out: &mut String, f: &Figures) {
    line(out, "#### etcd engine, one local etcd\n");
    line(out, "| operation | clients | per second | median | p99 | vs plain puts |");
    line(out, "|---|---:|---:|---:|---:|---:|");
    for row in &f.etcd {
        let name = match row.workload {
            Workload::ClientPut => "etcd-client `put` (plain puts)",
            Workload::ClientTxn => "etcd-client `txn` with 1 put, no compares",
            Workload::StrataPut => "strata-kv transaction: 1 put",
            Workload::StrataGetPut => "strata-kv transaction: get + put",
        };
        let s = &row.summary;
        let ratio = etcd_row(f, Workload::ClientPut, row.clients)
            .map_or("n/a".into(), |plain| format!("{:.2}x", s.per_second() / plain.per_second()));
        line(
            out,
            &format!(
                "| {name} | {} | {} | {} | {} | {ratio} |",
                row.clients,
                rate(s),
                dur(s.p50),
                dur(s.p99)
            ),
        );
    }
    line(out, "");
}

fn targets(out: &mut String, f: &Figures) {
    line(out, "#### Targets (issue 2)\n");
    line(out, "| target | measured | result |\n|---|---|---|");
    let time = |s: Summary| s.time_per_op().as_secs_f64();
    let strata = pool(&f.single, |r| r.strata);
    let containerd = pool(&f.single, |r| r.containerd);
    let (ratio, rounds) = per_round(&f.single, |r| time(r.strata) / time(r.containerd));
    row(
        out,
        &[
            format!(
                "redb durable commit within {COMMIT_RATIO_MAX}x of bbolt's \
                 (containerd `WriteTransaction`)"
            ),
            format!(
                "{ratio:.2}x (rounds: {rounds}); pooled {} vs {} per op",
                dur(Some(strata.time_per_op())),
                dur(Some(containerd.time_per_op())),
            ),
            at_most(ratio, COMMIT_RATIO_MAX),
        ],
    );
    row(
        out,
        &[
            "point read in an open read transaction under 1 µs".into(),
            dur(Some(Duration::from_nanos(f.reads.strata_ns as u64))),
            at_most(f.reads.strata_ns, READ_NS_MAX),
        ],
    );
    let n = f.threads;
    let strata = pool(&f.group, |r| r.strata.summary);
    let bolt = pool(&f.group, |r| r.bolt_update);
    let (ratio, rounds) =
        per_round(&f.group, |r| r.strata.summary.per_second() / r.bolt_update.per_second());
    row(
        out,
        &[
            format!(
                "{n} threads reach at least {GROUP_RATIO_MIN}x the commits/s of bbolt \
                 `DB.Update` from {n} goroutines"
            ),
            format!(
                "{ratio:.2}x (rounds: {rounds}); pooled {} vs {} per second",
                rate(&strata),
                rate(&bolt),
            ),
            at_least(ratio, GROUP_RATIO_MIN),
        ],
    );
    for clients in [1, 32] {
        let txn = etcd_row(f, Workload::StrataPut, clients);
        if let (Some(txn), Some(plain)) = (txn, etcd_row(f, Workload::ClientPut, clients)) {
            row(
                out,
                &[
                    format!("etcd, {clients} concurrent clients: transactions/s, ratio to puts"),
                    format!(
                        "{:.2}x: {} vs {} per second",
                        txn.per_second() / plain.per_second(),
                        rate(txn),
                        rate(plain)
                    ),
                    "reported".into(),
                ],
            );
        }
    }
}

fn etcd_row(f: &Figures, workload: Workload, clients: u32) -> Option<&Summary> {
    let row = f.etcd.iter().find(|r| r.workload == workload && r.clients == clients);
    row.map(|r| &r.summary)
}
