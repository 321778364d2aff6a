//! The server, checked through raw protocol messages: handshakes, ordering, duplicates,
//! flush triggers, resets, bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::ensure;
use strata_tlog::Error;
use strata_tlog::aggregate::{Hash, Key, Sealed};
use strata_tlog::message::{Block, MessageType, handshake_status, now_nanos, status};
use strata_tlog::player::verify;
use strata_tlog::server::ServerConfig;
use strata_tlog::storage::segment::SegmentStore;
use strata_tlog::storage::{Storage, Stored};
use strata_tlog::version::{Version, stage};

use crate::harness::{Raw, Server, block, config, data, replayed, stored_sequences};
use crate::player::model;

#[tokio::test]
async fn every_block_gets_recv_ok_then_flush_ok() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(5)).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=15 {
        raw.block(&block(seq)).await?;
    }
    let (mut received, mut flushed) = (Vec::new(), Vec::new());
    while flushed.len() < 15 {
        let response = raw.response().await?;
        match response.status {
            status::RECV_OK => received.extend(response.sequences),
            status::FLUSH_OK => flushed.extend(response.sequences),
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    ensure!(received == (1..=15).collect::<Vec<_>>(), "{received:?}");
    ensure!(flushed == (1..=15).collect::<Vec<_>>(), "{flushed:?}");
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=15).collect::<Vec<_>>());
    // A flush takes everything ordered when it starts, so a burst may share an aggregate.
    let aggregates = server.storage.list("vd")?.len();
    ensure!((1..=3).contains(&aggregates), "{aggregates} aggregates");
    Ok(())
}

#[tokio::test]
async fn out_of_order_blocks_each_sent_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(4)).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    let order = [3u64, 1, 4, 2, 8, 6, 5, 7];
    for seq in order {
        raw.block(&block(seq)).await?;
        raw.block(&block(seq)).await?;
    }
    let mut flushed = Vec::new();
    while flushed.len() < 8 {
        let response = raw.response().await?;
        if response.status == status::FLUSH_OK {
            flushed.extend(response.sequences);
        }
    }
    flushed.sort_unstable();
    flushed.dedup();
    ensure!(flushed == (1..=8).collect::<Vec<_>>(), "{flushed:?}");
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=8).collect::<Vec<_>>());
    // A duplicate of a flushed block is answered FlushOK again.
    raw.block(&block(2)).await?;
    raw.until(|r| r.status == status::FLUSH_OK && r.sequences == [2]).await?;
    Ok(())
}

#[tokio::test]
async fn force_flush_at_an_odd_sequence() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(25)).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=7 {
        raw.block(&block(seq)).await?;
    }
    raw.command(MessageType::ForceFlushAtSeq, 7).await?;
    let mut flushed = Vec::new();
    let mut force_received = false;
    while flushed.len() < 7 {
        let response = raw.response().await?;
        match response.status {
            status::FLUSH_OK => flushed.extend(response.sequences),
            status::FORCE_FLUSH_RECEIVED => force_received = true,
            _ => {}
        }
    }
    ensure!(force_received, "no ForceFlushReceived");
    // A force flush ahead of what arrived waits for that block.
    raw.command(MessageType::ForceFlushAtSeq, 9).await?;
    raw.block(&block(8)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ensure!(stored_sequences(&*server.storage, "vd")?.last() == Some(&7), "flushed before 9 came");
    raw.block(&block(9)).await?;
    raw.until(|r| r.status == status::FLUSH_OK && r.sequences.contains(&9)).await?;
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=9).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn flush_time_flushes_a_partial_buffer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(100);
    cfg.flush_time = Duration::from_millis(200);
    let server = Server::start(dir.path(), cfg).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    raw.block(&block(1)).await?;
    loop {
        let response = raw.response().await?;
        if response.status == status::FLUSH_OK {
            ensure!(response.sequences == [1]);
            break;
        }
    }
    Ok(())
}

