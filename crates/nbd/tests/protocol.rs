//! The protocol's edges with a raw client: exact error replies for bad requests (the
//! connection stays usable), unknown exports and options, and two connections that are one
//! disk.

use anyhow::ensure;

use crate::harness::{Env, RawClient, go_data, qemu_io};

const READ: u16 = 0;
const WRITE: u16 = 1;
const FLUSH: u16 = 3;
const TRIM: u16 = 4;
const CACHE: u16 = 5;
const WRITE_ZEROES: u16 = 6;
const BLOCK_STATUS: u16 = 7;
const FAST_ZERO: u16 = 1 << 4;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EIO: u32 = 5;

#[test]
fn bad_requests_get_errors_and_the_connection_goes_on() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("edge", 1 << 20)?;
    let mut c = RawClient::go(env.nbd, "edge")?;
    ensure!(c.size == 1 << 20);
    ensure!(c.flags & (1 << 8) != 0, "CAN_MULTI_CONN is advertised");
    let end = c.size;
    ensure!(c.request(READ, 0, end - 10, 20, &[])?.0 == EINVAL, "read past the end");
    ensure!(c.request(WRITE, 0, end - 10, 20, &[9u8; 20])?.0 == ENOSPC, "write past the end");
    ensure!(c.request(WRITE_ZEROES, 0, end, 1, &[])?.0 == ENOSPC, "zeroes past the end");
    ensure!(c.request(TRIM, 0, u64::MAX - 1, 4, &[])?.0 == EINVAL, "trim overflowing");
    ensure!(c.request(READ, 0, 0, 33 << 20, &[])?.0 == EINVAL, "oversized read");
    ensure!(c.request(99, 0, 0, 0, &[])?.0 == EINVAL, "unknown command");
    // Still usable: a write with FUA, then read back.
    ensure!(c.request(WRITE, 1, 4095, 3, b"xyz")?.0 == 0);
    let (err, data) = c.request(READ, 0, 4094, 5, &[])?;
    ensure!(err == 0 && data == b"\0xyz\0", "read back {data:?}");
    ensure!(c.request(FLUSH, 0, 0, 0, &[])?.0 == 0);
    Ok(())
}

#[test]
fn negotiation_refuses_unknown_exports_and_options() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("known", 1 << 20)?;
    let mut s = RawClient::hello(env.nbd)?;
    let replies = RawClient::option(&mut s, 7, &go_data("unknown"))?;
    ensure!(replies.last().is_some_and(|r| r.0 == (1 << 31) + 6), "ERR_UNKNOWN: {replies:?}");
    // EXTENDED_HEADERS (11) is not supported.
    let replies = RawClient::option(&mut s, 11, b"")?;
    ensure!(replies.last().is_some_and(|r| r.0 == (1 << 31) + 1), "ERR_UNSUP: {replies:?}");
    // SET_META_CONTEXT before structured replies is invalid, as the protocol says.
    let replies = RawClient::option(&mut s, 10, b"whatever")?;
    ensure!(replies.last().is_some_and(|r| r.0 == (1 << 31) + 3), "ERR_INVALID: {replies:?}");
    let replies = RawClient::option(&mut s, 3, &[])?;
    let names: Vec<String> = replies
        .iter()
        .filter(|r| r.0 == 2)
        .map(|r| String::from_utf8_lossy(&r.1[4..]).into_owned())
        .collect();
    ensure!(names == ["known"], "LIST: {names:?}");
    let replies = RawClient::option(&mut s, 6, &go_data("known"))?;
    let block = replies.iter().find(|r| r.0 == 3 && r.1[0..2] == [0, 3]).map(|r| r.1.clone());
    ensure!(
        block.is_some_and(|b| b[2..6] == 1u32.to_be_bytes() && b[6..10] == 4096u32.to_be_bytes()),
        "INFO has the block sizes: {replies:?}"
    );
    let replies = RawClient::option(&mut s, 2, &[])?;
    ensure!(replies.last().is_some_and(|r| r.0 == 1), "ABORT is acknowledged");
    Ok(())
}

