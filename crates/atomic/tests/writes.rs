//! Writes in sequence: the first one, updates, additions, deletions, modes, and writes that
//! change nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use strata_atomic::{AtomicWriter, DATA_LINK, Error, Outcome, Payload};

use crate::util::{ChildProc, assert_layout, expected, open, payload, visible};

/// Writes `payload` and checks the target shows exactly it.
fn write_and_check(writer: &mut AtomicWriter, payload: &Payload) -> anyhow::Result<Outcome> {
    let outcome = writer.write(payload)?;
    assert_layout(writer.target(), &expected(payload)?)?;
    Ok(outcome)
}

#[test]
fn first_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let first = payload(&[("podName", "web-0", 0o644), ("user/labels", "a=b", 0o644)]);
    assert_eq!(write_and_check(&mut writer, &first)?, Outcome::Written);
    assert_eq!(std::fs::read_to_string(dir.path().join("user/labels"))?, "a=b");
    Ok(())
}

#[test]
fn updates_additions_and_nested_deletions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let steps = [
        payload(&[("a/b/c", "1", 0o644), ("a/b/d", "1", 0o644), ("a/e", "1", 0o644)]),
        // An update of one file, an addition deep down and a new top-level name.
        payload(&[
            ("a/b/c", "2", 0o644),
            ("a/b/d", "1", 0o644),
            ("a/e", "1", 0o644),
            ("a/x/y/z", "new", 0o644),
            ("top", "t", 0o644),
        ]),
        // A nested deletion of a file, then of a whole subdirectory.
        payload(&[("a/b/c", "2", 0o644), ("a/e", "1", 0o644), ("a/x/y/z", "new", 0o644)]),
        payload(&[("a/e", "1", 0o644), ("a/x/y/z", "new", 0o644)]),
        // The last file of a directory replaced by a file of the same name.
        payload(&[("a", "now a file", 0o644)]),
    ];
    for step in &steps {
        assert_eq!(write_and_check(&mut writer, step)?, Outcome::Written);
    }
    assert!(!dir.path().join("top").exists(), "a removed top-level name stays removed");
    Ok(())
}

#[test]
fn delete_all() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    write_and_check(&mut writer, &payload(&[("a/b", "1", 0o644), ("c", "2", 0o644)]))?;
    assert_eq!(write_and_check(&mut writer, &Payload::new())?, Outcome::Written);
    assert!(visible(dir.path())?.files.is_empty());
    assert!(dir.path().join(DATA_LINK).is_dir(), "..data stays, pointing at an empty version");
    assert_eq!(writer.write(&Payload::new())?, Outcome::Unchanged);
    Ok(())
}

#[test]
fn modes_and_dotfiles() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let modes =
        [0o400, 0o440, 0o444, 0o600, 0o640, 0o644, 0o664, 0o666, 0o700, 0o750, 0o755, 0o777];
    let mut files = Payload::new();
    for mode in modes {
        let file = strata_atomic::FileProjection::new(format!("{mode:o}"), mode);
        files.insert(format!("m/{mode:o}").into(), file.clone());
        files.insert(format!(".dot{mode:o}").into(), file);
    }
    files.insert(".hidden/.inner".into(), strata_atomic::FileProjection::new("h", 0o400));
    write_and_check(&mut writer, &files)?;
    let m = std::fs::metadata(dir.path().join("m"))?;
    assert_eq!(m.permissions().mode() & 0o7777, 0o755, "directories get 0755");
    // Rewriting read-only files and removing them works too.
    for file in files.values_mut() {
        file.data.push(b'!');
    }
    assert_eq!(write_and_check(&mut writer, &files)?, Outcome::Written);
    write_and_check(&mut writer, &Payload::new())?;
    Ok(())
}

#[test]
fn modes_are_exact_under_any_umask() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let envs = [("STRATA_ATOMIC_TARGET", dir.path().display().to_string())];
    let child = ChildProc::spawn("umask", &envs, Some("077"))?;
    child.wait()?;
    assert_layout(dir.path(), &expected(&crate::child::umask_payload())?)?;
    let version = std::fs::read_link(dir.path().join(DATA_LINK))?;
    for dir in [dir.path().join(&version), dir.path().join("d"), dir.path().join("d/e")] {
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o7777, 0o755, "{dir:?}");
    }
    Ok(())
}

#[test]
fn same_payload_twice_does_no_work() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let files = payload(&[("a/b", "1", 0o644), ("c", "2", 0o600)]);
    write_and_check(&mut writer, &files)?;
    let version = std::fs::read_link(dir.path().join(DATA_LINK))?;
    assert_eq!(write_and_check(&mut writer, &files)?, Outcome::Unchanged);
    assert_eq!(std::fs::read_link(dir.path().join(DATA_LINK))?, version);
    // Same names and modes, one byte changed.
    let changed = payload(&[("a/b", "1", 0o644), ("c", "3", 0o600)]);
    assert_eq!(write_and_check(&mut writer, &changed)?, Outcome::Written);
    Ok(())
}

#[test]
fn foreign_entries_are_left_alone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("notes"), "mine")?;
    let mut writer = open(dir.path())?;
    writer.write(&payload(&[("a", "1", 0o644)]))?;
    writer.write(&payload(&[("b", "1", 0o644)]))?;
    assert_eq!(std::fs::read_to_string(dir.path().join("notes"))?, "mine");
    match writer.write(&payload(&[("notes", "theirs", 0o644)])) {
        Err(Error::Occupied { path }) => assert_eq!(path, dir.path().join("notes")),
        other => anyhow::bail!("expected Occupied, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("notes"))?, "mine");
    assert_eq!(std::fs::read_to_string(dir.path().join("b"))?, "1");
    Ok(())
}

#[test]
fn target_must_be_an_existing_directory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing");
    let err = AtomicWriter::open(&missing).err();
    assert!(matches!(err, Some(Error::TargetNotFound { .. })), "{err:?}");
    assert_eq!(
        err.map(|e| e.to_string()),
        Some(format!("{}: target directory not found", missing.display()))
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "")?;
    let err = AtomicWriter::open(&file).err();
    assert!(matches!(err, Some(Error::TargetNotADirectory { .. })), "{err:?}");
    assert!(!Path::new(&missing).exists(), "the writer does not create the target");
    Ok(())
}
