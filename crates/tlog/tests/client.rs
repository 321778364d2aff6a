//! The client against real servers: durability waits, reconnects after cut connections,
//! resends to a server that ignores blocks, failover between servers.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use strata_tlog::client::{Client, ClientConfig};
use strata_tlog::message::Block;
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::harness::{Proxy, Server, config, data, replayed, stored_sequences};
use crate::player::model;

fn client_config(servers: Vec<String>) -> ClientConfig {
    let mut config = ClientConfig::new(servers, "vd");
    config.resend_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(2);
    config
}

async fn write_n(client: &Client, n: u64) -> anyhow::Result<u64> {
    let mut last = 0;
    for i in 0..n {
        last = client.write(i * 4096, data(i)).await?;
    }
    Ok(last)
}

#[tokio::test]
async fn writes_become_durable() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(25)).await?;
    let client = Client::connect(client_config(vec![server.addr.to_string()])).await?;
    let last = write_n(&client, 100).await?;
    ensure!(last == 100);
    client.wait_durable(75).await?;
    ensure!(client.flush().await? == Some(100));
    ensure!(client.durable_to() == Some(100));
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=100).collect::<Vec<_>>());
    client.close().await?;
    Ok(())
}

#[tokio::test]
async fn reconnects_after_cuts_during_send_read_and_force_flush() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(10)).await?;
    let proxy = Proxy::start(server.addr).await?;
    let client = Client::connect(client_config(vec![proxy.addr.to_string()])).await?;
    // During sends.
    for i in 0..50 {
        client.write(i * 4096, data(i)).await?;
        if i == 20 {
            proxy.cut();
        }
    }
    // While waiting for answers.
    proxy.cut();
    client.wait_durable(50).await?;
    // During a force flush.
    for i in 50..55 {
        client.write(i * 4096, data(i)).await?;
    }
    client.force_flush(55).await?;
    proxy.cut();
    client.wait_durable(55).await?;
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=55).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn resends_to_a_server_that_ignores_blocks_then_fails_over() -> anyhow::Result<()> {
    // A "server" that answers the handshake and then ignores everything.
    let deaf = TcpListener::bind("127.0.0.1:0").await?;
    let deaf_addr = deaf.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = deaf.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let handshake_ok = strata_tlog::message::HandshakeResponse {
                    version: strata_tlog::version::Version::CURRENT.0,
                    status: 1,
                };
                if stream.read(&mut buf).await.is_ok() {
                    use tokio::io::AsyncWriteExt;
                    let _ = stream.write_all(&handshake_ok.encode()).await;
                }
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(10)).await?;
    let servers = vec![deaf_addr.to_string(), server.addr.to_string()];
    let client = Client::connect(client_config(servers)).await?;
    write_n(&client, 20).await?;
    tokio::time::timeout(Duration::from_secs(10), client.flush()).await??;
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=20).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn failover_between_servers_on_shared_storage_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(dir.path())?);
    let a = Server::on(storage.clone(), config(10)).await?;
    let b = Server::on(storage.clone(), config(10)).await?;
    let servers = vec![a.addr.to_string(), b.addr.to_string()];
    let client = Client::connect(client_config(servers)).await?;
    write_n(&client, 30).await?;
    client.wait_durable(30).await?;
    a.crash();
    for i in 30..60 {
        client.write(i * 4096, data(i)).await?;
    }
    tokio::time::timeout(Duration::from_secs(10), client.flush()).await??;
    ensure!(stored_sequences(&*storage, "vd")? == (1..=60).collect::<Vec<_>>());
    drop(b);
    Ok(())
}

