//! `strata tlog` end to end: a server process journals a client's writes, is killed with
//! SIGKILL after FlushOK, and every acknowledged write replays after a restart.

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use strata_tlog::aggregate::{Aggregate, Key, NO_PREV};
use strata_tlog::client::{Client, ClientConfig};
use strata_tlog::message::Block;
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;

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
    // Not DATA-DIR/tlog.key, which the readers would find by themselves.
    let key = strata.dir.path().join("disk1.key");
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

/// `strata tlog serve --redis-servers …` on k=4, m=2 real Redis servers, until killed.
fn serve_on_redis(strata: &Strata, servers: &[String]) -> anyhow::Result<(Child, String)> {
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
    if let Err(err) = up {
        let _ = server.kill();
        let _ = server.wait();
        return Err(err);
    }
    Ok((server, listen))
}

/// Writes blocks `from..to` of `vdisk` through the server at `listen` and flushes them.
fn write_blocks(listen: &str, vdisk: &str, from: u64, to: u64) -> anyhow::Result<Option<u64>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut config = ClientConfig::new(vec![listen.to_string()], vdisk);
        config.first_sequence = from + 1;
        let client = Client::connect(config).await?;
        for i in from..to {
            client.write(i * BLOCK, block_data(i)).await?;
        }
        let flushed = client.flush().await?;
        client.close().await?;
        anyhow::Ok(flushed)
    })
}

/// `strata tlog replay` of `vdisk` from `--config`'s Redis servers; checks `blocks` blocks.
fn replays_from_redis(
    strata: &Strata,
    config: &str,
    name: &str,
    blocks: u64,
) -> anyhow::Result<()> {
    let image = strata.dir.path().join(name);
    let image_arg = image.to_string_lossy().into_owned();
    let args = ["--config", config, "tlog", "replay", "--vdisk", "rdisk", "--out", &image_arg];
    let out = strata.ok(&[&args[..], &["--json"]].concat())?;
    let report: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(report["last_sequence"] == blocks, "{report}");
    let bytes = std::fs::read(&image)?;
    for i in 0..blocks {
        let at = (i * BLOCK) as usize;
        ensure!(bytes[at..at + BLOCK as usize] == block_data(i)[..], "{name}: block {i} differs");
    }
    Ok(())
}

#[test]
fn tlog_on_redis_k_plus_m_serves_replays_recovers_and_repairs() -> anyhow::Result<()> {
    let mut redis = strata_testkit::RedisServers::start(6)?;
    let servers = redis.addresses();
    let strata = Strata::new()?;
    // The server takes its servers from flags, the readers from the config.
    let config = strata.dir.path().join("strata.toml");
    let listed: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    std::fs::write(
        &config,
        format!(
            "[tlog.redis]\nservers = [{}]\ndata_shards = 4\nparity_shards = 2\n",
            listed.join(", ")
        ),
    )?;
    let config_arg = config.to_string_lossy().into_owned();

    let (mut server, listen) = serve_on_redis(&strata, &servers)?;
    let written = write_blocks(&listen, "rdisk", 0, 40);
    server.kill()?;
    server.wait()?;
    ensure!(written? == Some(40));

    // A new server process recovers the chain head from the servers' lists and continues.
    let (mut server, listen) = serve_on_redis(&strata, &servers)?;
    let written = write_blocks(&listen, "rdisk", 40, 50);
    server.kill()?;
    server.wait()?;
    ensure!(written? == Some(50));
    let ls: serde_json::Value = serde_json::from_str(&strata.ok(&[
        "--config",
        &config_arg,
        "tlog",
        "ls",
        "--vdisk",
        "rdisk",
        "--json",
    ])?)?;
    let chain = ls.as_array().ok_or_else(|| anyhow::anyhow!("ls: {ls}"))?;
    ensure!(chain.len() >= 2, "{ls}");
    ensure!(chain.windows(2).all(|w| w[1]["prev"] == w[0]["hash"]), "chain broken: {ls}");
    ensure!(chain.last().is_some_and(|a| a["last_sequence"] == 50), "{ls}");
    let verify = strata.ok(&["--config", &config_arg, "tlog", "verify", "--vdisk", "rdisk"])?;
    ensure!(verify.contains("ok"), "{verify}");

    // Two servers lost: any four still rebuild every aggregate.
    redis.kill(0);
    redis.kill(3);
    replays_from_redis(&strata, &config_arg, "two-lost.img", 50)?;

    // Back empty; repair refills them, then two others may be lost.
    redis.restart(0)?;
    redis.restart(3)?;
    let repaired: serde_json::Value = serde_json::from_str(&strata.ok(&[
        "--config",
        &config_arg,
        "tlog",
        "repair",
        "--json",
    ])?)?;
    ensure!(repaired["vdisks"] == 1, "{repaired}");
    let aggregates = chain.len() as u64;
    ensure!(repaired["shards_rewritten"] == 2 * aggregates, "{repaired}");
    for i in [1, 5] {
        ensure!(redis.command(i, "FLUSHALL")? == "+OK");
    }
    replays_from_redis(&strata, &config_arg, "repaired.img", 50)?;

    // Repair of the embedded store is refused with the reason.
    let out = strata.run(&["tlog", "repair"])?;
    ensure!(out.status.code() == Some(2), "{:?}", out.status);
    ensure!(String::from_utf8_lossy(&out.stderr).contains("--redis-servers"));
    Ok(())
}

