//! The pooled HTTP/1.1 client the service reaches the object store with and the client
//! library reaches the service with: http and https, rustls, keep-alive.
//!
//! This is not where timeouts, retries or concurrency limits live; callers add those.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The client type: requests carry a whole body in memory.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What a client keeps and how it connects.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    /// The most idle connections kept open per host.
    pub(crate) max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub(crate) idle_timeout: Duration,
    /// How long a TCP connect may take.
    pub(crate) connect_timeout: Duration,
}

/// Builds a client that speaks http and https with `tls`.
pub(crate) fn build(tls: rustls::ClientConfig, settings: &ClientSettings) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(settings.max_idle_per_host)
        .pool_idle_timeout(settings.idle_timeout)
        .build(https)
}