#[tokio::test]
async fn slave_sync_replays_the_log_into_a_second_image() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let slaves = dir.path().join("slaves");
    let mut cfg = config(10);
    cfg.slave_dir = Some(slaves.clone());
    let server = Server::start(&dir.path().join("store"), cfg).await?;
    let client = Client::connect(client_config(vec![server.addr.to_string()])).await?;
    write_n(&client, 12).await?;
    client.wait_slave_sync(Duration::from_secs(10)).await?;
    let image = std::fs::read(slaves.join("vd.img"))?;
    ensure!(image.len() == 12 * 4096, "slave image of {} bytes", image.len());
    for i in 0..12u64 {
        let at = (i * 4096) as usize;
        ensure!(image[at..at + 4096] == data(i)[..], "block {i} differs in the slave");
    }
    ensure!(std::fs::read_to_string(slaves.join("vd.seq"))?.trim() == "12");
    // A second sync applies only what came since.
    client.discard(0, 4096).await?;
    client.wait_slave_sync(Duration::from_secs(10)).await?;
    let image = std::fs::read(slaves.join("vd.img"))?;
    ensure!(image[..4096].iter().all(|b| *b == 0), "discard not replayed into the slave");
    ensure!(image[4096..8192] == data(1)[..]);
    Ok(())
}

#[tokio::test]
async fn durable_never_passes_a_sequence_not_yet_handed_over() -> anyhow::Result<()> {
    // Writers on several threads take sequences in one order and hand blocks over in
    // another: here sequence 5 is taken but not handed over yet when 6 is.
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(100)).await?;
    let client = Client::connect(client_config(vec![server.addr.to_string()])).await?;
    let block = |seq: u64| strata_tlog::message::Block::write(seq, seq * 4096, data(seq), seq);
    for seq in [1, 2, 3, 4, 6] {
        client.send(block(seq)).await?;
    }
    client.force_flush(4).await?;
    client.wait_durable(4).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ensure!(
        client.durable_to() == Some(4),
        "durable to {:?} before 5 was sent",
        client.durable_to()
    );
    client.send(block(5)).await?;
    client.force_flush(6).await?;
    client.wait_durable(6).await?;
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=6).collect::<Vec<_>>());
    client.close().await?;
    Ok(())
}

// Issue 13: with many threads writing at once, each takes its sequence in one order and
// hands its block over in another; the durable sequence must never pass a sequence the
// server has not acknowledged. Every writer checks it against the storage after each
// block, while others hold sequences they took but have not sent yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_never_passes_an_unacknowledged_sequence_with_many_writers() -> anyhow::Result<()> {
    const WRITERS: u64 = 16;
    const BLOCKS: u64 = 640;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(4)).await?;
    let storage = server.storage.clone();
    let client = Arc::new(Client::connect(client_config(vec![server.addr.to_string()])).await?);
    let next = Arc::new(AtomicU64::new(1));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (client, next, storage) = (client.clone(), next.clone(), storage.clone());
        writers.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(writer);
            let mut checks = 0u64;
            loop {
                let seq = next.fetch_add(1, Ordering::SeqCst);
                if seq > BLOCKS {
                    return anyhow::Ok(checks);
                }
                // The window between taking a sequence and handing the block over: mostly
                // short, now and then long enough for many later blocks to be flushed.
                let window = if rng.u8(0..16) == 0 { 20_000 } else { rng.u64(0..3000) };
                tokio::time::sleep(Duration::from_micros(window)).await;
                let block = Block::write(seq, seq * 4096, data(seq), seq);
                client.send(block).await?;
                if let Some(durable) = client.durable_to() {
                    let stored: HashSet<u64> =
                        stored_sequences(&*storage, "vd")?.into_iter().collect();
                    let missing = (1..=durable).find(|s| !stored.contains(s));
                    ensure!(
                        missing.is_none(),
                        "durable to {durable}, but {missing:?} is not stored"
                    );
                    checks += 1;
                }
            }
        });
    }
    let mut checks = 0;
    while let Some(done) = writers.join_next().await {
        checks += done??;
    }
    ensure!(checks > BLOCKS / 2, "only {checks} checks saw a durable sequence");
    client.force_flush(BLOCKS).await?;
    client.wait_durable(BLOCKS).await?;
    ensure!(client.durable_to() == Some(BLOCKS));
    let acknowledged: Vec<Block> =
        (1..=BLOCKS).map(|s| Block::write(s, s * 4096, data(s), s)).collect();
    ensure!(replayed(&*storage, "vd", None)? == model(&acknowledged), "replay differs");
    Ok(())
}
