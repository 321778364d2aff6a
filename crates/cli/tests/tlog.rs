//! `strata tlog` end to end: a server process journals a client's writes, is killed with
//! SIGKILL after FlushOK, and every acknowledged write replays after a restart.

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use strata_tlog::client::{Client, ClientConfig};

use crate::util::Strata;

const BLOCK: u64 = 4096;

fn block_data(i: u64) -> Bytes {
    Bytes::from((0..BLOCK).map(|j| (i * 13 + j * 5) as u8).collect::<Vec<u8>>())
}

fn start_server(strata: &Strata, port: u16, key: &str) -> anyhow::Result<Child> {
    let listen = format!("127.0.0.1:{port}");
    let child = strata
        .command()
        .args(["tlog", "serve", "--listen", &listen, "--key-file", key, "--flush-size", "16"])
        .stderr(Stdio::null())
        .spawn()?;
    strata_testkit::wait_until("tlog serve", Duration::from_secs(10), || {
        Ok(std::net::TcpStream::connect(&listen).is_ok())
    })?;
    Ok(child)
}

#[test]
fn acknowledged_writes_survive_sigkill_and_replay() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let key = strata.dir.path().join("tlog.key");
    let key_arg = key.to_string_lossy().into_owned();
    strata.ok(&["tlog", "keygen", "--out", &key_arg])?;
    let refused = strata.run(&["tlog", "keygen", "--out", &key_arg])?;
    ensure!(!refused.status.success(), "keygen overwrote a key");

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = start_server(&strata, port, &key_arg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let acknowledged = runtime.block_on(async {
        let config = ClientConfig::new(vec![format!("127.0.0.1:{port}")], "disk1");
        let client = Client::connect(config).await?;
        for i in 0..100 {
            client.write(i * BLOCK, block_data(i)).await?;
        }
        client.discard(0, BLOCK).await?;
        let last = client.flush().await?;
        // More writes that may or may not be durable when the server dies.
        for i in 100..120 {
            client.write(i * BLOCK, block_data(i)).await?;
        }
        anyhow::Ok(last)
    })?;
    ensure!(acknowledged == Some(101));
    server.kill()?;
    server.wait()?;

    // After a restart the server opens cleanly and the log verifies.
    let mut server = start_server(&strata, port, &key_arg)?;
    server.kill()?;
    server.wait()?;
    let verify =
        strata.ok(&["tlog", "verify", "--vdisk", "disk1", "--key-file", &key_arg, "--json"])?;
    ensure!(verify.contains("\"aggregates\""), "{verify}");
    let ls: serde_json::Value =
        serde_json::from_str(&strata.ok(&["tlog", "ls", "--vdisk", "disk1", "--json"])?)?;
    ensure!(ls.as_array().is_some_and(|a| !a.is_empty()), "{ls}");

    let image = strata.dir.path().join("disk1.img");
    let image_arg = image.to_string_lossy().into_owned();
    strata.ok(&[
        "tlog",
        "replay",
        "--vdisk",
        "disk1",
        "--out",
        &image_arg,
        "--key-file",
        &key_arg,
        "--to-seq",
        "101",
    ])?;
    let bytes = std::fs::read(&image)?;
    ensure!(bytes.len() as u64 >= 100 * BLOCK, "image of {} bytes", bytes.len());
    ensure!(bytes[..BLOCK as usize].iter().all(|b| *b == 0), "the discard was not replayed");
    for i in 1..100 {
        let at = (i * BLOCK) as usize;
        ensure!(bytes[at..at + BLOCK as usize] == block_data(i)[..], "block {i} differs");
    }
    // Without the key the encrypted log cannot be read, and says why.
    let out =
        strata.run(&["tlog", "replay", "--vdisk", "disk1", "--out", &format!("{image_arg}.2")])?;
    ensure!(!out.status.success());
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn tlog_serve_requires_a_choice_about_encryption() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let out = strata.run(&["tlog", "serve", "--listen", "127.0.0.1:0"])?;
    ensure!(out.status.code() == Some(2), "{:?}", out.status);
    ensure!(String::from_utf8_lossy(&out.stderr).contains("--key-file"));
    Ok(())
}

#[test]
fn tlog_serve_on_redis_k_plus_m() -> anyhow::Result<()> {
    use strata_tlog::player::{Bounds, replay};
    use strata_tlog::storage::redis::{RedisConfig, RedisStore};

    let mut redis = strata_testkit::RedisServers::start(6)?;
    let servers = redis.addresses();
    let strata = Strata::new()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let joined = servers.join(",");
    let mut server = strata
        .command()
        .args(["tlog", "serve", "--listen", &listen, "--no-encryption"])
        .args(["--redis-servers", &joined, "--data-shards", "4", "--parity-shards", "2"])
        .stderr(Stdio::null())
        .spawn()?;
    let up = strata_testkit::wait_until("tlog serve", Duration::from_secs(10), || {
        Ok(std::net::TcpStream::connect(&listen).is_ok())
    });
    let written = up.and_then(|()| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = Client::connect(ClientConfig::new(vec![listen.clone()], "rdisk")).await?;
            for i in 0..40 {
                client.write(i * BLOCK, block_data(i)).await?;
            }
            anyhow::Ok(client.flush().await?)
        })
    });
    server.kill()?;
    server.wait()?;
    ensure!(written? == Some(40));
    // Two servers lost: any four still rebuild every aggregate.
    redis.kill(0);
    redis.kill(3);
    let config = RedisConfig { servers, ..RedisConfig::default() };
    let store = RedisStore::connect(config)?;
    let image = strata.dir.path().join("rdisk.img");
    let replayed = replay(&store, "rdisk", None, Bounds::default(), &image, |_| {})?;
    ensure!(replayed.last_sequence == Some(40), "{replayed:?}");
    let bytes = std::fs::read(&image)?;
    for i in 0..40 {
        let at = (i * BLOCK) as usize;
        ensure!(bytes[at..at + BLOCK as usize] == block_data(i)[..], "block {i} differs");
    }
    Ok(())
}