/// Large blocks flush once a full aggregate's worth is ordered, long before `flush_size`
/// blocks are (with 1 MiB blocks a client's buffer may not hold that many) or the timer.
#[tokio::test]
async fn a_full_aggregate_of_data_flushes_before_flush_size() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(1000);
    cfg.max_aggregate_bytes = 1 << 20;
    let server = Server::start(dir.path(), cfg).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=4 {
        let data = bytes::Bytes::from(vec![seq as u8; 256 << 10]);
        raw.block(&Block::write(seq, seq << 20, data, seq)).await?;
    }
    // `until` gives up after 5 s without an answer, long before the 60 s timer.
    let flushed = raw.until(|r| r.status == status::FLUSH_OK).await?.sequences;
    ensure!(flushed == [1, 2, 3, 4], "{flushed:?}");
    Ok(())
}

#[tokio::test]
async fn reset_first_sequence_by_a_second_client() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(100)).await?;
    let mut first = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in [1, 2, 3, 5] {
        first.block(&block(seq)).await?;
    }
    for _ in 0..4 {
        ensure!(first.response().await?.status == status::RECV_OK);
    }
    let mut second = Raw::attach(server.addr, "vd", 100, true).await?;
    // 1..3 were ordered and flushed by the reset, and the first client hears so before
    // the reset cuts it off; 5 (out of order) was dropped.
    first.until(|r| r.status == status::FLUSH_OK && r.sequences == [1, 2, 3]).await?;
    ensure!(first.closed().await, "the first client was not disconnected by the reset");
    ensure!(stored_sequences(&*server.storage, "vd")? == [1, 2, 3]);
    second.block(&block(100)).await?;
    second.command(MessageType::ForceFlushAtSeq, 100).await?;
    second.until(|r| r.status == status::FLUSH_OK && r.sequences == [100]).await?;
    ensure!(stored_sequences(&*server.storage, "vd")? == [1, 2, 3, 100]);
    Ok(())
}

#[tokio::test]
async fn after_a_reset_flush_ok_means_stored_and_nothing_else() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(100)).await?;
    let (_first, mut second) = stored_then_reset(&server).await?;
    // Resends: a stored block is FlushOK again; a sequence the reset skipped was never
    // stored, and is refused rather than answered FlushOK.
    for (seq, want) in [(2, status::FLUSH_OK), (50, status::RECV_FAILED), (100, status::FLUSH_OK)] {
        second.block(&block(seq)).await?;
        let answer = second.until(|r| r.sequences == [seq]).await?;
        ensure!(answer.status == want, "block {seq}: status {} not {want}", answer.status);
    }
    ensure!(stored_sequences(&*server.storage, "vd")? == [1, 2, 3, 100]);
    // The chain records the reset, so the jump from 3 to 100 is no gap to the player.
    let listed = server.storage.list("vd")?;
    ensure!(listed.last().is_some_and(|s| s.header.run_start), "the reset is not recorded");
    let report = strata_tlog::player::verify(&*server.storage, "vd", None, false)?;
    ensure!(report.gaps == 0);
    Ok(())
}

/// Stores blocks 1 to 3 from one client, then has a second one reset the vdisk to sequence
/// 100 and store block 100; returns both clients, each having seen its blocks FlushOK.
async fn stored_then_reset(server: &Server) -> anyhow::Result<(Raw, Raw)> {
    let mut first = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=3 {
        first.block(&block(seq)).await?;
    }
    first.command(MessageType::ForceFlushAtSeq, 3).await?;
    first.until(|r| r.status == status::FLUSH_OK && r.sequences == [1, 2, 3]).await?;
    let mut second = Raw::attach(server.addr, "vd", 100, true).await?;
    second.block(&block(100)).await?;
    second.command(MessageType::ForceFlushAtSeq, 100).await?;
    second.until(|r| r.status == status::FLUSH_OK && r.sequences == [100]).await?;
    Ok((first, second))
}

// Issue 13: after a restart the server knew the log only up to its head and answered
// FlushOK for any sequence at or below it, including sequences a reset skipped and blocks
// other than the ones stored.
#[tokio::test]
async fn a_restarted_server_answers_flush_ok_only_for_blocks_the_chain_holds() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(dir.path())?);
    let server = Server::on(storage.clone(), config(100)).await?;
    let (_first, _second) = stored_then_reset(&server).await?;
    server.stop().await?;

    // A new server knows the log only from the storage.
    let server = Server::on(storage.clone(), config(100)).await?;
    let mut again = Raw::attach(server.addr, "vd", 101, false).await?;
    let other = Block::write(2, 2 * 4096, data(77), 1_002);
    let resends = [
        (block(2), status::FLUSH_OK),
        (block(50), status::RECV_FAILED),
        (block(100), status::FLUSH_OK),
        (other, status::RECV_FAILED),
    ];
    for (resent, want) in resends {
        let seq = resent.sequence;
        again.block(&resent).await?;
        let answer = again.until(|r| r.sequences == [seq]).await?;
        ensure!(answer.status == want, "block {seq}: status {} not {want}", answer.status);
    }
    ensure!(stored_sequences(&*storage, "vd")? == [1, 2, 3, 100]);
    let acknowledged = [block(1), block(2), block(3), block(100)];
    ensure!(replayed(&*storage, "vd", None)? == model(&acknowledged), "replay differs");
    Ok(())
}

