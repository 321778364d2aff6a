//! The Redis k+m engine against real `redis-server`s: the tlog server writes through it,
//! the player replays byte-identical, with servers killed, wiped or answering garbage.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use strata_testkit::RedisServers;
use strata_tlog::client::{Client, ClientConfig};
use strata_tlog::player::{Bounds, replay};
use strata_tlog::storage::Storage;
use strata_tlog::storage::redis::{RedisConfig, RedisStore};

use crate::harness::{Server, config, data};

const BLOCKS: u64 = 120;

fn store(servers: Vec<String>) -> anyhow::Result<RedisStore> {
    Ok(RedisStore::connect(RedisConfig {
        servers,
        data_shards: 4,
        parity_shards: 2,
        timeout: Duration::from_millis(500),
        retries: 1,
    })?)
}

/// Writes `BLOCKS` blocks through a tlog server on `storage` and flushes them.
async fn write_through_server(storage: Arc<dyn Storage>) -> anyhow::Result<()> {
    let server = Server::on(storage, config(25)).await?;
    let mut client_config = ClientConfig::new(vec![server.addr.to_string()], "vd");
    client_config.connect_timeout = Duration::from_secs(2);
    let client = Client::connect(client_config).await?;
    for i in 0..BLOCKS {
        client.write(i * 4096, data(i)).await?;
    }
    ensure!(client.flush().await? == Some(BLOCKS));
    client.close().await?;
    server.stop().await?;
    Ok(())
}

/// Replays `vd` from `storage` and checks the image against what was written.
fn replays_identical(storage: &dyn Storage, dir: &Path, name: &str) -> anyhow::Result<()> {
    let image = dir.join(name);
    let done = replay(storage, "vd", None, Bounds::default(), &image, |_| {})?;
    ensure!(done.last_sequence == Some(BLOCKS), "replayed to {:?}", done.last_sequence);
    let expected: Vec<u8> = (0..BLOCKS).flat_map(|i| data(i).to_vec()).collect();
    ensure!(std::fs::read(&image)? == expected, "image {name} differs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_identical_with_two_servers_killed() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut redis = RedisServers::start(6)?;
    let storage: Arc<dyn Storage> = Arc::new(store(redis.addresses())?);
    write_through_server(storage.clone()).await?;
    ensure!(storage.vdisks()? == vec!["vd".to_string()]);
    let dir = tmp.path().to_path_buf();
    let reader = storage.clone();
    tokio::task::spawn_blocking(move || replays_identical(&*reader, &dir, "all.img")).await??;

    redis.kill(1);
    redis.kill(4);
    let dir = tmp.path().to_path_buf();
    let reader = store(redis.addresses())?;
    tokio::task::spawn_blocking(move || replays_identical(&reader, &dir, "four.img")).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wiped_servers_count_as_lost_and_one_too_many_is_a_clear_error() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let redis = RedisServers::start(6)?;
    let storage: Arc<dyn Storage> = Arc::new(store(redis.addresses())?);
    write_through_server(storage.clone()).await?;
    let head = storage.head("vd")?.ok_or_else(|| anyhow::anyhow!("no head"))?;
    ensure!(head.header.last_sequence == BLOCKS);

    // A shard of the right length with wrong bytes is found and left out.
    let name = strata_tlog::aggregate::hex(&head.hash);
    ensure!(redis.command(0, &format!("SETRANGE {name} 20 XXXX"))?.starts_with(':'));
    ensure!(storage.get("vd", &head.hash)?.len() as u64 == head.len);

    for i in [0, 5] {
        ensure!(redis.command(i, "FLUSHALL")? == "+OK");
    }
    let dir = tmp.path().to_path_buf();
    let reader = storage.clone();
    tokio::task::spawn_blocking(move || replays_identical(&*reader, &dir, "wiped.img")).await??;

    ensure!(redis.command(2, "FLUSHALL")? == "+OK");
    let err = storage.get("vd", &head.hash).err().ok_or_else(|| anyhow::anyhow!("read"))?;
    let message = err.to_string();
    let addresses = redis.addresses();
    ensure!(message.contains(&strata_tlog::aggregate::hex(&head.hash)), "{message}");
    for lost in [&addresses[0], &addresses[2], &addresses[5]] {
        ensure!(message.contains(lost.as_str()), "{message} does not name {lost}");
    }
    Ok(())
}

/// A fake "Redis" that answers every connection with `reply` (read once) and hangs up.
fn fake_redis(reply: &'static [u8]) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(address)
}

#[test]
fn servers_answering_garbage_fail_writes_cleanly_and_reads_rebuild() -> anyhow::Result<()> {
    let redis = RedisServers::start(6)?;
    let good = store(redis.addresses())?;
    let sealed = crate::storage::append_blocks(
        &good,
        "vd",
        None,
        (1..=5).map(crate::harness::block).collect(),
    )?;

    let nonsense = fake_redis(b"\x00\xffthis is not redis\r\n%%%\r\n")?;
    let wrong_type = fake_redis(b"+OK\r\n")?;
    let mut servers = redis.addresses();
    servers[1] = nonsense.clone();
    servers[3] = wrong_type.clone();
    let bad = store(servers)?;
    ensure!(bad.get("vd", sealed.hash())? == sealed.bytes());
    ensure!(bad.head("vd")?.map(|h| h.hash) == Some(*sealed.hash()));

    let err = crate::storage::append_blocks(&bad, "vd", None, vec![crate::harness::block(6)])
        .err()
        .ok_or_else(|| anyhow::anyhow!("append to garbage servers succeeded"))?;
    let message = format!("{err:#}");
    ensure!(message.contains(&nonsense), "{message} does not name {nonsense}");
    ensure!(message.contains("not stored"), "{message}");
    // Nothing half-written became the head.
    ensure!(good.head("vd")?.map(|h| h.hash) == Some(*sealed.hash()));
    Ok(())
}
