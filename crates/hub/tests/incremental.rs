//! Incremental sync: after a first sync, a sync reads only the snapshots changed since on
//! either side. Every scenario runs twice on identical copies of both stores, once
//! incrementally and once with the remembered revisions made unknown (a full sync), and
//! both must end in the same state with the same report; the hub's export falls back to
//! everything for a revision it does not know.

use std::collections::BTreeMap;

use strata_hub::{
    BranchMeta, Hub, HubService, InProcess, Local, NewSnapshot, NoProgress, Remote, Report,
    SnapshotMeta, SyncMark, VolumeSetMeta,
};
use strata_kv::Read as _;
use strata_volume::BlobStore;

use crate::util::{Engine, block_on, engines, snap};

/// Two local stores and a hub, their keys under prefixes named after `tag`.
struct World {
    local: Local,
    other: Local,
    remote: InProcess,
}

fn world(engine: &Engine, tag: &str) -> anyhow::Result<World> {
    let hub = |name: &str| Hub::new(engine.store.clone(), format!("{tag}-{name}/"));
    let blobs = |name: &str| BlobStore::open(&engine.dir.path().join(format!("{tag}-{name}")));
    Ok(World {
        local: Local { hub: hub("local"), blobs: blobs("local")? },
        other: Local { hub: hub("other"), blobs: blobs("other")? },
        remote: InProcess {
            service: HubService::new(hub("remote"), blobs("remote")?),
            user: "alice".into(),
        },
    })
}

/// Copies every key under `from`'s prefixes to `to`'s: an identical world.
fn copy_world(engine: &Engine, from: &str, to: &str) -> anyhow::Result<()> {
    let mut read = engine.store.read()?;
    let entries = read.prefix(format!("{from}-").as_bytes())?;
    for chunk in entries.chunks(20) {
        engine.store.with_txn(|txn| {
            for (key, value) in chunk {
                let key = String::from_utf8_lossy(key).replacen(from, to, 1);
                txn.put(key.as_bytes(), value);
            }
            Ok::<_, strata_kv::Error>(())
        })?;
    }
    Ok(())
}

fn with_id(name: &str, id: &str) -> NewSnapshot {
    NewSnapshot { id: Some(id.into()), ..snap(name) }
}

/// A set with a branch `main` of three snapshots and a branch `dev` forked off the first,
/// pulled by `other`. `local` pushes the first snapshot (making the set on the hub), then
/// the rest: that push remembers revisions (the hub had nothing `local` lacked); when
/// `sync`, a sync follows (which remembers them again).
fn setup(w: &World, sync: bool) -> anyhow::Result<String> {
    let vs = w.local.hub.create_volset("set", "original", "alice")?;
    let (_, s1) = w.local.hub.fork(&vs.id, None, "main", &with_id("one", S1))?;
    block_on(w.local.push(&w.remote, &vs.id, &NoProgress))?;
    assert!(w.local.hub.sync_mark(&vs.id)?.is_none(), "the hub had no revision to remember");
    let (_, s2) = w.local.hub.extend(&vs.id, &s1.id, &with_id("two", S2))?;
    w.local.hub.extend(&vs.id, &s2.id, &with_id("three", S3))?;
    w.local.hub.fork(&vs.id, Some(&s1.id), "dev", &with_id("dev", DEV))?;
    block_on(w.local.push(&w.remote, &vs.id, &NoProgress))?;
    block_on(w.other.pull(&w.remote, &vs.id, &NoProgress))?;
    if sync {
        block_on(w.local.sync(&w.remote, &vs.id, &NoProgress))?;
    }
    Ok(vs.id)
}

/// What must come out the same: metadata, parents, blobs and depths of every snapshot,
/// branches by name with their tips, the set's metadata.
type State = (
    VolumeSetMeta,
    BTreeMap<String, (Option<String>, u64, SnapshotMeta)>,
    Vec<(String, String, BranchMeta)>,
);

