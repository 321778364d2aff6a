//! The client over the in-process transport (`Server::local`): durability, answers to
//! resent and refused blocks, a reset, the server's shutdown; and the free `serve` function.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use strata_tlog::client::{Client, ClientConfig};
use strata_tlog::message::Block;
use strata_tlog::server::LocalConnector;
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;

use crate::harness::{Server, config, data, replayed, stored_sequences};

fn local_config(local: &LocalConnector) -> ClientConfig {
    let mut config = ClientConfig::local(local.clone(), "vd");
    config.resend_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(2);
    config
}

/// The image writing `data(i)` at `i * 4096` for every `i` in `range` makes.
fn image(range: std::ops::Range<u64>) -> Vec<u8> {
    let mut image = Vec::new();
    for i in range {
        image.extend_from_slice(&data(i));
    }
    image
}

#[tokio::test]
async fn local_writes_become_durable_in_storage() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(25)).await?;
    ensure!(format!("{:?}", server.local).starts_with("LocalConnector"));
    let mut cfg = local_config(&server.local);
    ensure!(cfg.servers.is_empty());
    cfg.max_unflushed_bytes = 64 * 4096;
    let client = Client::connect(cfg).await?;
    for i in 0..200u64 {
        ensure!(client.write(i * 4096, data(i)).await? == i + 1);
    }
    client.wait_durable(175).await?;
    // FlushOK means stored: what the client saw durable is in the log.
    ensure!(stored_sequences(&*server.storage, "vd")?.len() >= 175);
    ensure!(client.flush().await? == Some(200));
    ensure!(client.durable_to() == Some(200));
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=200).collect::<Vec<_>>());
    ensure!(replayed(&*server.storage, "vd", None)? == image(0..200));
    client.close().await?;
    Ok(())
}

/// A write of `data(seq)` at `seq * 4096`, made by `make` (`Block::write`, or
/// `Block::write_in_process`, which leaves the hash out).
type Make = fn(u64, u64, bytes::Bytes, u64) -> Block;

#[tokio::test]
async fn local_resent_blocks_are_answered_from_the_chain() -> anyhow::Result<()> {
    let made: [(&str, Make); 2] =
        [("hashed", Block::write), ("in process", Block::write_in_process)];
    for (kind, make) in made {
        let block = |i: u64| make(i, i * 4096, data(i), 1_000 + i);
        let dir = tempfile::tempdir()?;
        let server = Server::start(dir.path(), config(10)).await?;
        let first = Client::connect(local_config(&server.local)).await?;
        for i in 1..=20u64 {
            first.send(block(i)).await?;
        }
        first.close().await?;
        // A second client sends the same blocks again (as after a crash of its writer):
        // the server finds each one in the chain and answers FlushOK; nothing is stored
        // twice.
        let again = Client::connect(local_config(&server.local)).await?;
        for i in 1..=20u64 {
            again.send(block(i)).await?;
        }
        tokio::time::timeout(Duration::from_secs(10), again.wait_durable(20)).await??;
        ensure!(stored_sequences(&*server.storage, "vd")? == (1..=20).collect::<Vec<_>>());
        again.close().await?;
        // A different block under a stored sequence is refused (RecvFailed), resent a few
        // times, and then the client gives up with a clear error.
        let other = Client::connect(local_config(&server.local)).await?;
        let forged = make(5, 0, data(99), 7);
        other.send(forged).await?;
        let waited = tokio::time::timeout(Duration::from_secs(10), other.wait_durable(5)).await?;
        let err =
            waited.err().ok_or_else(|| anyhow::anyhow!("{kind}: a forged block was durable"))?;
        ensure!(err.to_string().contains("refused block 5"), "{kind}: {err}");
        ensure!(other.send(block(21)).await.is_err(), "{kind}: a failed client still takes blocks");
        ensure!(stored_sequences(&*server.storage, "vd")? == (1..=20).collect::<Vec<_>>());
        ensure!(replayed(&*server.storage, "vd", None)?[4 * 4096..5 * 4096] == data(4)[..]);
        // The same data and place under another timestamp is another block too.
        if kind == "in process" {
            let other = Client::connect(local_config(&server.local)).await?;
            other.send(make(6, 6 * 4096, data(6), 9)).await?;
            let waited =
                tokio::time::timeout(Duration::from_secs(10), other.wait_durable(6)).await?;
            ensure!(waited.is_err(), "a block with another timestamp was taken as stored");
        }
    }
    Ok(())
}

#[tokio::test]
async fn local_reset_restarts_the_sequence_and_cuts_off_the_other_client() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(10)).await?;
    let old = Client::connect(local_config(&server.local)).await?;
    for i in 0..10u64 {
        old.write(i * 4096, data(i)).await?;
    }
    old.flush().await?;
    let mut cfg = local_config(&server.local);
    cfg.first_sequence = 100;
    cfg.reset_first_sequence = true;
    let new = Client::connect(cfg).await?;
    for i in 0..5u64 {
        ensure!(new.write(i * 4096, data(50 + i)).await? == 100 + i);
    }
    ensure!(new.flush().await? == Some(104));
    let mut expected: Vec<u64> = (1..=10).collect();
    expected.extend(100..=104);
    ensure!(stored_sequences(&*server.storage, "vd")? == expected);
    // The player takes the reset for a run start, not a gap, and later writes win.
    let mut wanted = image(50..55);
    wanted.extend(image(5..10));
    ensure!(replayed(&*server.storage, "vd", None)? == wanted);
    new.close().await?;
    // The old client was cut off; it reconnects without a reset and ends cleanly.
    tokio::time::timeout(Duration::from_secs(10), old.close()).await??;
    Ok(())
}

