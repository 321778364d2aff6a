//! The `Snapshots` service: each call checked, logged, run on tokio's blocking pool
//! against the [`Snapshotter`], and its result translated. Not the transport (that is
//! [`crate::grpc::serve`]) and not the rules (those are the snapshotter's).
//!
//! The `snapshotter` field every request carries is ignored: containerd sets it to the
//! proxy plugin's name, and this server serves exactly one snapshotter.

use tonic::{Request, Response, Status};

use crate::grpc::convert::{
    info_from_proto, info_to_proto, list_batches, mounts_to_proto, status_of, usage_to_proto,
};
use crate::grpc::proto::snapshots_server::{Snapshots, SnapshotsServer};
use crate::grpc::proto::{
    CleanupRequest, CommitSnapshotRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    MountsRequest, MountsResponse, PrepareSnapshotRequest, PrepareSnapshotResponse,
    RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse, UpdateSnapshotRequest,
    UpdateSnapshotResponse, UsageRequest, UsageResponse, ViewSnapshotRequest, ViewSnapshotResponse,
};
use crate::grpc::server::ServeConfig;
use crate::{Filters, Result, Snapshotter};

/// containerd's `Snapshots` service on one [`Snapshotter`].
#[derive(Debug, Clone)]
pub struct SnapshotsService {
    snapshotter: Snapshotter,
}

/// The stream a List call answers with: the listing, already read and split into batches.
pub type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<ListSnapshotsResponse, Status>>>;

impl SnapshotsService {
    /// The service answering with `snapshotter`.
    pub fn new(snapshotter: Snapshotter) -> SnapshotsService {
        SnapshotsService { snapshotter }
    }

    /// The tonic server of this service, with the message size limits of `config`.
    pub fn into_server(self, config: &ServeConfig) -> SnapshotsServer<SnapshotsService> {
        SnapshotsServer::new(self)
            .max_decoding_message_size(config.max_request_bytes)
            .max_encoding_message_size(config.max_response_bytes)
    }

    /// Runs `call` on the blocking pool (every snapshotter call does file or store I/O) and
    /// maps its error to a status. A panicking call fails only its own request.
    async fn run<T: Send + 'static>(
        &self,
        rpc: &'static str,
        call: impl FnOnce(&Snapshotter) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let snapshotter = self.snapshotter.clone();
        match tokio::task::spawn_blocking(move || call(&snapshotter)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let status = status_of(&err);
                tracing::debug!(rpc, code = ?status.code(), error = %err, "snapshots call failed");
                Err(status)
            }
            Err(join) => {
                tracing::error!(rpc, error = %join, "snapshots call panicked");
                Err(Status::internal(format!("{rpc}: the snapshotter call panicked")))
            }
        }
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let PrepareSnapshotRequest { key, parent, labels, .. } = request.into_inner();
        tracing::debug!(%key, %parent, labels = labels.len(), "prepare");
        let key = required("key", key)?;
        let mounts = self.run("prepare", move |s| s.prepare(&key, &parent, labels)).await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts: mounts_to_proto(mounts) }))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let ViewSnapshotRequest { key, parent, labels, .. } = request.into_inner();
        tracing::debug!(%key, %parent, labels = labels.len(), "view");
        let key = required("key", key)?;
        let mounts = self.run("view", move |s| s.view(&key, &parent, labels)).await?;
        Ok(Response::new(ViewSnapshotResponse { mounts: mounts_to_proto(mounts) }))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let key = request.into_inner().key;
        tracing::debug!(%key, "mounts");
        let key = required("key", key)?;
        let mounts = self.run("mounts", move |s| s.mounts(&key)).await?;
        Ok(Response::new(MountsResponse { mounts: mounts_to_proto(mounts) }))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let CommitSnapshotRequest { name, key, labels, .. } = request.into_inner();
        tracing::debug!(%name, %key, labels = labels.len(), "commit");
        let (name, key) = (required("name", name)?, required("key", key)?);
        self.run("commit", move |s| s.commit(&name, &key, labels)).await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let key = request.into_inner().key;
        tracing::debug!(%key, "remove");
        let key = required("key", key)?;
        self.run("remove", move |s| s.remove(&key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let key = request.into_inner().key;
        tracing::debug!(%key, "stat");
        let key = required("key", key)?;
        let info = self.run("stat", move |s| s.stat(&key)).await?;
        Ok(Response::new(StatSnapshotResponse { info: Some(info_to_proto(info)) }))
    }

    async fn update(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let UpdateSnapshotRequest { info, update_mask, .. } = request.into_inner();
        let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
        let name = info.as_ref().map(|info| info.name.as_str()).unwrap_or_default();
        tracing::debug!(%name, ?paths, "update");
        let info = info.ok_or_else(|| Status::invalid_argument("update: info is required"))?;
        let info = info_from_proto(info)?;
        let updated = self.run("update", move |s| s.update(&info, &paths)).await?;
        Ok(Response::new(UpdateSnapshotResponse { info: Some(info_to_proto(updated)) }))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let filters = request.into_inner().filters;
        tracing::debug!(?filters, "list");
        // Parse before streaming, so a bad filter fails the call rather than its stream.
        let filters = Filters::parse(&filters).map_err(|err| status_of(&err))?;
        let infos = self.run("list", move |s| s.list(&filters)).await?;
        let batches = list_batches(infos).into_iter().map(Ok).collect::<Vec<_>>();
        Ok(Response::new(tokio_stream::iter(batches)))
    }

    async fn usage(
        &self,
        request: Request<UsageRequest>,
    ) -> Result<Response<UsageResponse>, Status> {
        let key = request.into_inner().key;
        tracing::debug!(%key, "usage");
        let key = required("key", key)?;
        let usage = self.run("usage", move |s| s.usage(&key)).await?;
        Ok(Response::new(usage_to_proto(usage)))
    }

    async fn cleanup(&self, request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        let _ = request;
        tracing::debug!("cleanup");
        let removed = self.run("cleanup", |s| s.cleanup()).await?;
        tracing::debug!(removed = removed.len(), "cleanup done");
        Ok(Response::new(()))
    }
}

/// `value`, or an invalid-argument status naming `field` when it is empty.
fn required(field: &str, value: String) -> Result<String, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} must not be empty")));
    }
    Ok(value)
}
