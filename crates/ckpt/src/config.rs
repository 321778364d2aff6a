//! The service's configuration, as it appears in `strata.toml` under `[ckpt]`, and its
//! validation.
//!
//! The seed's `[ICKPT]` .conf format is parsed in `conf` and lands in the same struct.
//! This is not where the KV engine is chosen: that is `[kv]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::StoragePrefix;
use crate::{Error, Result};

/// `[ckpt]` in `strata.toml`. Every field has a default; [`CkptConfig::validate`] checks the
/// whole before a server starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CkptConfig {
    /// The address to listen on, `HOST:PORT` (a host name is resolved at bind).
    pub listen: String,
    /// The server's certificate chain (PEM). TLS needs it, `key_file` and `ca_cert_file`.
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The CA (PEM) that issued `cert_file`: sent with the chain when the chain lacks it,
    /// and trusted, besides the system's roots, for https storage URLs.
    pub ca_cert_file: Option<PathBuf>,
    /// How long one request to the object store may take, in milliseconds.
    pub swift_timeout_ms: u64,
    /// How many requests to the object store may be in flight at once; also how many idle
    /// connections are kept per store host.
    pub swift_connection_pool_size: usize,
    /// How long a staged PUT or DELETE waits for its POST, in milliseconds.
    pub transaction_timeout_ms: u64,
    /// The pause before the first retry of a failed object-store request, in milliseconds.
    pub swift_retry_delay_ms: u64,
    /// Each further retry waits this many times longer than the one before (at least 1).
    pub swift_retry_exp_backoff: f64,
    /// How many times a failed object-store request is retried (0: never).
    pub swift_retry_limit: u32,
    /// The largest request body (a checkpoint value) and the largest object returned by a
    /// GET, in bytes.
    pub max_body_bytes: usize,
    /// How many client connections are served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// A connection with no request in progress for this long is closed, and a request body
    /// must arrive within it, in milliseconds.
    pub idle_timeout_ms: u64,
    /// How many bytes all staged changes together may hold; a PUT or DELETE beyond gets 503.
    pub max_staged_bytes: usize,
    /// The object store(s) the service sends requests to, as URL prefixes such as
    /// `"http://swift.internal:8080/v1/"`. A storage URL is accepted only when its scheme,
    /// host and port are those of an entry and its path starts with the entry's path; any
    /// other gets 400 before the service sends anything anywhere. Empty (the default): every
    /// request is refused until the object store is configured.
    pub storage_hosts: Vec<String>,
    /// What authorizes a request: `"object"` (the default), a GET of the object with the
    /// caller's token, so read access to an object authorizes changes to its checkpoint; or
    /// `"container"`, that GET and also a HEAD of the object's container
    /// (`/v1/ACCOUNT/CONTAINER`), which the store allows only to those who may list it.
    pub authorization: Authorization,
}

/// What authorizes a request; see [`CkptConfig::authorization`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Authorization {
    /// A GET of the object with the caller's token.
    #[default]
    Object,
    /// The object's GET and a HEAD of its container, both with the caller's token.
    Container,
}

impl std::str::FromStr for Authorization {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Authorization, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "object" => Ok(Authorization::Object),
            "container" => Ok(Authorization::Container),
            _ => Err(format!("{text:?}: not object or container")),
        }
    }
}

impl Default for CkptConfig {
    fn default() -> CkptConfig {
        CkptConfig {
            listen: "127.0.0.1:33123".into(),
            cert_file: None,
            key_file: None,
            ca_cert_file: None,
            swift_timeout_ms: 600_000,
            swift_connection_pool_size: 128,
            transaction_timeout_ms: 10_000,
            swift_retry_delay_ms: 1_000,
            swift_retry_exp_backoff: 2.0,
            swift_retry_limit: 4,
            max_body_bytes: 1 << 20,
            max_connections: 1024,
            idle_timeout_ms: 60_000,
            max_staged_bytes: 64 << 20,
            storage_hosts: Vec::new(),
            authorization: Authorization::Object,
        }
    }
}

/// The three files of TLS mode, all given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
    /// The issuing CA.
    pub ca_cert: PathBuf,
}

