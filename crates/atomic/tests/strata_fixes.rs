//! The three things strata does better than Kubernetes' AtomicWriter (SEMANTICS.md, atomic):
//! links after the rename, links healed even when the data is unchanged, and a change of
//! mode alone counting as a change.

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use strata_atomic::{DATA_LINK, Outcome};

use crate::util::{Op, RecordingFs, assert_layout, expected, open, open_with, payload};

/// Kubernetes issue 93686: links to new names were created before `..data` held them, so a
/// watcher could see a dangling link. Strata creates them after the rename, and removes the
/// links of gone names before it.
#[test]
fn links_are_never_dangling_around_the_rename() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let target = dir.path();
    open(target)?.write(&payload(&[("keep", "1", 0o644), ("gone", "1", 0o644)]))?;
    let next = payload(&[("keep", "2", 0o644), ("new/file", "1", 0o644), ("new2", "1", 0o644)]);
    let fs = RecordingFs::default();
    open_with(target, fs.clone())?.write(&next)?;
    let ops = fs.ops();
    assert_layout(target, &expected(&next)?)?;
    let position = |op: Op| ops.iter().position(|o| *o == op).context(format!("{op:?}"));
    let rename = position(Op::Rename(target.join(DATA_LINK)))?;
    assert!(position(Op::RemoveFile(target.join("gone")))? < rename, "{ops:#?}");
    assert!(position(Op::Symlink(target.join("new")))? > rename, "{ops:#?}");
    assert!(position(Op::Symlink(target.join("new2")))? > rename, "{ops:#?}");
    let last_file = ops.iter().rposition(|o| matches!(o, Op::WriteFile(_)));
    assert!(last_file.context("no files written")? < rename);
    let synced = Op::SyncDir(target.to_path_buf());
    assert_eq!(ops.get(rename + 1), Some(&synced), "the rename is made durable at once");
    let syncs_before = ops[..rename].iter().filter(|o| matches!(o, Op::SyncDir(_))).count();
    assert!(syncs_before >= 2, "the new version and ..data_tmp are durable before the rename");
    Ok(())
}

/// A crash between the rename and the links left new names without links until the data
/// changed again; strata creates missing links on every write, changed or not.
#[test]
fn missing_links_heal_even_when_data_is_unchanged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let target = dir.path();
    let mut writer = open(target)?;
    let files = payload(&[("a/b", "1", 0o644), ("c", "2", 0o644), ("d", "3", 0o644)]);
    writer.write(&files)?;
    std::fs::remove_file(target.join("a"))?;
    std::fs::remove_file(target.join("c"))?;
    assert_eq!(writer.write(&files)?, Outcome::Unchanged);
    assert_layout(target, &expected(&files)?)?;

    // Opening heals too, without a payload: the current version says which links belong.
    std::fs::remove_file(target.join("d"))?;
    drop(writer);
    open(target)?;
    assert_layout(target, &expected(&files)?)
}

/// Kubernetes compared only the bytes, so a payload that changed only a mode was skipped.
#[test]
fn a_change_of_mode_alone_is_a_change() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    writer.write(&payload(&[("x/secret", "s", 0o644)]))?;
    let tightened = payload(&[("x/secret", "s", 0o600)]);
    assert_eq!(writer.write(&tightened)?, Outcome::Written);
    let mode = std::fs::metadata(dir.path().join("x/secret"))?.permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(writer.write(&tightened)?, Outcome::Unchanged);
    assert_layout(dir.path(), &expected(&tightened)?)
}
