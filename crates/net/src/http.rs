//! One HTTP/1 connection, served the way every strata HTTP server serves it.

use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1::Builder;
use hyper::service::HttpService;
use hyper_util::rt::TokioTimer;

use crate::Stopping;

/// Serves one HTTP/1 connection with `service`: keep-alive, a connection with no request
/// begun for `idle_timeout` closed (the header read timeout), and, once the server stops,
/// the request in progress finished and the connection closed.
pub async fn http1<I, S, B>(
    io: I,
    service: S,
    idle_timeout: Duration,
    mut stopping: Stopping,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(idle_timeout).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = stopping.wait() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}
