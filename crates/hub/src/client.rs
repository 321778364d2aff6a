//! The hub's HTTP client: JSON requests with a bearer token over http or https (rustls,
//! trusting the system's roots and an optional CA file), streamed blob uploads and
//! downloads (verified by hash as they are stored). A [`Remote`] for push, pull and sync.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_volume::BlobStore;

use crate::model::{Branch, Snapshot, VolumeSet};
use crate::service::{blob_id, receive_blob};
use crate::sync::{Export, ImportRequest, ImportResponse, SyncRequest, SyncResponse};
use crate::transfer::{Remote, Tick};
use crate::{Error, Result};

type Body = BoxBody<Bytes, std::io::Error>;

/// A client of one hub server, acting as the token's user. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Body>,
    base: String,
    token: String,
    timeout: Duration,
    /// Whether a CA file was given besides the system's roots (for error hints).
    has_ca_file: bool,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

#[derive(Serialize, serde::Deserialize)]
struct BlobIds {
    ids: Vec<String>,
}

impl Client {
    /// A client of the hub at `url` (`http://HOST:PORT` or `https://HOST:PORT`) using
    /// `token`; https trusts the system's roots.
    pub fn new(url: &str, token: &str) -> Result<Client> {
        Client::with_ca_file(url, token, None)
    }

    /// A client of the hub at `url` using `token`; https trusts the system's roots and the
    /// certificates in `ca_file` (PEM).
    pub fn with_ca_file(url: &str, token: &str, ca_file: Option<&Path>) -> Result<Client> {
        let base = url.trim_end_matches('/').to_string();
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        if !scheme_ok || base.parse::<http::Uri>().is_err() {
            return Err(Error::InvalidArgument(format!(
                "remote {url:?}: not an http://HOST:PORT or https://HOST:PORT URL"
            )));
        }
        let tls = strata_net::tls::client_config(ca_file)
            .map_err(|e| Error::InvalidArgument(format!("hub CA file: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        let timeout = Duration::from_secs(300);
        Ok(Client { http, base, token: token.into(), timeout, has_ca_file: ca_file.is_some() })
    }

    fn request(&self, method: Method, path: &str, body: Body) -> Result<Request<Body>> {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| Error::InvalidArgument(format!("request {path}: {e}")))
    }

    async fn send(&self, request: Request<Body>) -> Result<hyper::Response<hyper::body::Incoming>> {
        let path = request.uri().path().to_string();
        let response = self.http.request(request).await.map_err(|e| self.unreachable(&path, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized(format!(
                "the hub at {} refused the token ({message}); ask its operator for a token \
                 (`strata hub token create USER` on the hub's machine) and pass it with \
                 --token or STRATA_HUB_TOKEN",
                self.base
            )),
            StatusCode::NOT_FOUND => Error::NotFound(message),
            StatusCode::CONFLICT if message.starts_with("history diverged: ") => {
                let detail = message.trim_start_matches("history diverged: ");
                Error::Diverged(detail.split("; pull").next().unwrap_or(detail).to_string())
            }
            s if s.is_server_error() => Error::Unavailable(format!("{path}: {status}: {message}")),
            s => Error::Rejected { status: s.as_u16(), message },
        })
    }

    /// A request that got no answer: the whole chain of causes (a TLS certificate problem
    /// is deep in it), and what to do about the certificate problems.
    fn unreachable(&self, path: &str, err: &dyn std::error::Error) -> Error {
        let mut message = format!("{}{path}: {err}", self.base);
        let mut cause = err.source();
        while let Some(c) = cause {
            message.push_str(&format!(": {c}"));
            cause = c.source();
        }
        if message.contains("certificate") && self.has_ca_file {
            message.push_str(
                "; the hub's certificate was not accepted: check that the CA file holds the \
                 CA that signed it and that the certificate names the host of the URL",
            );
        } else if message.contains("certificate") {
            message.push_str(
                "; the hub's certificate is not trusted: pass --ca-file PEM (or set \
                 hub.ca_file) with the CA that signed it",
            );
        } else if self.base.starts_with("https://") && message.contains("corrupt message") {
            message.push_str("; the hub may not serve TLS: try an http:// URL");
        }
        Error::Unavailable(message)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| Error::InvalidArgument(e.to_string()))?,
            None => Vec::new(),
        };
        let request = self.request(method, path, full(bytes))?;
        let work = async {
            let response = self.send(request).await?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Unavailable(format!("{path}: reading the answer: {e}")))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map_err(|e| Error::Corrupted(format!("{path}: unexpected answer: {e}")))
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| {
            Error::Unavailable(format!("{}{path}: no answer within {:?}", self.base, self.timeout))
        })?
    }

    /// The token's user.
    pub async fn whoami(&self) -> Result<String> {
        let v: serde_json::Value = self.call(Method::GET, "/v1/whoami", None::<&()>).await?;
        Ok(v.get("user").and_then(|u| u.as_str()).unwrap_or_default().to_string())
    }

    /// The volume sets the user may see.
    pub async fn volsets(&self) -> Result<Vec<VolumeSet>> {
        self.call(Method::GET, "/v1/volumesets", None::<&()>).await
    }

    /// The branches of a volume set.
    pub async fn branches(&self, vsid: &str) -> Result<Vec<Branch>> {
        self.call(Method::GET, &format!("/v1/volumesets/{vsid}/branches"), None::<&()>).await
    }

    /// One snapshot.
    pub async fn snapshot(&self, id: &str) -> Result<Snapshot> {
        self.call(Method::GET, &format!("/v1/snapshots/{id}"), None::<&()>).await
    }

    /// Shares a volume set with `user`.
    pub async fn grant(&self, vsid: &str, user: &str) -> Result<()> {
        let _: serde_json::Value = self
            .call(
                Method::POST,
                &format!("/v1/volumesets/{vsid}/grants"),
                Some(&serde_json::json!({ "user": user })),
            )
            .await?;
        Ok(())
    }
}

