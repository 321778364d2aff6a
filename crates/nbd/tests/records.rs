//! Vdisk records: the embedded file shared by processes that each open it briefly, and
//! records on etcd; the record contract written once and run on the file and on kv stores.

use anyhow::ensure;
use strata_nbd::{Error, Records};

#[test]
fn embedded_records_take_turns_on_their_file() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let records = Records::embedded(tmp.path());
    // Writers in parallel, each opening and closing the file per transaction.
    let made: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let records = records.clone();
                s.spawn(move || -> anyhow::Result<()> {
                    for i in 0..10 {
                        records.create(&format!("d{t}-{i}"), 1 << 20, 4096)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panicked"))))
            .collect()
    });
    for m in made {
        m?;
    }
    let listed = records.list()?;
    ensure!(listed.len() == 40, "{} records", listed.len());
    ensure!(
        listed
            .iter()
            .all(|v| v.image.exists()
                && std::fs::metadata(&v.image).is_ok_and(|m| m.len() == 1 << 20))
    );
    ensure!(matches!(records.create("d0-0", 1 << 20, 4096), Err(Error::AlreadyExists(_))));
    // Sequence spans never overlap, across sessions.
    let v = records.get("d1-1")?;
    let (a, a_end) = records.reserve(&v.name, &v.tlog_id, None)?;
    let (b, _) = records.reserve(&v.name, &v.tlog_id, None)?;
    ensure!(a == 1 && b == a_end, "spans {a}..{a_end}, then from {b}");
    ensure!(matches!(
        records.reserve(&v.name, "another-log", None),
        Err(Error::FailedPrecondition(_))
    ));
    let removed = records.remove("d1-1")?;
    ensure!(!removed.image.exists());
    ensure!(matches!(records.get("d1-1"), Err(Error::NotFound(_))));
    Ok(())
}

/// Records and the directory their images (and the embedded file) live in.
pub struct Place {
    pub records: Records,
    _dir: tempfile::TempDir,
}

pub fn file() -> anyhow::Result<Place> {
    let dir = tempfile::tempdir()?;
    Ok(Place { records: Records::embedded(dir.path()), _dir: dir })
}

pub fn redb_store() -> anyhow::Result<Place> {
    let fixture = strata_testkit::redb_store()?;
    let records = Records::shared(fixture.store, &fixture.dir.path().join("images"));
    Ok(Place { records, _dir: fixture.dir })
}

pub fn etcd_store() -> anyhow::Result<Place> {
    let fixture = strata_testkit::etcd_store(strata_kv::EtcdConfig::default().max_txn_ops)?;
    let records = Records::shared(fixture.store, &fixture.dir.path().join("images"));
    Ok(Place { records, _dir: fixture.dir })
}

macro_rules! suite {
    ($place:ident, $factory:path) => {
        strata_testkit::conformance!($place, $factory, place => &place.records;
            create_get_list_remove, sessions_reserve_disjoint_spans_and_track_cleanliness,
            resize_grows_image_and_record_only_when_not_served
        );
    };
}

suite!(on_file, crate::records::file);
suite!(on_redb, crate::records::redb_store);
suite!(on_etcd, crate::records::etcd_store);

fn create_get_list_remove(records: &Records) -> anyhow::Result<()> {
    let made = records.create("one", 8 << 20, 512)?;
    ensure!(made.image.exists() && std::fs::metadata(&made.image)?.len() == 8 << 20);
    ensure!(records.get("one")? == made);
    ensure!(matches!(records.create("one", 1 << 20, 4096), Err(Error::AlreadyExists(_))));
    ensure!(matches!(records.create("bad/name", 1 << 20, 4096), Err(Error::InvalidArgument(_))));
    records.create("two", 1 << 20, 4096)?;
    let names: Vec<String> = records.list()?.into_iter().map(|v| v.name).collect();
    ensure!(names == ["one", "two"], "{names:?}");
    let removed = records.remove("one")?;
    ensure!(!removed.image.exists());
    ensure!(matches!(records.get("one"), Err(Error::NotFound(_))));
    Ok(())
}

fn sessions_reserve_disjoint_spans_and_track_cleanliness(records: &Records) -> anyhow::Result<()> {
    let v = records.create("d", 1 << 20, 4096)?;
    let (a, a_end, unclean) = records.begin_session(&v.name, &v.tlog_id)?;
    ensure!(a == 1 && !unclean, "first session from {a}, unclean {unclean}");
    let (more, _) = records.reserve(&v.name, &v.tlog_id, Some(a_end))?;
    ensure!(more == a_end, "the next span follows on");
    // Not closed: the next session knows.
    let (b, _, unclean) = records.begin_session(&v.name, &v.tlog_id)?;
    ensure!(b > more && unclean, "second session from {b}, unclean {unclean}");
    records.end_session(&v.name, &v.tlog_id)?;
    ensure!(!records.get("d")?.session_open);
    let (_, _, unclean) = records.begin_session(&v.name, &v.tlog_id)?;
    ensure!(!unclean, "a clean close is remembered");
    ensure!(matches!(
        records.begin_session(&v.name, "another-log"),
        Err(Error::FailedPrecondition(_))
    ));
    Ok(())
}

fn resize_grows_image_and_record_only_when_not_served(records: &Records) -> anyhow::Result<()> {
    let v = records.create("g", 1 << 20, 4096)?;
    ensure!(matches!(records.resize("g", 1 << 19), Err(Error::FailedPrecondition(_))));
    ensure!(matches!(records.resize("g", (2 << 20) + 512), Err(Error::InvalidArgument(_))));
    ensure!(matches!(records.resize("absent", 2 << 20), Err(Error::NotFound(_))));
    let grown = records.resize("g", 2 << 20)?;
    ensure!(grown.size == 2 << 20 && records.get("g")? == grown);
    ensure!(std::fs::metadata(&v.image)?.len() == 2 << 20);
    records.begin_session("g", &v.tlog_id)?;
    ensure!(matches!(records.resize("g", 4 << 20), Err(Error::FailedPrecondition(_))));
    ensure!(records.get("g")?.size == 2 << 20, "a served vdisk keeps its size");
    records.end_session("g", &v.tlog_id)?;
    ensure!(records.resize("g", 4 << 20)?.size == 4 << 20);
    Ok(())
}
