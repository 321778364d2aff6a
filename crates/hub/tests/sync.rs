//! The three-way sync rules as a table of cases, for volume sets, snapshots and branches,
//! on the in-memory, redb and etcd engines; and push of new branches, extensions, a target
//! ahead and diverged histories.

use strata_hub::{
    BranchMeta, BranchOutcome, Error, Local, NoProgress, SnapshotMeta, VolumeSetMeta,
};

use crate::util::{Engine, Pair, another_local, block_on, engines, pair, snap};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    VolumeSet,
    Snapshot,
    Branch,
}

/// One row: who changes the object, and what both sides hold afterwards.
struct Case {
    name: &'static str,
    local: Option<&'static str>,
    remote: Option<&'static str>,
    /// After a push: (local, remote, conflict reported).
    push: (&'static str, &'static str, bool),
    /// After a pull: (local, remote, conflict reported).
    pull: (&'static str, &'static str, bool),
}

const ORIGINAL: &str = "original";

const CASES: &[Case] = &[
    // cur == init == tgt: NoAction.
    Case {
        name: "no change",
        local: None,
        remote: None,
        push: (ORIGINAL, ORIGINAL, false),
        pull: (ORIGINAL, ORIGINAL, false),
    },
    // cur == init != tgt: UseTgtNoConflict.
    Case {
        name: "hub changed",
        local: None,
        remote: Some("hub"),
        push: ("hub", "hub", false),
        pull: ("hub", "hub", false),
    },
    // tgt == init != cur: UseCurrent (a pull never writes the target).
    Case {
        name: "local changed",
        local: Some("mine"),
        remote: None,
        push: ("mine", "mine", false),
        pull: ("mine", ORIGINAL, false),
    },
    // tgt == cur != init: UseTgtNoConflict.
    Case {
        name: "same change",
        local: Some("same"),
        remote: Some("same"),
        push: ("same", "same", false),
        pull: ("same", "same", false),
    },
    // all three differ: UseTgtConflict, the target wins.
    Case {
        name: "conflict",
        local: Some("mine"),
        remote: Some("hub"),
        push: ("hub", "hub", true),
        pull: ("hub", "hub", true),
    },
];

struct Fixture {
    pair: Pair,
    vsid: String,
    snap_id: String,
    branch_id: String,
}

fn fixture(engine: &Engine) -> anyhow::Result<Fixture> {
    let pair = pair(engine, "alice")?;
    let vs = pair.local.hub.create_volset("set", ORIGINAL, "alice")?;
    let (branch, s1) = pair.local.hub.fork(&vs.id, None, ORIGINAL, &snap("one"))?;
    let mut meta = s1.meta();
    meta.description = ORIGINAL.into();
    pair.local.hub.update_snapshot_meta(&s1.id, &meta)?;
    pair.local.hub.extend(&vs.id, &s1.id, &snap("two"))?;
    let report = block_on(pair.local.push(&pair.remote, &vs.id, &NoProgress))?;
    assert_eq!(report.snapshots_pushed, 2);
    Ok(Fixture { pair, vsid: vs.id, snap_id: s1.id, branch_id: branch.id })
}

/// Reads the compared field of `kind` on `hub`.
fn value(hub: &strata_hub::Hub, f: &Fixture, kind: Kind) -> anyhow::Result<String> {
    Ok(match kind {
        Kind::VolumeSet => hub.volset(&f.vsid)?.description,
        Kind::Snapshot => hub.snapshot(&f.snap_id)?.description,
        Kind::Branch => hub.find_branch(&f.vsid, &f.branch_id)?.name,
    })
}

fn change(hub: &strata_hub::Hub, f: &Fixture, kind: Kind, to: &str) -> anyhow::Result<()> {
    match kind {
        Kind::VolumeSet => {
            let mut meta: VolumeSetMeta = hub.volset(&f.vsid)?.meta();
            meta.description = to.into();
            hub.update_volset_meta(&f.vsid, &meta)?;
        }
        Kind::Snapshot => {
            let mut meta: SnapshotMeta = hub.snapshot(&f.snap_id)?.meta();
            meta.description = to.into();
            hub.update_snapshot_meta(&f.snap_id, &meta)?;
        }
        Kind::Branch => {
            // A rename: the branch keeps its id.
            let mut meta: BranchMeta = hub.find_branch(&f.vsid, &f.branch_id)?.meta();
            meta.name = to.into();
            hub.update_branch_meta(&f.vsid, &f.branch_id, &meta)?;
        }
    }
    Ok(())
}

