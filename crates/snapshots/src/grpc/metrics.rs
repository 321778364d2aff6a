//! What the Snapshots service records in the process's metrics: each call's method, gRPC
//! code and duration (`strata_snapshotter_grpc_*`, documented in docs/operations.md). A
//! tower layer around the whole service, so calls refused before any handler runs (bad
//! arguments, unknown methods) are counted too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;

/// The methods of `containerd.services.snapshots.v1.Snapshots`; any other path is `other`.
const METHODS: &[&str] = &[
    "Prepare", "View", "Mounts", "Commit", "Remove", "Stat", "Update", "List", "Usage", "Cleanup",
];

/// A service whose calls are recorded.
#[derive(Debug, Clone)]
pub(crate) struct Observed<S> {
    inner: S,
}

impl<S> Observed<S> {
    /// Records the calls of `inner`.
    pub(crate) fn new(inner: S) -> Observed<S> {
        Observed { inner }
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Observed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_name(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            // A failed call answers with its status in the headers (trailers only); a
            // successful one sends OK in the trailers, after the message.
            let code = match &response {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .map_or(Code::Ok, |status| Code::from_bytes(status.as_bytes())),
                Err(_) => Code::Unavailable,
            };
            let code = match code {
                Code::Ok => "OK".to_string(),
                other => format!("{other:?}"),
            };
            metrics::histogram!(
                "strata_snapshotter_grpc_request_duration_seconds",
                "method" => method
            )
            .record(started.elapsed());
            metrics::counter!(
                "strata_snapshotter_grpc_requests_total",
                "method" => method,
                "code" => code
            )
            .increment(1);
            response
        })
    }
}

/// The method a request's path names (`/containerd.services.snapshots.v1.Snapshots/Stat`).
fn method_name(path: &str) -> &'static str {
    let last = path.rsplit('/').next().unwrap_or_default();
    METHODS.iter().find(|m| **m == last).copied().unwrap_or("other")
}
