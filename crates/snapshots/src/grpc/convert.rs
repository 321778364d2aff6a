//! Translation between strata's snapshot model and containerd's wire types, and from
//! [`Error`] to a gRPC status. Pure functions: no I/O and no rules of their own.

use std::time::SystemTime;

use prost::Message;
use strata_kv::Category;
use tonic::{Code, Status};

use crate::grpc::proto;
use crate::{Error, Info, Kind, Mount, Usage};

/// The most snapshots one List response carries (containerd's own server sends 100).
const LIST_BATCH: usize = 100;
/// The most encoded bytes of snapshot info one List response carries, so a batch of
/// heavily labelled snapshots stays far below any client's message limit.
const LIST_BATCH_BYTES: usize = 1 << 20;

/// The gRPC status for `err`: the code from its category, the message from its `Display`.
pub fn status_of(err: &Error) -> Status {
    let code = match err.category() {
        Category::NotFound => Code::NotFound,
        Category::AlreadyExists => Code::AlreadyExists,
        Category::InvalidArgument => Code::InvalidArgument,
        Category::FailedPrecondition => Code::FailedPrecondition,
        Category::Conflict => Code::Aborted,
        Category::Unavailable => Code::Unavailable,
        Category::Corrupted => Code::DataLoss,
        Category::Unauthenticated => Code::Unauthenticated,
        _ => Code::Internal,
    };
    Status::new(code, err.to_string())
}

pub(crate) fn mounts_to_proto(mounts: Vec<Mount>) -> Vec<proto::Mount> {
    mounts
        .into_iter()
        .map(|m| proto::Mount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        })
        .collect()
}

pub(crate) fn info_to_proto(info: Info) -> proto::Info {
    let kind = match info.kind {
        Kind::View => proto::Kind::View,
        Kind::Active => proto::Kind::Active,
        Kind::Committed => proto::Kind::Committed,
    };
    proto::Info {
        name: info.name,
        parent: info.parent,
        kind: kind as i32,
        created_at: Some(info.created.into()),
        updated_at: Some(info.updated.into()),
        labels: info.labels,
    }
}

/// The info of an Update request. Only its name and labels are read by an update; kind,
/// parent and times are immutable and ignored, as containerd's own snapshotters ignore
/// them, but a kind outside the enum is still rejected as malformed.
pub(crate) fn info_from_proto(info: proto::Info) -> Result<Info, Status> {
    if info.name.is_empty() {
        return Err(Status::invalid_argument("update: the info's name must not be empty"));
    }
    let kind = match proto::Kind::try_from(info.kind) {
        Ok(proto::Kind::View) => Kind::View,
        Ok(proto::Kind::Committed) => Kind::Committed,
        // UNKNOWN is what a client that leaves the immutable fields unset sends.
        Ok(proto::Kind::Active | proto::Kind::Unknown) => Kind::Active,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "snapshot {}: unknown kind {}",
                info.name, info.kind
            )));
        }
    };
    let time = |t: Option<prost_types::Timestamp>| {
        t.and_then(|t| SystemTime::try_from(t).ok()).unwrap_or(SystemTime::UNIX_EPOCH)
    };
    Ok(Info {
        kind,
        created: time(info.created_at),
        updated: time(info.updated_at),
        name: info.name,
        parent: info.parent,
        labels: info.labels,
    })
}

pub(crate) fn usage_to_proto(usage: Usage) -> proto::UsageResponse {
    proto::UsageResponse { size: usage.size, inodes: usage.inodes }
}

/// Splits a listing into List responses of at most [`LIST_BATCH`] snapshots and about
/// [`LIST_BATCH_BYTES`] bytes each (a single larger snapshot goes alone). None for none.
pub(crate) fn list_batches(infos: Vec<Info>) -> Vec<proto::ListSnapshotsResponse> {
    let mut batches = Vec::new();
    let mut batch = proto::ListSnapshotsResponse::default();
    let mut bytes = 0;
    for info in infos {
        let info = info_to_proto(info);
        let size = info.encoded_len();
        let full = batch.info.len() >= LIST_BATCH || bytes + size > LIST_BATCH_BYTES;
        if full && !batch.info.is_empty() {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.info.push(info);
    }
    if !batch.info.is_empty() {
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info(name: &str, label_bytes: usize) -> Info {
        let labels = BTreeMap::from([("l".to_string(), "x".repeat(label_bytes))]);
        let now = SystemTime::now();
        let (parent, kind) = (String::new(), Kind::Committed);
        Info { name: name.into(), parent, kind, labels, created: now, updated: now }
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let small: Vec<Info> = (0..250).map(|i| info(&format!("s{i}"), 10)).collect();
        let sizes: Vec<usize> = list_batches(small).iter().map(|b| b.info.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);

        let big: Vec<Info> = (0..5).map(|i| info(&format!("b{i}"), 400 << 10)).collect();
        let sizes: Vec<usize> = list_batches(big).iter().map(|b| b.info.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(list_batches(Vec::new()).is_empty());
    }

    #[test]
    fn info_round_trips_and_unknown_kinds_are_rejected() {
        let original = info("a", 3);
        let back = info_from_proto(info_to_proto(original.clone())).unwrap();
        assert_eq!(back, original);
        let bad = proto::Info { name: "a".into(), kind: 9, ..Default::default() };
        assert_eq!(info_from_proto(bad).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn categories_map_to_codes() {
        let cases = [
            (Error::NotFound("k".into()), Code::NotFound),
            (Error::AlreadyExists("k".into()), Code::AlreadyExists),
            (Error::InvalidArgument("k".into()), Code::InvalidArgument),
            (Error::FailedPrecondition("k".into()), Code::FailedPrecondition),
            (Error::Corrupted("k".into()), Code::DataLoss),
        ];
        for (err, code) in cases {
            assert_eq!(status_of(&err).code(), code, "{err}");
        }
    }
}
