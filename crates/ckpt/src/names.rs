//! The two names a request carries: the storage URL of the object that holds a checkpoint,
//! and the transaction id that ties a staged change to its commit.
//!
//! Both are validated once, when a request is parsed, so the rest of the service holds
//! only well-formed values. This is not where they are authorized: see `authorize`.

use std::fmt;

use crate::{Error, Result};

/// The longest storage URL accepted, in bytes.
pub const MAX_STORAGE_URL_LEN: usize = 4096;
/// The longest transaction id accepted, in bytes.
pub const MAX_TXID_LEN: usize = 256;

/// The full URL of the object that holds a checkpoint (`X-Storage-Url`), http or https.
///
/// Normalized so that spellings of one object share one checkpoint: the scheme and host
/// are lower-cased, a default port (80 for http, 443 for https) is dropped, and an empty
/// path becomes `/`. The path and query are kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageUrl {
    normalized: String,
}

impl StorageUrl {
    /// Validates and normalizes `text`.
    pub fn parse(text: &str) -> Result<StorageUrl> {
        let invalid = |why: &str| Error::InvalidRequest(format!("X-Storage-Url {text:?}: {why}"));
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > MAX_STORAGE_URL_LEN {
            return Err(invalid("longer than 4096 bytes"));
        }
        let uri: http::Uri = text.parse().map_err(|_| invalid("not a URL"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => "http",
            Some("https") => "https",
            Some(_) => return Err(invalid("only http and https URLs are accepted")),
            None => return Err(invalid("not an absolute http or https URL")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not accepted in the URL"));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match (scheme, authority.port_u16()) {
            (_, None) | ("http", Some(80)) | ("https", Some(443)) => String::new(),
            (_, Some(port)) => format!(":{port}"),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = if path.is_empty() { "/" } else { path };
        Ok(StorageUrl { normalized: format!("{scheme}://{host}{port}{path}") })
    }

    /// The normalized URL.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

/// A transaction id: the path of a PUT, DELETE or POST without its leading `/`.
///
/// One to 256 bytes of visible ASCII other than `/`, `?` and `#`, so it is one path
/// segment that needs no escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(String);

impl TxId {
    /// Validates `text`.
    pub fn parse(text: &str) -> Result<TxId> {
        let invalid = |why: &str| Error::InvalidRequest(format!("transaction id {text:?}: {why}"));
        if text.is_empty() {
            return Err(invalid("empty; PUT, DELETE and POST take one as their path"));
        }
        if text.len() > MAX_TXID_LEN {
            return Err(invalid("longer than 256 bytes"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#')) {
            return Err(invalid("only visible ASCII other than '/', '?' and '#' is accepted"));
        }
        Ok(TxId(text.to_string()))
    }

    /// A fresh random id of 32 hex digits (128 bits), as the client generates them.
    pub fn generate() -> TxId {
        TxId(format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_are_normalized() {
        let url = StorageUrl::parse("HTTP://Swift.Example:80/v1/AUTH_a/c/o?x=1").unwrap();
        assert_eq!(url.as_str(), "http://swift.example/v1/AUTH_a/c/o?x=1");
        let url = StorageUrl::parse("https://h:8443/v1/AUTH_a/C/O").unwrap();
        assert_eq!(url.as_str(), "https://h:8443/v1/AUTH_a/C/O");
        assert_eq!(StorageUrl::parse("https://h:443").unwrap().as_str(), "https://h/");
    }

    #[test]
    fn storage_urls_must_be_absolute_http() {
        for bad in ["", "ftp://h/o", "/v1/AUTH_a/c/o", "h/o", "http://u:p@h/o", "http:///o"] {
            let err = StorageUrl::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn txids_are_one_visible_segment() {
        assert_eq!(TxId::parse("tx-1.A_b~").unwrap().as_str(), "tx-1.A_b~");
        for bad in ["", "a/b", "a b", "a?b", &"x".repeat(257)] {
            assert!(TxId::parse(bad).is_err(), "{bad}");
        }
        let (a, b) = (TxId::generate(), TxId::generate());
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, b);
    }
}