// Issue 13: a reset that dies with its server before anything of the new run is stored
// leaves no trace; the client's reconnect (no reset) resends blocks under sequences the
// log holds other blocks for, and they were answered FlushOK.
#[tokio::test]
async fn a_reset_lost_in_a_crash_does_not_pass_old_blocks_for_new_ones() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(dir.path())?);
    let server = Server::on(storage.clone(), config(100)).await?;
    let mut writer = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=10 {
        writer.block(&block(seq)).await?;
    }
    writer.command(MessageType::ForceFlushAtSeq, 10).await?;
    writer.until(|r| r.status == status::FLUSH_OK && r.sequences.contains(&10)).await?;
    server.stop().await?;

    let rewritten = |seq: u64| Block::write(seq, seq * 4096, data(seq + 1000), 5_000 + seq);
    let server = Server::on(storage.clone(), config(100)).await?;
    let mut client = Raw::attach(server.addr, "vd", 5, true).await?;
    for seq in 5..=7 {
        client.block(&rewritten(seq)).await?;
        client.until(|r| r.status == status::RECV_OK && r.sequences == [seq]).await?;
    }
    server.crash();

    let server = Server::on(storage.clone(), config(100)).await?;
    // The client reconnects as after any cut: from its oldest unflushed sequence.
    let mut client = Raw::attach(server.addr, "vd", 5, false).await?;
    for seq in 5..=7 {
        client.block(&rewritten(seq)).await?;
        let answer = client.until(|r| r.sequences == [seq]).await?;
        ensure!(answer.status == status::RECV_FAILED, "block {seq}: status {}", answer.status);
    }
    // The blocks the log does hold are still answered as stored.
    client.block(&block(6)).await?;
    client.until(|r| r.status == status::FLUSH_OK && r.sequences == [6]).await?;
    let acknowledged: Vec<Block> = (1..=10).map(block).collect();
    ensure!(replayed(&*storage, "vd", None)? == model(&acknowledged), "replay differs");
    Ok(())
}

// Issue 13: whoever can write the storage but has no key appended an aggregate that names
// the head as prev; a server with the key chained new blocks after it. A plaintext one and
// one sealed with another key are both refused, by the server and by the player.
#[tokio::test]
async fn a_server_with_a_key_refuses_forged_heads() -> anyhow::Result<()> {
    let key = Key::from_bytes(&[5; 32]);
    let other = Key::from_bytes(&[6; 32]);
    for (name, forger) in [("plaintext", None), ("another key", Some(&other))] {
        let dir = tempfile::tempdir()?;
        let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(dir.path())?);
        let keyed = || ServerConfig { key: Some(key.clone()), ..config(10) };
        let server = Server::on(storage.clone(), keyed()).await?;
        let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
        for seq in 1..=4 {
            raw.block(&block(seq)).await?;
        }
        raw.command(MessageType::ForceFlushAtSeq, 4).await?;
        raw.until(|r| r.status == status::FLUSH_OK && r.sequences.contains(&4)).await?;
        server.stop().await?;
        crate::storage::append_blocks(&*storage, "vd", forger, vec![block(5), block(6)])?;

        let server = Server::on(storage.clone(), keyed()).await?;
        let mut raw = Raw::connect(server.addr).await?;
        let refused = raw.handshake(Version::CURRENT.0, "vd", 7, false).await;
        ensure!(refused.map_or(true, |status| status != 1), "{name}: a forged head was accepted");
        let err = verify(&*storage, "vd", Some(&key), false).map(drop).unwrap_err();
        ensure!(matches!(err, Error::Corrupted(_)), "{name}: {err}");
        let err = replayed(&*storage, "vd", Some(&key)).map(drop).unwrap_err();
        ensure!(err.to_string().contains("forged"), "{name}: {err}");
        // Other vdisks are served as usual.
        Raw::attach(server.addr, "other", 1, false).await?;
    }
    Ok(())
}

