//! Replay throughput: `cargo bench -p strata-tlog --bench replay`.
//!
//! Writes a log of 4 KiB block writes covering a 512 MiB disk (256 blocks, 1 MiB, per
//! aggregate; AES-256-GCM on) into a segment store in a temporary directory under
//! `$TMPDIR`, then times a full replay into a fresh sparse image (the image's final
//! `fsync` included) and a verification: first with the segment files evicted from the
//! page cache ("cold": the disk is read), then again with them cached ("warm": the
//! player's own speed). Two contents: random (LZ4 gives up) and half-zero (LZ4 halves
//! it). The figures are logical bytes applied per second, and the CPU seconds the replay
//! used (all threads): on a busy machine wall time varies, CPU time much less.
//! Not a criterion bench: one long run says more than many short ones here, and it keeps
//! the crate's dev-dependencies light.

use std::io::Write;
use std::num::NonZeroU64;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use rustix::fs::Advice;
use strata_tlog::aggregate::{Aggregate, Key, NO_PREV};
use strata_tlog::message::Block;
use strata_tlog::player::{Bounds, replay, verify};
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;

const BLOCK: usize = 4096;
const PER_AGGREGATE: u64 = 256;
const DISK: u64 = 512 << 20;

fn main() -> anyhow::Result<()> {
    // `cargo bench -- --test` (as CI runs benches to see that they build) runs a tiny disk.
    let quick = std::env::args().any(|a| a == "--test");
    let disk = if quick { 8 << 20 } else { DISK };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<10} {:<5} {:>8} {:>10} {:>8} {:>8} {:>11} {:>11}",
        "content",
        "log",
        "disk MiB",
        "stored MiB",
        "replay s",
        "cpu s",
        "replay MB/s",
        "verify MB/s"
    )?;
    for (name, half_zero) in [("random", false), ("half-zero", true)] {
        let tmp = tempfile::tempdir()?;
        let key = Key::from_bytes(&[7; 32]);
        let stored = write_log(tmp.path(), &key, disk, half_zero)?;
        let segments = tmp.path().join("tlog").join("bench");
        for cold in [true, false] {
            if cold {
                evict(&segments)?;
            }
            let store = SegmentStore::open_read_only(&tmp.path().join("tlog"))?;
            let image = tmp.path().join("disk.img");
            let _ = std::fs::remove_file(&image);
            let (started, cpu) = (Instant::now(), cpu_seconds());
            let done = replay(&store, "bench", Some(&key), Bounds::default(), &image, |_| {})?;
            let replay_secs = started.elapsed().as_secs_f64();
            let replay_cpu = cpu_seconds() - cpu;
            anyhow::ensure!(done.bytes == disk, "replayed {} of {disk} bytes", done.bytes);
            if cold {
                evict(&segments)?;
            }
            let started = Instant::now();
            verify(&store, "bench", Some(&key), false)?;
            let verify_secs = started.elapsed().as_secs_f64();
            writeln!(
                out,
                "{name:<10} {:<5} {:>8} {:>10.1} {replay_secs:>8.3} {replay_cpu:>8.2} {:>11.0} {:>11.0}",
                if cold { "cold" } else { "warm" },
                disk >> 20,
                stored as f64 / f64::from(1 << 20),
                disk as f64 / replay_secs / 1e6,
                disk as f64 / verify_secs / 1e6,
            )?;
        }
    }
    Ok(())
}

/// Writes the log; returns its stored size.
fn write_log(dir: &Path, key: &Key, disk: u64, half_zero: bool) -> anyhow::Result<u64> {
    let store = SegmentStore::open(&dir.join("tlog"))?;
    let mut rng = fastrand::Rng::with_seed(1);
    let mut prev = NO_PREV;
    let mut stored = 0;
    let blocks = disk / BLOCK as u64;
    for first in (0..blocks).step_by(PER_AGGREGATE as usize) {
        let blocks = (first..(first + PER_AGGREGATE).min(blocks))
            .map(|i| {
                let mut data = vec![0u8; BLOCK];
                let random = if half_zero { BLOCK / 2 } else { BLOCK };
                rng.fill(&mut data[..random]);
                Block::write(i + 1, i * BLOCK as u64, Bytes::from(data), i + 1)
            })
            .collect();
        let aggregate = Aggregate { vdisk_id: "bench".into(), timestamp: first, blocks, prev };
        let sealed = aggregate.seal(Some(key))?;
        store.append("bench", &sealed)?;
        prev = *sealed.hash();
        stored += sealed.bytes().len() as u64;
    }
    Ok(stored)
}

/// Drops the files in `dir` from the page cache, so the replay reads the disk.
fn evict(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let file = std::fs::File::open(entry?.path())?;
        file.sync_all()?;
        rustix::fs::fadvise(&file, 0, None::<NonZeroU64>, Advice::DontNeed)?;
    }
    Ok(())
}

/// User plus system CPU seconds this process has used (all threads), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second).
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}