#[test]
fn two_connections_are_one_disk() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("shared", 4 << 20)?;
    let mut a = RawClient::go(env.nbd, "shared")?;
    let mut b = RawClient::go(env.nbd, "shared")?;
    ensure!(a.request(WRITE, 0, 1000, 4, b"from")?.0 == 0);
    ensure!(b.request(READ, 0, 1000, 4, &[])?.1 == b"from", "b sees a's write");
    // Overlapping writes from both, many times: the last one wins, in the image and the log.
    for i in 0..50u8 {
        ensure!(a.request(WRITE, 0, 8192, 512, &[i; 512])?.0 == 0);
        ensure!(b.request(WRITE, 0, 8192 + 256, 512, &[i + 100; 512])?.0 == 0);
    }
    // A third client, qemu-io, sees both while a and b stay connected.
    qemu_io(
        &env.uri("shared"),
        &["read -P 49 8192 256", "read -P 149 8448 512", "write -P 0x33 0 512"],
    )?;
    ensure!(a.request(READ, 0, 0, 512, &[])?.1 == [0x33; 512]);
    ensure!(b.request(FLUSH, 0, 0, 0, &[])?.0 == 0);
    drop((a, b));
    let restored = {
        let mut env = env;
        env.stop()?;
        let copy = env.restore("shared", strata_nbd::restore::Bound::default(), "copy")?;
        std::fs::read(&copy.image)?
    };
    ensure!(restored[8192..8448] == [49; 256] && restored[8448..8960] == [149; 512]);
    ensure!(restored[0..512] == [0x33; 512] && &restored[1000..1004] == b"from");
    Ok(())
}

#[test]
fn oversized_writes_are_refused_and_the_stream_stays_in_step() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("big", 64 << 20)?;
    let mut c = RawClient::go(env.nbd, "big")?;
    let payload = vec![7u8; (32 << 20) + 1];
    ensure!(c.request(WRITE, 0, 0, payload.len() as u32, &payload)?.0 == EINVAL);
    ensure!(c.request(WRITE, 0, 0, 4, b"ok!!")?.0 == 0);
    ensure!(c.request(READ, 0, 0, 4, &[])?.1 == b"ok!!");
    Ok(())
}

#[test]
fn without_the_tlog_flushes_fail_with_eio_and_new_disks_are_refused() -> anyhow::Result<()> {
    without_the_tlog(false)
}

/// The same, journaling in-process: a stopped tlog server closes the local links and
/// refuses new ones.
#[test]
fn without_the_local_tlog_flushes_fail_with_eio_and_new_disks_are_refused() -> anyhow::Result<()> {
    without_the_tlog(true)
}

fn without_the_tlog(local: bool) -> anyhow::Result<()> {
    let config = strata_nbd::ServerConfig {
        tlog_timeout: std::time::Duration::from_secs(2),
        ..strata_nbd::ServerConfig::default()
    };
    let mut env = if local { Env::start_local_with(config)? } else { Env::start_with(config)? };
    env.create("lost", 1 << 20)?;
    env.create("other", 1 << 20)?;
    let mut c = RawClient::go(env.nbd, "lost")?;
    ensure!(c.request(WRITE, 0, 0, 4, b"keep")?.0 == 0);
    ensure!(c.request(FLUSH, 0, 0, 0, &[])?.0 == 0);
    env.stop_tlog()?;
    // Held in the bounded buffer, but never acknowledged as durable: FLUSH and FUA fail.
    ensure!(c.request(WRITE, 0, 512, 4, b"lost")?.0 == 0);
    ensure!(c.request(FLUSH, 0, 0, 0, &[])?.0 == EIO, "flush without the tlog");
    ensure!(c.request(WRITE, 1, 1024, 4, b"fua!")?.0 == EIO, "FUA write without the tlog");
    let mut s = RawClient::hello(env.nbd)?;
    let replies = RawClient::option(&mut s, 7, &go_data("other"))?;
    let (kind, why) = replies.last().cloned().unwrap_or_default();
    ensure!(kind >= 1 << 31, "GO without the tlog must fail: {replies:?}");
    ensure!(String::from_utf8_lossy(&why).contains("tlog"), "the refusal says why");
    Ok(())
}

