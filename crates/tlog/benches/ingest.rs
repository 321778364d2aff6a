//! Ingest and latency of the tlog: `cargo bench -p strata-tlog --bench ingest`.
//!
//! One client over loopback sends 4 KiB writes (half random, half repetitive text) to an
//! in-process server with a segment store under `$TMPDIR`, compression and AES-256-GCM on;
//! the figure is bytes acknowledged durable (FlushOK) per second, beside the disk's raw
//! sequential write rate measured in the same run with `dd oflag=direct`. Then single
//! 4 KiB writes each followed by ForceFlushAtSeq and a wait for durability: p50 and p99.
//! `--test` runs a tiny version (CI checks the bench builds and runs).

#![allow(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_tlog::aggregate::Key;
use strata_tlog::client::{Client, ClientConfig};
use strata_tlog::server::{ServerConfig, serve};
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;

const BLOCK: usize = 4096;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--test");
    let total: u64 = if quick { 8 << 20 } else { 2 << 30 };
    let singles = if quick { 20 } else { 2000 };
    let dir = tempfile::tempdir()?;
    let raw = if quick { None } else { Some(dd_direct(dir.path(), 1 << 30)?) };

    let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(&dir.path().join("tlog"))?);
    let blocks = payloads(1024);
    let seal = seal_rate(&blocks);
    let running = Running::start(storage).await?;
    let client = &running.client;
    let ingest = running.ingest(&blocks, total).await?;

    let mut latencies = Vec::with_capacity(singles);
    for i in 0..singles as u64 {
        let begun = Instant::now();
        let seq = client.write(i * BLOCK as u64, blocks[(i % 1024) as usize].clone()).await?;
        client.force_flush(seq).await?;
        client.wait_durable(seq).await?;
        latencies.push(begun.elapsed());
    }
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    running.finish().await?;

    // The same ingest on k=4, m=2 over six local Redis servers, in the same run.
    let on_redis = if std::env::args().any(|a| a == "--redis") {
        let redis = strata_testkit::RedisServers::start(6)?;
        let config = strata_tlog::storage::redis::RedisConfig {
            servers: redis.addresses(),
            ..Default::default()
        };
        let storage: Arc<dyn Storage> =
            Arc::new(strata_tlog::storage::redis::RedisStore::connect(config)?);
        Some(ingest_only(storage, &blocks, total).await?)
    } else {
        None
    };

    println!("| figure | value |");
    println!("|---|---:|");
    println!("| ingest, 4 KiB writes, {} MiB, durable | {ingest:.0} MB/s |", total >> 20);
    if let Some(redis) = on_redis {
        println!("| ingest on Redis k=4 m=2 (six local servers) | {redis:.0} MB/s |");
        println!("| Redis / embedded | {:.2}x |", redis / ingest);
    }
    if let Some(raw) = raw {
        println!("| disk, `dd bs=4M oflag=direct`, 1 GiB | {raw:.0} MB/s |");
        println!("| ingest / raw disk | {:.2}x |", ingest / raw);
    }
    println!("| sealing alone (encode, LZ4, AES-256-GCM, BLAKE3), one core | {seal:.0} MB/s |");
    println!("| single write + ForceFlushAtSeq, durable: p50 | {} |", us(p(0.5)));
    println!("| single write + ForceFlushAtSeq, durable: p99 | {} |", us(p(0.99)));
    Ok(())
}

/// Ingest of `total` bytes into a fresh server on `storage`, in MB/s.
async fn ingest_only(
    storage: Arc<dyn Storage>,
    blocks: &[Bytes],
    total: u64,
) -> anyhow::Result<f64> {
    let running = Running::start(storage).await?;
    let rate = running.ingest(blocks, total).await?;
    running.finish().await?;
    Ok(rate)
}

/// An in-process server on loopback with one client connected to it.
struct Running {
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<strata_tlog::Result<()>>,
}

impl Running {
    async fn start(storage: Arc<dyn Storage>) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = ServerConfig {
            flush_size: 256,
            key: Some(Key::from_bytes(&[7; 32])),
            ..ServerConfig::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, config, storage, async {
            let _ = stopped.await;
        }));
        let client = Client::connect(ClientConfig::new(vec![addr.to_string()], "bench")).await?;
        Ok(Running { client, stop, server })
    }

    /// Sends `total` bytes of 4 KiB writes and waits until all are durable; MB/s.
    async fn ingest(&self, blocks: &[Bytes], total: u64) -> anyhow::Result<f64> {
        let started = Instant::now();
        for i in 0..total / BLOCK as u64 {
            self.client.write(i * BLOCK as u64, blocks[(i % 1024) as usize].clone()).await?;
        }
        self.client.flush().await?;
        Ok(total as f64 / started.elapsed().as_secs_f64() / 1e6)
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.client.close().await?;
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}

/// Sealing 1 MiB aggregates of the payloads on this thread, in MB/s of block data.
fn seal_rate(blocks: &[Bytes]) -> f64 {
    use strata_tlog::aggregate::{Aggregate, NO_PREV};
    use strata_tlog::message::Block;
    let key = Key::from_bytes(&[7; 32]);
    let aggregate = Aggregate {
        vdisk_id: "bench".into(),
        timestamp: 1,
        blocks: (0..256u64)
            .map(|i| Block::write(i + 1, i * BLOCK as u64, blocks[i as usize].clone(), 1))
            .collect(),
        prev: NO_PREV,
    };
    let started = Instant::now();
    let rounds = 64;
    for _ in 0..rounds {
        std::hint::black_box(aggregate.seal(Some(&key)).map(|s| s.bytes().len()).unwrap_or(0));
    }
    (rounds * 256 * BLOCK) as f64 / started.elapsed().as_secs_f64() / 1e6
}

/// Half random blocks, half repetitive text.
fn payloads(n: usize) -> Vec<Bytes> {
    let text = b"strata journals every block write of a virtual disk; ".repeat(BLOCK / 32);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Bytes::from((0..BLOCK).map(|_| fastrand::u8(..)).collect::<Vec<u8>>())
            } else {
                Bytes::copy_from_slice(&text[i % 64..i % 64 + BLOCK])
            }
        })
        .collect()
}

/// The disk's sequential write rate with the page cache bypassed, in MB/s.
fn dd_direct(dir: &std::path::Path, bytes: u64) -> anyhow::Result<f64> {
    let file = dir.join("dd.out");
    let started = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=4M", &format!("count={}", bytes >> 22), "oflag=direct", "conv=fsync"])
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "dd failed");
    let rate = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_file(file)?;
    Ok(rate)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