/// Seals blocks `first..=last` of `vdisk` (block `i` of [`block_data`] at `i * BLOCK`) on
/// its head in the data directory's segment store, as a run's start when asked.
fn append_log(
    store: &SegmentStore,
    vdisk: &str,
    (first, last): (u64, u64),
    key: Option<&Key>,
    run_start: bool,
) -> anyhow::Result<()> {
    let blocks = (first..=last).map(|i| Block::write(i, i * BLOCK, block_data(i), i)).collect();
    let prev = store.head(vdisk)?.map_or(NO_PREV, |s| s.hash);
    let aggregate = Aggregate { vdisk_id: vdisk.into(), timestamp: last, blocks, prev };
    let sealed = if run_start { aggregate.seal_run_start(key)? } else { aggregate.seal(key)? };
    store.append(vdisk, &sealed)?;
    Ok(())
}

/// Checks that `image` holds blocks `seqs` of [`block_data`] and nothing else.
fn image_holds(image: &std::path::Path, seqs: &[u64]) -> anyhow::Result<()> {
    let bytes = std::fs::read(image)?;
    let end = seqs.iter().max().map_or(0, |s| (s + 1) * BLOCK);
    ensure!(bytes.len() as u64 == end, "image of {} bytes, not {end}", bytes.len());
    for (i, chunk) in bytes.chunks(BLOCK as usize).enumerate() {
        let i = i as u64;
        if seqs.contains(&i) {
            ensure!(chunk == &block_data(i)[..], "block {i} differs");
        } else {
            ensure!(chunk.iter().all(|b| *b == 0), "block {i} was never written");
        }
    }
    Ok(())
}

