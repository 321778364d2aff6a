//! TLS for NBD (NBD_OPT_STARTTLS): the server's certificate and key from PEM files, and
//! whether clients must upgrade (FORCEDTLS) or may (every export is then served with or
//! without TLS).

use std::path::Path;
use std::sync::Arc;

use crate::{Error, Result};

/// TLS as the server offers it.
#[derive(Clone)]
pub struct Tls {
    /// Wraps a connection after STARTTLS.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// FORCEDTLS: every option but STARTTLS and ABORT is refused until TLS is up.
    pub required: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("required", &self.required).finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with the certificate chain in `cert` and the private key in `key` (PEM).
    /// Clients are not asked for certificates.
    pub fn from_files(cert: &Path, key: &Path, required: bool) -> Result<Tls> {
        let config = strata_net::tls::server_config(cert, key, None)
            .map_err(|e| Error::InvalidArgument(format!("nbd TLS: {e}")))?;
        Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), required })
    }
}