#[test]
fn a_client_silent_in_negotiation_is_disconnected() -> anyhow::Result<()> {
    let config = strata_nbd::ServerConfig {
        negotiation_timeout: std::time::Duration::from_millis(500),
        ..strata_nbd::ServerConfig::default()
    };
    let env = Env::start_with(config)?;
    let mut s = RawClient::hello(env.nbd)?;
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut s, &mut byte);
    ensure!(matches!(read, Ok(0)), "the server closes the connection: {read:?}");
    ensure!(started.elapsed() < std::time::Duration::from_secs(10));
    Ok(())
}

#[test]
fn export_name_enters_transmission_the_old_way() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let env = Env::start()?;
    env.create("old", 1 << 20)?;
    let mut s = RawClient::hello(env.nbd)?;
    let mut msg = b"IHAVEOPT".to_vec();
    msg.extend_from_slice(&1u32.to_be_bytes());
    msg.extend_from_slice(&3u32.to_be_bytes());
    msg.extend_from_slice(b"old");
    s.write_all(&msg)?;
    // NO_ZEROES was negotiated: size and flags only.
    let mut answer = [0u8; 10];
    s.read_exact(&mut answer)?;
    ensure!(u64::from_be_bytes(answer[0..8].try_into()?) == 1 << 20);
    ensure!(u16::from_be_bytes(answer[8..10].try_into()?) & 1 == 1, "HAS_FLAGS");
    // An unknown name closes the connection (no error reply exists for this option).
    let mut s = RawClient::hello(env.nbd)?;
    let mut msg = b"IHAVEOPT".to_vec();
    msg.extend_from_slice(&1u32.to_be_bytes());
    msg.extend_from_slice(&4u32.to_be_bytes());
    msg.extend_from_slice(b"nope");
    s.write_all(&msg)?;
    let mut byte = [0u8; 1];
    ensure!(matches!(s.read(&mut byte), Ok(0)), "closed");
    Ok(())
}

#[test]
fn pipelined_requests_cut_into_small_pieces_all_get_answers() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let env = Env::start()?;
    env.create("pipe", 1 << 20)?;
    let mut c = RawClient::go(env.nbd, "pipe")?;
    let n = 300u64;
    let mut wire = Vec::new();
    for i in 0..n {
        wire.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        wire.extend_from_slice(&0u16.to_be_bytes());
        wire.extend_from_slice(&WRITE.to_be_bytes());
        wire.extend_from_slice(&i.to_be_bytes());
        wire.extend_from_slice(&(i * 1000).to_be_bytes());
        wire.extend_from_slice(&1000u32.to_be_bytes());
        wire.extend_from_slice(&[i as u8; 1000]);
    }
    let stream = c.stream();
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        for piece in wire.chunks(7) {
            writer.write_all(piece)?;
        }
        Ok(())
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let mut reply = [0u8; 16];
        stream.read_exact(&mut reply)?;
        ensure!(reply[4..8] == [0, 0, 0, 0], "error {:?}", &reply[4..8]);
        seen.insert(u64::from_be_bytes(reply[8..16].try_into()?));
    }
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    ensure!(seen.len() == n as usize, "every cookie answered once");
    for i in [0u64, 17, 299] {
        let (err, data) = c.request(READ, 0, i * 1000, 1000, &[])?;
        ensure!(err == 0 && data.iter().all(|b| *b == i as u8), "request {i} landed");
    }
    Ok(())
}

