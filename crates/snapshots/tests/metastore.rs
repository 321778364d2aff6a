//! The metastore conformance suite, after containerd's `MetaStoreSuite`: each case written
//! once over a `Store` and run on every KV engine.

use std::collections::BTreeMap;

use anyhow::{bail, ensure};
use strata_kv::{Category, Store};
use strata_snapshots::{Error, Filters, Info, Kind, Usage, metastore};

strata_testkit::conformance!(every_engine, fixture => &fixture.store;
    get_info, get_info_not_exist, walk, walk_with_filters, get_snapshot,
    get_snapshot_committed, get_snapshot_not_exist, create_active,
    create_active_exists, create_active_parent_missing, create_active_from_active,
    create_committed_is_invalid, commit, commit_exists, commit_committed,
    commit_view_fails, remove, remove_with_children, remove_not_exist, parents,
    update_labels, update_invalid_paths, id_map, bad_names_and_labels,
    create_child_races_remove_parent
);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn create(store: &Store, kind: Kind, key: &str, parent: &str) -> strata_snapshots::Result<()> {
    store.with_txn(|txn| metastore::create_snapshot(txn, kind, key, parent, BTreeMap::new()))?;
    Ok(())
}

fn commit_as(store: &Store, key: &str, name: &str, size: i64) -> strata_snapshots::Result<()> {
    let usage = Usage { size, inodes: 1 };
    store.with_txn(|txn| metastore::commit_active(txn, key, name, usage, BTreeMap::new()))?;
    Ok(())
}

/// containerd's `basePopulate`: two committed, three active, two views.
fn populate(store: &Store) -> anyhow::Result<()> {
    create(store, Kind::Active, "committed-tmp-1", "")?;
    commit_as(store, "committed-tmp-1", "committed-1", 1)?;
    create(store, Kind::Active, "committed-tmp-2", "committed-1")?;
    commit_as(store, "committed-tmp-2", "committed-2", 2)?;
    create(store, Kind::Active, "active-1", "")?;
    create(store, Kind::Active, "active-2", "committed-1")?;
    create(store, Kind::Active, "active-3", "committed-2")?;
    create(store, Kind::View, "view-1", "")?;
    create(store, Kind::View, "view-2", "committed-2")?;
    Ok(())
}

fn expect<T: std::fmt::Debug>(
    result: strata_snapshots::Result<T>,
    category: Category,
) -> anyhow::Result<()> {
    match result {
        Err(err) if err.category() == category => Ok(()),
        Err(err) => bail!("expected {category}, got {err} ({})", err.category()),
        Ok(value) => bail!("expected {category}, got {value:?}"),
    }
}

fn info(store: &Store, key: &str) -> strata_snapshots::Result<(String, Info, Usage)> {
    metastore::get_info(&mut store.read()?, key)
}

fn get_info(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    let expected = [
        ("committed-1", "", Kind::Committed),
        ("committed-2", "committed-1", Kind::Committed),
        ("active-1", "", Kind::Active),
        ("active-2", "committed-1", Kind::Active),
        ("active-3", "committed-2", Kind::Active),
        ("view-1", "", Kind::View),
        ("view-2", "committed-2", Kind::View),
    ];
    for (name, parent, kind) in expected {
        let (id, info, _) = info(store, name)?;
        ensure!(!id.is_empty() && info.name == name && info.parent == parent && info.kind == kind);
        ensure!(info.created <= info.updated);
    }
    ensure!(info(store, "committed-2")?.2.size == 2);
    Ok(())
}

fn get_info_not_exist(store: &Store) -> anyhow::Result<()> {
    expect(info(store, "active-not-exist"), Category::NotFound)
}

fn walk(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    let all = list(store, &[])?;
    let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
    let want =
        ["active-1", "active-2", "active-3", "committed-1", "committed-2", "view-1", "view-2"];
    ensure!(names == want, "{names:?}");
    Ok(())
}

fn list(store: &Store, filters: &[&str]) -> strata_snapshots::Result<Vec<Info>> {
    let mut found = Vec::new();
    let filters = Filters::parse(filters)?;
    metastore::walk_info(&mut store.read()?, &filters, |info| {
        found.push(info);
        Ok(())
    })?;
    Ok(found)
}

fn walk_with_filters(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::Active, "labelled", "", labels(&[("team", "a")]))
    })?;
    let names = |filters: &[&str]| -> anyhow::Result<Vec<String>> {
        Ok(list(store, filters)?.into_iter().map(|i| i.name).collect())
    };
    ensure!(names(&["kind==committed"])? == ["committed-1", "committed-2"]);
    ensure!(names(&["parent==committed-2"])? == ["active-3", "view-2"]);
    ensure!(names(&["labels.team==a"])? == ["labelled"]);
    ensure!(names(&["kind==view", "name~=^active-[12]$"])?.len() == 4);
    ensure!(names(&["kind==active,parent==committed-1"])? == ["active-2"]);
    expect(list(store, &["kind=active"]), Category::InvalidArgument)?;
    Ok(())
}

