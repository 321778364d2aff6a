//! What the NBD server records in the process's metrics: each answered request's duration
//! and result, by command (`strata_nbd_*`, documented in docs/operations.md).

use std::time::Instant;

use crate::proto::{self, cmd, errno};

/// Records a request answered with `failed` (its errno) or success, `started` when its
/// header arrived.
pub(crate) fn observe(req: &proto::Request, failed: Option<u32>, started: Instant) {
    let op = op_name(req.kind);
    metrics::histogram!("strata_nbd_request_duration_seconds", "op" => op)
        .record(started.elapsed());
    let result = failed.map_or("ok", errno_name);
    metrics::counter!("strata_nbd_requests_total", "op" => op, "result" => result).increment(1);
    if failed.is_none() && matches!(req.kind, cmd::READ | cmd::WRITE) {
        metrics::counter!("strata_nbd_data_bytes_total", "op" => op)
            .increment(u64::from(req.length));
    }
}

/// The label of an NBD command.
fn op_name(kind: u16) -> &'static str {
    match kind {
        cmd::READ => "read",
        cmd::WRITE => "write",
        cmd::FLUSH => "flush",
        cmd::TRIM => "trim",
        cmd::CACHE => "cache",
        cmd::WRITE_ZEROES => "write_zeroes",
        cmd::BLOCK_STATUS => "block_status",
        _ => "other",
    }
}

/// The label of an errno the server answers with.
fn errno_name(code: u32) -> &'static str {
    match code {
        errno::EPERM => "EPERM",
        errno::EIO => "EIO",
        errno::ENOMEM => "ENOMEM",
        errno::EINVAL => "EINVAL",
        errno::ENOSPC => "ENOSPC",
        errno::ENOTSUP => "ENOTSUP",
        errno::ESHUTDOWN => "ESHUTDOWN",
        _ => "other",
    }
}