fn state(hub: &Hub, vsid: &str) -> anyhow::Result<State> {
    let snaps = hub
        .snapshots(vsid, &Default::default())?
        .into_iter()
        .map(|s| (s.id.clone(), (s.parent_id.clone(), s.depth, s.meta())))
        .collect();
    let mut branches: Vec<_> = hub
        .branches(vsid)?
        .into_iter()
        .map(|b| (b.name.clone(), b.tip.clone(), b.meta()))
        .collect();
    branches.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((hub.volset(vsid)?.meta(), snaps, branches))
}

/// The parts of a report that must agree (conflicts by kind, id and copies).
fn summary(r: &Report) -> String {
    let conflicts: Vec<String> = r
        .conflicts
        .iter()
        .map(|c| format!("{} {} {} {} {}", c.kind, c.id, c.initial, c.current, c.target))
        .collect();
    format!(
        "pushed {} pulled {} meta pushed {} meta pulled {} branches {:?} conflicts {:?}",
        r.snapshots_pushed,
        r.snapshots_pulled,
        r.metadata_pushed,
        r.metadata_pulled,
        r.branches,
        conflicts
    )
}

type Change = fn(&World, &str) -> anyhow::Result<()>;

fn describe(hub: &Hub, id: &str, text: &str) -> anyhow::Result<()> {
    let mut meta = hub.snapshot(id)?.meta();
    meta.description = text.into();
    hub.update_snapshot_meta(id, &meta)?;
    Ok(())
}

fn rename(hub: &Hub, vsid: &str, from: &str, to: &str) -> anyhow::Result<()> {
    hub.rename_branch(vsid, from, to)?;
    Ok(())
}

fn set_description(hub: &Hub, vsid: &str, text: &str) -> anyhow::Result<()> {
    let mut meta = hub.volset(vsid)?.meta();
    meta.description = text.into();
    hub.update_volset_meta(vsid, &meta)?;
    Ok(())
}

const S1: &str = "00000000-0000-4000-8000-000000000001";
const S2: &str = "00000000-0000-4000-8000-000000000002";
const S3: &str = "00000000-0000-4000-8000-000000000003";
const DEV: &str = "00000000-0000-4000-8000-00000000000d";

const S4: &str = "00000000-0000-4000-8000-000000000004";
const DEV2: &str = "00000000-0000-4000-8000-0000000000d2";

/// Extends `main` (at S3) in `hub` with S4.
fn four(hub: &Hub, vsid: &str) -> anyhow::Result<()> {
    hub.extend(vsid, S3, &with_id("four", S4))?;
    Ok(())
}

/// Extends `dev` (at DEV) in `hub` with DEV2.
fn dev_two(hub: &Hub, vsid: &str) -> anyhow::Result<()> {
    hub.extend(vsid, DEV, &with_id("dev-2", DEV2))?;
    Ok(())
}

const SCENARIOS: &[(&str, Change)] = &[
    ("nothing changed", |_, _| Ok(())),
    ("a new snapshot here", |w, vs| four(&w.local.hub, vs)),
    ("a new snapshot on the hub", |w, vs| dev_two(&w.remote.service.hub, vs)),
    ("new snapshots on both sides, on different branches", |w, vs| {
        four(&w.local.hub, vs)?;
        dev_two(&w.remote.service.hub, vs)
    }),
    ("another store pushed a snapshot and a description", |w, vs| {
        block_on(w.other.pull(&w.remote, vs, &NoProgress))?;
        dev_two(&w.other.hub, vs)?;
        describe(&w.other.hub, S1, "from the other store")?;
        block_on(w.other.sync(&w.remote, vs, &NoProgress))?;
        Ok(())
    }),
    ("snapshot described here", |w, _| describe(&w.local.hub, S1, "mine")),
    ("snapshot described on the hub", |w, _| describe(&w.remote.service.hub, S1, "hub")),
    ("snapshot described the same on both", |w, _| {
        describe(&w.local.hub, S1, "same")?;
        describe(&w.remote.service.hub, S1, "same")
    }),
    ("snapshot conflict", |w, _| {
        describe(&w.local.hub, S1, "mine")?;
        describe(&w.remote.service.hub, S1, "hub")
    }),
    ("new snapshot here described on the hub's copy of another", |w, vs| {
        four(&w.local.hub, vs)?;
        describe(&w.remote.service.hub, DEV, "hub")
    }),
    ("branch renamed here", |w, vs| rename(&w.local.hub, vs, "dev", "feature")),
    ("branch renamed on the hub", |w, vs| rename(&w.remote.service.hub, vs, "dev", "topic")),
    ("branch renamed on both, a conflict", |w, vs| {
        rename(&w.local.hub, vs, "dev", "feature")?;
        rename(&w.remote.service.hub, vs, "dev", "topic")
    }),
    ("branch renamed here and extended on the hub", |w, vs| {
        rename(&w.local.hub, vs, "dev", "feature")?;
        dev_two(&w.remote.service.hub, vs)
    }),
    ("set described on both, a conflict", |w, vs| {
        set_description(&w.local.hub, vs, "mine")?;
        set_description(&w.remote.service.hub, vs, "hub")
    }),
    ("tip deleted on the hub", |w, vs| {
        w.remote.service.hub.delete_snapshot(S3)?;
        describe(&w.local.hub, DEV, "mine")?;
        let _ = vs;
        Ok(())
    }),
    ("tip deleted here", |w, _| w.local.hub.delete_snapshot(DEV).map_err(Into::into)),
];

