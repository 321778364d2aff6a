//! The conformance suite: every behaviour written once as `check_*(&Store)` and run on every
//! engine by `suite!`.

use std::ops::Bound;

use anyhow::ensure;
use strata_kv::{Category, Error, Read, Store};

strata_testkit::conformance!(every_engine, fixture => &fixture.store;
    read_your_writes, isolation_from_uncommitted_writes, snapshot_reads,
    rollback_discards, error_in_with_txn_rolls_back, ordered_scans_with_bounds,
    prefix_scans, scan_limits, large_values, many_keys, deletes_inside_scans,
    conflict_on_key_read, conflict_on_key_found_absent, conflict_on_range_insert,
    conflict_on_range_delete, disjoint_transactions_both_commit,
    blind_writes_do_not_conflict, limited_scan_conflicts_only_on_what_it_saw,
    concurrent_increments
);

fn put(store: &Store, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    txn.put(key, value);
    txn.commit()?;
    Ok(())
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    entries.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect()
}

fn expect_conflict(result: strata_kv::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(err) if err.category() == Category::Conflict => Ok(()),
        Err(err) => anyhow::bail!("expected a conflict, got {err}"),
        Ok(()) => anyhow::bail!("expected a conflict, the commit succeeded"),
    }
}

fn read_your_writes(store: &Store) -> anyhow::Result<()> {
    put(store, b"a", b"old")?;
    let mut txn = store.write()?;
    txn.put(b"a", b"new");
    txn.put(b"b", b"2");
    ensure!(txn.get(b"a")? == Some(b"new".to_vec()));
    ensure!(keys(&txn.prefix(b"")?) == ["a", "b"]);
    txn.delete(b"a");
    ensure!(txn.get(b"a")?.is_none());
    ensure!(keys(&txn.prefix(b"")?) == ["b"]);
    txn.commit()?;
    ensure!(store.read()?.get(b"a")?.is_none());
    ensure!(store.read()?.get(b"b")? == Some(b"2".to_vec()));
    Ok(())
}

fn isolation_from_uncommitted_writes(store: &Store) -> anyhow::Result<()> {
    let mut writer = store.write()?;
    writer.put(b"k", b"v");
    ensure!(store.read()?.get(b"k")?.is_none(), "uncommitted write visible to a reader");
    let mut other = store.write()?;
    ensure!(other.get(b"k")?.is_none(), "uncommitted write visible to another writer");
    ensure!(other.prefix(b"")?.is_empty());
    writer.commit()?;
    ensure!(store.read()?.get(b"k")? == Some(b"v".to_vec()));
    Ok(())
}

fn snapshot_reads(store: &Store) -> anyhow::Result<()> {
    put(store, b"x", b"1")?;
    let mut reader = store.read()?;
    ensure!(reader.get(b"x")? == Some(b"1".to_vec()));
    put(store, b"x", b"2")?;
    put(store, b"y", b"new")?;
    ensure!(reader.get(b"x")? == Some(b"1".to_vec()), "a read transaction saw a later commit");
    ensure!(reader.get(b"y")?.is_none());
    ensure!(keys(&reader.prefix(b"")?) == ["x"]);
    ensure!(store.read()?.get(b"x")? == Some(b"2".to_vec()));
    Ok(())
}

fn rollback_discards(store: &Store) -> anyhow::Result<()> {
    {
        let mut txn = store.write()?;
        txn.put(b"dropped", b"1");
    }
    let mut txn = store.write()?;
    txn.put(b"rolled-back", b"1");
    txn.rollback();
    let mut reader = store.read()?;
    ensure!(reader.get(b"dropped")?.is_none());
    ensure!(reader.get(b"rolled-back")?.is_none());
    Ok(())
}

fn error_in_with_txn_rolls_back(store: &Store) -> anyhow::Result<()> {
    let result: Result<(), Error> = store.with_txn(|txn| {
        txn.put(b"half", b"done");
        Err(Error::InvalidArgument("the body failed".into()))
    });
    ensure!(result.is_err());
    ensure!(store.read()?.get(b"half")?.is_none());
    Ok(())
}