/// Many pipelined writes, trims and zeroes over one small region, from two connections:
/// the server applies them to the image concurrently where they do not overlap, yet the
/// image must end up exactly as a replay of the log rebuilds it.
#[test]
fn concurrent_overlapping_changes_reach_the_image_in_log_order() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let env = Env::start()?;
    env.create("busy", 1 << 20)?;
    let region = 64 * 1024u64;
    let mut rng = fastrand::Rng::with_seed(15);
    let mut clients = [RawClient::go(env.nbd, "busy")?, RawClient::go(env.nbd, "busy")?];
    let mut senders = Vec::new();
    let mut counts = Vec::new();
    for (c, client) in clients.iter_mut().enumerate() {
        let mut wire = Vec::new();
        let n = 400u64;
        for i in 0..n {
            let offset = rng.u64(0..region - 512) & !511;
            let length = (rng.u32(1..=32) * 512).min((region - offset) as u32);
            let kind = match rng.u8(0..10) {
                0 => TRIM,
                1 => WRITE_ZEROES,
                _ => WRITE,
            };
            wire.extend_from_slice(&0x2560_9513u32.to_be_bytes());
            wire.extend_from_slice(&0u16.to_be_bytes());
            wire.extend_from_slice(&kind.to_be_bytes());
            wire.extend_from_slice(&(i + 1000 * c as u64).to_be_bytes());
            wire.extend_from_slice(&offset.to_be_bytes());
            wire.extend_from_slice(&length.to_be_bytes());
            if kind == WRITE {
                wire.extend(std::iter::repeat_n((i % 251) as u8 + 1, length as usize));
            }
        }
        let mut writer = client.stream().try_clone()?;
        senders.push(std::thread::spawn(move || writer.write_all(&wire)));
        counts.push(n);
    }
    for (client, n) in clients.iter_mut().zip(counts) {
        for _ in 0..n {
            let mut reply = [0u8; 16];
            client.stream().read_exact(&mut reply)?;
            ensure!(reply[4..8] == [0, 0, 0, 0], "error {:?}", &reply[4..8]);
        }
    }
    for sender in senders {
        sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let [mut a, _b] = clients;
    ensure!(a.request(FLUSH, 0, 0, 0, &[])?.0 == 0);
    let (err, served) = a.request(READ, 0, 0, region as u32, &[])?;
    ensure!(err == 0);
    let restored = env.restore("busy", strata_nbd::restore::Bound::default(), "replayed")?;
    let replayed = std::fs::read(&restored.image)?;
    ensure!(
        served[..] == replayed[..region as usize],
        "the image differs from its log's replay at byte {:?}",
        served.iter().zip(&replayed).position(|(a, b)| a != b)
    );
    Ok(())
}

#[test]
fn cache_fast_zero_and_block_status_without_a_context() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("extras", 1 << 20)?;
    let mut c = RawClient::go(env.nbd, "extras")?;
    ensure!(c.flags & (1 << 10) != 0 && c.flags & (1 << 11) != 0, "CACHE and FAST_ZERO offered");
    ensure!(c.request(CACHE, 0, 0, 65536, &[])?.0 == 0, "CACHE of a range");
    ensure!(c.request(CACHE, 1, 0, 4096, &[])?.0 == EINVAL, "CACHE with a flag");
    ensure!(c.request(CACHE, 0, 1 << 20, 4096, &[])?.0 == EINVAL, "CACHE past the end");
    ensure!(c.request(WRITE, 0, 0, 8192, &[0xab; 8192])?.0 == 0);
    // The image's file system punches holes, so a fast zero is fast and lands.
    ensure!(c.request(WRITE_ZEROES, FAST_ZERO, 0, 4096, &[])?.0 == 0, "FAST_ZERO");
    let (err, data) = c.request(READ, 0, 0, 8192, &[])?;
    ensure!(err == 0 && data[..4096] == [0; 4096] && data[4096..] == [0xab; 4096]);
    // BLOCK_STATUS needs structured replies and base:allocation, which this client skipped.
    ensure!(c.request(BLOCK_STATUS, 0, 0, 4096, &[])?.0 == EINVAL, "BLOCK_STATUS refused");
    Ok(())
}
