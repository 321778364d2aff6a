//! `[nbd]` in `strata.toml`: what `strata nbd serve` and `strata serve` share, and its
//! validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::server::ServerConfig;
use crate::tls::Tls;
use crate::{Error, Result};

/// `[nbd]` in strata.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NbdConfig {
    /// The NBD server's TCP address.
    pub listen: String,
    /// A unix socket to listen on as well.
    pub socket: Option<PathBuf>,
    /// The tlog servers of `strata nbd serve` (`strata serve` uses its own).
    pub tlog_servers: Vec<String>,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a client may take to negotiate.
    pub negotiation_timeout_ms: u64,
    /// The largest READ or WRITE.
    pub max_request_bytes: u32,
    /// How long a write waits for room in the tlog buffer, or a flush for durability.
    pub tlog_timeout_ms: u64,
    /// Written but not yet durable bytes held per disk.
    pub max_unflushed_bytes: usize,
    /// Where images of new vdisks are made when records are on etcd.
    pub images_dir: Option<PathBuf>,
    /// The certificate chain (PEM) offered to clients that STARTTLS; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// With a certificate: refuse every option until the client has started TLS
    /// (FORCEDTLS). `false` lets clients choose.
    pub tls_required: bool,
}

impl Default for NbdConfig {
    fn default() -> NbdConfig {
        let d = ServerConfig::default();
        NbdConfig {
            listen: "127.0.0.1:10809".into(),
            socket: None,
            tlog_servers: d.tlog_servers,
            max_connections: d.max_connections,
            negotiation_timeout_ms: d.negotiation_timeout.as_millis() as u64,
            max_request_bytes: d.max_request,
            tlog_timeout_ms: d.tlog_timeout.as_millis() as u64,
            max_unflushed_bytes: d.max_unflushed_bytes,
            images_dir: None,
            tls_cert: None,
            tls_key: None,
            tls_required: true,
        }
    }
}

impl NbdConfig {
    /// Checks the listen address and the limits the server would get.
    pub fn validate(&self) -> Result<()> {
        self.listen_addr()?;
        self.tls()?;
        self.server(self.tlog_servers.clone()).validate()
    }

    /// The server configuration, journaling to `tlog_servers`.
    pub fn server(&self, tlog_servers: Vec<String>) -> ServerConfig {
        let max_request = self.max_request_bytes;
        ServerConfig {
            tlog_servers,
            // `strata serve` journals to its own tlog server in-process.
            tlog_local: None,
            max_connections: self.max_connections,
            negotiation_timeout: Duration::from_millis(self.negotiation_timeout_ms),
            max_request,
            max_in_flight: max_request.saturating_mul(2).max(64 << 20),
            tlog_timeout: Duration::from_millis(self.tlog_timeout_ms),
            max_unflushed_bytes: self.max_unflushed_bytes,
            // `strata nbd serve` journals to tlog servers it cannot read behind; `strata
            // serve` sets the log it serves itself.
            log: None,
            journal: true,
            tls: None,
        }
    }

    /// TLS as `tls_cert`, `tls_key` and `tls_required` set it up, or `None` without a
    /// certificate; the files are read now, so a bad one is named at start.
    pub fn tls(&self) -> Result<Option<Tls>> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Tls::from_files(cert, key, self.tls_required).map(Some),
            _ => Err(Error::InvalidArgument(
                "nbd.tls_cert and nbd.tls_key go together: give both or neither".into(),
            )),
        }
    }

    /// The default TCP address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen.parse().map_err(|_| {
            Error::InvalidArgument(format!("nbd.listen {:?} is not HOST:PORT", self.listen))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_make_a_valid_server_and_bad_addresses_are_named() {
        let config = NbdConfig::default();
        config.validate().unwrap();
        assert_eq!(config.listen_addr().unwrap().port(), 10809);
        let server = config.server(vec!["127.0.0.1:11211".into()]);
        server.validate().unwrap();
        let bad = NbdConfig { listen: "nowhere".into(), ..NbdConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("nbd.listen"));
    }
}
