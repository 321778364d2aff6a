//! The markdown report: the disk's floor, one table per way of running the operations, then
//! issue 3's targets with a PASS or MISS mark per operation. Formatting only; every number
//! arrives measured in [`Figures`].
//!
//! Figures measured in several rounds are pooled in the tables, and targets are judged on
//! the median round, as [`strata_kv_bench::table`] describes; the pooled ratio stands next
//! to it. A round where one side had nothing to run (a commit with every snapshot already
//! committed) has no ratio.

use strata_kv_bench::measure::Summary;
use strata_kv_bench::table::{
    at_least, at_most, disk_floor, dur, line, per_round, pool, rate, row,
};

use crate::ops::{Op, PerOp};

/// Inside one transaction, strata's time per operation may be at most this times
/// containerd's.
const IN_TXN_RATIO_MAX: f64 = 1.0;
/// Each operation its own transaction, one client: strata's time per operation may be at
/// most this times bolt's.
const ONE_CLIENT_RATIO_MAX: f64 = 1.1;
/// Each operation its own transaction, many clients: strata's operations per second must
/// be at least this times bolt's.
const MANY_CLIENTS_RATIO_MIN: f64 = 3.0;

/// Every operation measured on both sides, one entry per round.
pub type Rounds = Vec<PerOp<Both>>;

/// Everything one run measured.
#[derive(Debug)]
pub struct Figures {
    /// Concurrent clients (threads, goroutines) of the many-clients figures.
    pub clients: u32,
    /// Operations per figure inside one transaction, on bolt and redb.
    pub in_txn_ops: u64,
    /// Operations per figure inside one transaction, on etcd.
    pub etcd_in_txn_ops: u64,
    /// 4 KiB write plus fdatasync.
    pub disk: Summary,
    /// Inside one transaction, one entry per round.
    pub in_txn: Rounds,
    /// Each operation its own transaction, one client, one entry per round.
    pub one: Rounds,
    /// Each operation its own transaction, many clients, one entry per round.
    pub many: Rounds,
    /// The etcd figures, measured once.
    pub etcd: EtcdFigures,
}

/// One operation measured on bolt and, right before or after, on strata's redb engine.
#[derive(Debug, Clone, Copy)]
pub struct Both {
    /// containerd's metastore on bolt.
    pub bolt: Summary,
    /// strata's metastore on redb.
    pub strata: Summary,
}

/// The etcd engine's figures.
#[derive(Debug, Clone)]
pub struct EtcdFigures {
    /// Every operation repeated inside one open write transaction.
    pub in_txn: PerOp<Summary>,
    /// Every operation in a transaction of its own, one client.
    pub one: PerOp<Summary>,
    /// Every operation in a transaction of its own, many clients at once.
    pub many: PerOp<Summary>,
}

/// Renders the report.
pub fn render(f: &Figures) -> String {
    let mut out = String::new();
    disk_floor(&mut out, &f.disk);
    in_txn(&mut out, f);
    own_txn_one(&mut out, f);
    own_txn_many(&mut out, f);
    targets(&mut out, f);
    out
}

fn in_txn(out: &mut String, f: &Figures) {
    line(
        out,
        &format!(
            "#### Inside one open write transaction: time per operation \
             ({} per figure, {} rounds pooled; etcd {}, once)\n",
            f.in_txn_ops,
            f.in_txn.len(),
            f.etcd_in_txn_ops
        ),
    );
    line(
        out,
        "| operation | containerd on bolt | strata on redb | vs containerd | strata on etcd |",
    );
    line(out, "|---|---:|---:|---:|---:|");
    for op in Op::ALL {
        let (bolt, strata) = pooled(&f.in_txn, op);
        let cells = [
            op.title().into(),
            per_op(&bolt),
            per_op(&strata),
            ratio_x(time_ratio(&strata, &bolt)),
            per_op(&f.etcd.in_txn.get(op)),
        ];
        row(out, &cells);
    }
    line(out, "");
}