#[tokio::test]
async fn handshakes_are_checked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(5)).await?;
    let old = Version::new(0, 9, 0, stage::LIVE).0;
    let mut raw = Raw::connect(server.addr).await?;
    ensure!(raw.handshake(old, "vd", 1, false).await? == handshake_status::INVALID_VERSION);
    let mut raw = Raw::connect(server.addr).await?;
    ensure!(
        raw.handshake(Version::CURRENT.0, "../etc", 1, false).await?
            == handshake_status::INVALID_VDISK_ID
    );
    let mut raw = Raw::connect(server.addr).await?;
    ensure!(
        raw.handshake(Version::CURRENT.0, "", 1, false).await?
            == handshake_status::INVALID_VDISK_ID
    );
    // Garbage instead of a handshake: still answered, then closed.
    let mut raw = Raw::connect(server.addr).await?;
    let garbage = [0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    ensure!(raw.raw_handshake(&garbage).await? == handshake_status::INVALID_REQUEST);
    let mut raw2 = Raw::attach(server.addr, "vd", 1, false).await?;
    raw2.block(&block(1)).await?;
    ensure!(raw2.response().await?.status == status::RECV_OK, "server hurt by garbage");
    ensure!(raw.closed().await);
    Ok(())
}

#[tokio::test]
async fn bad_frames_close_the_connection_not_the_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(5)).await?;
    let cases: Vec<Vec<u8>> = vec![
        vec![9, 0, 0, 0, 0, 0, 0, 0, 0], // unknown type
        [vec![1], 0u32.to_le_bytes().to_vec(), u32::MAX.to_le_bytes().to_vec()].concat(), // oversized
        [vec![1], 5000u32.to_le_bytes().to_vec()].concat(), // too many segments
        [vec![1, 0, 0, 0, 0, 2, 0, 0, 0], vec![0xde; 16]].concat(), // not a block
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
        raw.send_raw(bytes).await?;
        ensure!(raw.closed().await, "case {i}: connection left open");
    }
    // A truncated frame followed by a hang-up.
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    let frame = [vec![1u8], block(1).encode()].concat();
    raw.send_raw(&frame[..frame.len() / 2]).await?;
    drop(raw);
    // A block whose hash does not match gets RecvFailed with its sequence.
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    let mut bad = block(1);
    bad.hash[0] ^= 1;
    raw.block(&bad).await?;
    let response = raw.response().await?;
    ensure!(response.status == status::RECV_FAILED && response.sequences == [1], "{response:?}");
    raw.block(&block(1)).await?;
    ensure!(raw.response().await?.status == status::RECV_OK, "server unusable after bad input");
    Ok(())
}

#[tokio::test]
async fn idle_connections_are_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(5);
    cfg.idle_timeout = Duration::from_millis(300);
    let server = Server::start(dir.path(), cfg).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    ensure!(raw.closed().await, "idle connection stayed open");
    Ok(())
}

#[tokio::test]
async fn shutdown_flushes_what_is_buffered() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), config(100)).await?;
    let storage = server.storage.clone();
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=3 {
        raw.block(&block(seq)).await?;
        ensure!(raw.response().await?.status == status::RECV_OK);
    }
    server.stop().await?;
    ensure!(stored_sequences(&*storage, "vd")? == [1, 2, 3], "shutdown lost buffered blocks");
    Ok(())
}

/// A segment store whose first `append_many` stays `tail` longer after storage took its
/// last aggregate (a slow write and sync), and then fails with `fail`.
#[derive(Debug)]
struct SlowTail {
    inner: SegmentStore,
    tail: Duration,
    fail: bool,
    calls: AtomicUsize,
    in_tail: AtomicBool,
    /// Unix nanoseconds when the first `append_many` returned.
    first_ended: AtomicU64,
}

impl SlowTail {
    fn new(inner: SegmentStore, fail: bool) -> SlowTail {
        SlowTail {
            inner,
            tail: Duration::from_millis(300),
            fail,
            calls: AtomicUsize::new(0),
            in_tail: AtomicBool::new(false),
            first_ended: AtomicU64::new(0),
        }
    }

