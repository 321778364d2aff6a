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

    /// The scheme, host and port (`http://host:8080`), and the path with the query (`/v1/…`).
    fn split(&self) -> (&str, &str) {
        let after_scheme = self.normalized.find("://").map_or(0, |at| at + 3);
        let path_at = self.normalized[after_scheme..]
            .find('/')
            .map_or(self.normalized.len(), |at| at + after_scheme);
        self.normalized.split_at(path_at)
    }

    /// The URL of the container that holds the object, Swift's way: the first three path
    /// elements (`/v1/ACCOUNT/CONTAINER`). `None` when the path has no object element.
    pub(crate) fn container(&self) -> Option<StorageUrl> {
        let (origin, path) = self.split();
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let elements: Vec<&str> = path.split('/').skip(1).collect();
        if elements.len() < 4 || elements[..4].iter().any(|e| e.is_empty()) {
            return None;
        }
        Some(StorageUrl { normalized: format!("{origin}/{}", elements[..3].join("/")) })
    }
}

/// An entry of `storage_hosts`: the scheme, host and port of an object store, and a path
/// prefix every storage URL on it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoragePrefix {
    origin: String,
    path: String,
}

impl StoragePrefix {
    /// Parses an http or https URL without query, normalized as a [`StorageUrl`] is.
    pub(crate) fn parse(text: &str) -> std::result::Result<StoragePrefix, String> {
        let url = StorageUrl::parse(text).map_err(|err| match err {
            Error::InvalidRequest(why) => why,
            other => other.to_string(),
        })?;
        let (origin, path) = url.split();
        if path.contains(['?', '#']) {
            return Err("a prefix has no query".into());
        }
        Ok(StoragePrefix { origin: origin.into(), path: path.into() })
    }

    /// Whether `url` is on this object store, under this prefix's path. A path prefix ends
    /// at an element boundary: `/v1/AUTH_a` admits `/v1/AUTH_a/c/o`, not `/v1/AUTH_ab/c/o`.
    pub(crate) fn admits(&self, url: &StorageUrl) -> bool {
        let (origin, path) = url.split();
        origin == self.origin
            && path.strip_prefix(&self.path).is_some_and(|rest| {
                self.path.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?'])
            })
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
    fn prefixes_admit_their_store_only() {
        let prefix = |text| StoragePrefix::parse(text).unwrap();
        let url = |text| StorageUrl::parse(text).unwrap();
        let store = prefix("HTTP://Swift:8080");
        assert!(store.admits(&url("http://swift:8080/v1/AUTH_a/c/o")));
        for other in [
            "http://swift:8081/v1/AUTH_a/c/o",
            "https://swift:8080/v1/AUTH_a/c/o",
            "http://swift.evil:8080/v1/AUTH_a/c/o",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(!store.admits(&url(other)), "{other}");
        }
        let account = prefix("http://swift:8080/v1/AUTH_a");
        assert!(account.admits(&url("http://swift:8080/v1/AUTH_a/c/o")));
        assert!(!account.admits(&url("http://swift:8080/v1/AUTH_ab/c/o")));
        assert!(!account.admits(&url("http://swift:8080/v1/AUTH_b/c/o")));
        assert!(prefix("http://swift:8080/v1/").admits(&url("http://swift:8080/v1/AUTH_b/c")));
    }

    #[test]
    fn the_container_is_the_first_three_path_elements() {
        let container = |text| StorageUrl::parse(text).unwrap().container().map(|c| c.to_string());
        assert_eq!(
            container("http://s:8080/v1/AUTH_a/c/dir/o?x").as_deref(),
            Some("http://s:8080/v1/AUTH_a/c")
        );
        assert_eq!(container("http://s:8080/v1/AUTH_a/c"), None);
        assert_eq!(container("http://s:8080/v1/AUTH_a/c/"), None);
    }

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
