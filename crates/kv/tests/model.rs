//! Model-based test: random sequences of transactional operations against a `BTreeMap`
//! reference model, on every engine, with reopens in between to check that exactly the
//! committed state survives.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use strata_kv::{Read, Store};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Get(u8),
    Scan(Option<u8>, Option<u8>, usize),
    Commit,
    Rollback,
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    // A small key space, with one byte past "k/" that is sometimes 0xff.
    vec![b'k', b'/', k.wrapping_mul(37)]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..24;
    prop_oneof![
        4 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => k.clone().prop_map(Op::Delete),
        2 => k.clone().prop_map(Op::Get),
        2 => (proptest::option::of(k.clone()), proptest::option::of(k), 0usize..30)
            .prop_map(|(s, e, l)| Op::Scan(s, e, l)),
        2 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

/// Runs `ops` on a store that `open` (re)opens, checking every read against the model.
fn run(ops: &[Op], mut open: impl FnMut() -> Store) -> Result<(), TestCaseError> {
    let mut store = open();
    let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut pending: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut txn = store.write().map_err(fail)?;
    for op in ops {
        let mut view = committed.clone();
        for (k, v) in &pending {
            match v {
                Some(v) => view.insert(k.clone(), v.clone()),
                None => view.remove(k),
            };
        }
        match op {
            Op::Put(k, v) => {
                txn.put(&key(*k), &[*v]);
                pending.insert(key(*k), Some(vec![*v]));
            }
            Op::Delete(k) => {
                txn.delete(&key(*k));
                pending.insert(key(*k), None);
            }
            Op::Get(k) => {
                prop_assert_eq!(txn.get(&key(*k)).map_err(fail)?, view.get(&key(*k)).cloned());
            }
            Op::Scan(start, end, limit) => {
                let s = start.map(key);
                let e = end.map(key);
                let sb = s.as_deref().map_or(Bound::Unbounded, Bound::Included);
                let eb = e.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let got = txn.scan(sb, eb, *limit).map_err(fail)?;
                let empty = matches!((&s, &e), (Some(s), Some(e)) if s >= e);
                let want: Vec<_> = if empty {
                    Vec::new()
                } else {
                    view.range::<[u8], _>((sb, eb))
                        .take(*limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                };
                prop_assert_eq!(got, want);
            }
            Op::Commit => {
                txn.commit().map_err(fail)?;
                txn = store.write().map_err(fail)?;
                committed = view;
                pending.clear();
            }
            Op::Rollback => {
                txn.rollback();
                txn = store.write().map_err(fail)?;
                pending.clear();
            }
            Op::Reopen => {
                drop(txn);
                drop(store);
                pending.clear();
                store = open();
                txn = store.write().map_err(fail)?;
                let all = store.read().map_err(fail)?.prefix(b"").map_err(fail)?;
                let want: Vec<_> = committed.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(all, want);
            }
        }
    }
    Ok(())
}

fn fail(err: strata_kv::Error) -> TestCaseError {
    TestCaseError::fail(err.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn redb_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("kv.redb");
        run(&ops, || Store::redb(&path).expect("open redb"))?;
    }

    #[test]
    fn memory_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let store = Store::memory().expect("memory store");
        // A memory store cannot be reopened; "reopen" hands back the same store.
        run(&ops, || store.clone())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn etcd_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let config = strata_testkit::etcd_config(20_000);
        run(&ops, || Store::etcd(&config).expect("connect to etcd"))?;
    }
}
