//! TLS for NBD (NBD_OPT_STARTTLS): the server's certificate and key from PEM files, and
//! whether clients must upgrade (FORCEDTLS) or may (every export is then served with or
//! without TLS).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::InvalidArgument(format!("nbd TLS certificate {}: {e}", cert.display()))
            })?;
        if chain.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "nbd TLS certificate {}: no certificate in the file",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::InvalidArgument(format!("nbd TLS key {}: {e}", key.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidArgument(format!("nbd TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "nbd TLS certificate {} with its key: {e}",
                    cert.display()
                ))
            })?;
        Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), required })
    }
}
