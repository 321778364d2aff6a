//! What every endpoint parses out of a request: the target (storage URL and token), the
//! transaction id in the path, and a bounded body.
//!
//! Parsing only checks form; whether the token is good is for the object store to say
//! (see `authorize`).

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{Error, Result, StorageUrl, TxId};

/// The header naming the object that holds the checkpoint.
pub const STORAGE_URL_HEADER: &str = "x-storage-url";
/// The header with the caller's object-store token.
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";

/// The checkpoint a request is about and the token that must authorize it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) url: StorageUrl,
    pub(crate) token: String,
}

impl Target {
    /// Reads `X-Storage-Url` (400 when missing or not http(s)) and `X-Auth-Token` (401 when
    /// missing: without a token the store cannot authorize anything).
    pub(crate) fn parse(headers: &HeaderMap) -> Result<Target> {
        let url = header(headers, STORAGE_URL_HEADER)?
            .ok_or_else(|| Error::InvalidRequest("X-Storage-Url: missing".into()))?;
        let url = StorageUrl::parse(url)?;
        let token = header(headers, AUTH_TOKEN_HEADER)?.filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(Error::Unauthorized { url: url.to_string(), reason: "no X-Auth-Token" });
        };
        Ok(Target { url, token: token.to_string() })
    }
}

/// The transaction id a PUT, DELETE or POST carries as its path.
pub(crate) fn txid(parts: &Parts) -> Result<TxId> {
    TxId::parse(parts.uri.path().trim_start_matches('/'))
}

/// Checks that a GET or HEAD has the empty path `/`.
pub(crate) fn empty_path(parts: &Parts) -> Result<()> {
    match parts.uri.path() {
        "" | "/" => Ok(()),
        path => Err(Error::InvalidRequest(format!(
            "path {path:?}: {} takes the empty path; only PUT, DELETE and POST take a \
             transaction id",
            parts.method
        ))),
    }
}

/// Reads a whole body of at most `limit` bytes, which must arrive within `timeout`.
pub(crate) async fn body<B>(
    body: B,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Error::BodyTooLarge { limit })
        }
        Ok(Err(err)) => Err(Error::BodyIncomplete(err.to_string())),
        Err(_) => Err(Error::BodyIncomplete(format!("not received within {timeout:?}"))),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let value =
        value.to_str().map_err(|_| Error::InvalidRequest(format!("{name}: not visible ASCII")))?;
    Ok(Some(value.trim()))
}
