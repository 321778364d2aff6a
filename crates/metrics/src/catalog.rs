//! Every metric strata records: its name, type, labels and meaning, in one table.
//!
//! The libraries record under these names with the `metrics` macros; the recorder takes
//! each histogram's buckets and every help text from here, and `docs/operations.md`
//! documents each entry (a test checks it). Names are `strata_<part>_<what>_<unit>` in base
//! units (seconds, bytes); counters end in `_total`.

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The full name, `strata_…`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The label names its series carry.
    pub labels: &'static [&'static str],
    /// What it measures: the `# HELP` line.
    pub help: &'static str,
}

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// A value that is set.
    Gauge,
    /// Observations counted into buckets.
    Histogram(Buckets),
}

/// The bucket bounds of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buckets {
    /// Durations, 50 µs to 10 s.
    Seconds,
    /// Sizes, 512 B to 256 MiB.
    Bytes,
    /// Small counts, 1 to 512 by powers of two.
    Count,
}

impl Buckets {
    /// The upper bounds, in the metric's unit.
    pub fn bounds(self) -> &'static [f64] {
        match self {
            Buckets::Seconds => &[
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            Buckets::Bytes => &[
                512.0,
                4_096.0,
                16_384.0,
                65_536.0,
                262_144.0,
                1_048_576.0,
                4_194_304.0,
                16_777_216.0,
                67_108_864.0,
                268_435_456.0,
            ],
            Buckets::Count => &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        }
    }
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric { name, kind: Kind::Counter, labels, help }
}

const fn histogram(
    name: &'static str,
    buckets: Buckets,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric { name, kind: Kind::Histogram(buckets), labels, help }
}

/// Every metric strata records.
pub const CATALOG: &[Metric] = &[
    Metric {
        name: "strata_build_info",
        kind: Kind::Gauge,
        labels: &["version"],
        help: "Always 1; the version label says which strata runs.",
    },
    histogram(
        "strata_tlog_flush_duration_seconds",
        Buckets::Seconds,
        &["result"],
        "Time to seal and durably store one flush of a vdisk's ordered blocks (result ok or error).",
    ),
    histogram(
        "strata_tlog_flush_bytes",
        Buckets::Bytes,
        &[],
        "Block data in one flush of a vdisk, before compression.",
    ),
    histogram(
        "strata_tlog_fsync_duration_seconds",
        Buckets::Seconds,
        &[],
        "Time of the fdatasync that makes a flush durable in a segment file.",
    ),
    histogram(
        "strata_nbd_request_duration_seconds",
        Buckets::Seconds,
        &["op"],
        "Time from an NBD request's header to its reply being sent, by command.",
    ),
    counter(
        "strata_nbd_requests_total",
        &["op", "result"],
        "NBD requests answered, by command and result (ok, or the errno name).",
    ),
    counter(
        "strata_nbd_data_bytes_total",
        &["op"],
        "Bytes read by or written to NBD clients (op read or write), of successful requests.",
    ),
    histogram(
        "strata_kv_commit_duration_seconds",
        Buckets::Seconds,
        &["engine", "result"],
        "Time a KV transaction's commit took, until durable or refused (result ok, conflict or error).",
    ),
    histogram(
        "strata_kv_durable_write_duration_seconds",
        Buckets::Seconds,
        &["engine"],
        "Time of one durable write of the redb committer: a batch of transactions in one redb commit.",
    ),
    histogram(
        "strata_kv_commits_per_durable_write",
        Buckets::Count,
        &["engine"],
        "Transactions the redb committer made durable in one write (group commit).",
    ),
    counter(
        "strata_ckpt_requests_total",
        &["method", "code"],
        "Checkpoint service requests answered, by HTTP method and status code.",
    ),
    histogram(
        "strata_ckpt_request_duration_seconds",
        Buckets::Seconds,
        &["method"],
        "Time the checkpoint service took to answer a request, by HTTP method.",
    ),
    counter(
        "strata_hub_transfer_bytes_total",
        &["direction"],
        "Blob bytes the hub server received from pushes (in) and sent to pulls (out).",
    ),
    counter(
        "strata_snapshotter_grpc_requests_total",
        &["method", "code"],
        "Snapshots gRPC calls answered by the proxy snapshotter, by method and gRPC code.",
    ),
    histogram(
        "strata_snapshotter_grpc_request_duration_seconds",
        Buckets::Seconds,
        &["method"],
        "Time the proxy snapshotter took to answer a gRPC call, by method.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        for metric in CATALOG {
            assert!(metric.name.starts_with("strata_"), "{}", metric.name);
            match metric.kind {
                Kind::Counter => assert!(metric.name.ends_with("_total"), "{}", metric.name),
                Kind::Histogram(Buckets::Seconds) => {
                    assert!(metric.name.ends_with("_seconds"), "{}", metric.name)
                }
                Kind::Histogram(Buckets::Bytes) => {
                    assert!(metric.name.ends_with("_bytes"), "{}", metric.name)
                }
                Kind::Histogram(Buckets::Count) | Kind::Gauge => {}
            }
        }
        assert!(
            Buckets::Seconds.bounds()[0] <= 0.000_1,
            "the first duration bucket is 100 µs or less"
        );
    }

    #[test]
    fn every_metric_is_documented() {
        let docs = include_str!("../../../docs/operations.md");
        for metric in CATALOG {
            assert!(
                docs.contains(&format!("`{}`", metric.name)),
                "{} is not documented",
                metric.name
            );
        }
    }
}
