//! Vdisk records: the embedded file shared by processes that each open it briefly, and
//! records on etcd.

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

#[test]
fn records_on_etcd() -> anyhow::Result<()> {
    let etcd = strata_testkit::shared_etcd();
    let config = strata_kv::EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: format!("nbd-test-{}/", fastrand::u64(..)),
        ..strata_kv::EtcdConfig::default()
    };
    let tmp = tempfile::tempdir()?;
    let records = Records::shared(strata_kv::Store::etcd(&config)?, &tmp.path().join("images"));
    let made = records.create("on-etcd", 8 << 20, 512)?;
    ensure!(made.image.starts_with(std::fs::canonicalize(tmp.path())?));
    ensure!(records.get("on-etcd")? == made);
    ensure!(records.list()?.len() == 1);
    records.remove("on-etcd")?;
    ensure!(records.list()?.is_empty());
    Ok(())
}
