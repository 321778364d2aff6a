//! The workspace: volumes made from snapshots and snapshotted back, on a redb store.

use strata_hub::{Category, Hub, Take, Taken, Workspace};

fn workspace(dir: &std::path::Path) -> anyhow::Result<Workspace> {
    let store = strata_kv::Store::redb(&dir.join("store.redb"))?;
    Ok(Workspace::open(Hub::new(store, ""), dir, "alice")?)
}

fn take(name: &str) -> Take {
    Take { name: name.into(), ..Take::default() }
}

/// A snapshot of `volume` that must be recorded.
fn snapshot(ws: &Workspace, volume: &str, take: &Take) -> anyhow::Result<Taken> {
    ws.snapshot_volume(volume, take)?.ok_or_else(|| anyhow::anyhow!("{volume}: nothing recorded"))
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
    let s1 = snapshot(&ws, "web-1", &take("s1"))?;
    assert_eq!(s1.branch.name, "main", "a first snapshot forks main");
    assert_eq!((s1.diff.added, s1.diff.changed, s1.diff.deleted), (1, 0, 0));

    std::fs::write(std::path::Path::new(&first.path).join("a"), "two")?;
    let s2 = snapshot(&ws, &first.path, &take("s2"))?;
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
    let s3 = snapshot(&ws, "old", &take("s3"))?;
    assert_eq!(s3.branch.name, "old");
    assert_eq!(s3.snapshot.parent_id.as_deref(), Some(s1.snapshot.id.as_str()));
    assert_eq!((s3.diff.added, s3.diff.changed), (1, 0));

    // A branch name forks even from a tip (nothing changed: only with allow_empty).
    let forked = Take { branch: Some("exp".into()), ..take("s4") };
    assert!(ws.snapshot_volume("old", &forked)?.is_none());
    let forked = Take { allow_empty: true, ..forked };
    let s4 = snapshot(&ws, "old", &forked)?;
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
    snapshot(&ws, "v", &take("s1"))?;
    // Without the cache the base manifest comes from the blob: nothing changed.
    std::fs::remove_file(dir.path().join("volumes").join(format!("{}.manifest.json", vol.id)))?;
    let empty = |name: &str| Take { allow_empty: true, ..take(name) };
    let again = snapshot(&ws, "v", &empty("s2"))?;
    assert_eq!((again.diff.added, again.diff.changed, again.diff.deleted), (0, 0, 0));
    // A corrupt cache is ignored the same way.
    std::fs::write(dir.path().join("volumes").join(format!("{}.manifest.json", vol.id)), "{")?;
    let third = snapshot(&ws, "v", &empty("s3"))?;
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
    let s1 = snapshot(&ws, "v", &take("s1"))?;
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

// Issue 16: an unchanged volume recorded an empty snapshot.
#[test]
fn an_unchanged_volume_records_no_snapshot_unless_asked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ws = workspace(dir.path())?;
    let vs = ws.hub().create_volset("db", "", ws.user())?;
    let vol = ws.create_volume("db", None, Some("v"))?;
    // A first snapshot is recorded even of an empty directory: there is no base yet.
    let s1 = snapshot(&ws, "v", &take("s1"))?;
    assert!(ws.snapshot_volume("v", &take("s2"))?.is_none(), "nothing changed");
    std::fs::write(std::path::Path::new(&vol.path).join("f"), "x")?;
    let s2 = snapshot(&ws, "v", &take("s2"))?;
    assert_eq!(s2.snapshot.parent_id.as_deref(), Some(s1.snapshot.id.as_str()));
    assert!(ws.snapshot_volume("v", &take("s3"))?.is_none(), "nothing changed since s2");
    let forced = Take { allow_empty: true, ..take("s3") };
    let s3 = snapshot(&ws, "v", &forced)?;
    assert_eq!((s3.diff.added, s3.diff.changed, s3.diff.deleted), (0, 0, 0));
    let names: Vec<String> =
        ws.hub().snapshots(&vs.id, &Default::default())?.into_iter().map(|s| s.name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    Ok(())
}

// Issue 16: `strata volume rm` and `strata volumeset rm`.
#[test]
fn volumes_and_volume_sets_are_removed_only_when_nothing_depends_on_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ws = workspace(dir.path())?;
    let vs = ws.hub().create_volset("db", "", ws.user())?;
    let vol = ws.create_volume("db", None, Some("v"))?;
    std::fs::write(std::path::Path::new(&vol.path).join("f"), "x")?;
    snapshot(&ws, "v", &take("s1"))?;
    std::fs::write(std::path::Path::new(&vol.path).join("f"), "y")?;
    snapshot(&ws, "v", &take("s2"))?;
    let err = ws.remove_volset("db", true).expect_err("a volume is made from it");
    assert_eq!(err.category(), Category::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("\"v\"") || err.to_string().contains("(v)"), "{err}");
    assert_eq!(ws.hub().snapshots(&vs.id, &Default::default())?.len(), 2, "nothing deleted");

    let removed = ws.remove_volume("v")?;
    assert_eq!(removed.id, vol.id);
    assert!(!std::path::Path::new(&vol.path).exists(), "its directory is gone");
    assert_eq!(ws.remove_volume("v").expect_err("gone").category(), Category::NotFound);
    let blobs = std::fs::read_dir(dir.path().join("blobs"))?.count();

    let err = ws.remove_volset("db", false).expect_err("it has snapshots");
    assert_eq!(err.category(), Category::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    let (gone, snapshots) = ws.remove_volset("db", true)?;
    assert_eq!((gone.id.as_str(), snapshots), (vs.id.as_str(), 2));
    assert_eq!(ws.hub().volset(&vs.id).expect_err("gone").category(), Category::NotFound);
    assert!(ws.hub().branches(&vs.id)?.is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("blobs"))?.count(), blobs, "blobs stay");
    // The name is free again.
    ws.hub().create_volset("db", "", ws.user())?;
    Ok(())
}