#[tokio::test]
async fn local_clients_fail_cleanly_once_the_server_stopped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(1000)).await?;
    let local = server.local.clone();
    let storage = server.storage.clone();
    let client = Client::connect(local_config(&local)).await?;
    for i in 0..5u64 {
        client.write(i * 4096, data(i)).await?;
    }
    // Wait until the server has the blocks (answered RecvOK is not visible; a slave sync
    // is answered after a flush, so it orders and stores everything before it).
    client.wait_slave_sync(Duration::from_secs(10)).await?;
    ensure!(client.durable_to() == Some(5));
    for i in 5..8u64 {
        client.write(i * 4096, data(i)).await?;
    }
    server.stop().await?;
    // The shutdown flushed what the vdisk held.
    let stored = stored_sequences(&*storage, "vd")?;
    ensure!(stored.starts_with(&[1, 2, 3, 4, 5]), "stored {stored:?}");
    // The link closed with the vdisk task; reconnecting is refused, and the client says so
    // instead of hanging.
    let err = Client::connect(local_config(&local)).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("attached to a stopped server"))?;
    ensure!(err.to_string().contains("stopped"), "{err}");
    client.write(8 * 4096, data(8)).await?;
    let closed = client.close_within(Duration::from_secs(2)).await;
    ensure!(closed.is_err(), "a write after the shutdown became durable");
    Ok(())
}

#[tokio::test]
async fn local_and_tcp_clients_share_one_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(10)).await?;
    let local = Client::connect(local_config(&server.local)).await?;
    let mut tcp_config = ClientConfig::new(vec![server.addr.to_string()], "other");
    tcp_config.resend_timeout = Duration::from_millis(500);
    let tcp = Client::connect(tcp_config).await?;
    for i in 0..30u64 {
        local.write(i * 4096, data(i)).await?;
        tcp.write(i * 4096, data(i + 1)).await?;
    }
    local.close().await?;
    tcp.close().await?;
    ensure!(replayed(&*server.storage, "vd", None)? == image(0..30));
    ensure!(replayed(&*server.storage, "other", None)? == image(1..31));
    Ok(())
}

#[tokio::test]
async fn the_serve_function_still_serves_tcp() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(dir.path())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served =
        tokio::spawn(strata_tlog::server::serve(listener, config(10), storage.clone(), async {
            let _ = stopped.await;
        }));
    let client = Client::connect(ClientConfig::new(vec![addr.to_string()], "vd")).await?;
    for i in 0..12u64 {
        client.write(i * 4096, data(i)).await?;
    }
    client.close().await?;
    let _ = stop.send(());
    served.await??;
    ensure!(stored_sequences(&*storage, "vd")? == (1..=12).collect::<Vec<_>>());
    Ok(())
}

/// A vdisk whose clients are all in the server's process flushes every `local_flush_size`
/// blocks, not `flush_size`; a client over TCP attached beside them brings `flush_size`
/// back, since a client of the wire protocol may wait for `FlushOK` before it sends more.
#[tokio::test]
async fn local_clients_flush_in_larger_batches() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(25);
    cfg.local_flush_size = 100;
    let server = Server::start(dir.path(), cfg).await?;
    let client = Client::connect(local_config(&server.local)).await?;
    for i in 0..60u64 {
        client.write(i * 4096, data(i)).await?;
    }
    // The timer is a minute away, and 60 blocks are fewer than 100.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(client.durable_to().is_none_or(|d| d == 0), "flushed at {:?}", client.durable_to());
    for i in 60..100u64 {
        client.write(i * 4096, data(i)).await?;
    }
    tokio::time::timeout(Duration::from_secs(10), client.wait_durable(100)).await??;
    // With a client over TCP attached too, 25 blocks flush.
    let _wire = crate::harness::Raw::attach(server.addr, "vd", 101, false).await?;
    for i in 100..130u64 {
        client.write(i * 4096, data(i)).await?;
    }
    tokio::time::timeout(Duration::from_secs(10), client.wait_durable(125)).await??;
    client.close().await?;
    Ok(())
}

/// A client whose window of unflushed data is full asks for a flush, so it does not wait
/// for the server's timer when the server would flush only after more blocks than the
/// window holds.
#[tokio::test]
async fn a_full_window_asks_for_a_flush() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(1000);
    cfg.local_flush_size = 1000;
    let server = Server::start(dir.path(), cfg).await?;
    let mut client_cfg = local_config(&server.local);
    client_cfg.max_unflushed_bytes = 16 * 4096;
    let client = Client::connect(client_cfg).await?;
    let written = async {
        for i in 0..100u64 {
            client.write(i * 4096, data(i)).await?;
        }
        anyhow::Ok(())
    };
    // The server's timer is a minute away.
    tokio::time::timeout(Duration::from_secs(10), written).await??;
    ensure!(client.durable_to().is_some_and(|d| d >= 84), "{:?}", client.durable_to());
    ensure!(client.flush().await? == Some(100));
    ensure!(replayed(&*server.storage, "vd", None)? == image(0..100));
    client.close().await?;
    Ok(())
}