impl Remote for Client {
    async fn find_volset(&self, name_or_id: &str) -> Result<Option<VolumeSet>> {
        Ok(self.volsets().await?.into_iter().find(|v| v.id == name_or_id || v.name == name_or_id))
    }

    async fn export(&self, vsid: &str) -> Result<Export> {
        self.call(Method::GET, &format!("/v1/volumesets/{vsid}/export"), None::<&()>).await
    }

    async fn export_since(&self, vsid: &str, since: &str) -> Result<Export> {
        let since: String = form_urlencoded::byte_serialize(since.as_bytes()).collect();
        self.call(Method::GET, &format!("/v1/volumesets/{vsid}/export?since={since}"), None::<&()>)
            .await
    }

    async fn import(&self, vsid: &str, request: &ImportRequest) -> Result<ImportResponse> {
        self.call(Method::POST, &format!("/v1/volumesets/{vsid}/import"), Some(request)).await
    }

    async fn sync(&self, vsid: &str, request: &SyncRequest) -> Result<SyncResponse> {
        self.call(Method::POST, &format!("/v1/volumesets/{vsid}/sync"), Some(request)).await
    }

    async fn missing_blobs(&self, ids: &[String]) -> Result<Vec<String>> {
        let answer: BlobIds = self
            .call(Method::POST, "/v1/blobs/missing", Some(&BlobIds { ids: ids.to_vec() }))
            .await?;
        Ok(answer.ids)
    }

    async fn upload_blob(&self, blobs: &BlobStore, id: &str, progress: &dyn Fn(u64)) -> Result<()> {
        let blob = blob_id(id)?;
        let mut file = blobs.open_blob(&blob).map_err(Error::blob)?;
        let size = blobs.size(&blob).map_err(Error::blob)?;
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<std::result::Result<Frame<Bytes>, std::io::Error>>(4);
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver)).boxed();
        let mut request = self.request(Method::PUT, &format!("/v1/blobs/{id}"), body)?;
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/octet-stream"),
        );
        request.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
        let feed = async move {
            loop {
                let mut buf = vec![0u8; 256 << 10];
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(err) => {
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                buf.truncate(n);
                if sender.send(Ok(Frame::data(Bytes::from(buf)))).await.is_err() {
                    return;
                }
                progress(n as u64);
            }
        };
        let (response, ()) = tokio::join!(self.send(request), feed);
        let response = response?;
        let _ = response.into_body().collect().await;
        Ok(())
    }

    async fn download_blob(&self, vs: &str, id: &str, to: &BlobStore, on: Tick<'_>) -> Result<()> {
        let blob = blob_id(id)?;
        let request =
            self.request(Method::GET, &format!("/v1/blobs/{id}?volumeset={vs}"), full(Vec::new()))?;
        let mut body = self.send(request).await?.into_body();
        // Written, hashed and fsynced on a blocking thread: the lanes of a pull overlap.
        let (sender, writer) = receive_blob(to.clone(), blob);
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Error::Unavailable(format!("downloading blob {id}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                let len = data.len() as u64;
                if sender.send(data).await.is_err() {
                    break;
                }
                on(len);
            }
        }
        drop(sender);
        writer.await.map_err(|e| {
            Error::Unavailable(format!("storing blob {id}: the writer failed: {e}"))
        })??;
        Ok(())
    }
}
