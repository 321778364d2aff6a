//! Malicious blobs: hand-made tars whose entries try to escape the directory (absolute paths,
//! `..`, symlinked parents), or hold hard links and devices. Every one is refused and nothing
//! outside the directory changes.

use std::fs;
use std::os::unix::fs::symlink;

use strata_volume::{BlobStore, Error, apply};

use crate::util::{Raw, diff_json, hash, manifest_json, read_tree, store_raw};

/// A directory to apply into, beside a directory of things an attacker wants to touch.
struct Scene {
    tmp: tempfile::TempDir,
    store: BlobStore,
}

impl Scene {
    fn new() -> anyhow::Result<Scene> {
        let tmp = tempfile::tempdir()?;
        fs::create_dir(tmp.path().join("vol"))?;
        fs::create_dir(tmp.path().join("outside"))?;
        fs::write(tmp.path().join("outside/victim"), b"precious")?;
        fs::write(tmp.path().join("vol/keep"), b"keep")?;
        let store = BlobStore::open(&tmp.path().join("blobs"))?;
        Ok(Scene { tmp, store })
    }

    /// Applies a blob of `entries` (between a diff header deleting `deleted` and `manifest`)
    /// and returns the error, checking nothing outside the volume changed.
    fn attack(
        &self,
        deleted: &[&str],
        entries: Vec<Raw>,
        manifest: &[(&str, serde_json::Value)],
    ) -> anyhow::Result<Error> {
        let mut all = vec![Raw::file("strata/diff.json", &diff_json(deleted))];
        all.extend(entries);
        all.push(Raw::file("strata/manifest.json", &manifest_json(manifest)));
        let id = store_raw(&self.store, &all)?;
        let outside_before = read_tree(&self.tmp.path().join("outside"))?;
        let result = apply(&self.store, &id, &self.tmp.path().join("vol"));
        assert_eq!(read_tree(&self.tmp.path().join("outside"))?, outside_before, "outside changed");
        assert!(!self.tmp.path().join("evil").exists(), "a file escaped");
        result.err().ok_or_else(|| anyhow::anyhow!("a malicious blob was applied"))
    }
}

fn file_entry(content: &[u8]) -> serde_json::Value {
    serde_json::json!({"kind": "file", "mode": 0o644, "size": content.len(), "hash": hash(content)})
}

fn dir_entry() -> serde_json::Value {
    serde_json::json!({"kind": "dir", "mode": 0o755, "size": 0})
}

#[test]
fn dot_dot_paths_are_refused() -> anyhow::Result<()> {
    let scene = Scene::new()?;
    for name in ["tree/../evil", "tree/a/../../evil", "tree/..", "tree/./x"] {
        let err = scene.attack(
            &[],
            vec![Raw::file(name, b"evil")],
            &[("../evil", file_entry(b"evil"))],
        )?;
        assert!(matches!(err, Error::Refused { .. }), "{name}: {err}");
    }
    Ok(())
}

#[test]
fn absolute_and_foreign_paths_are_refused() -> anyhow::Result<()> {
    let scene = Scene::new()?;
    let target = scene.tmp.path().join("evil");
    let abs = format!("tree/{}", target.display());
    let outside = format!("{}", target.display());
    for name in [
        abs.replace("tree//", "tree/"),
        abs.clone(),
        outside,
        "evil".to_owned(),
        "tree/".to_owned(),
    ] {
        let err = scene.attack(&[], vec![Raw::file(&name, b"evil")], &[])?;
        assert!(matches!(err, Error::Refused { .. } | Error::Corrupt { .. }), "{name}: {err}");
    }
    Ok(())
}

