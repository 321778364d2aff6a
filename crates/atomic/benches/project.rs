//! Benchmark of projecting files with the atomic writer, against `cp -r` plus `mv` of the
//! same files in the same run; prints a markdown table.
//!
//! Run with `cargo bench -p strata-atomic --bench project`; `-- --test` runs one small write of
//! each shape, to check the bench works. `STRATA_BENCH_WRITES=N` sets the writes per shape.
//! This is not criterion: the baseline is two processes per write, and one number per shape
//! against it is what the table needs.

#![allow(clippy::print_stdout, reason = "the bench prints its table")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use strata_atomic::{AtomicWriter, FileProjection, Outcome, Payload};

/// One shape of payload: how many files of what size, and how many timed writes.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// A name for the table.
    name: &'static str,
    /// Files in the payload.
    files: usize,
    /// Bytes per file.
    size: usize,
    /// Timed writes.
    writes: usize,
}

/// The medians of one shape, per write.
#[derive(Debug)]
struct Figures {
    writer: Duration,
    cp_mv: Duration,
    cp_sync_mv: Duration,
    unchanged: Duration,
}

fn main() -> anyhow::Result<()> {
    let smoke = std::env::args().any(|a| a == "--test");
    let writes = std::env::var("STRATA_BENCH_WRITES").ok().map(|n| n.parse()).transpose()?;
    let shapes = if smoke {
        [Shape { name: "smoke 10 x 4 KiB", files: 10, size: 4096, writes: 1 }].to_vec()
    } else {
        vec![
            Shape {
                name: "1,000 x 4 KiB",
                files: 1000,
                size: 4 << 10,
                writes: writes.unwrap_or(10),
            },
            Shape { name: "10 x 10 MiB", files: 10, size: 10 << 20, writes: writes.unwrap_or(5) },
        ]
    };
    let work = tempfile::tempdir()?;
    println!("work directory: {} ({})", work.path().display(), cpu_model());
    println!();
    println!(
        "| payload | writes | strata-atomic write | `cp -r` + `mv` | ratio | `cp -r` + `sync` + `mv` | ratio | unchanged write |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for shape in shapes {
        let f = bench(work.path(), shape)?;
        let ratio = |base: Duration| f.writer.as_secs_f64() / base.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {:.1}x | {} | {:.1}x | {} |",
            shape.name,
            shape.writes,
            ms(f.writer),
            ms(f.cp_mv),
            ratio(f.cp_mv),
            ms(f.cp_sync_mv),
            ratio(f.cp_sync_mv),
            ms(f.unchanged),
        );
    }
    Ok(())
}

/// Times `shape.writes` writes through the writer, alternating two versions, each followed by
/// `cp -r` + `mv` of the same version's files, with and without `sync`.
fn bench(work: &Path, shape: Shape) -> anyhow::Result<Figures> {
    let root = tempfile::tempdir_in(work)?;
    let versions = [payload(shape, 0), payload(shape, 1)];
    for (i, version) in versions.iter().enumerate() {
        materialize(&root.path().join(format!("src{i}")), version)?;
    }
    let target = root.path().join("target");
    std::fs::create_dir(&target)?;
    let mut writer = AtomicWriter::open(&target)?;
    writer.write(&versions[1])?;
    let (mut w, mut c, mut cs, mut u) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..shape.writes {
        let version = &versions[i % 2];
        let started = Instant::now();
        ensure!(writer.write(version)? == Outcome::Written);
        w.push(started.elapsed());
        let started = Instant::now();
        ensure!(writer.write(version)? == Outcome::Unchanged);
        u.push(started.elapsed());
        let src = root.path().join(format!("src{}", i % 2));
        c.push(cp_mv(root.path(), &src, false)?);
        cs.push(cp_mv(root.path(), &src, true)?);
    }
    Ok(Figures {
        writer: median(w),
        cp_mv: median(c),
        cp_sync_mv: median(cs),
        unchanged: median(u),
    })
}

/// Times `cp -r src stage` then `mv stage copy` (and `sync` between them if asked), then
/// removes the copy untimed.
fn cp_mv(root: &Path, src: &Path, sync: bool) -> anyhow::Result<Duration> {
    let (stage, copy) = (root.join("stage"), root.join("copy"));
    let started = Instant::now();
    run(Command::new("cp").arg("-r").arg(src).arg(&stage))?;
    if sync {
        run(&mut Command::new("sync"))?;
    }
    run(Command::new("mv").arg("-T").arg(&stage).arg(&copy))?;
    let took = started.elapsed();
    std::fs::remove_dir_all(&copy)?;
    Ok(took)
}

/// Runs `command` and checks it succeeded.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("{command:?}"))?;
    ensure!(status.success(), "{command:?}: {status}");
    Ok(())
}

/// Version `version` of a payload of `shape`: files spread over ten directories, with
/// pseudo-random content that differs in every file between versions.
fn payload(shape: Shape, version: u64) -> Payload {
    let mut rng = fastrand::Rng::with_seed(version);
    (0..shape.files)
        .map(|i| {
            let mut data = vec![0; shape.size];
            rng.fill(&mut data);
            (format!("d{}/f{i:04}", i % 10).into(), FileProjection::new(data, 0o644))
        })
        .collect()
}

/// Writes the files of `payload` under `dir`, for `cp` to copy.
fn materialize(dir: &Path, payload: &Payload) -> anyhow::Result<()> {
    for (path, file) in payload {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().context("no parent")?)?;
        std::fs::write(&path, &file.data)?;
    }
    Ok(())
}

/// The median of `times`.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// `times` in milliseconds, for the table.
fn ms(time: Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1000.0)
}

/// The processor model and count, from `/proc/cpuinfo`.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|l| l.strip_prefix("model name")).unwrap_or(": unknown");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{} CPUs, {}", cpus, model.trim_start_matches([' ', '\t', ':']))
}
