//! TLS configurations from PEM files, shared by the servers and clients that speak TLS
//! (ckpt, hub, nbd): a server's certificate chain and key, and the configuration outbound
//! connections verify servers with (the system's roots plus an optional CA file).
//!
//! Every configuration names the ring provider explicitly, so nothing depends on a
//! process-wide default provider being installed. Sockets are wrapped by the servers and
//! clients themselves.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS configuration that could not be built; the message names the file and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A server configuration: the certificate chain in `cert`, followed by the certificates
/// of `extra_chain` (a CA file, say) that the chain does not already hold, and the private
/// key in `key`. Clients are not asked for certificates. ALPN is left to the caller.
pub fn server_config(
    cert: &Path,
    key: &Path,
    extra_chain: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let mut chain = certificates(cert)?;
    if let Some(extra) = extra_chain {
        for ca in certificates(extra)? {
            if !chain.contains(&ca) {
                chain.push(ca);
            }
        }
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| TlsError(format!("key {}: {err}", key.display())))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|err| TlsError(format!("certificate {} with its key: {err}", cert.display())))
}

/// A client configuration: trusts the system's roots (Debian's `ca-certificates`) and,
/// when given, the certificates of `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: the extra CA, or plain http, may be all
    // a deployment needs, and a server whose CA is missing fails its handshake clearly.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|err| TlsError(format!("CA {}: {err}", path.display())))?;
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |err: &dyn std::fmt::Display| TlsError(format!("{}: {err}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(&err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(&err))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("strata-net-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = certificates(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("no PEM certificate"), "{err}");
        let missing = dir.join("missing.pem");
        let err = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