#[test]
fn hard_links_and_devices_are_refused() -> anyhow::Result<()> {
    let scene = Scene::new()?;
    let victim = scene.tmp.path().join("outside/victim");
    let err = scene.attack(
        &[],
        vec![Raw::link("tree/h", tar::EntryType::Link, &victim.to_string_lossy())],
        &[("h", file_entry(b""))],
    )?;
    assert!(
        matches!(err, Error::Refused { ref reason, .. } if reason.contains("hard link")),
        "{err}"
    );
    for kind in [tar::EntryType::Char, tar::EntryType::Block, tar::EntryType::Fifo] {
        let err = scene.attack(&[], vec![Raw::link("tree/dev", kind, "")], &[])?;
        assert!(matches!(err, Error::Refused { .. }), "{kind:?}: {err}");
    }
    Ok(())
}

#[test]
fn writing_through_a_symlink_in_the_blob_is_refused() -> anyhow::Result<()> {
    let scene = Scene::new()?;
    let outside = scene.tmp.path().join("outside");
    // The blob makes `link` a symlink to outside, then writes `link/victim`; its manifest
    // either tells the truth (link is a symlink: no parent directory) or lies (link is a dir).
    let entries = || {
        vec![
            Raw::link("tree/link", tar::EntryType::Symlink, &outside.to_string_lossy()),
            Raw::file("tree/link/victim", b"pwned"),
        ]
    };
    let link = serde_json::json!({"kind": "symlink", "mode": 0o777, "size": 0, "target": outside.to_string_lossy()});
    let err =
        scene.attack(&[], entries(), &[("link", link), ("link/victim", file_entry(b"pwned"))])?;
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let err = scene.attack(
        &[],
        entries(),
        &[("link", dir_entry()), ("link/victim", file_entry(b"pwned"))],
    )?;
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    Ok(())
}

#[test]
fn a_symlinked_parent_already_in_the_directory_is_not_followed() -> anyhow::Result<()> {
    let scene = Scene::new()?;
    let outside = scene.tmp.path().join("outside");
    symlink(&outside, scene.tmp.path().join("vol/link"))?;
    // The blob believes `link` is a directory of the parent tree and writes into it.
    let err = scene.attack(
        &[],
        vec![Raw::file("tree/link/victim", b"pwned")],
        &[("link", dir_entry()), ("link/victim", file_entry(b"pwned"))],
    )?;
    assert!(matches!(err, Error::BadDirectory { .. }), "{err}");
    // Deleting through it is skipped: the path is not in the tree.
    let manifest = [("keep", file_entry(b"keep")), ("link", dir_entry())];
    let id = {
        let all = vec![
            Raw::file("strata/diff.json", &diff_json(&["link/victim"])),
            Raw::file("strata/manifest.json", &manifest_json(&manifest)),
        ];
        store_raw(&scene.store, &all)?
    };
    apply(&scene.store, &id, &scene.tmp.path().join("vol"))?;
    assert_eq!(fs::read(outside.join("victim"))?, b"precious");
    Ok(())
}

#[test]
fn deletions_outside_the_directory_are_refused() -> anyhow::Result<()> {
    let scene = Scene::new()?;
    for path in ["../outside/victim", "/etc/passwd", "a//b", ""] {
        let err = scene.attack(&[path], vec![], &[("keep", file_entry(b"keep"))])?;
        assert!(matches!(err, Error::Refused { .. }), "{path}: {err}");
    }
    assert_eq!(fs::read(scene.tmp.path().join("vol/keep"))?, b"keep");
    Ok(())
}

#[test]
fn long_names_round_trip_and_long_evil_names_are_refused() -> anyhow::Result<()> {
    // Names past the 100 bytes of a tar header use GNU long-name entries on both sides.
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    let deep = src.join("d".repeat(120)).join("e".repeat(200));
    fs::create_dir_all(&deep)?;
    fs::write(deep.join("f".repeat(150)), b"long")?;
    symlink("t".repeat(300), deep.join("l"))?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let snap = strata_volume::snapshot(&src, &strata_volume::Manifest::empty(), &store)?;
    let out = tmp.path().join("out");
    strata_volume::materialize(&store, &[snap.blob], &out)?;
    crate::util::assert_same_tree(&src, &out)
}