fn get_snapshot(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    let c1 = info(store, "committed-1")?.0;
    let c2 = info(store, "committed-2")?.0;
    let cases = [
        ("active-1", Kind::Active, vec![]),
        ("active-2", Kind::Active, vec![c1.clone()]),
        ("active-3", Kind::Active, vec![c2.clone(), c1.clone()]),
        ("view-1", Kind::View, vec![]),
        ("view-2", Kind::View, vec![c2, c1]),
    ];
    for (key, kind, parents) in cases {
        let snapshot = metastore::get_snapshot(&mut store.read()?, key)?;
        ensure!(snapshot.kind == kind && snapshot.parent_ids == parents, "{key}: {snapshot:?}");
        ensure!(snapshot.id == info(store, key)?.0);
    }
    Ok(())
}

fn get_snapshot_committed(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    expect(metastore::get_snapshot(&mut store.read()?, "committed-1"), Category::FailedPrecondition)
}

fn get_snapshot_not_exist(store: &Store) -> anyhow::Result<()> {
    expect(metastore::get_snapshot(&mut store.read()?, "active-not-exist"), Category::NotFound)
}

fn create_active(store: &Store) -> anyhow::Result<()> {
    let a = store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::Active, "active-1", "", labels(&[("l", "v")]))
    })?;
    ensure!(a.kind == Kind::Active && a.parent_ids.is_empty());
    commit_as(store, "active-1", "committed-1", 0)?;
    let b = store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::Active, "active-2", "committed-1", BTreeMap::new())
    })?;
    ensure!(b.parent_ids == [a.id.clone()] && b.id != a.id);
    let v = store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::View, "view-1", "committed-1", BTreeMap::new())
    })?;
    ensure!(v.kind == Kind::View && v.parent_ids == [a.id]);
    ensure!(info(store, "committed-1")?.1.labels.is_empty(), "commit inherited labels");
    Ok(())
}

fn create_active_exists(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    expect(create(store, Kind::Active, "active-1", ""), Category::AlreadyExists)?;
    expect(create(store, Kind::Active, "committed-1", ""), Category::AlreadyExists)
}

fn create_active_parent_missing(store: &Store) -> anyhow::Result<()> {
    expect(create(store, Kind::Active, "active-1", "does-not-exist"), Category::NotFound)
}

fn create_active_from_active(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    expect(create(store, Kind::Active, "active-4", "active-1"), Category::InvalidArgument)?;
    expect(create(store, Kind::View, "view-3", "view-1"), Category::InvalidArgument)
}

fn create_committed_is_invalid(store: &Store) -> anyhow::Result<()> {
    expect(create(store, Kind::Committed, "c", ""), Category::InvalidArgument)
}

fn commit(store: &Store) -> anyhow::Result<()> {
    store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::Active, "active-1", "", labels(&[("old", "x")]))
    })?;
    let (active_id, before, _) = info(store, "active-1")?;
    let usage = Usage { size: 42, inodes: 7 };
    let id = store.with_txn(|txn| {
        metastore::commit_active(txn, "active-1", "committed-1", usage, labels(&[("new", "y")]))
    })?;
    ensure!(id == active_id, "commit changed the id");
    let (_, after, stored) = info(store, "committed-1")?;
    ensure!(after.kind == Kind::Committed && stored == usage);
    ensure!(after.labels == labels(&[("new", "y")]), "labels: {:?}", after.labels);
    ensure!(after.created >= before.created);
    expect(info(store, "active-1"), Category::NotFound)?;
    ensure!(
        metastore::id_map(&mut store.read()?)?.get(&id).map(String::as_str) == Some("committed-1")
    );
    Ok(())
}

fn commit_exists(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    expect(commit_as(store, "active-1", "committed-1", 0), Category::AlreadyExists)
}

fn commit_committed(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    expect(commit_as(store, "committed-1", "committed-3", 0), Category::FailedPrecondition)
}

fn commit_view_fails(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    expect(commit_as(store, "view-1", "committed-3", 0), Category::FailedPrecondition)?;
    expect(commit_as(store, "missing", "committed-3", 0), Category::NotFound)
}

fn remove(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    for key in ["active-1", "active-2", "active-3", "view-1", "view-2"] {
        let (id, kind) = store.with_txn(|txn| metastore::remove(txn, key))?;
        ensure!(kind != Kind::Committed && !id.is_empty());
        expect(info(store, key), Category::NotFound)?;
    }
    store.with_txn(|txn| metastore::remove(txn, "committed-2"))?;
    let (_, kind) = store.with_txn(|txn| metastore::remove(txn, "committed-1"))?;
    ensure!(kind == Kind::Committed);
    ensure!(list(store, &[])?.is_empty() && metastore::id_map(&mut store.read()?)?.is_empty());
    Ok(())
}

fn remove_with_children(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    let removing = |key: &str| store.with_txn(|txn| metastore::remove(txn, key));
    expect(removing("committed-1"), Category::FailedPrecondition)?;
    removing("active-2")?;
    expect(removing("committed-1"), Category::FailedPrecondition)?;
    removing("active-3")?;
    removing("view-2")?;
    removing("committed-2")?;
    removing("committed-1")?;
    Ok(())
}

