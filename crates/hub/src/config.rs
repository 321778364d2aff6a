//! `[hub]` in `strata.toml`: the hub server's limits and TLS files, the CA file clients
//! trust, the local user name, and their validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::server::HubServerConfig;
use crate::{Error, Result};

/// `[hub]` in strata.toml: every field has a default; [`HubConfig::validate`] checks the
/// whole.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Where `strata hub serve` and `strata serve` listen.
    pub listen: String,
    /// Connections served at once.
    pub max_connections: usize,
    /// Idle connections are closed after this many milliseconds.
    pub idle_timeout_ms: u64,
    /// The largest JSON request body.
    pub max_body_bytes: usize,
    /// The largest blob upload.
    pub max_blob_bytes: u64,
    /// The name local volume sets and snapshots record as owner and creator
    /// [default: $USER, else "local"].
    pub user: Option<String>,
    /// The hub server's certificate chain (PEM); with `tls_key`, it serves https only.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A CA certificate file (PEM) that clients (push, pull, sync, hub grant) trust for
    /// https remotes, besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        let d = HubServerConfig::default();
        HubConfig {
            listen: d.listen,
            max_connections: d.max_connections,
            idle_timeout_ms: u64::try_from(d.idle_timeout.as_millis()).unwrap_or(60_000),
            max_body_bytes: d.max_body_bytes,
            max_blob_bytes: d.max_blob_bytes,
            user: None,
            tls_cert: None,
            tls_key: None,
            ca_file: None,
        }
    }
}

impl HubConfig {
    /// Checks the limits (each must be greater than zero) and that the TLS files come as a
    /// pair.
    pub fn validate(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let missing = if self.tls_cert.is_none() { "hub.tls_cert" } else { "hub.tls_key" };
            return Err(Error::InvalidArgument(format!(
                "hub TLS needs both hub.tls_cert and hub.tls_key; missing: {missing}"
            )));
        }
        let positive = [
            ("hub.max_connections", self.max_connections as u64),
            ("hub.idle_timeout_ms", self.idle_timeout_ms),
            ("hub.max_body_bytes", self.max_body_bytes as u64),
            ("hub.max_blob_bytes", self.max_blob_bytes),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((key, _)) => Err(Error::InvalidArgument(format!("{key} must be greater than 0"))),
            None => Ok(()),
        }
    }

    /// The server settings, listening on `listen` when given.
    pub fn server(&self, listen: Option<String>) -> HubServerConfig {
        HubServerConfig {
            listen: listen.unwrap_or_else(|| self.listen.clone()),
            max_connections: self.max_connections,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_body_bytes: self.max_body_bytes,
            max_blob_bytes: self.max_blob_bytes,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }

    /// Who local records name as owner and creator.
    pub fn local_user(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "local".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_limits_are_named() {
        HubConfig::default().validate().unwrap();
        let bad = HubConfig { max_body_bytes: 0, ..HubConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("hub.max_body_bytes"));
        let server = HubConfig::default().server(Some("127.0.0.1:0".into()));
        assert_eq!(server.listen, "127.0.0.1:0");
        let half = HubConfig { tls_cert: Some("hub.pem".into()), ..HubConfig::default() };
        assert!(half.validate().unwrap_err().to_string().contains("missing: hub.tls_key"));
    }
}