fn run_table(engine: &Engine, pull: bool) -> anyhow::Result<()> {
    for kind in [Kind::VolumeSet, Kind::Snapshot, Kind::Branch] {
        for case in CASES {
            let what = format!(
                "{} {:?} {} on {}",
                if pull { "pull" } else { "push" },
                kind,
                case.name,
                engine.engine
            );
            let f = fixture(engine)?;
            let remote_hub = &f.pair.remote.service.hub;
            if let Some(to) = case.local {
                change(&f.pair.local.hub, &f, kind, to)?;
            }
            if let Some(to) = case.remote {
                change(remote_hub, &f, kind, to)?;
            }
            let report = if pull {
                block_on(f.pair.local.pull(&f.pair.remote, &f.vsid, &NoProgress))?
            } else {
                block_on(f.pair.local.push(&f.pair.remote, &f.vsid, &NoProgress))?
            };
            let (want_local, want_remote, want_conflict) = if pull { case.pull } else { case.push };
            assert_eq!(value(&f.pair.local.hub, &f, kind)?, want_local, "{what}: local");
            assert_eq!(value(remote_hub, &f, kind)?, want_remote, "{what}: hub");
            assert_eq!(
                !report.conflicts.is_empty(),
                want_conflict,
                "{what}: conflicts {:?}",
                report.conflicts
            );
            if let Some(conflict) = report.conflicts.first() {
                // Side by side: initial, current, target.
                let text = |v: &serde_json::Value| v.to_string();
                assert!(text(&conflict.initial).contains(ORIGINAL), "{what}: {conflict:?}");
                assert!(text(&conflict.current).contains("mine"), "{what}: {conflict:?}");
                assert!(text(&conflict.target).contains("hub"), "{what}: {conflict:?}");
            }
            // A second push or pull finds nothing more to do, and the branch was renamed,
            // not duplicated.
            let again = block_on(f.pair.local.push(&f.pair.remote, &f.vsid, &NoProgress))?;
            assert!(again.conflicts.is_empty(), "{what}: second round {again:?}");
            assert_eq!(remote_hub.branches(&f.vsid)?.len(), 1, "{what}: branches on the hub");
            assert_eq!(
                value(&f.pair.local.hub, &f, kind)?,
                value(remote_hub, &f, kind)?,
                "{what}: converged"
            );
        }
    }
    Ok(())
}

#[test]
fn push_table_on_every_engine() -> anyhow::Result<()> {
    for engine in engines()? {
        run_table(&engine, false)?;
    }
    Ok(())
}

#[test]
fn pull_table_on_every_engine() -> anyhow::Result<()> {
    for engine in engines()? {
        run_table(&engine, true)?;
    }
    Ok(())
}

fn tip_on(local: &Local, vsid: &str, branch: &str) -> anyhow::Result<String> {
    Ok(local.hub.find_branch(vsid, branch)?.tip)
}

#[test]
fn push_new_branch_extension_target_ahead_and_diverged() -> anyhow::Result<()> {
    for engine in engines()? {
        let f = fixture(&engine)?;
        let (a, remote) = (&f.pair.local, &f.pair.remote);
        let hub = &remote.service.hub;
        let main_tip = tip_on(a, &f.vsid, ORIGINAL)?;

        // An extension.
        let (_, s3) = a.hub.extend(&f.vsid, &main_tip, &snap("three"))?;
        let report = block_on(a.push(remote, &f.vsid, &NoProgress))?;
        assert_eq!(report.snapshots_pushed, 1);
        assert!(
            report.branches.contains(&(ORIGINAL.into(), BranchOutcome::Extended)),
            "{report:?}"
        );
        assert_eq!(hub.find_branch(&f.vsid, ORIGINAL)?.tip, s3.id);

        // A new branch forked off an old snapshot.
        let (_, d1) = a.hub.fork(&f.vsid, Some(&f.snap_id), "dev", &snap("dev-1"))?;
        let report = block_on(a.push(remote, &f.vsid, &NoProgress))?;
        assert!(report.branches.contains(&("dev".into(), BranchOutcome::Created)), "{report:?}");
        assert_eq!(hub.find_branch(&f.vsid, "dev")?.tip, d1.id);
        assert_eq!(hub.snapshot(&d1.id)?.creator, "alice", "creator comes from the hub's user");

        // Another store pulls and moves ahead; the first one's push is then a no-op.
        let b = another_local(&engine)?;
        let pulled = block_on(b.pull(remote, "set", &NoProgress))?;
        assert_eq!(pulled.snapshots_pulled, 4);
        let (_, s4) = b.hub.extend(&f.vsid, &s3.id, &snap("four"))?;
        block_on(b.push(remote, &f.vsid, &NoProgress))?;
        let report = block_on(a.push(remote, &f.vsid, &NoProgress))?;
        assert!(
            report.branches.contains(&(ORIGINAL.into(), BranchOutcome::TargetAhead)),
            "{report:?}"
        );
        assert_eq!(hub.find_branch(&f.vsid, ORIGINAL)?.tip, s4.id);

        // The first store extends its (old) tip: the histories diverged.
        let (_, other4) = a.hub.extend(&f.vsid, &s3.id, &snap("four, elsewhere"))?;
        let err = block_on(a.push(remote, &f.vsid, &NoProgress)).unwrap_err();
        assert!(
            matches!(err, Error::Diverged(_)) && err.to_string().contains("history diverged"),
            "{err}"
        );
        assert!(hub.snapshot(&other4.id).is_err(), "nothing was sent");
        assert_eq!(hub.find_branch(&f.vsid, ORIGINAL)?.tip, s4.id);
        // A pull reports it too.
        assert!(matches!(block_on(a.pull(remote, &f.vsid, &NoProgress)), Err(Error::Diverged(_))));
    }
    Ok(())
}
