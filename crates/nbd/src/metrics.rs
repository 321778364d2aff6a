//! What the NBD server records in the process's metrics: each answered request's duration
//! and result, by command (`strata_nbd_*`, documented in docs/operations.md).

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Counter, Histogram};

use crate::proto::{self, cmd, errno};

/// The `op` labels, by [`op_index`].
const OPS: [&str; 8] =
    ["read", "write", "flush", "trim", "cache", "write_zeroes", "block_status", "other"];
/// The `result` labels, by [`result_index`].
const RESULTS: [&str; 9] =
    ["ok", "EPERM", "EIO", "ENOMEM", "EINVAL", "ENOSPC", "ENOTSUP", "ESHUTDOWN", "other"];

/// A server's handles on its metrics, one per label set, each registered on first use.
///
/// Looking a metric up by name and labels costs a key built, hashed and found in the
/// recorder's registry, three times per request; a handle records with an atomic update.
/// A handle is bound to the recorder installed when it was first used: the process installs
/// its recorder before it serves (after the server is made, for `strata nbd serve`), so no
/// request comes earlier.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    duration: [OnceLock<Histogram>; OPS.len()],
    requests: [[OnceLock<Counter>; RESULTS.len()]; OPS.len()],
    data: [OnceLock<Counter>; OPS.len()],
}

impl Metrics {
    /// Records a request answered with `failed` (its errno) or success, `started` when its
    /// header arrived.
    pub(crate) fn observe(&self, req: &proto::Request, failed: Option<u32>, started: Instant) {
        let op = op_index(req.kind);
        self.duration[op]
            .get_or_init(
                || metrics::histogram!("strata_nbd_request_duration_seconds", "op" => OPS[op]),
            )
            .record(started.elapsed());
        let result = failed.map_or(0, result_index);
        self.requests[op][result]
            .get_or_init(|| {
                metrics::counter!(
                    "strata_nbd_requests_total", "op" => OPS[op], "result" => RESULTS[result]
                )
            })
            .increment(1);
        if failed.is_none() && matches!(req.kind, cmd::READ | cmd::WRITE) {
            self.data[op]
                .get_or_init(|| metrics::counter!("strata_nbd_data_bytes_total", "op" => OPS[op]))
                .increment(u64::from(req.length));
        }
    }
}

/// The index in [`OPS`] of an NBD command's label.
fn op_index(kind: u16) -> usize {
    match kind {
        cmd::READ => 0,
        cmd::WRITE => 1,
        cmd::FLUSH => 2,
        cmd::TRIM => 3,
        cmd::CACHE => 4,
        cmd::WRITE_ZEROES => 5,
        cmd::BLOCK_STATUS => 6,
        _ => 7,
    }
}

/// The index in [`RESULTS`] of the label of an errno the server answers with.
fn result_index(code: u32) -> usize {
    match code {
        errno::EPERM => 1,
        errno::EIO => 2,
        errno::ENOMEM => 3,
        errno::EINVAL => 4,
        errno::ENOSPC => 5,
        errno::ENOTSUP => 6,
        errno::ESHUTDOWN => 7,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_errnos_map_to_their_labels() {
        let kinds = [cmd::READ, cmd::WRITE, cmd::FLUSH, cmd::TRIM, cmd::CACHE, cmd::WRITE_ZEROES];
        let more = [cmd::BLOCK_STATUS, cmd::DISC, 99];
        let ops: Vec<&str> = kinds.iter().chain(&more).map(|&k| OPS[op_index(k)]).collect();
        let want = ["read", "write", "flush", "trim", "cache", "write_zeroes", "block_status"];
        assert_eq!(ops, [&want[..], &["other", "other"]].concat());
        let codes = [errno::EPERM, errno::EIO, errno::ENOMEM, errno::EINVAL, errno::ENOSPC];
        let more = [errno::ENOTSUP, errno::ESHUTDOWN, 12345];
        let results: Vec<&str> =
            codes.iter().chain(&more).map(|&c| RESULTS[result_index(c)]).collect();
        assert_eq!(results, RESULTS[1..], "each errno its label, an unknown one other");
    }
}
