//! The lock file: a second writer fails fast, in this process or another, and a writer that
//! died, even by `SIGKILL`, leaves the target free.

use std::time::{Duration, Instant};

use strata_atomic::{AtomicWriter, Error, LOCK_FILE};

use crate::util::{ChildProc, open, payload, visible};

#[test]
fn second_writer_in_process_fails_fast() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = open(dir.path())?;
    match AtomicWriter::open(dir.path()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path().join(LOCK_FILE)),
        other => anyhow::bail!("expected Locked, got {other:?}"),
    }
    drop(first);
    open(dir.path())?.write(&payload(&[("a", "1", 0o644)]))?;
    assert!(visible(dir.path())?.files.contains_key(std::path::Path::new("a")));
    Ok(())
}

#[test]
fn writer_in_another_process_fails_fast_until_killed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let envs = [("STRATA_ATOMIC_TARGET", dir.path().display().to_string())];
    let mut holder = ChildProc::spawn("hold", &envs, None)?;
    assert!(holder.next_mark()?.ends_with("held"));
    let started = Instant::now();
    let err = AtomicWriter::open(dir.path()).err();
    assert!(matches!(err, Some(Error::Locked { .. })), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast, does not wait");
    holder.kill()?;
    open(dir.path())?;
    Ok(())
}
