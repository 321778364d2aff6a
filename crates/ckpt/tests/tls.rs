//! TLS mode with a test CA made by `openssl`: clients that trust the CA get through,
//! others fail the handshake; a partial TLS configuration is refused at bind.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use strata_ckpt::{CkptConfig, Client, ClientConfig, Server};
use strata_testkit::ensure_program;

use crate::util::{Running, new_object, redb_store, test_config};

/// Writes `ca.pem`, and `server.pem` with `server.key` for 127.0.0.1 signed by it, into `dir`.
fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    ensure_program("openssl", "openssl")?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
    )?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem"]].concat(),
        [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    ];
    for (step, subject) in steps.iter().zip(["strata test ca", "127.0.0.1", ""]) {
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(step).args(["-days", "2"]);
        if !subject.is_empty() {
            command.args(["-subj", &format!("/CN={subject}")]);
        }
        let output = command.output()?;
        anyhow::ensure!(output.status.success(), "openssl {step:?}: {output:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mode_serves_clients_that_trust_the_ca() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    make_certificates(certs.path())?;
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
