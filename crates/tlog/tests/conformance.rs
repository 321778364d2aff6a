//! The `Storage` contract, written once and run on every engine: the segment files and
//! k+m shards on real Redis servers.

use strata_testkit::RedisServers;
use strata_tlog::Error;
use strata_tlog::aggregate::{Aggregate, Key, NO_PREV};
use strata_tlog::storage::Storage;
use strata_tlog::storage::redis::{RedisConfig, RedisStore};
use strata_tlog::storage::segment::SegmentStore;

use crate::storage::{fill, random_blocks};

/// An engine's store and what must outlive it.
pub struct Engine {
    pub storage: Box<dyn Storage>,
    _dir: tempfile::TempDir,
    _redis: Option<RedisServers>,
}

pub fn segment() -> anyhow::Result<Engine> {
    let dir = tempfile::tempdir()?;
    let storage = Box::new(SegmentStore::open(dir.path())?);
    Ok(Engine { storage, _dir: dir, _redis: None })
}

pub fn redis() -> anyhow::Result<Engine> {
    let redis = RedisServers::start(3)?;
    let config = RedisConfig {
        servers: redis.addresses(),
        data_shards: 2,
        parity_shards: 1,
        ..RedisConfig::default()
    };
    let storage = Box::new(RedisStore::connect(config)?);
    Ok(Engine { storage, _dir: tempfile::tempdir()?, _redis: Some(redis) })
}

macro_rules! suite {
    ($engine:ident, $factory:path) => {
        strata_testkit::conformance!($engine, $factory, engine => &*engine.storage;
            empty_vdisks_have_no_head, appends_read_back_in_chain_order,
            only_the_head_may_be_extended, unknown_aggregates_and_bad_ids_are_refused,
            vdisks_are_listed, many_appends_chain_and_a_failed_seal_stores_nothing
        );
    };
}

suite!(segment, crate::conformance::segment);
suite!(redis, crate::conformance::redis);

fn empty_vdisks_have_no_head(storage: &dyn Storage) -> anyhow::Result<()> {
    assert_eq!(storage.head("vd")?, None);
    assert!(storage.list("vd")?.is_empty());
    Ok(())
}

fn appends_read_back_in_chain_order(storage: &dyn Storage) -> anyhow::Result<()> {
    let key = Key::from_bytes(&[6; 32]);
    let names = fill(storage, "vd", Some(&key), 5, 3)?;
    let listed = storage.list("vd")?;
    assert_eq!(listed.iter().map(|s| s.hash).collect::<Vec<_>>(), names);
    assert_eq!(listed[0].header.prev, NO_PREV);
    assert!(listed.windows(2).all(|w| w[1].header.prev == w[0].hash));
    assert_eq!(storage.head("vd")?.map(|s| s.hash), names.last().copied());
    for stored in &listed {
        let bytes = storage.get("vd", &stored.hash)?;
        assert_eq!(bytes.len() as u64, stored.len);
        Aggregate::open("vd", &stored.hash, &bytes, Some(&key))?;
    }
    Ok(())
}

fn only_the_head_may_be_extended(storage: &dyn Storage) -> anyhow::Result<()> {
    let names = fill(storage, "vd", None, 2, 2)?;
    // A writer that read the head before the second append: fenced, nothing changes.
    let mut rng = fastrand::Rng::with_seed(9);
    let stale = Aggregate {
        vdisk_id: "vd".into(),
        timestamp: 1,
        blocks: random_blocks(&mut rng, 5, 1),
        prev: names[0],
    }
    .seal(None)?;
    let Err(err) = storage.append("vd", &stale) else {
        anyhow::bail!("a stale append was accepted")
    };
    assert!(matches!(err, Error::StaleHead(_)), "{err}");
    assert_eq!(storage.head("vd")?.map(|s| s.hash), Some(names[1]));
    assert_eq!(storage.list("vd")?.len(), 2);
    Ok(())
}

fn unknown_aggregates_and_bad_ids_are_refused(storage: &dyn Storage) -> anyhow::Result<()> {
    fill(storage, "vd", None, 1, 1)?;
    assert!(matches!(storage.get("vd", &[1; 32]), Err(Error::NotFound(_))));
    for bad in ["../etc", ".hidden", ""] {
        assert!(matches!(storage.head(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
    }
    Ok(())
}

fn vdisks_are_listed(storage: &dyn Storage) -> anyhow::Result<()> {
    fill(storage, "b", None, 1, 1)?;
    fill(storage, "a", None, 1, 1)?;
    let mut vdisks = storage.vdisks()?;
    vdisks.sort();
    assert_eq!(vdisks, ["a", "b"]);
    Ok(())
}

fn many_appends_chain_and_a_failed_seal_stores_nothing(
    storage: &dyn Storage,
) -> anyhow::Result<()> {
    let first = fill(storage, "vd", None, 1, 1)?;
    let mut rng = fastrand::Rng::with_seed(4);
    let mut left = 3;
    let mut seal = |prev: &strata_tlog::aggregate::Hash| -> strata_tlog::Result<_> {
        if left == 0 {
            return Ok(None);
        }
        left -= 1;
        let blocks = random_blocks(&mut rng, 4, 10 + 10 * (3 - left) as u64);
        Ok(Some(Aggregate { vdisk_id: "vd".into(), timestamp: 2, blocks, prev: *prev }.seal(None)?))
    };
    let head = storage.append_many("vd", &mut seal, first[0])?;
    let listed = storage.list("vd")?;
    assert_eq!(listed.len(), 4);
    assert!(listed.windows(2).all(|w| w[1].header.prev == w[0].hash));
    assert_eq!(storage.head("vd")?.map(|s| s.hash), Some(head));
    assert_eq!(listed[3].hash, head);
    // Sealing fails before anything is written: the error comes back, the log is as it was.
    let mut failing = |_: &strata_tlog::aggregate::Hash| -> strata_tlog::Result<_> {
        Err(Error::Unavailable("the random generator failed".into()))
    };
    assert!(storage.append_many("vd", &mut failing, head).is_err());
    assert_eq!(storage.head("vd")?.map(|s| s.hash), Some(head));
    assert_eq!(storage.list("vd")?.len(), 4);
    Ok(())
}
