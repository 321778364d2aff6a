//! Round trips of random trees: several snapshots of a tree mutated at random, each chain
//! materialized in a fresh directory and applied step by step onto a replica, compared byte
//! for byte (with modes) with the original.

use strata_volume::{BlobStore, Manifest, apply, manifest_of, materialize, snapshot};

use crate::util::{Mutator, assert_same_tree};

/// One seed: `steps` snapshots of `changes` random changes each.
fn round_trip(seed: u64, steps: usize, changes: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (src, replica) = (tmp.path().join("src"), tmp.path().join("replica"));
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let mut mutator = Mutator::new(&src, seed)?;
    std::fs::create_dir(&replica)?;
    let mut base = Manifest::empty();
    let mut chain = Vec::new();
    for step in 0..steps {
        mutator.mutate(changes)?;
        let snap = snapshot(&src, &base, &store)?;
        chain.push(snap.blob.clone());

        let fresh = tmp.path().join(format!("fresh-{step}"));
        let built = materialize(&store, &chain, &fresh)?;
        assert_same_tree(&src, &fresh)
            .map_err(|e| e.context(format!("seed {seed} step {step}: materialize")))?;
        assert_eq!(built, snap.manifest, "seed {seed} step {step}: materialized manifest");
        assert_eq!(
            Manifest::scan(&fresh)?,
            snap.manifest,
            "seed {seed} step {step}: rescan of the copy"
        );

        apply(&store, &snap.blob, &replica)?;
        assert_same_tree(&src, &replica)
            .map_err(|e| e.context(format!("seed {seed} step {step}: apply")))?;
        assert_eq!(
            manifest_of(&store, &snap.blob)?,
            snap.manifest,
            "seed {seed} step {step}: manifest_of"
        );
        base = snap.manifest;
    }
    Ok(())
}

#[test]
fn random_trees_round_trip_over_chains_of_snapshots() -> anyhow::Result<()> {
    for seed in 0..12 {
        round_trip(seed, 6, 25)?;
    }
    Ok(())
}

#[test]
fn many_small_steps_round_trip() -> anyhow::Result<()> {
    for seed in 100..104 {
        round_trip(seed, 20, 4)?;
    }
    Ok(())
}

#[test]
fn empty_tree_round_trips() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    std::fs::create_dir(&src)?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let snap = snapshot(&src, &Manifest::empty(), &store)?;
    assert_eq!((snap.added, snap.changed, snap.deleted, snap.manifest.len()), (0, 0, 0, 0));
    let out = tmp.path().join("out");
    assert!(materialize(&store, &[snap.blob], &out)?.is_empty());
    assert_same_tree(&src, &out)
}

#[test]
fn empty_chain_materializes_an_empty_directory() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let out = tmp.path().join("out");
    assert!(materialize(&store, &[], &out)?.is_empty());
    assert!(std::fs::read_dir(&out)?.next().is_none());
    Ok(())
}
