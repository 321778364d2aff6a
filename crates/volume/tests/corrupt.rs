//! Corrupt and truncated blobs: refused with a clear error before the tree is touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use strata_volume::{BlobStore, Error, Manifest, apply, manifest_of, materialize, snapshot};

use crate::util::{Mutator, Raw, diff_json, read_tree, store_bytes, store_raw};

/// A store with one snapshot of a random tree, and a replica holding that tree.
struct Fixture {
    tmp: tempfile::TempDir,
    store: BlobStore,
    blob: strata_volume::BlobId,
}

impl Fixture {
    fn new() -> anyhow::Result<Fixture> {
        let tmp = tempfile::tempdir()?;
        let src = tmp.path().join("src");
        Mutator::new(&src, 33)?.mutate(50)?;
        let store = BlobStore::open(&tmp.path().join("blobs"))?;
        let blob = snapshot(&src, &Manifest::empty(), &store)?.blob;
        let replica = tmp.path().join("replica");
        materialize(&store, std::slice::from_ref(&blob), &replica)?;
        Ok(Fixture { tmp, store, blob })
    }

    /// Overwrites the stored blob's bytes in place (damaging the store on purpose).
    fn damage(&self, f: impl FnOnce(&mut Vec<u8>)) -> anyhow::Result<()> {
        let path = self.store.path_of(&self.blob);
        let mut bytes = fs::read(&path)?;
        f(&mut bytes);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        fs::write(&path, bytes)?;
        Ok(())
    }

    /// Applies the blob to the replica and checks it fails as corrupt, leaving the replica as it was.
    fn assert_refused(&self) -> anyhow::Result<String> {
        let replica = self.tmp.path().join("replica");
        let before = read_tree(&replica)?;
        let err =
            apply(&self.store, &self.blob, &replica).expect_err("a damaged blob must be refused");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(err.category(), strata_error::Category::Corrupted);
        assert_eq!(read_tree(&replica)?, before, "the replica changed");
        assert!(manifest_of(&self.store, &self.blob).is_err());
        Ok(err.to_string())
    }
}

#[test]
fn a_flipped_byte_is_refused() -> anyhow::Result<()> {
    let fx = Fixture::new()?;
    fx.damage(|b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
    })?;
    let msg = fx.assert_refused()?;
    assert!(msg.contains(fx.blob.as_str()) && msg.contains("hash to"), "{msg}");
    Ok(())
}

#[test]
fn a_truncated_blob_is_refused() -> anyhow::Result<()> {
    let fx = Fixture::new()?;
    fx.damage(|b| b.truncate(b.len() / 3))?;
    let msg = fx.assert_refused()?;
    assert!(msg.contains("truncated"), "{msg}");
    Ok(())
}

#[test]
fn a_materialize_with_a_damaged_blob_leaves_nothing() -> anyhow::Result<()> {
    let fx = Fixture::new()?;
    fx.damage(|b| b.truncate(b.len() - 10))?;
    let out = fx.tmp.path().join("out");
    let err = materialize(&fx.store, std::slice::from_ref(&fx.blob), &out).expect_err("damaged");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(!out.exists());
    no_staging_left(fx.tmp.path())?;
    Ok(())
}

/// Blobs whose ids match their bytes but whose content is broken: caught by parsing.
#[test]
fn well_hashed_but_broken_blobs_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir)?;
    fs::write(dir.join("keep"), b"keep")?;

    // A real blob cut short, stored under the hash of the short bytes.
    let src = tmp.path().join("src");
    Mutator::new(&src, 5)?.mutate(30)?;
    let good = snapshot(&src, &Manifest::empty(), &store)?.blob;
    let bytes = fs::read(store.path_of(&good))?;
    let mut cases = vec![
        ("truncated zstd", store_bytes(&store, &bytes[..bytes.len() / 2])?),
        ("not zstd", store_bytes(&store, b"hello, I am not a blob")?),
        ("empty", store_bytes(&store, b"")?),
        ("plain tar without a header entry", store_raw(&store, &[Raw::file("tree/a", b"a")])?),
        // No manifest at the end.
        (
            "no manifest",
            store_raw(
                &store,
                &[Raw::file("strata/diff.json", &diff_json(&[])), Raw::file("tree/a", b"a")],
            )?,
        ),
    ];
    // The manifest disagrees with an entry's content.
    let manifest = crate::util::manifest_json(&[(
        "a",
        serde_json::json!({"kind": "file", "mode": 0o644, "size": 1, "hash": crate::util::hash(b"b")}),
    )]);
    cases.push((
        "entry differs from the manifest",
        store_raw(
            &store,
            &[
                Raw::file("strata/diff.json", &diff_json(&[])),
                Raw::file("tree/a", b"a"),
                Raw::file("strata/manifest.json", &manifest),
            ],
        )?,
    ));
    for (what, id) in cases {
        let err = apply(&store, &id, &dir).expect_err(what);
        assert!(matches!(err, Error::Corrupt { .. } | Error::Refused { .. }), "{what}: {err}");
        assert!(err.to_string().contains(id.as_str()), "{what}: {err}");
        assert_eq!(fs::read_dir(&dir)?.count(), 1, "{what}: the directory changed");
    }
    Ok(())
}

#[test]
fn a_missing_blob_is_not_found() -> anyhow::Result<()> {
    let fx = Fixture::new()?;
    fx.store.remove(&fx.blob)?;
    let replica = fx.tmp.path().join("replica");
    let before = read_tree(&replica)?;
    let err = apply(&fx.store, &fx.blob, &replica).expect_err("missing");
    assert!(matches!(err, Error::BlobNotFound { .. }), "{err}");
    assert_eq!(err.category(), strata_error::Category::NotFound);
    assert!(err.to_string().contains(fx.blob.as_str()), "{err}");
    assert_eq!(read_tree(&replica)?, before);
    Ok(())
}

#[test]
fn a_chain_broken_after_its_first_blob_leaves_nothing() -> anyhow::Result<()> {
    let fx = Fixture::new()?;
    let broken = store_bytes(&fx.store, b"not a blob at all")?;
    let out = fx.tmp.path().join("out2");
    let err =
        materialize(&fx.store, &[fx.blob.clone(), broken.clone()], &out).expect_err("broken chain");
    assert!(matches!(err, Error::Corrupt { ref id, .. } if *id == broken), "{err}");
    assert!(!out.exists());
    no_staging_left(fx.tmp.path())?;
    Ok(())
}

/// Fails if a materialize left its staging directory in `dir`.
fn no_staging_left(dir: &std::path::Path) -> anyhow::Result<()> {
    let leftovers: Vec<_> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("materialize"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    Ok(())
}