fn compare(engine: &Engine, after_sync: bool) -> anyhow::Result<()> {
    for (i, (name, change)) in SCENARIOS.iter().enumerate() {
        let last = if after_sync { "a sync" } else { "a push" };
        let what = format!("{name} after {last} on {}", engine.engine);
        let (a, b) = (format!("inc{i}{after_sync}"), format!("full{i}{after_sync}"));
        let inc = world(engine, &a)?;
        let vsid = setup(&inc, after_sync)?;
        let mark = inc.local.hub.sync_mark(&vsid)?;
        let mark = mark.ok_or_else(|| anyhow::anyhow!("{what}: no revisions after a sync"))?;
        copy_world(engine, &a, &b)?;
        let full = world(engine, &b)?;
        // The copy forgets where the last sync stood: its next sync reads everything.
        full.local.hub.set_sync_mark(
            &vsid,
            &SyncMark { remote: "unknown:1".into(), local: mark.local.clone() },
        )?;
        change(&inc, &vsid)?;
        change(&full, &vsid)?;

        // The hub answers the remembered revision with only what changed since.
        let delta = block_on(inc.remote.export_since(&vsid, &mark.remote))?;
        assert_eq!(delta.since.as_deref(), Some(mark.remote.as_str()), "{what}");
        // At most the change's two and, after a push, the three it wrote itself after reading
        // the hub's revision; never all of them.
        let most = if after_sync { 2 } else { 5 };
        assert!(delta.snapshots.len() <= most, "{what}: {} listed", delta.snapshots.len());
        let everything = block_on(full.remote.export_since(&vsid, "unknown:1"))?;
        assert_eq!(everything.since, None, "{what}: an unknown revision");
        assert!(everything.snapshots.len() >= 3, "{what}: everything");

        let r_inc = block_on(inc.local.sync(&inc.remote, &vsid, &NoProgress))?;
        let r_full = block_on(full.local.sync(&full.remote, &vsid, &NoProgress))?;
        assert_eq!(summary(&r_inc), summary(&r_full), "{what}: reports");
        let local = state(&inc.local.hub, &vsid)?;
        assert_eq!(local, state(&full.local.hub, &vsid)?, "{what}: local stores");
        assert_eq!(local, state(&inc.remote.service.hub, &vsid)?, "{what}: converged");
        assert_eq!(
            state(&inc.remote.service.hub, &vsid)?,
            state(&full.remote.service.hub, &vsid)?,
            "{what}: hubs"
        );
        // Both remember where they stand now, and the next sync has nothing to do.
        for w in [&inc, &full] {
            let again = block_on(w.local.sync(&w.remote, &vsid, &NoProgress))?;
            assert!(again.conflicts.is_empty() && again.snapshots_pushed == 0, "{what}: {again:?}");
            assert_eq!(again.snapshots_pulled + again.metadata_pushed + again.metadata_pulled, 0);
            let mark = w.local.hub.sync_mark(&vsid)?;
            assert!(mark.is_some_and(|m| !m.remote.starts_with("unknown")), "{what}: revisions");
        }
        assert_eq!(state(&inc.local.hub, &vsid)?, state(&full.local.hub, &vsid)?, "{what}");
    }
    Ok(())
}

