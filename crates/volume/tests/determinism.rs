//! Determinism: the same tree and base give the same blob bytes, wherever the tree lives and
//! whenever it was written.

use std::fs;

use strata_volume::{BlobStore, Manifest, materialize, snapshot};

use crate::util::Mutator;

#[test]
fn same_tree_twice_is_the_same_blob() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    Mutator::new(&src, 7)?.mutate(60)?;
    let a = BlobStore::open(&tmp.path().join("a"))?;
    let b = BlobStore::open(&tmp.path().join("b"))?;
    let first = snapshot(&src, &Manifest::empty(), &a)?;
    let second = snapshot(&src, &Manifest::empty(), &b)?;
    assert_eq!(first.blob, second.blob);
    assert_eq!(fs::read(a.path_of(&first.blob))?, fs::read(b.path_of(&second.blob))?);
    Ok(())
}

#[test]
fn a_copy_elsewhere_with_other_mtimes_is_the_same_blob() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    let mut mutator = Mutator::new(&src, 8)?;
    mutator.mutate(60)?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let first = snapshot(&src, &Manifest::empty(), &store)?;
    mutator.mutate(20)?;
    let second = snapshot(&src, &first.manifest, &store)?;

    // A copy built later in another directory has other inodes and mtimes.
    let copy = tmp.path().join("copy");
    let built = materialize(&store, std::slice::from_ref(&first.blob), &copy)?;
    assert_eq!(snapshot(&copy, &Manifest::empty(), &store)?.blob, first.blob);
    let copy2 = tmp.path().join("copy2");
    materialize(&store, &[first.blob.clone(), second.blob.clone()], &copy2)?;
    // The diff of the copy against the manifest read from the blob is the same blob too.
    assert_eq!(snapshot(&copy2, &built, &store)?.blob, second.blob);
    Ok(())
}

#[test]
fn an_unchanged_tree_gives_an_empty_diff() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    Mutator::new(&src, 9)?.mutate(40)?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let first = snapshot(&src, &Manifest::empty(), &store)?;
    let again = snapshot(&src, &first.manifest, &store)?;
    assert_eq!((again.added, again.changed, again.deleted), (0, 0, 0));
    assert_eq!(again.manifest, first.manifest);
    assert!(again.size < first.size || first.manifest.is_empty());
    // And the empty diff of the same tree is itself deterministic.
    assert_eq!(snapshot(&src, &again.manifest, &store)?.blob, again.blob);
    Ok(())
}
