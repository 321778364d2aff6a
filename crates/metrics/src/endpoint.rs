//! The HTTP endpoint: `/metrics`, `/healthz` and `/readyz` on the shell every strata server
//! shares.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::{Error, Result};

/// The most scrapers served at once.
const MAX_CONNECTIONS: usize = 16;
/// A connection with no request begun for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a scrape in progress may finish once the endpoint stops.
const GRACE: Duration = Duration::from_secs(2);
/// Prometheus's text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the process is ready: every service bound and serving, and not stopping. Clones
/// share one state; a new one is not ready.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Reports the process ready (`true`) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// What `/readyz` answers now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The metrics and health endpoint, bound and not yet serving.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    local_addr: SocketAddr,
    handle: PrometheusHandle,
    health: Health,
}

impl Endpoint {
    /// Installs the recorder (once per process; see [`crate::install`]) and binds `addr`.
    /// The endpoint reports not ready until [`Health::set_ready`].
    pub async fn bind(addr: SocketAddr) -> Result<Endpoint> {
        let handle = crate::install()?;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
        Ok(Endpoint { listener, local_addr, handle, health: Health::default() })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The readiness it reports on `/readyz`.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Serves until `shutdown` completes, then lets scrapes in progress finish briefly.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.local_addr, "metrics serving");
        let shell = strata_net::Shell {
            grace: GRACE,
            ..strata_net::Shell::new("metrics", MAX_CONNECTIONS)
        };
        let (handle, health) = (self.handle, self.health);
        strata_net::serve(&shell, self.listener, shutdown, |stream, peer, stopping| {
            let (handle, health) = (handle.clone(), health.clone());
            async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let answer = respond(request.method(), request.uri().path(), &handle, &health);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let io = TokioIo::new(stream);
                if let Err(err) = strata_net::http1(io, service, IDLE_TIMEOUT, stopping).await {
                    tracing::debug!(%peer, "metrics connection: {err}");
                }
            }
        })
        .await;
    }
}

/// The answer to `method path`.
fn respond(
    method: &Method,
    path: &str,
    handle: &PrometheusHandle,
    health: &Health,
) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n");
    }
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match path {
        "/metrics" => {
            // Fold the samples recorded since the last upkeep into their buckets first.
            handle.run_upkeep();
            let mut response = text(StatusCode::OK, handle.render());
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(TEXT_FORMAT));
            response
        }
        "/readyz" if health.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::OK, "ok\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Not ready until told, healthy throughout, and a recorded histogram rendered with
    /// the catalog's buckets.
    #[tokio::test]
    async fn readyz_follows_health_and_metrics_render_the_catalog_buckets() {
        let endpoint = Endpoint::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (addr, health) = (endpoint.local_addr(), endpoint.health());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(endpoint.run(async {
            let _ = stopped.await;
        }));
        assert_eq!(get(addr, "/readyz").await, (503, "not ready\n".to_string()));
        assert_eq!(get(addr, "/healthz").await.0, 200);
        health.set_ready(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        metrics::histogram!("strata_tlog_fsync_duration_seconds").record(0.000_02);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let first = "strata_tlog_fsync_duration_seconds_bucket{le=\"0.00005\"} 1";
        assert!(body.contains(first), "{body}");
        assert!(body.contains("strata_build_info{version="), "{body}");
        assert!(body.contains("# HELP strata_tlog_fsync_duration_seconds "), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        health.set_ready(false);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        stop.send(()).unwrap();
        server.await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "stopped");
    }
}