#[test]
fn incremental_sync_ends_like_a_full_one_on_every_engine() -> anyhow::Result<()> {
    for engine in engines()? {
        compare(&engine, true)?;
        compare(&engine, false)?;
    }
    Ok(())
}

#[test]
fn export_since_falls_back_to_everything_for_unknown_revisions() -> anyhow::Result<()> {
    let engine = strata_testkit::memory_store()?;
    let w = world(&engine, "fallback")?;
    let vsid = setup(&w, true)?;
    let hub = &w.remote.service.hub;
    let now = hub.revision(&vsid)?.ok_or_else(|| anyhow::anyhow!("no revision"))?;
    let (epoch, n) = now.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("{now}"))?;
    let n: u64 = n.parse()?;
    let all = hub.snapshots(&vsid, &Default::default())?.len();

    let current = hub.export_since(&vsid, Some(&now))?;
    assert_eq!((current.since.as_deref(), current.snapshots.len()), (Some(now.as_str()), 0));
    assert_eq!(current.revision.as_deref(), Some(now.as_str()));
    assert_eq!(current.branches.len(), 2, "branches are always listed");
    let earlier = format!("{epoch}:{}", n - 1);
    assert_eq!(hub.export_since(&vsid, Some(&earlier))?.snapshots.len(), 1);
    for unknown in ["", "garbage", "other-epoch:1", &format!("{epoch}:{}", n + 1)] {
        let e = hub.export_since(&vsid, Some(unknown))?;
        assert_eq!((e.since, e.snapshots.len()), (None, all), "revision {unknown:?}");
        assert_eq!(e.revision.as_deref(), Some(now.as_str()));
    }

    // A deletion is listed by id, and a sync then reads everything and undoes it (the
    // local store still has the snapshot).
    hub.delete_snapshot(S3)?;
    let e = hub.export_since(&vsid, Some(&now))?;
    assert_eq!(e.deleted_snapshots, vec![S3.to_string()]);
    block_on(w.local.sync(&w.remote, &vsid, &NoProgress))?;
    assert_eq!(hub.snapshots(&vsid, &Default::default())?.len(), all);

    // A stale remembered revision (another hub's) is a full sync that still works.
    w.local.hub.set_sync_mark(
        &vsid,
        &SyncMark { remote: "other-epoch:7".into(), local: "other-epoch:7".into() },
    )?;
    dev_two(&w.remote.service.hub, &vsid)?;
    let r = block_on(w.local.sync(&w.remote, &vsid, &NoProgress))?;
    assert_eq!(r.snapshots_pulled, 1);
    assert_eq!(state(&w.local.hub, &vsid)?, state(hub, &vsid)?);

    // The hub knows its revision but this store does not know its own: the hub's partial
    // answer (a deletion, a description) is not taken for everything; a full read is.
    let remote = w.local.hub.sync_mark(&vsid)?.ok_or_else(|| anyhow::anyhow!("no mark"))?.remote;
    w.local.hub.set_sync_mark(&vsid, &SyncMark { remote, local: "other-epoch:7".into() })?;
    hub.delete_snapshot(DEV2)?;
    describe(hub, S2, "hub")?;
    describe(&w.local.hub, S1, "mine")?;
    let r = block_on(w.local.sync(&w.remote, &vsid, &NoProgress))?;
    assert_eq!((r.snapshots_pushed, r.metadata_pushed, r.metadata_pulled), (1, 1, 1), "{r:?}");
    assert_eq!(state(&w.local.hub, &vsid)?, state(hub, &vsid)?);
    assert_eq!(hub.snapshot(S1)?.description, "mine");
    assert_eq!(w.local.hub.snapshot(S2)?.description, "hub");
    Ok(())
}
