//! The workspace: volumes made from snapshots and snapshotted back, on a redb store.

use strata_hub::{Category, Hub, Take, Workspace};

fn workspace(dir: &std::path::Path) -> anyhow::Result<Workspace> {
    let store = strata_kv::Store::redb(&dir.join("store.redb"))?;
    Ok(Workspace::open(Hub::new(store, ""), dir, "alice")?)
}

fn take(name: &str) -> Take {
    Take { name: name.into(), ..Take::default() }
}

#[test]
fn snapshots_extend_the_tip_and_fork_elsewhere() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ws = workspace(dir.path())?;
    let vs = ws.hub().create_volset("web", "", ws.user())?;

    let first = ws.create_volume("web", None, None)?;
    assert_eq!(first.name, "web-1", "named after the set, first free number");
    assert!(first.snapshot_id.is_none());
    std::fs::write(std::path::Path::new(&first.path).join("a"), "one")?;
    let s1 = ws.snapshot_volume("web-1", &take("s1"))?;
    assert_eq!(s1.branch.name, "main", "a first snapshot forks main");
    assert_eq!((s1.diff.added, s1.diff.changed, s1.diff.deleted), (1, 0, 0));

    std::fs::write(std::path::Path::new(&first.path).join("a"), "two")?;
    let s2 = ws.snapshot_volume(&first.path, &take("s2"))?;
    assert_eq!(s2.branch.id, s1.branch.id, "the base is main's tip: extend it");
    assert_eq!(s2.snapshot.parent_id.as_deref(), Some(s1.snapshot.id.as_str()));
    assert_eq!((s2.diff.added, s2.diff.changed), (0, 1));

    // A volume made from s1 (not a tip) gets the files of s1, and its snapshot forks a
    // branch named after the volume, main being taken.
    let second = ws.create_volume(&vs.id, Some("s1"), Some("old"))?;
    let path = std::path::Path::new(&second.path);
    assert_eq!(std::fs::read_to_string(path.join("a"))?, "one");
    assert_eq!(second.snapshot_id.as_deref(), Some(s1.snapshot.id.as_str()));
    assert_eq!(second.branch_id, None, "s1 is no branch's tip any more");
    std::fs::write(path.join("b"), "new")?;
    let s3 = ws.snapshot_volume("old", &take("s3"))?;
    assert_eq!(s3.branch.name, "old");
    assert_eq!(s3.snapshot.parent_id.as_deref(), Some(s1.snapshot.id.as_str()));
    assert_eq!((s3.diff.added, s3.diff.changed), (1, 0));

    // A branch name forks even from a tip.
    let forked = Take { branch: Some("exp".into()), ..take("s4") };
    let s4 = ws.snapshot_volume("old", &forked)?;
    assert_eq!(s4.branch.name, "exp");
    assert_eq!(ws.hub().branches(&vs.id)?.len(), 3);
    Ok(())
}

#[test]
fn the_manifest_cache_is_only_a_cache() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ws = workspace(dir.path())?;
    ws.hub().create_volset("db", "", ws.user())?;
    let vol = ws.create_volume("db", None, Some("v"))?;
    std::fs::write(std::path::Path::new(&vol.path).join("f"), "x")?;
    ws.snapshot_volume("v", &take("s1"))?;
    // Without the cache the base manifest comes from the blob: nothing changed.
    std::fs::remove_file(dir.path().join("volumes").join(format!("{}.manifest.json", vol.id)))?;
    let again = ws.snapshot_volume("v", &take("s2"))?;
    assert_eq!((again.diff.added, again.diff.changed, again.diff.deleted), (0, 0, 0));
    // A corrupt cache is ignored the same way.
    std::fs::write(dir.path().join("volumes").join(format!("{}.manifest.json", vol.id)), "{")?;
    let third = ws.snapshot_volume("v", &take("s3"))?;
    assert_eq!((third.diff.added, third.diff.changed, third.diff.deleted), (0, 0, 0));
    Ok(())
}

#[test]
fn clear_errors_for_missing_blobs_names_and_volumes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ws = workspace(dir.path())?;
    ws.hub().create_volset("db", "", ws.user())?;
    let vol = ws.create_volume("db", None, Some("v"))?;
    std::fs::write(std::path::Path::new(&vol.path).join("f"), "x")?;
    let s1 = ws.snapshot_volume("v", &take("s1"))?;
    let blob: strata_volume::BlobId = s1.snapshot.blob_id.clone().unwrap_or_default().parse()?;
    std::fs::remove_file(ws.local().blobs.path_of(&blob))?;
    let err = ws.create_volume("db", Some("s1"), None).expect_err("its blob is gone");
    assert_eq!(err.category(), Category::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("strata pull"), "{err}");

    let err = ws.create_volume("db", None, Some("v")).expect_err("the name is taken");
    assert_eq!(err.category(), Category::AlreadyExists, "{err}");
    let dirs = std::fs::read_dir(dir.path().join("volumes"))?
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert_eq!(dirs, 1, "the refused volume's directory is removed");
    let err = ws.snapshot_volume("nope", &take("x")).expect_err("no such volume");
    assert_eq!(err.category(), Category::NotFound, "{err}");
    let err = ws.create_volume("db", None, Some("bad/name")).expect_err("a bad name");
    assert_eq!(err.category(), Category::InvalidArgument, "{err}");
    Ok(())
}
