//! The model's rules on the in-memory, redb and etcd engines.

use strata_hub::{BranchMeta, Error, Hub, Query, SnapshotMeta, SortBy, Volume};

use crate::util::{engines, snap};

fn on_every_engine(test: impl Fn(&Hub) -> anyhow::Result<()>) -> anyhow::Result<()> {
    for engine in engines()? {
        let hub = Hub::new(engine.store.clone(), "m/");
        test(&hub).map_err(|e| e.context(format!("on {}", engine.engine)))?;
    }
    Ok(())
}

#[test]
fn fork_extend_and_the_tip_rule() -> anyhow::Result<()> {
    on_every_engine(|hub| {
        let vs = hub.create_volset("data", "test data", "alice")?;
        assert_eq!((vs.owner.as_str(), vs.creator.as_str()), ("alice", "alice"));
        let (main, s1) = hub.fork(&vs.id, None, "main", &snap("one"))?;
        assert_eq!((s1.depth, s1.parent_id.clone()), (1, None));
        assert_eq!(main.tip, s1.id);
        let (main2, s2) = hub.extend(&vs.id, &s1.id, &snap("two"))?;
        assert_eq!(
            (main2.id.clone(), main2.tip.clone(), s2.depth),
            (main.id.clone(), s2.id.clone(), 2)
        );
        let err = hub.extend(&vs.id, &s1.id, &snap("off-tip")).unwrap_err();
        assert!(
            matches!(err, Error::FailedPrecondition(_)) && err.to_string().contains("use fork"),
            "{err}"
        );
        let (dev, s3) = hub.fork(&vs.id, Some(&s1.id), "dev", &snap("three"))?;
        assert_eq!((s3.parent_id.as_deref(), s3.depth), (Some(s1.id.as_str()), 2));
        assert!(matches!(
            hub.fork(&vs.id, Some(&s1.id), "dev", &snap("x")),
            Err(Error::AlreadyExists(_))
        ));
        for bad in ["a:b", "star*"] {
            assert!(matches!(
                hub.fork(&vs.id, None, bad, &snap("x")),
                Err(Error::InvalidArgument(_))
            ));
        }
        let on_main: Vec<String> =
            hub.snapshots_by_branch(&vs.id, "main")?.into_iter().map(|s| s.name).collect();
        assert_eq!(on_main, ["two", "one"]);
        let renamed = hub.rename_branch(&vs.id, "dev", "feature")?;
        assert_eq!((renamed.id, renamed.tip), (dev.id.clone(), s3.id.clone()));
        assert!(hub.find_branch(&vs.id, "dev").is_err());
        assert!(matches!(
            hub.rename_branch(&vs.id, "feature", "main"),
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(hub.bushes(&vs.id)?.len(), 1);
        assert!(hub.is_ancestor(&s1.id, &s3.id)? && !hub.is_ancestor(&s2.id, &s3.id)?);
        Ok(())
    })
}

#[test]
fn queries_sort_order_offset_limit() -> anyhow::Result<()> {
    on_every_engine(|hub| {
        let vs = hub.create_volset("q", "", "alice")?;
        let (_, mut tip) = hub.fork(&vs.id, None, "main", &snap("c"))?;
        for name in ["a", "d", "b"] {
            tip = hub.extend(&vs.id, &tip.id, &snap(name))?.1;
        }
        let names = |q: Query| -> anyhow::Result<Vec<String>> {
            Ok(hub.snapshots(&vs.id, &q)?.into_iter().map(|s| s.name).collect())
        };
        assert_eq!(names(Query { sort: SortBy::Name, ..Query::default() })?, ["a", "b", "c", "d"]);
        assert_eq!(
            names(Query { sort: SortBy::Depth, descending: true, ..Query::default() })?,
            ["b", "d", "a", "c"]
        );
        assert_eq!(
            names(Query { sort: SortBy::Name, offset: 1, limit: 2, ..Query::default() })?,
            ["b", "c"]
        );
        assert_eq!(names(Query { name: Some("d".into()), ..Query::default() })?, ["d"]);
        hub.create_volset("another", "", "alice")?;
        assert!(matches!(hub.create_volset("q", "", "alice"), Err(Error::AlreadyExists(_))));
        let sets = hub.volsets(&Query { sort: SortBy::Name, limit: 1, ..Query::default() })?;
        assert_eq!(sets.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["another"]);
        Ok(())
    })
}

#[test]
fn blob_compare_and_swap_and_the_find_rules() -> anyhow::Result<()> {
    on_every_engine(|hub| {
        let vs = hub.create_volset("b", "", "alice")?;
        let (_, s1) = hub.fork(&vs.id, None, "main", &snap("one"))?;
        let (_, s2) = hub.extend(&vs.id, &s1.id, &snap("two"))?;
        let (_, s3) = hub.extend(&vs.id, &s2.id, &snap("three"))?;
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Nothing has a blob: start from empty.
        assert_eq!(hub.find_non_missing_snapshot(&vs.id, &s3.id, &ids(&[&s1.id, &s2.id]))?, None);
        hub.set_blob(&s1.id, None, "b1")?;
        hub.set_blob(&s1.id, None, "b1")?; // the same blob again: no-op
        let err = hub.set_blob(&s1.id, None, "other").unwrap_err();
        assert!(err.to_string().contains("already have blob"), "{err}");
        assert!(matches!(
            hub.set_blob(&s2.id, Some("wrong"), "b2"),
            Err(Error::AlreadyHaveBlob { .. })
        ));
        hub.set_blob(&s2.id, None, "b2")?;
        assert_eq!(
            hub.find_non_missing_snapshot(&vs.id, &s3.id, &ids(&[&s1.id, &s2.id]))?,
            Some((s2.id.clone(), "b2".to_string()))
        );
        assert_eq!(
            hub.find_non_missing_snapshot(&vs.id, &s3.id, &ids(&[&s1.id, "unknown-00"]))?,
            Some((s1.id.clone(), "b1".to_string()))
        );
        assert!(matches!(
            hub.find_non_missing_snapshot(&vs.id, "0000-missing", &[]),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            hub.find_non_missing_snapshot(&vs.id, &s2.id, &[]),
            Err(Error::AlreadyHaveBlob { .. })
        ));
        // RequestBlobDiff: the newest base with a blob, and the target's blob.
        assert!(matches!(hub.request_blob_diff(&vs.id, &s3.id, &[]), Err(Error::NotFound(_))));
        hub.set_blob(&s3.id, None, "b3")?;
        assert_eq!(
            hub.request_blob_diff(&vs.id, &s3.id, &ids(&[&s1.id, &s2.id]))?,
            (Some((s2.id.clone(), "b2".into())), "b3".into())
        );
        assert_eq!(hub.request_blob_diff(&vs.id, &s3.id, &[])?, (None, "b3".into()));
        assert!(hub.volset_has_blob(&vs.id, "b3")?);
        // Another set sees none of these snapshots, as target or as candidate.
        let other = hub.create_volset("other", "", "mallory")?;
        let (_, o1) = hub.fork(&other.id, None, "main", &snap("mine"))?;
        assert!(matches!(
            hub.find_non_missing_snapshot(&other.id, &s3.id, &[]),
            Err(Error::NotFound(_))
        ));
        assert_eq!(
            hub.find_non_missing_snapshot(&other.id, &o1.id, &ids(&[&s1.id, &s2.id]))?,
            None
        );
        assert!(matches!(hub.request_blob_diff(&other.id, &s3.id, &[]), Err(Error::NotFound(_))));
        Ok(())
    })
}

#[test]
fn import_is_idempotent_and_delete_keeps_the_tree_whole() -> anyhow::Result<()> {
    on_every_engine(|hub| {
        let vs = hub.create_volset("i", "", "alice")?;
        let (_, s1) = hub.fork(&vs.id, None, "main", &snap("one"))?;
        let (_, s2) = hub.extend(&vs.id, &s1.id, &snap("two"))?;
        let exported = hub.export(&vs.id)?;
        let other = Hub::new(hub.store().clone(), "m-other/");
        assert!(other.import_volset(&exported.volumeset)?);
        assert!(!other.import_volset(&exported.volumeset)?);
        assert_eq!(other.import_snapshots(&vs.id, &exported.snapshots, None)?, 2);
        assert_eq!(other.import_snapshots(&vs.id, &exported.snapshots, None)?, 0);
        for b in &exported.branches {
            other.import_branch(b)?;
        }
        assert_eq!(other.export(&vs.id)?.snapshots, exported.snapshots);
        // A child without its parent is refused.
        let mut orphan = s2.clone();
        orphan.id = "0000-orphan".into();
        orphan.parent_id = Some("0000-nowhere".into());
        assert!(other.import_snapshots(&vs.id, &[orphan], None).is_err());
        // Delete: a parent is refused; a tip moves its branch back; a root takes its branch.
        assert!(matches!(hub.delete_snapshot(&s1.id), Err(Error::FailedPrecondition(_))));
        hub.delete_snapshot(&s2.id)?;
        assert_eq!(hub.find_branch(&vs.id, "main")?.tip, s1.id);
        hub.delete_snapshot(&s1.id)?;
        assert!(hub.branches(&vs.id)?.is_empty());
        assert!(matches!(hub.snapshot(&s1.id), Err(Error::NotFound(_))));
        // Metadata updates and attributes.
        let (_, s) = hub.fork(&vs.id, None, "again", &snap("x"))?;
        let mut meta: SnapshotMeta = s.meta();
        meta.attrs.insert("k".into(), "v".into());
        assert_eq!(
            hub.update_snapshot_meta(&s.id, &meta)?.attrs.get("k").map(String::as_str),
            Some("v")
        );
        let b = hub.find_branch(&vs.id, "again")?;
        let bad = BranchMeta { name: "x:y".into(), attrs: Default::default() };
        assert!(matches!(
            hub.update_branch_meta(&vs.id, &b.id, &bad),
            Err(Error::InvalidArgument(_))
        ));
        // Volumes.
        let volume = Volume {
            id: strata_hub::model::new_id(),
            name: "v1".into(),
            volset_id: vs.id.clone(),
            snapshot_id: Some(s.id.clone()),
            branch_id: Some(b.id.clone()),
            path: "/tmp/nowhere-v1".into(),
            created_at: 1,
        };
        hub.put_volume(&volume)?;
        assert_eq!(hub.find_volume("v1")?, volume);
        assert_eq!(hub.find_volume(&volume.id)?, volume);
        let mut dup = volume.clone();
        dup.id = strata_hub::model::new_id();
        assert!(matches!(hub.put_volume(&dup), Err(Error::AlreadyExists(_))));
        Ok(())
    })
}

// Issue 16: `strata volumeset rm`. A set goes only when no volume and no snapshot is left,
// and its leftover keys go in transactions etcd accepts (more than 128 log entries here).
#[test]
fn a_volume_set_is_deleted_only_when_nothing_depends_on_it() -> anyhow::Result<()> {
    on_every_engine(|hub| {
        let vs = hub.create_volset("gone", "", "alice")?;
        hub.grant(&vs.id, "bob")?;
        let (_, mut tip) = hub.fork(&vs.id, None, "main", &snap("s0"))?;
        for i in 1..70 {
            tip = hub.extend(&vs.id, &tip.id, &snap(&format!("s{i}")))?.1;
        }
        let volume = Volume {
            id: strata_hub::model::new_id(),
            name: "user".into(),
            volset_id: vs.id.clone(),
            snapshot_id: Some(tip.id.clone()),
            branch_id: None,
            path: "/tmp/nowhere-user".into(),
            created_at: 1,
        };
        hub.put_volume(&volume)?;
        let err = hub.delete_volset(&vs.id).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)) && err.to_string().contains("user"));
        hub.delete_volume(&volume.id)?;
        let err = hub.delete_volset(&vs.id).unwrap_err();
        assert!(
            matches!(err, Error::FailedPrecondition(_)) && err.to_string().contains("snapshots")
        );
        let mut all = hub.snapshots(&vs.id, &Query::default())?;
        all.sort_by_key(|s| std::cmp::Reverse(s.depth));
        for s in &all {
            hub.delete_snapshot(&s.id)?;
        }
        assert_eq!(hub.delete_volset(&vs.id)?.id, vs.id);
        assert!(matches!(hub.volset(&vs.id), Err(Error::NotFound(_))));
        assert!(matches!(hub.delete_volset(&vs.id), Err(Error::NotFound(_))));
        assert_eq!(hub.revision(&vs.id)?, None, "the revision log is gone");
        hub.create_volset("gone", "", "alice")?;
        Ok(())
    })
}