fn own_txn_one(out: &mut String, f: &Figures) {
    line(
        out,
        &format!(
            "#### Each operation its own transaction, 1 client ({} rounds pooled; etcd once)\n",
            f.one.len()
        ),
    );
    line(out, "| operation | store | median | p99 | time per op | per second | vs bolt |");
    line(out, "|---|---|---:|---:|---:|---:|---:|");
    for op in Op::ALL {
        let (bolt, strata) = pooled(&f.one, op);
        for (store, s) in [(BOLT, bolt), (REDB, strata), (ETCD, f.etcd.one.get(op))] {
            let cells = [
                op.title().into(),
                store.into(),
                dur(s.p50),
                dur(s.p99),
                per_op(&s),
                rate(&s),
                ratio_x(time_ratio(&s, &bolt)),
            ];
            row(out, &cells);
        }
    }
    line(out, "");
}

fn own_txn_many(out: &mut String, f: &Figures) {
    let n = f.clients;
    line(
        out,
        &format!(
            "#### Each operation its own transaction, {n} concurrent clients \
             ({} rounds pooled; etcd once)\n",
            f.many.len()
        ),
    );
    line(out, "| operation | store | per second | median | p99 | vs bolt |");
    line(out, "|---|---|---:|---:|---:|---:|");
    for op in Op::ALL {
        let (bolt, strata) = pooled(&f.many, op);
        for (store, s) in [(BOLT, bolt), (REDB, strata), (ETCD, f.etcd.many.get(op))] {
            let ratio = s.per_second() / bolt.per_second();
            let cells =
                [op.title().into(), store.into(), rate(&s), dur(s.p50), dur(s.p99), ratio_x(ratio)];
            row(out, &cells);
        }
    }
    line(out, "");
}

fn targets(out: &mut String, f: &Figures) {
    let n = f.clients;
    line(out, "#### Targets (issue 3), strata on redb against bolt, judged on the median round\n");
    line(
        out,
        &format!(
            "| operation | one open transaction: time per op at most {IN_TXN_RATIO_MAX:.1}x \
             containerd's | own transaction, 1 client: time per op within \
             {ONE_CLIENT_RATIO_MAX}x of bolt's | own transaction, {n} clients: at least \
             {MANY_CLIENTS_RATIO_MIN:.0}x bolt's operations per second |"
        ),
    );
    line(out, "|---|---|---|---|");
    let time = |b: &Both| time_ratio(&b.strata, &b.bolt);
    let rate = |b: &Both| b.strata.per_second() / b.bolt.per_second();
    for op in Op::ALL {
        let cells = [
            op.title().into(),
            judged(&f.in_txn, op, time, |r| at_most(r, IN_TXN_RATIO_MAX)),
            judged(&f.one, op, time, |r| at_most(r, ONE_CLIENT_RATIO_MAX)),
            judged(&f.many, op, rate, |r| at_least(r, MANY_CLIENTS_RATIO_MIN)),
        ];
        row(out, &cells);
    }
}

const BOLT: &str = "containerd on bolt";
const REDB: &str = "strata on redb";
const ETCD: &str = "strata on etcd";

/// The rounds' bolt and strata figures of `op`, each pooled.
fn pooled(rounds: &[PerOp<Both>], op: Op) -> (Summary, Summary) {
    (pool(rounds, |r| r.get(op).bolt), pool(rounds, |r| r.get(op).strata))
}

/// `0.87x PASS (rounds: 0.80, 0.87, 1.02; pooled 0.91x)`: the median of the rounds'
/// `ratio`s of `op`, judged by `mark`, over the rounds where both sides ran; and the ratio
/// of the pooled figures, which weighs every operation alike.
fn judged(
    rounds: &[PerOp<Both>],
    op: Op,
    ratio: impl Fn(&Both) -> f64,
    mark: impl Fn(f64) -> String,
) -> String {
    let both: Vec<Both> = rounds
        .iter()
        .map(|r| r.get(op))
        .filter(|b| b.bolt.count > 0 && b.strata.count > 0)
        .collect();
    let (median, listed) = per_round(&both, &ratio);
    let (bolt, strata) = pooled(rounds, op);
    let pooled = ratio(&Both { bolt, strata });
    format!("{} {} (rounds: {listed}; pooled {})", ratio_x(median), mark(median), ratio_x(pooled))
}

fn ratio_x(ratio: f64) -> String {
    format!("{ratio:.2}x")
}

/// How many times `bolt`'s time per operation `s` took.
fn time_ratio(s: &Summary, bolt: &Summary) -> f64 {
    s.time_per_op().as_secs_f64() / bolt.time_per_op().as_secs_f64()
}

fn per_op(s: &Summary) -> String {
    dur(Some(s.time_per_op()))
}
