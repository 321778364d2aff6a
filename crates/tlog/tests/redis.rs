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

use strata_tlog::message::{MessageType, status};

use crate::harness::{Raw, Server, block, config, data};

const BLOCKS: u64 = 120;

fn store(servers: Vec<String>) -> anyhow::Result<RedisStore> {
    store_with(servers, (4, 2), Duration::from_millis(500), 1)
}

/// A store of `k + m` shards on `servers`.
fn store_with(
    servers: Vec<String>,
    (data_shards, parity_shards): (usize, usize),
    timeout: Duration,
    retries: u32,
) -> anyhow::Result<RedisStore> {
    Ok(RedisStore::connect(RedisConfig { servers, data_shards, parity_shards, timeout, retries })?)
}

/// A client of `vd` on `server`, quick to notice failures.
async fn client(server: &Server) -> anyhow::Result<Client> {
    let mut client_config = ClientConfig::new(vec![server.addr.to_string()], "vd");
    client_config.connect_timeout = Duration::from_secs(2);
    client_config.resend_timeout = Duration::from_millis(500);
    Ok(Client::connect(client_config).await?)
}

/// Writes blocks `from..to` (block `i` at `i * 4096`) through `client`.
async fn write_blocks(client: &Client, from: u64, to: u64) -> anyhow::Result<()> {
    for i in from..to {
        client.write(i * 4096, data(i)).await?;
    }
    Ok(())
}

/// Writes `BLOCKS` blocks through a tlog server on `storage` and flushes them.
async fn write_through_server(storage: Arc<dyn Storage>) -> anyhow::Result<()> {
    let server = Server::on(storage, config(25)).await?;
    let client = client(&server).await?;
    write_blocks(&client, 0, BLOCKS).await?;
    ensure!(client.flush().await? == Some(BLOCKS));
    client.close().await?;
    server.stop().await?;
    Ok(())
}

/// Replays `vd` from `storage` and checks the image against the first `blocks` written.
fn replays_blocks(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    blocks: u64,
) -> anyhow::Result<()> {
    let image = dir.join(name);
    let done = replay(storage, "vd", None, Bounds::default(), &image, |_| {})?;
    ensure!(done.last_sequence == Some(blocks), "replayed to {:?}", done.last_sequence);
    let expected: Vec<u8> = (0..blocks).flat_map(|i| data(i).to_vec()).collect();
    ensure!(std::fs::read(&image)? == expected, "image {name} differs");
    Ok(())
}

fn replays_identical(storage: &dyn Storage, dir: &Path, name: &str) -> anyhow::Result<()> {
    replays_blocks(storage, dir, name, BLOCKS)
}

/// Runs a blocking check off the async runtime.
async fn blocking<T: Send + 'static>(
    check: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(check).await?
}

