//! Each kind of change on its own: additions, rewrites, mode changes, deletions of files and
//! of directories, and every change of kind, with the counts a snapshot reports.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use strata_volume::{BlobStore, Kind, Manifest, Snapshotted, apply, materialize, snapshot};

use crate::util::assert_same_tree;

/// Snapshots `src` against `base`, applies the blob to `replica` (which holds `base`'s
/// tree), checks both against `src`, and checks a materialization of `chain` + the blob.
fn step(
    src: &Path,
    replica: &Path,
    base: &Manifest,
    store: &BlobStore,
    chain: &mut Vec<strata_volume::BlobId>,
) -> anyhow::Result<Snapshotted> {
    let snap = snapshot(src, base, store)?;
    apply(store, &snap.blob, replica)?;
    assert_same_tree(src, replica)?;
    chain.push(snap.blob.clone());
    let fresh = replica.with_extension(format!("fresh{}", chain.len()));
    materialize(store, chain, &fresh)?;
    assert_same_tree(src, &fresh)?;
    Ok(snap)
}

#[test]
fn every_kind_of_change_applies() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (src, replica) = (tmp.path().join("src"), tmp.path().join("replica"));
    fs::create_dir_all(src.join("d/sub"))?;
    fs::create_dir(&replica)?;
    fs::write(src.join("f"), b"file")?;
    fs::write(src.join("empty"), b"")?;
    fs::create_dir(src.join("emptydir"))?;
    fs::write(src.join("d/sub/x"), b"x")?;
    fs::write(src.join("d/y"), b"y")?;
    symlink("f", src.join("link"))?;
    fs::create_dir(src.join("to-link"))?;
    fs::write(src.join("to-link/inner"), b"inner")?;
    fs::write(src.join("mode"), b"mode")?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let mut chain = Vec::new();
    let first = step(&src, &replica, &Manifest::empty(), &store, &mut chain)?;
    assert_eq!((first.added, first.changed, first.deleted), (11, 0, 0));
    assert_eq!(first.manifest.get("emptydir").map(|e| e.kind), Some(Kind::Dir));
    assert_eq!(first.manifest.get("empty").map(|e| e.size), Some(0));

    // file → dir, dir → symlink, symlink → file, recursive delete, mode change, rewrite.
    fs::remove_file(src.join("f"))?;
    fs::create_dir(src.join("f"))?;
    fs::write(src.join("f/now-a-dir"), b"child")?;
    fs::remove_dir_all(src.join("to-link"))?;
    symlink("/nowhere", src.join("to-link"))?;
    fs::remove_file(src.join("link"))?;
    fs::write(src.join("link"), b"was a link")?;
    fs::remove_dir_all(src.join("d"))?;
    fs::set_permissions(src.join("mode"), fs::Permissions::from_mode(0o600))?;
    fs::set_permissions(src.join("emptydir"), fs::Permissions::from_mode(0o555))?;
    fs::write(src.join("empty"), b"not empty any more")?;
    let second = step(&src, &replica, &first.manifest, &store, &mut chain)?;
    // Added: f/now-a-dir. Changed: f, to-link, link, mode, emptydir, empty.
    // Deleted: d, d/sub, d/sub/x, d/y, to-link/inner.
    assert_eq!((second.added, second.changed, second.deleted), (1, 6, 5));

    // dir → file, and a symlink deleted.
    fs::remove_dir_all(src.join("f"))?;
    fs::write(src.join("f"), b"file again")?;
    fs::remove_file(src.join("to-link"))?;
    let third = step(&src, &replica, &second.manifest, &store, &mut chain)?;
    assert_eq!((third.added, third.changed, third.deleted), (0, 1, 2));
    Ok(())
}

#[test]
fn a_same_size_rewrite_with_its_old_mtime_is_still_seen() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    fs::create_dir(&src)?;
    let path = src.join("f");
    fs::write(&path, b"aaaa")?;
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options().write(true).open(&path)?.set_modified(old)?;
    // A stat younger than two seconds (the ctime just changed) is never cached: a write in the
    // same timestamp tick would go unseen.
    std::thread::sleep(Duration::from_millis(2100));
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let first = snapshot(&src, &Manifest::empty(), &store)?;
    assert!(first.manifest.get("f").and_then(|e| e.stat).is_some(), "an old file's stat is cached");

    // Unchanged: the cached hash is used and nothing is in the diff.
    let same = snapshot(&src, &first.manifest, &store)?;
    assert_eq!((same.added, same.changed, same.deleted), (0, 0, 0));

    // Same size, same mtime, other content: the ctime gives it away.
    fs::write(&path, b"bbbb")?;
    fs::File::options().write(true).open(&path)?.set_modified(old)?;
    let second = snapshot(&src, &first.manifest, &store)?;
    assert_eq!(second.changed, 1);
    assert_eq!(
        second.manifest.get("f").and_then(|e| e.hash.clone()),
        Some(crate::util::hash(b"bbbb"))
    );
    Ok(())
}

#[test]
fn applying_the_same_blob_twice_converges() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (src, replica) = (tmp.path().join("src"), tmp.path().join("replica"));
    crate::util::Mutator::new(&src, 21)?.mutate(40)?;
    fs::create_dir(&replica)?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let snap = snapshot(&src, &Manifest::empty(), &store)?;
    apply(&store, &snap.blob, &replica)?;
    apply(&store, &snap.blob, &replica)?;
    assert_same_tree(&src, &replica)
}

#[test]
fn materialize_refuses_a_non_empty_directory() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    fs::create_dir(&src)?;
    fs::write(src.join("f"), b"f")?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let snap = snapshot(&src, &Manifest::empty(), &store)?;
    let out = tmp.path().join("out");
    fs::create_dir(&out)?;
    fs::write(out.join("keep"), b"mine")?;
    let err = materialize(&store, std::slice::from_ref(&snap.blob), &out).expect_err("non-empty");
    assert!(matches!(err, strata_volume::Error::BadDirectory { .. }), "{err}");
    assert_eq!(fs::read(out.join("keep"))?, b"mine");

    // An existing empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty)?;
    materialize(&store, &[snap.blob], &empty)?;
    assert_same_tree(&src, &empty)
}