fn remove_not_exist(store: &Store) -> anyhow::Result<()> {
    expect(store.with_txn(|txn| metastore::remove(txn, "active-not-exist")), Category::NotFound)
}

fn parents(store: &Store) -> anyhow::Result<()> {
    let mut parent = String::new();
    let mut ids = Vec::new();
    for depth in 0..10 {
        let key = format!("active-{depth}");
        let name = format!("committed-{depth}");
        let snapshot = store.with_txn(|txn| {
            metastore::create_snapshot(txn, Kind::Active, &key, &parent, BTreeMap::new())
        })?;
        let mut want = ids.clone();
        want.reverse();
        ensure!(snapshot.parent_ids == want, "depth {depth}: {:?}", snapshot.parent_ids);
        ids.push(snapshot.id);
        commit_as(store, &key, &name, 0)?;
        parent = name;
    }
    Ok(())
}

fn update_labels(store: &Store) -> anyhow::Result<()> {
    store.with_txn(|txn| {
        metastore::create_snapshot(txn, Kind::Active, "a", "", labels(&[("x", "1"), ("y", "2")]))
    })?;
    let (_, mut current, _) = info(store, "a")?;
    let before = current.updated;
    current.labels = labels(&[("x", "10"), ("z", "3")]);
    let paths = ["labels.x".to_string(), "labels.y".to_string()];
    let updated = store.with_txn(|txn| metastore::update_info(txn, &current, &paths))?;
    ensure!(updated.labels == labels(&[("x", "10")]), "{:?}", updated.labels);
    ensure!(updated.updated >= before);
    let all = store.with_txn(|txn| metastore::update_info(txn, &current, &[]))?;
    ensure!(all.labels == labels(&[("x", "10"), ("z", "3")]));
    ensure!(info(store, "a")?.1.labels == all.labels);
    current.name = "missing".into();
    expect(store.with_txn(|txn| metastore::update_info(txn, &current, &[])), Category::NotFound)
}

fn update_invalid_paths(store: &Store) -> anyhow::Result<()> {
    create(store, Kind::Active, "a", "")?;
    let (_, current, _) = info(store, "a")?;
    for path in ["name", "kind", "parent", "label.x", "created"] {
        let paths = [path.to_string()];
        let result = store.with_txn(|txn| metastore::update_info(txn, &current, &paths));
        expect(result, Category::InvalidArgument)?;
    }
    Ok(())
}

fn id_map(store: &Store) -> anyhow::Result<()> {
    populate(store)?;
    let map = metastore::id_map(&mut store.read()?)?;
    ensure!(map.len() == 7);
    for (id, name) in &map {
        ensure!(&info(store, name)?.0 == id);
    }
    Ok(())
}

fn bad_names_and_labels(store: &Store) -> anyhow::Result<()> {
    expect(create(store, Kind::Active, "", ""), Category::InvalidArgument)?;
    expect(create(store, Kind::Active, &"k".repeat(5000), ""), Category::InvalidArgument)?;
    let huge = labels(&[("big", &"v".repeat(5000))]);
    let result =
        store.with_txn(|txn| metastore::create_snapshot(txn, Kind::Active, "a", "", huge.clone()));
    expect(result, Category::InvalidArgument)
}

/// Concurrent "create a child" and "remove the parent" must never leave a child whose
/// parent is gone, nor a parent that cannot be removed once its children are.
fn create_child_races_remove_parent(store: &Store) -> anyhow::Result<()> {
    for round in 0..20 {
        let parent = format!("parent-{round}");
        let tmp = format!("tmp-{round}");
        let child = format!("child-{round}");
        create(store, Kind::Active, &tmp, "")?;
        commit_as(store, &tmp, &parent, 0)?;
        let (created, removed) = std::thread::scope(|scope| {
            let c = scope.spawn(|| create(store, Kind::Active, &child, &parent));
            let r = scope.spawn(|| store.with_txn(|txn| metastore::remove(txn, &parent)));
            (c.join(), r.join())
        });
        let created = created.map_err(|_| anyhow::anyhow!("create thread panicked"))?;
        let removed = removed.map_err(|_| anyhow::anyhow!("remove thread panicked"))?;
        match (created, removed) {
            (Ok(()), Err(Error::FailedPrecondition(_))) => {
                ensure!(info(store, &parent).is_ok(), "parent gone while its child exists");
                store.with_txn(|txn| metastore::remove(txn, &child))?;
                store.with_txn(|txn| metastore::remove(txn, &parent))?;
            }
            (Err(Error::NotFound(_)), Ok(_)) => {
                expect(info(store, &child), Category::NotFound)?;
            }
            (created, removed) => bail!("round {round}: create {created:?}, remove {removed:?}"),
        }
        ensure!(metastore::id_map(&mut store.read()?)?.is_empty(), "round {round}: leftovers");
    }
    Ok(())
}