#[tokio::test(flavor = "multi_thread")]
async fn flush_with_a_server_down_fails_and_the_client_resends_once_it_returns()
-> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut redis = RedisServers::start(6)?;
    let storage: Arc<dyn Storage> = Arc::new(store(redis.addresses())?);
    let server = Server::on(storage.clone(), config(25)).await?;
    let writer = client(&server).await?;
    write_blocks(&writer, 0, 50).await?;
    ensure!(writer.flush().await? == Some(50));

    redis.kill(3);
    // The server says FlushFailed, in so many words, to a client that asks for a flush.
    let mut raw = Raw::attach(server.addr, "other", 1, false).await?;
    raw.block(&block(1)).await?;
    raw.command(MessageType::ForceFlushAtSeq, 1).await?;
    let failed = raw.until(|r| r.status == status::FLUSH_FAILED || r.status == status::FLUSH_OK);
    ensure!(failed.await?.status == status::FLUSH_FAILED, "flush succeeded with a server down");

    // The client keeps its blocks and keeps trying; nothing half-stored becomes the head.
    write_blocks(&writer, 50, 80).await?;
    let writer = Arc::new(writer);
    let flushing = tokio::spawn({
        let writer = writer.clone();
        async move { writer.flush().await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(!flushing.is_finished(), "flush returned while a redis server was down");
    ensure!(writer.durable_to() == Some(50), "durable to {:?}", writer.durable_to());
    let head = storage.head("vd")?.ok_or_else(|| anyhow::anyhow!("no head"))?;
    ensure!(head.header.last_sequence == 50, "head moved to {}", head.header.last_sequence);

    // Back (empty): the resends go through and nothing is lost.
    redis.restart(3)?;
    let flushed = tokio::time::timeout(Duration::from_secs(30), flushing).await???;
    ensure!(flushed == Some(80), "flushed to {flushed:?}");
    let writer = Arc::try_unwrap(writer).map_err(|_| anyhow::anyhow!("client still shared"))?;
    writer.close().await?;
    server.stop().await?;
    let dir = tmp.path().to_path_buf();
    blocking(move || replays_blocks(&*storage, &dir, "resent.img", 80)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_recovers_the_head_from_the_lists() -> anyhow::Result<()> {
    let redis = RedisServers::start(6)?;
    let storage: Arc<dyn Storage> = Arc::new(store(redis.addresses())?);
    write_through_server(storage).await?;

    // A new server process knows nothing but the redis servers: the head comes from their
    // lists, so the next client continues the chain at the next sequence.
    let storage: Arc<dyn Storage> = Arc::new(store(redis.addresses())?);
    let server = Server::on(storage.clone(), config(25)).await?;
    let mut client_config = ClientConfig::new(vec![server.addr.to_string()], "vd");
    client_config.first_sequence = BLOCKS + 1;
    let writer = Client::connect(client_config).await?;
    writer.write(BLOCKS * 4096, data(BLOCKS)).await?;
    ensure!(writer.flush().await? == Some(BLOCKS + 1));
    writer.close().await?;
    server.stop().await?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    blocking(move || {
        let chain = storage.list("vd")?;
        ensure!(chain.len() >= 2, "chain of {}", chain.len());
        ensure!(chain.windows(2).all(|w| w[1].header.prev == w[0].hash), "chain broken");
        replays_blocks(&*storage, &dir, "continued.img", BLOCKS + 1)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_refills_wiped_servers_so_any_two_may_be_lost_again() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut redis = RedisServers::start(6)?;
    let storage: Arc<dyn Storage> = Arc::new(store(redis.addresses())?);
    write_through_server(storage.clone()).await?;
    let aggregates = blocking(move || Ok(storage.list("vd")?.len())).await?;
    ensure!(redis.command(1, "FLUSHALL")? == "+OK");

    // Repair needs everyone up, and says so.
    redis.kill(4);
    let err = store(redis.addresses())?.repair(None).err();
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    ensure!(message.contains("every redis server up"), "repair with a server down: {message}");
    redis.restart(4)?;
    let repaired = blocking({
        let servers = redis.addresses();
        move || Ok(store(servers)?.repair(None)?)
    })
    .await?;
    ensure!(repaired.vdisks == 1 && repaired.aggregates == aggregates, "{repaired:?}");
    // Servers 1 (wiped) and 4 (restarted empty) got every shard and the head list back.
    let per_server: Vec<usize> = repaired.shards.iter().map(|(_, n)| *n).collect();
    ensure!(per_server == [0, aggregates, 0, 0, aggregates, 0], "{per_server:?}");
    let lists: Vec<usize> = repaired.head_lists.iter().map(|(_, n)| *n).collect();
    ensure!(lists == [0, 1, 0, 0, 1, 0], "{lists:?}");

    // A second repair finds nothing to do.
    let again = blocking({
        let servers = redis.addresses();
        move || Ok(store(servers)?.repair(Some("vd"))?)
    })
    .await?;
    ensure!(again.shards_rewritten() == 0, "{again:?}");

    // Lose two others: only the repaired shards make replay possible now.
    for i in [0, 3] {
        ensure!(redis.command(i, "FLUSHALL")? == "+OK");
    }
    let dir = tmp.path().to_path_buf();
    let reader = store(redis.addresses())?;
    blocking(move || replays_identical(&reader, &dir, "repaired.img")).await
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

/// A 2+1 store on `servers` that gives up on a silent server quickly.
fn small_store(servers: Vec<String>) -> anyhow::Result<RedisStore> {
    store_with(servers, (2, 1), Duration::from_millis(300), 0)
}

#[test]
fn a_head_that_cannot_be_read_now_is_unavailable_never_an_older_head() -> anyhow::Result<()> {
    let redis = RedisServers::start(3)?;
    let store = small_store(redis.addresses())?;
    let blocks = |first| (first..first + 4).map(block).collect::<Vec<_>>();
    let older = crate::storage::append_blocks(&store, "vd", None, blocks(1))?;
    let newest = crate::storage::append_blocks(&store, "vd", None, blocks(5))?;
    // The newest aggregate loses its shard on server 0, and server 1 hangs (SIGSTOP): the
    // head lists still answer on two servers, but the newest head cannot be rebuilt now.
    // Falling back to the older head here would fork the chain and drop blocks 5..8.
    redis.command(0, &format!("DEL {}", strata_tlog::aggregate::hex(newest.hash())))?;
    redis.pause(1)?;
    let read = store.head("vd");
    redis.resume(1)?;
    match read {
        Err(strata_tlog::Error::Unavailable(message)) => {
            ensure!(message.contains("cannot be read now"), "{message}")
        }
        other => anyhow::bail!("head while a server hangs: {other:?} (older is {})", {
            strata_tlog::aggregate::hex(older.hash())
        }),
    }
    // Once the server answers, the head is the newest aggregate and the chain goes on.
    let head = store.head("vd")?.ok_or_else(|| anyhow::anyhow!("no head"))?;
    ensure!(head.hash == *newest.hash(), "head is not the newest aggregate");
    crate::storage::append_blocks(&store, "vd", None, blocks(9))?;
    let sequences = crate::harness::stored_sequences(&store, "vd")?;
    ensure!(sequences == (1..=12).collect::<Vec<_>>(), "{sequences:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_tlog_server_cannot_move_the_head_after_a_failover() -> anyhow::Result<()> {
    let redis = RedisServers::start(3)?;
    // Two tlog servers for one vdisk, each with its own connections to the same Redis.
    let storage_a: Arc<dyn Storage> = Arc::new(small_store(redis.addresses())?);
    let storage_b: Arc<dyn Storage> = Arc::new(small_store(redis.addresses())?);
    let server_a = Server::on(storage_a.clone(), config(100)).await?;
    let server_b = Server::on(storage_b.clone(), config(100)).await?;

    let mut on_a = Raw::attach(server_a.addr, "vd", 1, false).await?;
    for seq in 1..=10 {
        on_a.block(&block(seq)).await?;
    }
    on_a.command(MessageType::ForceFlushAtSeq, 10).await?;
    on_a.until(|r| r.status == status::FLUSH_OK && r.sequences.last() == Some(&10)).await?;
    // Blocks 11 and 12 wait in A's buffer when the client fails over to B.
    for seq in [11, 12] {
        on_a.block(&block(seq)).await?;
    }
    let mut on_b = Raw::attach(server_b.addr, "vd", 11, false).await?;
    for seq in 11..=20 {
        on_b.block(&block(seq)).await?;
    }
    on_b.command(MessageType::ForceFlushAtSeq, 20).await?;
    on_b.until(|r| r.status == status::FLUSH_OK && r.sequences.last() == Some(&20)).await?;

    // A's late flush chains to the head it knew: fenced, never the head.
    on_a.command(MessageType::ForceFlushAtSeq, 12).await?;
    let late = on_a.until(|r| r.status == status::FLUSH_OK || r.status == status::FLUSH_FAILED);
    ensure!(late.await?.status == status::FLUSH_FAILED, "a stale server's flush succeeded");
    server_a.stop().await?;
    server_b.stop().await?;

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    blocking(move || {
        let sequences = crate::harness::stored_sequences(&*storage_b, "vd")?;
        ensure!(sequences == (1..=20).collect::<Vec<_>>(), "{sequences:?}");
        let image = dir.join("failover.img");
        let done = replay(&*storage_b, "vd", None, Bounds::default(), &image, |_| {})?;
        ensure!(done.last_sequence == Some(20), "replayed to {:?}", done.last_sequence);
        let bytes = std::fs::read(&image)?;
        for seq in 1..=20u64 {
            let at = (seq * 4096) as usize;
            ensure!(bytes[at..at + 4096] == data(seq)[..], "block {seq} differs");
        }
        Ok(())
    })
    .await
}
