//! A larger tree: 2,000 files in nested directories, snapshotted, materialized, changed a
//! little and snapshotted again into a small diff.

use std::fs;

use strata_volume::{BlobStore, Manifest, apply, materialize, snapshot};

use crate::util::assert_same_tree;

#[test]
fn two_thousand_files_round_trip_and_a_small_change_is_a_small_diff() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    let mut rng = fastrand::Rng::with_seed(2000);
    for i in 0..2000 {
        let dir = src.join(format!("d{}/e{}", i % 20, i % 7));
        fs::create_dir_all(&dir)?;
        let mut content = vec![0u8; rng.usize(..8192)];
        rng.fill(&mut content);
        fs::write(dir.join(format!("file-{i}")), content)?;
    }
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let first = snapshot(&src, &Manifest::empty(), &store)?;
    assert_eq!(first.added, 2000 + 20 + 140);
    let out = tmp.path().join("out");
    materialize(&store, std::slice::from_ref(&first.blob), &out)?;
    assert_same_tree(&src, &out)?;

    for i in 0..10 {
        fs::write(src.join(format!("d{}/e{}/file-{i}", i % 20, i % 7)), format!("changed {i}"))?;
    }
    fs::remove_dir_all(src.join("d19"))?;
    let second = snapshot(&src, &first.manifest, &store)?;
    assert_eq!(second.changed, 10);
    assert_eq!(second.added, 0);
    assert_eq!(second.deleted, 100 + 1 + 7);
    assert!(
        second.size * 20 < first.size,
        "diff of {} bytes against a first of {}",
        second.size,
        first.size
    );
    apply(&store, &second.blob, &out)?;
    assert_same_tree(&src, &out)
}
