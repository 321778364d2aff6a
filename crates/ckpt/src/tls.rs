//! TLS configurations built from PEM files: the server's (certificate, key, CA) and the
//! one outbound connections verify servers with (the system's roots plus an optional CA).
//!
//! Every configuration names the ring provider explicitly, so nothing depends on a
//! process-wide default provider being installed. This is not where sockets are wrapped:
//! the server and the HTTP client do that.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::TlsFiles;
use crate::{Error, Result};

/// The server side: the certificate chain of `files.cert`, followed by the CA of
/// `files.ca_cert` when the chain does not already end with it, and the key. Clients are
/// not asked for certificates: requests are authorized by their `X-Auth-Token`.
pub(crate) fn server_config(files: &TlsFiles) -> Result<ServerConfig> {
    let mut chain = certificates(&files.cert)?;
    for ca in certificates(&files.ca_cert)? {
        if !chain.contains(&ca) {
            chain.push(ca);
        }
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| Error::Tls(format!("key {}: {err}", files.key.display())))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| {
            Error::Tls(format!("certificate {} with its key: {err}", files.cert.display()))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client side: trusts the system's roots (Debian's `ca-certificates`) and, when
/// given, the certificates of `extra_ca`.
pub(crate) fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: the extra CA, or plain http, may be all
    // a deployment needs, and a server whose CA is missing fails its handshake clearly.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|err| Error::Tls(format!("CA {}: {err}", path.display())))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |err: &dyn std::fmt::Display| Error::Tls(format!("{}: {err}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(&err))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| bad(&err))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(certs)
}