    /// Waits until the first `append_many` is in its slow tail.
    async fn tail_begun(&self) -> anyhow::Result<()> {
        for _ in 0..500 {
            if self.in_tail.load(Ordering::SeqCst) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the first flush never reached storage")
    }
}

impl Storage for SlowTail {
    fn append(&self, vdisk: &str, sealed: &Sealed) -> strata_tlog::Result<()> {
        self.inner.append(vdisk, sealed)
    }

    fn append_many(
        &self,
        vdisk: &str,
        next: &mut dyn FnMut(&Hash) -> strata_tlog::Result<Option<Sealed>>,
        head: Hash,
    ) -> strata_tlog::Result<Hash> {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        let stored = self.inner.append_many(vdisk, next, head)?;
        if first {
            self.in_tail.store(true, Ordering::SeqCst);
            std::thread::sleep(self.tail);
            self.first_ended.store(now_nanos(), Ordering::SeqCst);
            if self.fail {
                return Err(Error::Unavailable("the disk went away".into()));
            }
        }
        Ok(stored)
    }

    fn head(&self, vdisk: &str) -> strata_tlog::Result<Option<Stored>> {
        self.inner.head(vdisk)
    }

    fn get(&self, vdisk: &str, hash: &Hash) -> strata_tlog::Result<Vec<u8>> {
        self.inner.get(vdisk, hash)
    }

    fn list(&self, vdisk: &str) -> strata_tlog::Result<Vec<Stored>> {
        self.inner.list(vdisk)
    }

    fn vdisks(&self) -> strata_tlog::Result<Vec<String>> {
        self.inner.vdisks()
    }
}

/// Sends blocks 1 to 5 (a flush), and once storage is in that flush's slow tail, 6 to 10.
async fn two_flushes(store: &Arc<SlowTail>) -> anyhow::Result<(Server, Raw)> {
    let server = Server::on(store.clone(), config(5)).await?;
    let mut raw = Raw::attach(server.addr, "vd", 1, false).await?;
    for seq in 1..=5 {
        raw.block(&block(seq)).await?;
    }
    store.tail_begun().await?;
    for seq in 6..=10 {
        raw.block(&block(seq)).await?;
    }
    Ok((server, raw))
}

#[tokio::test]
async fn the_next_flush_is_sealed_while_the_one_before_is_still_being_stored() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SlowTail::new(SegmentStore::open(dir.path())?, false));
    let (server, mut raw) = two_flushes(&store).await?;
    let mut flushed = Vec::new();
    while flushed.len() < 10 {
        let response = raw.response().await?;
        match response.status {
            status::RECV_OK => {}
            status::FLUSH_OK => flushed.extend(response.sequences),
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    ensure!(flushed == (1..=10).collect::<Vec<_>>(), "FlushOK out of order: {flushed:?}");
    let listed = server.storage.list("vd")?;
    ensure!(stored_sequences(&*server.storage, "vd")? == (1..=10).collect::<Vec<_>>());
    let second = listed
        .iter()
        .find(|stored| stored.header.first_sequence == 6)
        .ok_or_else(|| anyhow::anyhow!("no aggregate starts at 6: {listed:?}"))?;
    // An aggregate carries the time its flush began.
    ensure!(
        second.header.timestamp < store.first_ended.load(Ordering::SeqCst),
        "the second flush began only after the first was stored"
    );
    let report = strata_tlog::player::verify(&*server.storage, "vd", None, false)?;
    ensure!(report.aggregates == listed.len() as u64, "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_flush_after_a_failed_one_stores_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SlowTail::new(SegmentStore::open(dir.path())?, true));
    let (_server, mut raw) = two_flushes(&store).await?;
    let mut statuses = Vec::new();
    while let Ok(response) = raw.response().await {
        if response.status != status::RECV_OK {
            statuses.push((response.status, response.sequences));
        }
    }
    ensure!(
        statuses == [(status::FLUSH_FAILED, (1..=5).collect::<Vec<_>>())],
        "answers after the failed flush: {statuses:?}"
    );
    // The second flush was sealed meanwhile; it must have given up, not stored on top.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        stored_sequences(&store.inner, "vd")? == (1..=5).collect::<Vec<_>>(),
        "a flush was stored after the one before it failed"
    );
    Ok(())
}
