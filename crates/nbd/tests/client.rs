//! The flush-barrier client against the real NBD server (TCP, unix socket, TLS), and its
//! errors: an unknown export, TLS required but not given, nothing listening, a server that
//! never speaks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use strata_nbd::client::{ClientTls, Endpoint, flush_export, is_not_listening};
use strata_nbd::proto::cmd;
use strata_nbd::{Error, ServerConfig, Tls};

use crate::harness::{Env, RawClient};

const MIB: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(20);

fn block_on<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(work))
}

#[test]
fn a_flush_makes_every_completed_write_durable_in_the_log() -> anyhow::Result<()> {
    let env = Env::start()?;
    let vdisk = env.create("vm", 8 * MIB)?;
    // Another connection writes and stays open, never flushing.
    let mut writer = RawClient::go(env.nbd, "vm")?;
    for i in 0..16u64 {
        let (error, _) = writer.request(cmd::WRITE, 0, i * 4096, 4096, &[i as u8 + 1; 4096])?;
        ensure!(error == 0, "write {i}: errno {error}");
    }
    block_on(flush_export(&Endpoint::Tcp(env.nbd), "vm", None, TIMEOUT))??;
    // The session's sequences start at its reserved span: all 16 are durable.
    let first = env.records.get("vm")?.next_sequence - strata_nbd::record::SESSION_SPAN;
    let durable = env.last_sequence(&vdisk)?.unwrap_or(0);
    ensure!(durable >= first + 15, "durable to {durable}, wrote {first}..={}", first + 15);
    // And over the unix socket too, with the writer still connected.
    block_on(flush_export(&Endpoint::Unix(env.socket.clone()), "vm", None, TIMEOUT))??;
    Ok(())
}

#[test]
fn errors_name_the_export_tls_and_a_missing_server() -> anyhow::Result<()> {
    let env = Env::start()?;
    let unknown = block_on(flush_export(&Endpoint::Tcp(env.nbd), "nothing", None, TIMEOUT))?;
    ensure!(matches!(unknown, Err(Error::NotFound(ref n)) if n == "nothing"), "{unknown:?}");

    // Nothing listens: a refusal the caller can tell apart.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let refused = block_on(flush_export(&Endpoint::Tcp(free), "vm", None, TIMEOUT))?;
    ensure!(refused.as_ref().is_err_and(is_not_listening), "{refused:?}");
    let gone = env.tmp.path().join("no.sock");
    let missing = block_on(flush_export(&Endpoint::Unix(gone), "vm", None, TIMEOUT))?;
    ensure!(missing.as_ref().is_err_and(is_not_listening), "{missing:?}");

    // A server that accepts and never speaks: the timeout, not a hang.
    let silent = block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let held = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let endpoint = Endpoint::Tcp(addr);
        let flushed = flush_export(&endpoint, "vm", None, Duration::from_millis(300)).await;
        drop(held);
        anyhow::Ok(flushed)
    })??;
    ensure!(matches!(silent, Err(Error::Unavailable(ref m)) if m.contains("within")), "{silent:?}");
    Ok(())
}

#[test]
fn over_tls_and_refused_without_it() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    strata_testkit::make_certificates(certs.path())?;
    let tls =
        Tls::from_files(&certs.path().join("server.pem"), &certs.path().join("server.key"), true)?;
    let env = Env::start_with(ServerConfig { tls: Some(tls), ..ServerConfig::default() })?;
    env.create("secure", 4 * MIB)?;
    let config = strata_net::tls::client_config(Some(&certs.path().join("ca.pem")))?;
    let client = ClientTls { config: Arc::new(config), server_name: "127.0.0.1".into() };
    block_on(flush_export(&Endpoint::Tcp(env.nbd), "secure", Some(&client), TIMEOUT))??;

    let plain = block_on(flush_export(&Endpoint::Tcp(env.nbd), "secure", None, TIMEOUT))?;
    ensure!(
        matches!(plain, Err(Error::FailedPrecondition(ref m)) if m.contains("requires TLS")),
        "{plain:?}"
    );
    // A CA that did not sign the server's certificate.
    let other = tempfile::tempdir()?;
    strata_testkit::make_certificates(other.path())?;
    let config = strata_net::tls::client_config(Some(&other.path().join("ca.pem")))?;
    let untrusted = ClientTls { config: Arc::new(config), server_name: "127.0.0.1".into() };
    let refused =
        block_on(flush_export(&Endpoint::Tcp(env.nbd), "secure", Some(&untrusted), TIMEOUT))?;
    ensure!(matches!(refused, Err(Error::Unavailable(ref m)) if m.contains("TLS")), "{refused:?}");
    Ok(())
}
