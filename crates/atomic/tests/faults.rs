//! Injected I/O failures: whichever change on disk fails, the write reports it, the target
//! holds the old or the new version, a failed sync poisons the writer, and the next writer
//! heals.

use strata_atomic::Error;

use crate::crash::versions;
use crate::util::{
    Act, RecordingFs, assert_layout, check_interrupted, expected, open, open_with, payload,
};

/// Fails each change of a write from version `old` to `new` in turn.
fn fail_at_every_point(old: usize, new: usize) -> anyhow::Result<usize> {
    let versions = versions();
    let (old_tree, new_tree) = (expected(&versions[old])?, expected(&versions[new])?);
    for at in 0..200 {
        let dir = tempfile::tempdir()?;
        let target = dir.path();
        open(target)?.write(&versions[old])?;
        let mut writer = open_with(target, RecordingFs::acting(at, Act::Fail))?;
        let err = match writer.write(&versions[new]) {
            Ok(_) => return Ok(at),
            Err(err) => err,
        };
        check_interrupted(target, &old_tree, &new_tree)?;
        let synced = matches!(&err, Error::Io { op: "write file" | "sync directory", .. });
        match writer.write(&versions[new]) {
            Err(Error::Poisoned { .. }) if synced => {
                drop(writer);
                open(target)?.write(&versions[new])?;
            }
            Ok(_) if !synced => {}
            other => anyhow::bail!("after {err} at {at}: {other:?}"),
        }
        assert_layout(target, &new_tree)?;
    }
    anyhow::bail!("the write never finished")
}

#[test]
fn io_failure_at_every_point() -> anyhow::Result<()> {
    for (old, new) in [(0, 1), (1, 0), (1, 2), (2, 0)] {
        let points = fail_at_every_point(old, new)?;
        assert!(points >= 8, "{old} -> {new}: only {points} points");
    }
    Ok(())
}

#[test]
fn poisoned_message_names_the_target() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open_with(dir.path(), RecordingFs::acting(1, Act::Fail))?;
    let one_file = payload(&[("f", "x", 0o644)]);
    let first = writer.write(&one_file).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(first.ends_with("/f: write file"), "{first}");
    let second = writer.write(&one_file).err().map(|e| e.to_string()).unwrap_or_default();
    let want = format!(
        "{}: writer poisoned by an earlier failed sync ({first}: injected failure); open the target again",
        dir.path().display()
    );
    assert_eq!(second, want);
    Ok(())
}
