//! The client library: the protocol's requests, and the two-step put and delete.
//!
//! A [`Client`] talks to one checkpoint server over a pooled HTTP/1.1 connection set; it is
//! cheap to clone and safe to share between tasks. Errors the server answers with come back
//! as [`Error::Rejected`] with their status, so callers can tell 409 (nothing staged under
//! that id) from 503 (try later). This is not a client of the object store.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::http_client::{self, ClientSettings, HttpClient};
use crate::request::{AUTH_TOKEN_HEADER, STORAGE_URL_HEADER};
use crate::response::{REVISION_HEADER, SOURCE_HEADER};
use crate::{Error, Result, TxId};

/// How to reach a checkpoint server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's URL, `http://HOST:PORT` or `https://HOST:PORT`.
    pub server: String,
    /// A CA (PEM) to trust besides the system's roots, for a server with a private CA.
    pub ca_cert_file: Option<PathBuf>,
    /// How long one request may take, connect to last byte.
    pub timeout: Duration,
    /// The most idle connections kept to the server.
    pub max_idle_connections: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            server: "http://127.0.0.1:33123".into(),
            ca_cert_file: None,
            timeout: Duration::from_secs(30),
            max_idle_connections: 64,
        }
    }
}

/// The checkpoint a request is about: the object that holds it and the object-store token
/// that authorizes the request.
#[derive(Debug, Clone)]
pub struct Target {
    /// The full URL of the object (`X-Storage-Url`).
    pub storage_url: String,
    /// The object store's token (`X-Auth-Token`).
    pub token: String,
}

/// A value read by [`Client::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The committed value, or the object's own content when none is committed.
    pub value: Bytes,
    /// How many commits the checkpoint has had (0: none).
    pub revision: u64,
    /// True when `value` is the committed one.
    pub committed: bool,
}

/// A client of one checkpoint server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: HttpClient,
    /// The server URL without a trailing slash.
    server: String,
    timeout: Duration,
}

impl Client {
    /// A client for `config.server`.
    pub fn new(config: &ClientConfig) -> Result<Client> {
        let server = config.server.trim_end_matches('/').to_string();
        let scheme_ok = server.starts_with("http://") || server.starts_with("https://");
        if !scheme_ok || server.parse::<http::Uri>().is_err() {
            return Err(Error::Config(format!("server {server:?}: not an http(s) URL")));
        }
        let tls = crate::tls::client_config(config.ca_cert_file.as_deref())?;
        let settings = ClientSettings {
            max_idle_per_host: config.max_idle_connections,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: config.timeout,
        };
        Ok(Client { http: http_client::build(tls, &settings), server, timeout: config.timeout })
    }

    /// `HEAD /`: succeeds while the server runs.
    pub async fn health(&self) -> Result<()> {
        self.send(Method::HEAD, "/", None, Bytes::new()).await.map(drop)
    }

    /// `GET /`: the checkpoint as of now.
    pub async fn get(&self, target: &Target) -> Result<Checkpoint> {
        let response = self.send(Method::GET, "/", Some(target), Bytes::new()).await?;
        let committed = response.header(SOURCE_HEADER) == Some("committed");
        Ok(Checkpoint { revision: response.revision(), committed, value: response.body })
    }

    /// `PUT /TXID`: stages `value`; invisible until [`Client::commit`] with the same id.
    pub async fn stage_put(&self, target: &Target, txid: &TxId, value: Bytes) -> Result<()> {
        self.send(Method::PUT, &path(txid), Some(target), value).await.map(drop)
    }

    /// `DELETE /TXID`: stages forgetting the committed value.
    pub async fn stage_delete(&self, target: &Target, txid: &TxId) -> Result<()> {
        self.send(Method::DELETE, &path(txid), Some(target), Bytes::new()).await.map(drop)
    }

    /// `POST /TXID`: commits what `txid` staged; returns the checkpoint's new revision.
    pub async fn commit(&self, target: &Target, txid: &TxId) -> Result<u64> {
        let response = self.send(Method::POST, &path(txid), Some(target), Bytes::new()).await?;
        Ok(response.revision())
    }

    /// Sets the checkpoint to `value`: stages it under a fresh id and commits it.
    /// Returns the new revision.
    pub async fn put(&self, target: &Target, value: Bytes) -> Result<u64> {
        let txid = TxId::generate();
        self.stage_put(target, &txid, value).await?;
        self.commit(target, &txid).await
    }

    /// Forgets the committed value, so reads return the object's own content again:
    /// stages the deletion under a fresh id and commits it. Returns the new revision.
    pub async fn delete(&self, target: &Target) -> Result<u64> {
        let txid = TxId::generate();
        self.stage_delete(target, &txid).await?;
        self.commit(target, &txid).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        target: Option<&Target>,
        body: Bytes,
    ) -> Result<Answer> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.server));
        if let Some(target) = target {
            request = request
                .header(STORAGE_URL_HEADER, header_value("storage url", &target.storage_url)?)
                .header(AUTH_TOKEN_HEADER, header_value("token", &target.token)?);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|err| Error::InvalidRequest(format!("request: {err}")))?;
        let exchange = async {
            let response =
                self.http.request(request).await.map_err(|err| self.unreachable(&err))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|err| self.unreachable(&err))?.to_bytes();
            Ok::<_, Error>(Answer { status: parts.status, headers: parts.headers, body })
        };
        let answer = tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            Error::ServerUnreachable {
                server: self.server.clone(),
                cause: format!("no answer within {:?}", self.timeout),
            }
        })??;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let message = String::from_utf8_lossy(&answer.body).trim_end().to_string();
        Err(Error::Rejected { status: answer.status.as_u16(), message })
    }

    fn unreachable(&self, err: &dyn std::error::Error) -> Error {
        let mut cause = err.to_string();
        let mut source = err.source();
        while let Some(next) = source {
            cause.push_str(&format!(": {next}"));
            source = next.source();
        }
        Error::ServerUnreachable { server: self.server.clone(), cause }
    }
}

/// A response as the client keeps it.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn revision(&self) -> u64 {
        self.header(REVISION_HEADER).and_then(|value| value.parse().ok()).unwrap_or(0)
    }
}

fn path(txid: &TxId) -> String {
    format!("/{txid}")
}

fn header_value(what: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value)
        .map_err(|_| Error::InvalidRequest(format!("{what}: not valid in an HTTP header")))
}
