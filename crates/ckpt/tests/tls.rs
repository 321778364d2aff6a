//! TLS mode with a test CA made by `openssl`: clients that trust the CA get through,
//! others fail the handshake; a partial TLS configuration is refused at bind.

use bytes::Bytes;
use strata_ckpt::{CkptConfig, Client, ClientConfig, Server};

use crate::util::{Running, new_object, redb_store, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mode_serves_clients_that_trust_the_ca() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    strata_testkit::make_certificates(certs.path())?;
    let target = new_object(b"object")?;
    let (store, _dir) = redb_store()?;
    let config = CkptConfig {
        cert_file: Some(certs.path().join("server.pem")),
        key_file: Some(certs.path().join("server.key")),
        ca_cert_file: Some(certs.path().join("ca.pem")),
        ..test_config()
    };
    let ca = Some(certs.path().join("ca.pem"));
    let server = Running::start_with(&config, store, ca).await?;
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    server.client.put(&target, Bytes::from_static(b"over tls")).await?;
    assert_eq!(server.client.get(&target).await?.value, "over tls");

    let untrusting =
        Client::new(&ClientConfig { server: server.url.clone(), ..Default::default() })?;
    let err = untrusting.get(&target).await.unwrap_err().to_string();
    assert!(err.contains("certificate") || err.contains("issuer"), "{err}");
    let plain_url = server.url.replacen("https", "http", 1);
    let plain = Client::new(&ClientConfig { server: plain_url, ..Default::default() })?;
    assert!(plain.get(&target).await.is_err(), "plain http reached a TLS server");
    server.stop().await
}

#[tokio::test]
async fn a_partial_tls_configuration_is_refused_at_bind() -> anyhow::Result<()> {
    let (store, _dir) = redb_store()?;
    let config = CkptConfig { cert_file: Some("server.pem".into()), ..test_config() };
    let err = Server::bind(&config, store).await.unwrap_err().to_string();
    assert!(err.contains("missing: key_file (KeyFilePath), ca_cert_file"), "{err}");
    Ok(())
}
