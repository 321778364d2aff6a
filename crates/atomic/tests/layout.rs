//! The layout on disk: top-level links only, `..data` pointing at the one version directory,
//! old versions and leftovers gone, and entries the writer does not own kept.

use std::path::Path;

use strata_atomic::{AtomicWriter, DATA_LINK, DATA_TMP_LINK, Error, is_version_dir_name};

use crate::util::{assert_layout, expected, open, payload};

#[test]
fn one_version_behind_links() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let target = dir.path();
    let mut writer = open(target)?;
    let mut previous = None;
    for i in 0..5 {
        let text = i.to_string();
        let files = payload(&[("podName", &text, 0o644), ("k8s/annotations", &text, 0o644)]);
        writer.write(&files)?;
        assert_layout(target, &expected(&files)?)?;
        let version = std::fs::read_link(target.join(DATA_LINK))?;
        assert!(is_version_dir_name(version.as_os_str()), "{version:?}");
        assert_eq!(std::fs::read_link(target.join("k8s"))?, Path::new("..data/k8s"));
        if let Some(previous) = previous.replace(version.clone()) {
            assert_ne!(previous, version);
            assert!(!target.join(previous).exists(), "the old version is removed");
        }
    }
    Ok(())
}

#[test]
fn opening_removes_leftovers_and_keeps_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let target = dir.path();
    let files = payload(&[("a", "1", 0o644)]);
    open(target)?.write(&files)?;
    // What a crash can leave: a half-written version and the temporary link to it.
    let stale = "..2001_02_03_04_05_06.0badf00d";
    std::fs::create_dir_all(target.join(stale).join("half/written"))?;
    std::os::unix::fs::symlink(stale, target.join(DATA_TMP_LINK))?;
    // What the writer does not own, even with a reserved-looking name.
    std::fs::create_dir(target.join("..user-stuff"))?;
    open(target)?;
    assert!(!target.join(stale).exists());
    assert!(std::fs::symlink_metadata(target.join(DATA_TMP_LINK)).is_err());
    assert!(target.join("..user-stuff").is_dir());
    std::fs::remove_dir(target.join("..user-stuff"))?;
    assert_layout(target, &expected(&files)?)
}

#[test]
fn a_foreign_data_link_is_corruption() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink("/etc", dir.path().join(DATA_LINK))?;
    let err = AtomicWriter::open(dir.path()).err();
    assert!(matches!(err, Some(Error::Corrupted { .. })), "{err:?}");
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.ends_with("..data: points at /etc, not at a version directory"), "{message}");
    assert!(Path::new("/etc").is_dir(), "nothing outside the target is touched");
    Ok(())
}
