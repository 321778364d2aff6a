//! TLS configurations built from PEM files, through `strata_net::tls`: the server's
//! (certificate, key, CA) and the one outbound connections verify servers with (the
//! system's roots plus an optional CA). The server and the HTTP client wrap the sockets.

use std::path::Path;

use rustls::{ClientConfig, ServerConfig};

use crate::config::TlsFiles;
use crate::{Error, Result};

/// The server side: the certificate chain of `files.cert`, followed by the CA of
/// `files.ca_cert` when the chain does not already end with it, and the key. Clients are
/// not asked for certificates: requests are authorized by their `X-Auth-Token`.
pub(crate) fn server_config(files: &TlsFiles) -> Result<ServerConfig> {
    let mut config = strata_net::tls::server_config(&files.cert, &files.key, Some(&files.ca_cert))
        .map_err(|err| Error::Tls(err.0))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client side: trusts the system's roots (Debian's `ca-certificates`) and, when
/// given, the certificates of `extra_ca`.
pub(crate) fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig> {
    strata_net::tls::client_config(extra_ca).map_err(|err| Error::Tls(err.0))
}
