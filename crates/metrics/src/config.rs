//! `[metrics]` in `strata.toml`: where `strata serve` exports its metrics.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The address `strata serve` exports on unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// `[metrics]` in `strata.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `strata serve` serves `/metrics`, `/healthz` and `/readyz`: `IP:PORT`, or
    /// `"off"` for nowhere.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig { listen: DEFAULT_LISTEN.to_string() }
    }
}

impl MetricsConfig {
    /// The address to listen on; `None` for `off`.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>> {
        parse_listen(&self.listen)
    }
}

/// Parses `IP:PORT` or `off`.
pub fn parse_listen(text: &str) -> Result<Option<SocketAddr>> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| Error::InvalidListen(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_an_address_or_off() {
        assert_eq!(MetricsConfig::default().listen_addr().ok(), Some(DEFAULT_LISTEN.parse().ok()));
        assert_eq!(parse_listen("off").ok(), Some(None));
        let err = parse_listen("localhost").unwrap_err();
        assert!(err.to_string().contains("\"localhost\""), "{err}");
    }
}
