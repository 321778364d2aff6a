//! A reader that keeps reading every file during thousands of writes never sees a missing
//! file, a dangling link, a torn file or a mix of two versions, and never goes back in time.
//!
//! The reader follows the consumer contract of `docs/design/atomic.md`: an open that fails
//! with `ENOENT` while `..data` moved is retried. Such an open walked into the old version as
//! it was removed, which happens only when the reader is descheduled for longer than the
//! writer's grace period in the middle of a path lookup; the test counts these, and fails on
//! any `ENOENT` while `..data` stayed put.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, ensure};
use strata_atomic::{DATA_LINK, FileProjection, Payload};

use crate::util::open;

/// The files every version has.
const ALWAYS: [&str; 4] = ["version", "a/one", "a/b/two", ".dot"];

/// A file only odd versions have, so its link comes and goes.
const ODD: &str = "odd/file";

/// How many versions the writer writes while the reader reads.
const WRITES: u64 = 2000;

/// The content of `path` in version `n`: the version number first, repeated so a torn read
/// would show.
fn content(n: u64, path: &str) -> String {
    format!("{n:08} {path}\n").repeat(64)
}

/// Version `n` of the payload.
fn version(n: u64) -> Payload {
    let odd = (n % 2 == 1).then_some(ODD);
    let paths = ALWAYS.into_iter().chain(odd);
    paths.map(|p| (p.into(), FileProjection::new(content(n, p), 0o644))).collect()
}

/// Runs on tmpfs where there is one, since fsync costs nothing there: this test is about what
/// concurrent readers see, and durability is the crash tests' business.
#[test]
fn readers_never_see_missing_dangling_or_mixed_files() -> anyhow::Result<()> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
    let target = dir.path();
    let mut writer = open(target)?;
    writer.write(&version(0))?;
    let stop = AtomicBool::new(false);
    let (passes, stable, retried) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_until(target, &stop));
        let written = (1..=WRITES).try_for_each(|n| writer.write(&version(n)).map(drop));
        stop.store(true, Ordering::Relaxed);
        let read = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
        written?;
        read
    })?;
    ensure!(passes > 200, "only {passes} reading passes");
    ensure!(stable > 100, "only {stable} passes within one version");
    ensure!(retried <= passes / 100, "{retried} retried opens in {passes} passes");
    Ok(())
}

/// Reads every file over and over until `stop`; returns how many passes it made, how many of
/// them saw one `..data` throughout, and how many opens it retried.
fn read_until(target: &Path, stop: &AtomicBool) -> anyhow::Result<(u64, u64, u64)> {
    let (mut passes, mut stable, mut last, mut retried) = (0, 0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let before = std::fs::read_link(target.join(DATA_LINK))?;
        let mut seen = Vec::new();
        for path in ALWAYS {
            let text =
                read(target, path, &mut retried).with_context(|| format!("pass {passes}"))?;
            seen.push(check(&text, path)?);
        }
        match std::fs::read_to_string(target.join(ODD)) {
            Ok(text) => seen.push(check(&text, ODD)?),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).context(ODD),
        }
        for entry in std::fs::read_dir(target)? {
            let name = entry?.file_name();
            if !name.as_encoded_bytes().starts_with(b"..") {
                ensure!(!dangling(&target.join(&name)), "pass {passes}: {name:?} dangles");
            }
        }
        let after = std::fs::read_link(target.join(DATA_LINK))?;
        ensure!(seen[0] >= last && seen.is_sorted(), "pass {passes}: back in time: {seen:?}");
        if before == after {
            ensure!(seen.iter().all(|&n| n == seen[0]), "pass {passes}: a mix: {seen:?}");
            stable += 1;
        }
        last = seen[seen.len() - 1];
        passes += 1;
    }
    Ok((passes, stable, retried))
}

/// Reads `path` in the target, retrying an open that failed while `..data` moved.
fn read(target: &Path, path: &str, retried: &mut u64) -> anyhow::Result<String> {
    for _ in 0..100 {
        let before = std::fs::read_link(target.join(DATA_LINK))?;
        match std::fs::read_to_string(target.join(path)) {
            Ok(text) => return Ok(text),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let after = std::fs::read_link(target.join(DATA_LINK))?;
                ensure!(before != after, "{path} missing while ..data stayed at {before:?}");
                *retried += 1;
            }
            Err(err) => return Err(err).context(path.to_string()),
        }
    }
    anyhow::bail!("{path} missing 100 times in a row")
}

/// The version of a file read as `text`, after checking it is whole.
fn check(text: &str, path: &str) -> anyhow::Result<u64> {
    let n: u64 = text.get(..8).context("short file")?.parse().context(path.to_string())?;
    ensure!(text == content(n, path), "{path}: torn or wrong content");
    ensure!(path != ODD || n % 2 == 1, "{ODD} seen in even version {n}");
    Ok(n)
}

/// True when `path` is a link that does not resolve, three times in a row, so a link removed
/// or created between two looks is not taken for a dangling one.
fn dangling(path: &Path) -> bool {
    (0..3).all(|_| std::fs::metadata(path).is_err() && std::fs::symlink_metadata(path).is_ok())
}