fn ordered_scans_with_bounds(store: &Store) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    for key in ["d", "a", "c", "e", "b", "b\x00", "ab"] {
        txn.put(key.as_bytes(), b"v");
    }
    txn.commit()?;
    let mut r = store.read()?;
    ensure!(keys(&r.range(b"b", b"d")?) == ["b", "b\0", "c"]);
    let excl = r.scan(Bound::Excluded(b"b"), Bound::Included(b"d"), usize::MAX)?;
    ensure!(keys(&excl) == ["b\0", "c", "d"]);
    let all = r.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)?;
    ensure!(keys(&all) == ["a", "ab", "b", "b\0", "c", "d", "e"]);
    ensure!(r.range(b"d", b"b")?.is_empty(), "an inverted range must be empty");
    ensure!(r.range(b"c", b"c")?.is_empty());
    Ok(())
}

fn prefix_scans(store: &Store) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    for key in [&b"p/1"[..], b"p/2", b"p0", b"q", b"p\xff", b"p\xff\xff/x", b"o"] {
        txn.put(key, b"v");
    }
    txn.commit()?;
    let mut r = store.read()?;
    ensure!(keys(&r.prefix(b"p/")?) == ["p/1", "p/2"]);
    ensure!(r.prefix(b"p\xff")?.len() == 2);
    ensure!(r.prefix(b"p")?.len() == 5);
    ensure!(r.prefix(b"none")?.is_empty());
    Ok(())
}

fn scan_limits(store: &Store) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    for i in 0..3000u32 {
        txn.put(format!("k{i:05}").as_bytes(), b"v");
    }
    txn.commit()?;
    let mut r = store.read()?;
    let first = r.scan(Bound::Included(b"k"), Bound::Unbounded, 1500)?;
    ensure!(first.len() == 1500 && first[1499].0 == b"k01499");
    let mut w = store.write()?;
    w.delete(b"k00000");
    w.put(b"k00000a", b"v");
    let merged = w.scan(Bound::Unbounded, Bound::Unbounded, 2)?;
    ensure!(keys(&merged) == ["k00000a", "k00001"]);
    Ok(())
}

fn large_values(store: &Store) -> anyhow::Result<()> {
    let value: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    put(store, b"big", &value)?;
    ensure!(store.read()?.get(b"big")? == Some(value.clone()));
    ensure!(store.read()?.prefix(b"b")?[0].1 == value);
    Ok(())
}

fn many_keys(store: &Store) -> anyhow::Result<()> {
    const N: u32 = 100_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(5_000) {
        let mut txn = store.write()?;
        for i in chunk {
            txn.put(format!("many/{i:06}").as_bytes(), &i.to_be_bytes());
        }
        txn.commit()?;
    }
    let all = store.read()?.prefix(b"many/")?;
    ensure!(all.len() == N as usize, "scanned {} keys", all.len());
    for (i, (key, value)) in all.iter().enumerate() {
        ensure!(key == format!("many/{i:06}").as_bytes() && value == &(i as u32).to_be_bytes());
    }
    ensure!(store.read()?.prefix(b"many/09")?.len() == 10_000);
    Ok(())
}

fn deletes_inside_scans(store: &Store) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    for i in 0..10 {
        txn.put(format!("d/{i}").as_bytes(), b"v");
    }
    txn.commit()?;
    let mut txn = store.write()?;
    for (key, _) in txn.prefix(b"d/")? {
        if key.last().is_some_and(|b| b % 2 == 0) {
            txn.delete(&key);
        }
    }
    txn.put(b"d/5a", b"new");
    ensure!(keys(&txn.prefix(b"d/")?) == ["d/1", "d/3", "d/5", "d/5a", "d/7", "d/9"]);
    txn.commit()?;
    ensure!(keys(&store.read()?.prefix(b"d/")?) == ["d/1", "d/3", "d/5", "d/5a", "d/7", "d/9"]);
    Ok(())
}

fn conflict_on_key_read(store: &Store) -> anyhow::Result<()> {
    put(store, b"k", b"1")?;
    let mut t1 = store.write()?;
    ensure!(t1.get(b"k")? == Some(b"1".to_vec()));
    t1.put(b"other", b"x");
    put(store, b"k", b"2")?;
    expect_conflict(t1.commit())?;
    ensure!(store.read()?.get(b"other")?.is_none(), "a conflicting commit wrote");
    Ok(())
}

