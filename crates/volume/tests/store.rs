//! The blob store: ids, writing and reading blobs, verified downloads, concurrent writers.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::str::FromStr;

use strata_volume::{BlobId, BlobStore, Error};

use crate::util::{hash, store_bytes};

#[test]
fn blob_ids_parse_only_64_lowercase_hex_digits() -> anyhow::Result<()> {
    let good = hash(b"x");
    let id = BlobId::from_str(&good)?;
    assert_eq!(id.as_str(), good);
    assert_eq!(id.to_string(), good);
    assert_eq!(serde_json::to_string(&id)?, format!("\"{good}\""));
    assert_eq!(serde_json::from_str::<BlobId>(&format!("\"{good}\""))?, id);
    for bad in [
        good.to_uppercase(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        String::new(),
    ] {
        let err = BlobId::from_str(&bad).expect_err("invalid id");
        assert!(
            matches!(err, Error::InvalidBlobId { .. })
                && err.to_string().contains(&format!("{bad:?}")),
            "{err}"
        );
        assert!(serde_json::from_str::<BlobId>(&format!("\"{bad}\"")).is_err());
    }
    Ok(())
}

#[test]
fn blobs_are_stored_under_their_hash_and_read_back() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = BlobStore::open(&tmp.path().join("a/b/blobs"))?;
    assert!(store.list()?.is_empty());
    let id = store_bytes(&store, b"hello blob")?;
    assert_eq!(id.as_str(), hash(b"hello blob"));
    assert!(store.has(&id));
    assert_eq!(store.size(&id)?, 10);
    let mut content = String::new();
    store.open_blob(&id)?.read_to_string(&mut content)?;
    assert_eq!(content, "hello blob");

    let file = tmp.path().join("file");
    fs::write(&file, vec![7u8; 300_000])?;
    let id2 = store.put_file(&file)?;
    assert_eq!(id2.as_str(), hash(&[7u8; 300_000]));
    let mut expected = vec![id.clone(), id2.clone()];
    expected.sort();
    assert_eq!(store.list()?, expected);

    // Storing the same bytes again is the same blob; no temporary file remains.
    assert_eq!(store_bytes(&store, b"hello blob")?, id);
    assert_eq!(fs::read_dir(store.dir())?.count(), 2);

    store.remove(&id)?;
    assert!(!store.has(&id));
    assert!(matches!(store.remove(&id), Err(Error::BlobNotFound { .. })));
    assert!(matches!(store.open_blob(&id), Err(Error::BlobNotFound { .. })));
    assert!(matches!(store.size(&id), Err(Error::BlobNotFound { .. })));
    assert_eq!(store.list()?, vec![id2]);
    Ok(())
}

#[test]
fn a_download_that_hashes_to_another_id_stores_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = BlobStore::open(tmp.path())?;
    let expected: BlobId = hash(b"what the remote promised").parse()?;
    let mut w = store.writer()?;
    w.write_all(b"what the remote sent")?;
    let err = w.finish_expecting(&expected).expect_err("mismatch");
    match &err {
        Error::BlobMismatch { expected: e, actual } => {
            assert_eq!(e, &expected);
            assert_eq!(actual.as_str(), hash(b"what the remote sent"));
        }
        other => anyhow::bail!("wrong error {other}"),
    }
    assert!(err.to_string().contains(expected.as_str()));
    assert_eq!(fs::read_dir(tmp.path())?.count(), 0, "nothing stored, no temporary file left");

    let mut w = store.writer()?;
    w.write_all(b"what the remote promised")?;
    assert_eq!(w.finish_expecting(&expected)?, expected);
    assert!(store.has(&expected));
    Ok(())
}

#[test]
fn a_dropped_writer_leaves_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = BlobStore::open(tmp.path())?;
    let mut w = store.writer()?;
    w.write_all(&[1u8; 1 << 20])?;
    drop(w);
    assert_eq!(fs::read_dir(tmp.path())?.count(), 0);
    Ok(())
}

#[test]
fn concurrent_writers_of_the_same_blob_agree() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = BlobStore::open(tmp.path())?;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let ids: Vec<BlobId> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, data) = (&store, &data);
                s.spawn(move || -> anyhow::Result<BlobId> {
                    let mut w = store.writer()?;
                    for chunk in data.chunks(65_536) {
                        w.write_all(chunk)?;
                    }
                    Ok(w.finish()?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("writer panicked"))?)
            .collect::<anyhow::Result<_>>()
    })?;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1);
    assert_eq!(store.list()?, vec![ids[0].clone()]);
    assert_eq!(fs::read(store.path_of(&ids[0]))?, data);
    assert_eq!(fs::read_dir(tmp.path())?.count(), 1, "no temporary file left");
    Ok(())
}