impl CkptConfig {
    /// Checks every field and the TLS files together: all three given means TLS, none
    /// means plain TCP, and anything else is an error naming what is missing.
    pub fn validate(&self) -> Result<()> {
        self.tls_files()?;
        let positive = [
            ("swift_timeout_ms", self.swift_timeout_ms),
            ("transaction_timeout_ms", self.transaction_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("swift_connection_pool_size", self.swift_connection_pool_size as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_connections", self.max_connections as u64),
            ("max_staged_bytes", self.max_staged_bytes as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(Error::Config(format!("{key}: must be greater than 0")));
        }
        if !(self.swift_retry_exp_backoff >= 1.0 && self.swift_retry_exp_backoff <= 100.0) {
            return Err(Error::Config(format!(
                "swift_retry_exp_backoff: {} is not between 1 and 100",
                self.swift_retry_exp_backoff
            )));
        }
        if self.listen.trim().is_empty() {
            return Err(Error::Config("listen: empty".into()));
        }
        self.storage_prefixes()?;
        Ok(())
    }

    /// `storage_hosts`, parsed.
    pub(crate) fn storage_prefixes(&self) -> Result<Vec<StoragePrefix>> {
        self.storage_hosts
            .iter()
            .map(|entry| {
                StoragePrefix::parse(entry)
                    .map_err(|why| Error::Config(format!("storage_hosts: {entry:?}: {why}")))
            })
            .collect()
    }

    /// The TLS files when all three are given, `None` when none is, and an error naming
    /// the missing ones otherwise. An empty path counts as not given.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>> {
        let given = |path: &Option<PathBuf>| path.clone().filter(|p| !p.as_os_str().is_empty());
        match (given(&self.cert_file), given(&self.key_file), given(&self.ca_cert_file)) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca_cert)) => Ok(Some(TlsFiles { cert, key, ca_cert })),
            (cert, key, ca) => {
                let missing: Vec<&str> = [
                    ("cert_file (CertFilePath)", cert.is_none()),
                    ("key_file (KeyFilePath)", key.is_none()),
                    ("ca_cert_file (CACertFilePath)", ca.is_none()),
                ]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
                Err(Error::Config(format!(
                    "TLS needs a certificate, its key and the CA together, or none of them \
                     for plain TCP; missing: {}",
                    missing.join(", ")
                )))
            }
        }
    }

    /// The CA file, if one is given, which outbound https requests trust too.
    pub(crate) fn extra_ca(&self) -> Option<&Path> {
        self.ca_cert_file.as_deref().filter(|p| !p.as_os_str().is_empty())
    }

    pub(crate) fn swift_timeout(&self) -> Duration {
        Duration::from_millis(self.swift_timeout_ms)
    }

    pub(crate) fn transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.transaction_timeout_ms)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub(crate) fn swift_retry_delay(&self) -> Duration {
        Duration::from_millis(self.swift_retry_delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_plain_tcp() {
        let config = CkptConfig::default();
        config.validate().unwrap();
        assert_eq!(config.tls_files().unwrap(), None);
    }

    #[test]
    fn a_partial_tls_configuration_names_what_is_missing() {
        let config = CkptConfig {
            cert_file: Some("server.pem".into()),
            key_file: Some("".into()),
            ..CkptConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("missing: key_file (KeyFilePath), ca_cert_file"), "{err}");
    }

    #[test]
    fn storage_hosts_must_be_http_url_prefixes() {
        let config = |hosts: &[&str]| CkptConfig {
            storage_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..CkptConfig::default()
        };
        config(&["http://127.0.0.1:8080", "https://swift.internal/v1/"]).validate().unwrap();
        for bad in ["swift.internal:8080", "ftp://swift", "http://swift/v1?x=1", ""] {
            let err = config(&[bad]).validate().unwrap_err().to_string();
            assert!(err.contains("storage_hosts"), "{bad}: {err}");
        }
    }

    #[test]
    fn zero_limits_and_shrinking_backoff_are_refused() {
        let config = CkptConfig { max_body_bytes: 0, ..CkptConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("max_body_bytes"));
        let config = CkptConfig { swift_retry_exp_backoff: 0.5, ..CkptConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("backoff"));
    }
}
