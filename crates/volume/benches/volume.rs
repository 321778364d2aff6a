//! Benchmark of volume snapshots: a 1 GiB tree of mixed file sizes (text-like content) and a
//! 1 GiB tree of incompressible data, each snapshotted into one blob, snapshotted again
//! unchanged (the stat cache at work), and materialized into a fresh directory; prints a
//! markdown table of MB/s.
//!
//! Run with `cargo bench -p strata-volume --bench volume`; `-- --test` runs one small tree,
//! to check the bench works. `STRATA_BENCH_MIB=N` sets the size of each tree.
//! This is not criterion: one timed run of each step of a 1 GiB tree is what the table needs,
//! and the whole bench must stay under about two minutes.

#![allow(clippy::print_stdout, reason = "the bench prints its table")]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use strata_volume::{BlobStore, Manifest, materialize, snapshot};

/// One tree: a name, how its content is made, and the files by size.
struct Shape {
    name: &'static str,
    random: bool,
}

/// File sizes of a tree of about `total` bytes, scaled from this mix for 1 GiB: 4 x 64 MiB,
/// 32 x 8 MiB, 256 x 1 MiB, 1,024 x 128 KiB, 4,096 x 16 KiB, 8,192 x 4 KiB and 4,096 files
/// of 0 to 1 KiB (17,700 files).
fn sizes(total: u64, rng: &mut fastrand::Rng) -> Vec<u64> {
    let scale = |n: u64| (n * total / (1 << 30)).max(1) as usize;
    let mut out = Vec::new();
    let mix: [(u64, u64); 6] = [
        (64 << 20, 4),
        (8 << 20, 32),
        (1 << 20, 256),
        (128 << 10, 1024),
        (16 << 10, 4096),
        (4 << 10, 8192),
    ];
    for (size, n) in mix {
        out.extend(std::iter::repeat_n(size.min(total), scale(n)));
    }
    out.extend((0..scale(4096)).map(|_| rng.u64(..=1024)));
    out
}

fn main() -> anyhow::Result<()> {
    let smoke = std::env::args().any(|a| a == "--test");
    let mib: u64 = match std::env::var("STRATA_BENCH_MIB") {
        Ok(v) => v.parse()?,
        Err(_) if smoke => 16,
        Err(_) => 1024,
    };
    let work = tempfile::tempdir()?;
    println!("work directory: {} ({})", work.path().display(), cpu_model());
    println!();
    println!(
        "| tree | files | bytes | blob | ratio | snapshot | unchanged re-snapshot | materialize |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let shapes = [
        Shape { name: "mixed sizes, text-like", random: false },
        Shape { name: "mixed sizes, incompressible", random: true },
    ];
    for shape in shapes {
        run(work.path(), &shape, mib << 20)?;
    }
    Ok(())
}

fn run(work: &Path, shape: &Shape, total: u64) -> anyhow::Result<()> {
    let src = work.join("src");
    let mut rng = fastrand::Rng::with_seed(42);
    let started = Instant::now();
    let files = build_tree(&src, &sizes(total, &mut rng), shape.random, &mut rng)?;
    let build_time = started.elapsed();
    let bytes: u64 = files.iter().sum();
    // Stats younger than two seconds are not cached (a write in the same tick would go
    // unseen); wait them out so the unchanged re-snapshot can use the cache.
    std::thread::sleep(Duration::from_millis(2100));
    let store = BlobStore::open(&work.join("blobs"))?;

    let started = Instant::now();
    let snap = snapshot(&src, &Manifest::empty(), &store)?;
    let snap_time = started.elapsed();

    let started = Instant::now();
    let again = snapshot(&src, &snap.manifest, &store)?;
    let again_time = started.elapsed();
    ensure!(
        again.added + again.changed + again.deleted == 0,
        "an unchanged tree gave a non-empty diff"
    );

    let out = work.join("out");
    let started = Instant::now();
    let built = materialize(&store, std::slice::from_ref(&snap.blob), &out)?;
    let mat_time = started.elapsed();
    ensure!(built == snap.manifest, "the materialized tree differs");

    println!(
        "| {} | {} | {:.0} MiB | {:.0} MiB | {:.2} | {:.0} MB/s ({:.1} s) | {:.2} s | {:.0} MB/s ({:.1} s) |",
        shape.name,
        files.len(),
        bytes as f64 / (1 << 20) as f64,
        snap.size as f64 / (1 << 20) as f64,
        bytes as f64 / snap.size as f64,
        mb_per_s(bytes, snap_time),
        snap_time.as_secs_f64(),
        again_time.as_secs_f64(),
        mb_per_s(bytes, mat_time),
        mat_time.as_secs_f64(),
    );
    println!("<!-- {}: tree written in {:.1} s -->", shape.name, build_time.as_secs_f64());
    fs::remove_dir_all(&src)?;
    fs::remove_dir_all(&out)?;
    fs::remove_dir_all(work.join("blobs"))?;
    Ok(())
}

/// Writes files of `sizes` into `dir`, 64 to a directory; returns their sizes.
fn build_tree(
    dir: &Path,
    sizes: &[u64],
    random: bool,
    rng: &mut fastrand::Rng,
) -> anyhow::Result<Vec<u64>> {
    let mut buf = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let sub = dir.join(format!("d{:03}", i / 64));
        fs::create_dir_all(&sub)?;
        buf.clear();
        buf.resize(size as usize, 0);
        if random {
            rng.fill(&mut buf);
        } else {
            fill_text(rng, &mut buf);
        }
        fs::File::create(sub.join(format!("f{i:05}")))?.write_all(&buf)?;
    }
    Ok(sizes.to_vec())
}

/// Fills `buf` with words drawn at random from a small vocabulary: compresses about 3:1 with
/// zstd, like source code or logs.
fn fill_text(rng: &mut fastrand::Rng, buf: &mut [u8]) {
    const WORDS: [&[u8]; 24] = [
        b"the ",
        b"volume ",
        b"snapshot ",
        b"of ",
        b"a ",
        b"tree ",
        b"strata ",
        b"blob ",
        b"hash ",
        b"diff ",
        b"fn ",
        b"let ",
        b"mut ",
        b"=> ",
        b"{\n",
        b"}\n",
        b"0x",
        b"42 ",
        b"1970-01-01 ",
        b"INFO ",
        b"error ",
        b"path/to/file ",
        b"\n",
        b"; ",
    ];
    let mut i = 0;
    while i < buf.len() {
        let word = WORDS[rng.usize(..WORDS.len())];
        let n = word.len().min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[..n]);
        i += n;
        if rng.u8(..8) == 0 && i < buf.len() {
            buf[i] = b'a' + rng.u8(..26);
            i += 1;
        }
    }
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned());
    format!(
        "{}, {} cores",
        model.unwrap_or_else(|| "unknown CPU".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}