// Issue 13: the player did not check that sequences run on from aggregate to aggregate.
// A gap is reported by `strata tlog verify` and `replay` (exit 8, naming the sequences)
// unless given --allow-gaps; a reset the log records is no gap.
#[test]
fn verify_and_replay_report_gaps_unless_allowed_or_recorded() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    {
        let store = SegmentStore::open(&strata.dir.path().join("tlog"))?;
        for (vdisk, run_start) in [("gappy", false), ("reset", true)] {
            append_log(&store, vdisk, (1, 10), None, false)?;
            append_log(&store, vdisk, (20, 25), None, run_start)?;
        }
    }
    let image = strata.dir.path().join("disk.img");
    let image_arg = image.to_string_lossy().into_owned();
    let replay = |vdisk: &str, extra: &[&str]| {
        let args = [&["tlog", "replay", "--vdisk", vdisk, "--out", &image_arg, "--force"], extra];
        strata.run(&args.concat())
    };
    let held: Vec<u64> = (1..=10).chain(20..=25).collect();
    for out in [strata.run(&["tlog", "verify", "--vdisk", "gappy"])?, replay("gappy", &[])?] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(8), "{:?}: {stderr}", out.status);
        ensure!(stderr.contains("sequences 11 to 19 were never stored"), "{stderr}");
        ensure!(stderr.contains("--allow-gaps"), "{stderr}");
    }
    let report = strata.ok(&["tlog", "verify", "--vdisk", "gappy", "--allow-gaps", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&report)?;
    ensure!(report["gaps"] == 1, "{report}");
    let out = replay("gappy", &["--allow-gaps"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    image_holds(&image, &held)?;
    // The recorded reset needs no flag.
    let report = strata.ok(&["tlog", "verify", "--vdisk", "reset", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&report)?;
    ensure!(report["gaps"] == 0, "{report}");
    let out = replay("reset", &[])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    image_holds(&image, &held)?;
    Ok(())
}

// Issue 13: a log with a key accepted plaintext aggregates, so whoever could write the
// storage could append forged blocks. Here one is appended with the storage API, and
// `strata tlog verify` and `replay` with the key refuse it.
#[test]
fn verify_and_replay_refuse_a_forged_plaintext_aggregate_in_a_keyed_log() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let key_path = strata.dir.path().join("disk1.key");
    let key_arg = key_path.to_string_lossy().into_owned();
    strata.ok(&["tlog", "keygen", "--out", &key_arg])?;
    let key = strata_tlog::keyfile::read_key_file(&key_path)?;
    {
        let store = SegmentStore::open(&strata.dir.path().join("tlog"))?;
        append_log(&store, "disk1", (1, 8), Some(&key), false)?;
        append_log(&store, "disk1", (9, 12), Some(&key), false)?;
    }
    strata.ok(&["tlog", "verify", "--vdisk", "disk1", "--key-file", &key_arg])?;
    {
        let store = SegmentStore::open(&strata.dir.path().join("tlog"))?;
        append_log(&store, "disk1", (13, 14), None, false)?;
    }
    let image = strata.dir.path().join("disk1.img").to_string_lossy().into_owned();
    let replay = ["tlog", "replay", "--vdisk", "disk1", "--out", &image, "--key-file", &key_arg];
    let verify = ["tlog", "verify", "--vdisk", "disk1", "--key-file", &key_arg];
    for args in [&verify[..], &replay[..]] {
        let out = strata.run(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(8), "{args:?}: {:?}: {stderr}", out.status);
        ensure!(stderr.contains("not encrypted, but this log has a key"), "{stderr}");
        ensure!(stderr.contains("aggregate 3 of 3"), "{stderr}");
    }
    Ok(())
}

// Issue 13: `strata vdisk restore` replays through the same checks; its error asked for
// --allow-gaps, which it now takes as well.
#[test]
fn vdisk_restore_reports_a_gap_unless_allowed() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let created = strata.ok(&["vdisk", "create", "vm", "--size", "1M", "--json"])?;
    let created: serde_json::Value = serde_json::from_str(&created)?;
    let tlog_id = created["tlog_id"].as_str().unwrap_or_default().to_string();
    {
        let store = SegmentStore::open(&strata.dir.path().join("tlog"))?;
        append_log(&store, &tlog_id, (1, 10), None, false)?;
        append_log(&store, &tlog_id, (20, 25), None, false)?;
    }
    let out = strata.run(&["vdisk", "restore", "vm", "--as", "strict"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(8), "{:?}: {stderr}", out.status);
    ensure!(stderr.contains("sequences 11 to 19 were never stored"), "{stderr}");
    let restored =
        strata.ok(&["vdisk", "restore", "vm", "--as", "lenient", "--allow-gaps", "--json"])?;
    let restored: serde_json::Value = serde_json::from_str(&restored)?;
    ensure!(restored["origin"][0]["to_seq"] == 25, "{restored}");
    let image = std::path::PathBuf::from(restored["image"].as_str().unwrap_or_default());
    let bytes = std::fs::read(&image)?;
    for i in (1..=10).chain(20..=25) {
        let at = (i * BLOCK) as usize;
        ensure!(bytes[at..at + BLOCK as usize] == block_data(i)[..], "block {i} differs");
    }
    Ok(())
}