fn conflict_on_key_found_absent(store: &Store) -> anyhow::Result<()> {
    let mut t1 = store.write()?;
    ensure!(t1.get(b"slot")?.is_none());
    t1.put(b"slot", b"t1");
    put(store, b"slot", b"t2")?;
    expect_conflict(t1.commit())?;
    ensure!(store.read()?.get(b"slot")? == Some(b"t2".to_vec()));
    Ok(())
}

fn conflict_on_range_insert(store: &Store) -> anyhow::Result<()> {
    put(store, b"r/1", b"v")?;
    let mut t1 = store.write()?;
    let count = t1.prefix(b"r/")?.len();
    t1.put(b"r-count", count.to_string().as_bytes());
    put(store, b"r/2", b"phantom")?;
    expect_conflict(t1.commit())
}

fn conflict_on_range_delete(store: &Store) -> anyhow::Result<()> {
    put(store, b"s/1", b"v")?;
    put(store, b"s/2", b"v")?;
    let mut t1 = store.write()?;
    let count = t1.prefix(b"s/")?.len();
    t1.put(b"s-count", count.to_string().as_bytes());
    let mut t2 = store.write()?;
    t2.delete(b"s/2");
    t2.commit()?;
    expect_conflict(t1.commit())
}

fn disjoint_transactions_both_commit(store: &Store) -> anyhow::Result<()> {
    put(store, b"a", b"1")?;
    put(store, b"b", b"1")?;
    let mut t1 = store.write()?;
    let mut t2 = store.write()?;
    t1.get(b"a")?;
    t1.put(b"a", b"2");
    t2.get(b"b")?;
    t2.prefix(b"c")?;
    t2.put(b"b", b"2");
    t1.commit()?;
    t2.commit()?;
    let mut r = store.read()?;
    ensure!(r.get(b"a")? == Some(b"2".to_vec()) && r.get(b"b")? == Some(b"2".to_vec()));
    Ok(())
}

fn blind_writes_do_not_conflict(store: &Store) -> anyhow::Result<()> {
    let mut t1 = store.write()?;
    let mut t2 = store.write()?;
    t1.put(b"k", b"1");
    t2.put(b"k", b"2");
    t1.commit()?;
    t2.commit()?;
    ensure!(store.read()?.get(b"k")? == Some(b"2".to_vec()));
    Ok(())
}

fn limited_scan_conflicts_only_on_what_it_saw(store: &Store) -> anyhow::Result<()> {
    for key in ["l/a", "l/b", "l/c"] {
        put(store, key.as_bytes(), b"v")?;
    }
    let mut t1 = store.write()?;
    let first = t1.scan(Bound::Included(b"l/"), Bound::Excluded(b"l0"), 1)?;
    ensure!(keys(&first) == ["l/a"]);
    t1.put(b"l-first", &first[0].0);
    put(store, b"l/z", b"beyond what t1 saw")?;
    t1.commit()?;
    let mut t2 = store.write()?;
    t2.scan(Bound::Included(b"l/"), Bound::Excluded(b"l0"), 1)?;
    t2.put(b"l-first", b"again");
    put(store, b"l/0", b"before the first key")?;
    expect_conflict(t2.commit())
}

fn concurrent_increments(store: &Store) -> anyhow::Result<()> {
    const THREADS: usize = 8;
    const EACH: u64 = 1000;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    for _ in 0..EACH {
                        store.with_txn(|txn| {
                            let n = txn.get(b"counter")?.map_or(Ok(0), |b| decode(&b))?;
                            txn.put(b"counter", &(n + 1).to_be_bytes());
                            Ok::<_, Error>(())
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("an incrementing thread panicked"))??;
        }
        Ok(())
    })?;
    let total = store.read()?.get(b"counter")?.map(|b| decode(&b)).transpose()?;
    ensure!(total == Some(THREADS as u64 * EACH), "counter ended at {total:?}");
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<u64, Error> {
    let bytes = bytes.try_into().map_err(|_| Error::Corrupted("counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}
