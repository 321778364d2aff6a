//! The push and pull planners (`strata_hub::plan`) as a table of small histories: each
//! case describes both sides' snapshots and branches and what was last synced, and says
//! which snapshots move in which order, which blobs, what each branch does and which
//! metadata is sent or taken. No store, no remote: the planners are pure.
//!
//! A history is written `ID[<PARENT][=BLOB][~NAME]` per snapshot, parents first: `b<a=B`
//! is snapshot `b`, child of `a`, with blob `B` and named `b` (snapshots are named after
//! their ids unless `~NAME` renames them). A snapshot's depth follows from its parents and
//! its size is ten times its depth. Branches are `NAME@TIP`, with id `br-NAME` on both
//! sides.

use std::collections::{HashMap, HashSet};

use strata_hub::plan::{self, Lookups, PullBranch, PullState, PushState};
use strata_hub::sync::Export;
use strata_hub::{Branch, BranchOutcome, Error, Result, Snapshot, SyncMark, VolumeSet};

/// One history, seen from this store, and the plans it should give.
struct Case {
    what: &'static str,
    /// This store's snapshots (all of them).
    local: &'static str,
    /// The hub's snapshots; `None`: the hub does not have the set.
    remote: Option<&'static str>,
    /// This store's branches.
    local_branches: &'static str,
    /// The hub's branches.
    remote_branches: &'static str,
    /// The snapshots last synced: their synced copies are their metadata before any
    /// rename (`~NAME`). Shared branches and the set itself were synced as they are.
    synced: &'static str,
    /// The blobs whose bytes are here.
    blobs_here: &'static str,
    /// An incremental read: the local snapshots changed since the last sync (the hub's
    /// list, `remote`, is then only what changed there); `None`: both sides read whole.
    changed: Option<&'static str>,
    push: Push,
    /// `None` when the hub does not have the set (nothing to pull).
    pull: Option<Pull>,
}

/// The expected push plan, or the "diverged" error it must fail with.
enum Push {
    Plan(PushPlan),
    Diverged(&'static str),
}

/// The expected push plan.
struct PushPlan {
    /// Snapshot ids sent, in order.
    snapshots: &'static str,
    /// Blobs offered, in order.
    blobs: &'static str,
    /// `NAME:OUTCOME` per local branch, in order of tip depth.
    branches: &'static str,
    /// Snapshot ids whose metadata is sent to be reconciled.
    metadata: &'static str,
    /// Whether the push records a sync mark.
    mark: bool,
}

/// The expected pull plan.
struct Pull {
    /// Snapshot ids taken, in order.
    snapshots: &'static str,
    /// Blobs downloaded, in order.
    blobs: &'static str,
    /// Their bytes.
    bytes: u64,
    /// `NAME:unchanged` or `NAME:import` per hub branch, in order of tip depth.
    branches: &'static str,
    /// `ID:pulled` (the hub's copy replaces this store's), `ID:conflict` (and it is
    /// reported), `ID:quiet` (the same on both sides: only the synced copy is recorded).
    takes: &'static str,
}

const NOTHING: Pull = Pull { snapshots: "", blobs: "", bytes: 0, branches: "", takes: "" };

const CASES: &[Case] = &[
    Case {
        what: "new set: the hub has nothing, everything goes, parents first",
        local: "a=A b<a=B c<b=C",
        remote: None,
        local_branches: "main@c",
        remote_branches: "",
        synced: "",
        blobs_here: "A B C",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "a b c",
            blobs: "A B C",
            branches: "main:created",
            metadata: "",
            // No revision of the hub's to remember.
            mark: false,
        }),
        pull: None,
    },
    Case {
        what: "this store has none of the set's snapshots: the pull takes all",
        local: "",
        remote: Some("a=A b<a=B"),
        local_branches: "",
        remote_branches: "main@b",
        synced: "",
        blobs_here: "",
        changed: None,
        // The hub holds snapshots this store lacks: no mark.
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull {
            snapshots: "a b",
            blobs: "A B",
            bytes: 10 + 20,
            branches: "main:import",
            takes: "",
        }),
    },
    Case {
        what: "nothing to do: the same on both sides, as last synced",
        local: "a=A b<a=B",
        remote: Some("a=A b<a=B"),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:unchanged", ..NOTHING }),
    },
    Case {
        what: "fast-forward push: the hub's tip is an ancestor of this store's",
        local: "a=A b<a=B c<b=C d<c=D",
        remote: Some("a=A b<a=B"),
        local_branches: "main@d",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B C D",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "c d",
            blobs: "C D",
            branches: "main:extended",
            metadata: "",
            mark: true,
        }),
        // The tips differ: the store's import decides (here: this store is ahead).
        pull: Some(Pull { branches: "main:import", ..NOTHING }),
    },
    Case {
        what: "the hub is ahead: a push sends nothing and leaves the branch",
        local: "a=A b<a=B",
        remote: Some("a=A b<a=B c<b=C"),
        local_branches: "main@b",
        remote_branches: "main@c",
        synced: "a b",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:target_ahead",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull {
            snapshots: "c",
            blobs: "C",
            bytes: 30,
            branches: "main:import",
            takes: "",
        }),
    },
    Case {
        what: "diverged: each side went on from b differently",
        local: "a=A b<a=B x<b=X",
        remote: Some("a=A b<a=B y<b=Y"),
        local_branches: "main@x",
        remote_branches: "main@y",
        synced: "a b",
        blobs_here: "A B X",
        changed: None,
        push: Push::Diverged("branch \"main\" is at x locally and at y on the hub"),
        // A pull takes the hub's snapshots; the branch import then refuses.
        pull: Some(Pull {
            snapshots: "y",
            blobs: "Y",
            bytes: 30,
            branches: "main:import",
            takes: "",
        }),
    },
    Case {
        what: "a fork here creates a branch on the hub, shallower tips first",
        local: "a=A b<a=B c<b=C f<a=F",
        remote: Some("a=A b<a=B c<b=C"),
        // As the store lists them, by name.
        local_branches: "main@c topic@f",
        remote_branches: "main@c",
        synced: "a b c",
        blobs_here: "A B C F",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "f",
            blobs: "F",
            branches: "topic:created main:unchanged",
            metadata: "",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:unchanged", ..NOTHING }),
    },
    Case {
        what: "this store's main is behind the hub's, which is on its other branch: no mark",
        local: "a=A b<a=B c<b=C d<c=D",
        remote: Some("a=A b<a=B c<b=C"),
        local_branches: "dev@d main@b",
        remote_branches: "main@c",
        synced: "a b c",
        blobs_here: "A B C D",
        changed: None,
        // Every snapshot and branch of the hub's is here, but main would stay behind.
        push: Push::Plan(PushPlan {
            snapshots: "d",
            blobs: "D",
            branches: "main:target_ahead dev:created",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull { branches: "main:import", ..NOTHING }),
    },
    Case {
        what: "the hub has a branch this store lacks, on snapshots it has: no mark",
        local: "a=A b<a=B c<b=C",
        remote: Some("a=A b<a=B c<b=C"),
        local_branches: "main@c",
        remote_branches: "main@c topic@b",
        synced: "a b c",
        blobs_here: "A B C",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull { branches: "topic:import main:unchanged", ..NOTHING }),
    },
    Case {
        what: "the hub has a snapshot no branch reaches (an interrupted push): no mark",
        local: "a=A b<a=B",
        remote: Some("a=A b<a=B c<b=C"),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull {
            snapshots: "c",
            blobs: "C",
            bytes: 30,
            branches: "main:unchanged",
            takes: "",
        }),
    },
    Case {
        what: "a fork on the hub: the pull imports the new branch, shallower tips first",
        local: "a=A b<a=B c<b=C",
        remote: Some("a=A b<a=B c<b=C g<a=G"),
        local_branches: "main@c",
        remote_branches: "main@c topic@g",
        synced: "a b c",
        blobs_here: "A B C",
        changed: None,
        // A branch of the hub's is not here: no mark.
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull {
            snapshots: "g",
            blobs: "G",
            bytes: 20,
            branches: "topic:import main:unchanged",
            takes: "",
        }),
    },
    Case {
        what: "blobs of snapshots the hub has are not offered; each blob once",
        local: "a=A b<a=B c<b=C d<c=C e<d=A",
        remote: Some("a=A b<a=B"),
        local_branches: "main@e",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B C",
        changed: None,
        // A again: e is new, and the hub says which of the offered blobs it lacks.
        push: Push::Plan(PushPlan {
            snapshots: "c d e",
            blobs: "C A",
            branches: "main:extended",
            metadata: "",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:import", ..NOTHING }),
    },
    Case {
        what: "a snapshot without a blob here is sent, with nothing to upload for it",
        local: "a=A b<a c<b=C",
        remote: Some("a=A"),
        local_branches: "main@c",
        remote_branches: "main@a",
        synced: "a",
        blobs_here: "A C",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "b c",
            blobs: "C",
            branches: "main:extended",
            metadata: "",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:import", ..NOTHING }),
    },
    Case {
        what: "a pull downloads only the blobs missing here, each once",
        local: "a=A b<a=B",
        remote: Some("a=A b<a=B c<b=C d<c=D e<d=D"),
        local_branches: "main@b",
        remote_branches: "main@e",
        synced: "a b",
        // C is here already (another set refers to it); D is not. D counts d's size.
        blobs_here: "A B C",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:target_ahead",
            metadata: "",
            mark: false,
        }),
        pull: Some(Pull {
            snapshots: "c d e",
            blobs: "D",
            bytes: 40,
            branches: "main:import",
            takes: "",
        }),
    },
    Case {
        what: "renamed here since the last sync: sent, and a pull leaves it (UseCurrent)",
        local: "a=A b<a=B~mine",
        remote: Some("a=A b<a=B"),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "b",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:unchanged", ..NOTHING }),
    },
    Case {
        what: "renamed on the hub only: a pull takes it; a push lets the hub decide",
        local: "a=A b<a=B",
        remote: Some("a=A b<a=B~theirs"),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "b",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:unchanged", takes: "b:pulled", ..NOTHING }),
    },
    Case {
        what: "renamed on both sides differently: the hub's copy wins, reported",
        local: "a=A b<a=B~mine",
        remote: Some("a=A b<a=B~theirs"),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "b",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:unchanged", takes: "b:conflict", ..NOTHING }),
    },
    Case {
        what: "the same on both sides but never synced: only the synced copies are recorded",
        local: "a=A b<a=B",
        remote: Some("a=A b<a=B"),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "",
        blobs_here: "A B",
        changed: None,
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "a b",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:unchanged", takes: "a:quiet b:quiet", ..NOTHING }),
    },
    Case {
        what: "incremental: what the hub does not list was synced; ancestry is the store's",
        local: "a=A b<a=B c<b=C",
        // Nothing changed on the hub since the last sync.
        remote: Some(""),
        local_branches: "main@c",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B C",
        changed: Some("c"),
        // The sync's own mark is kept.
        push: Push::Plan(PushPlan {
            snapshots: "c",
            blobs: "C",
            branches: "main:extended",
            metadata: "",
            mark: true,
        }),
        pull: Some(Pull { branches: "main:import", ..NOTHING }),
    },
    Case {
        what: "incremental: a changed snapshot the hub does not list is there; its metadata goes",
        local: "a=A b<a=B~mine",
        remote: Some(""),
        local_branches: "main@b",
        remote_branches: "main@b",
        synced: "a b",
        blobs_here: "A B",
        changed: Some("b"),
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "b",
            mark: true,
        }),
        // Not listed: unchanged on the hub, nothing to take.
        pull: Some(Pull { branches: "main:unchanged", ..NOTHING }),
    },
    Case {
        what: "incremental: the hub forked; a tip it does not list has its depth here",
        local: "a=A b<a=B c<b=C",
        remote: Some("g<a=G"),
        local_branches: "main@c",
        remote_branches: "main@c topic@g",
        synced: "a b c",
        blobs_here: "A B C",
        changed: Some(""),
        push: Push::Plan(PushPlan {
            snapshots: "",
            blobs: "",
            branches: "main:unchanged",
            metadata: "",
            mark: true,
        }),
        // c (depth 3) is deeper than g (depth 2), though the hub lists only g.
        pull: Some(Pull {
            snapshots: "g",
            blobs: "G",
            bytes: 20,
            branches: "topic:import main:unchanged",
            takes: "",
        }),
    },
];

const VSID: &str = "vs-1";
/// The revisions of a push alone: this store's before it read, the hub's export's.
const LOCAL_REV: &str = "local:5";
const REMOTE_REV: &str = "remote:7";
/// The mark an incremental sync brings.
fn sync_mark() -> SyncMark {
    SyncMark { remote: "remote:3".into(), local: "local:2".into() }
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// The snapshots of a history, in the order written; a parent not written is one of
/// `known` (an incremental list names parents synced before).
fn history(spec: &str, known: &[Snapshot]) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for word in words(spec) {
        let (word, name) = word.split_once('~').map_or((word, None), |(w, n)| (w, Some(n)));
        let (word, blob) = word.split_once('=').map_or((word, None), |(w, b)| (w, Some(b)));
        let (id, parent) = word.split_once('<').map_or((word, None), |(i, p)| (i, Some(p)));
        let depth = match parent {
            None => 1,
            Some(p) => {
                let parent = out.iter().chain(known).find(|s| s.id == p);
                parent.unwrap_or_else(|| panic!("{p} comes before {id}")).depth + 1
            }
        };
        out.push(Snapshot {
            id: id.into(),
            parent_id: parent.map(Into::into),
            volset_id: VSID.into(),
            name: name.unwrap_or(id).into(),
            blob_id: blob.map(Into::into),
            prev_blob_id: None,
            depth,
            description: String::new(),
            attrs: Default::default(),
            size: if blob.is_some() { 10 * depth } else { 0 },
            creator: "tester".into(),
            owner: "tester".into(),
            created_at: 0,
            updated_at: 0,
        });
    }
    out
}

fn branches(spec: &str) -> Vec<Branch> {
    words(spec)
        .into_iter()
        .map(|word| {
            let (name, tip) = word.split_once('@').unwrap_or_else(|| panic!("{word}: NAME@TIP"));
            Branch {
                id: format!("br-{name}"),
                volset_id: VSID.into(),
                name: name.into(),
                tip: tip.into(),
                attrs: Default::default(),
            }
        })
        .collect()
}

fn volset() -> VolumeSet {
    VolumeSet {
        id: VSID.into(),
        name: "set".into(),
        prefix: String::new(),
        kind: Default::default(),
        description: String::new(),
        attrs: Default::default(),
        size: 0,
        creator: "tester".into(),
        owner: "tester".into(),
        created_at: 0,
        updated_at: 0,
    }
}

/// This store as the planners' [`Lookups`] see it: its whole history and its blobs.
struct Here {
    snapshots: HashMap<String, Snapshot>,
    blobs: HashSet<String>,
}

impl Lookups for Here {
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        if !self.snapshots.contains_key(ancestor) {
            return Ok(false);
        }
        let mut next = Some(descendant.to_string());
        while let Some(id) = next {
            if id == ancestor {
                return Ok(true);
            }
            next = self.snapshots.get(&id).and_then(|s| s.parent_id.clone());
        }
        Ok(false)
    }
    fn has_blob(&self, id: &str) -> Result<bool> {
        Ok(self.blobs.contains(id))
    }
}

/// Everything a case's plans are made from.
struct World {
    here: Here,
    push: PushState,
    pull: PullState,
    target: Option<Export>,
}

fn world(case: &Case) -> World {
    let local = history(case.local, &[]);
    let local_branches = branches(case.local_branches);
    let remote_branches = branches(case.remote_branches);
    let synced: HashSet<&str> = words(case.synced).into_iter().collect();
    let here = Here {
        snapshots: local.iter().map(|s| (s.id.clone(), s.clone())).collect(),
        blobs: words(case.blobs_here).into_iter().map(Into::into).collect(),
    };
    let target = case.remote.map(|remote| Export {
        volumeset: volset(),
        branches: remote_branches.clone(),
        snapshots: history(remote, if case.changed.is_some() { &local } else { &[] }),
        since: case.changed.map(|_| sync_mark().remote),
        deleted_snapshots: Vec::new(),
        revision: Some(REMOTE_REV.into()),
    });
    // The synced copies: the metadata before any rename.
    let snap_inits: HashMap<_, _> = local
        .iter()
        .chain(target.iter().flat_map(|t| &t.snapshots))
        .filter(|s| synced.contains(s.id.as_str()))
        .map(|s| (s.id.clone(), strata_hub::SnapshotMeta { name: s.id.clone(), ..s.meta() }))
        .collect();
    let shared = |b: &&Branch| remote_branches.iter().any(|r| r.id == b.id);
    let branch_inits: HashMap<_, _> =
        local_branches.iter().filter(shared).map(|b| (b.id.clone(), b.meta())).collect();
    // An incremental read lists only the changed snapshots of this store's.
    let read: Vec<Snapshot> = match case.changed {
        Some(changed) => {
            let changed = words(changed);
            local.iter().filter(|s| changed.contains(&s.id.as_str())).cloned().collect()
        }
        None => local.clone(),
    };
    let depth_here = |tip: &str| here.snapshots.get(tip).map(|s| (tip.to_string(), s.depth));
    let push = PushState {
        volset: volset(),
        snapshots: read.clone(),
        snap_inits: snap_inits.clone(),
        complete: case.changed.is_none(),
        branches: local_branches.clone(),
        tip_depths: local_branches.iter().filter_map(|b| depth_here(&b.tip)).collect(),
        volset_init: target.as_ref().map(|_| volset().meta()),
        branch_inits: branch_inits.clone(),
        revision: case.changed.is_none().then(|| LOCAL_REV.into()),
        mark: case.changed.map(|_| sync_mark()),
    };
    let listed: HashSet<&str> =
        target.iter().flat_map(|t| &t.snapshots).map(|s| s.id.as_str()).collect();
    let pull = PullState {
        snapshots: read.into_iter().map(|s| (s.id.clone(), s)).collect(),
        snap_inits,
        branches: local_branches.into_iter().map(|b| (b.id.clone(), b)).collect(),
        tip_depths: match case.changed {
            Some(_) => remote_branches
                .iter()
                .filter(|b| !listed.contains(b.tip.as_str()))
                .filter_map(|b| depth_here(&b.tip))
                .collect(),
            None => HashMap::new(),
        },
        branch_inits,
    };
    World { here, push, pull, target }
}

fn ids(snaps: &[Snapshot]) -> String {
    snaps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(" ")
}

fn outcome_name(o: BranchOutcome) -> &'static str {
    match o {
        BranchOutcome::Created => "created",
        BranchOutcome::Extended => "extended",
        BranchOutcome::Unchanged => "unchanged",
        BranchOutcome::TargetAhead => "target_ahead",
    }
}

fn check_push(case: &Case, w: &World) {
    let what = case.what;
    let (plan, want) = match (&case.push, plan::push(&w.push, w.target.as_ref(), &w.here)) {
        (Push::Diverged(message), Err(Error::Diverged(got))) => {
            assert_eq!(got, *message, "{what}: the error");
            return;
        }
        (Push::Diverged(_), got) => panic!("{what}: wanted diverged, got {got:?}"),
        (Push::Plan(_), Err(err)) => panic!("{what}: push plan failed: {err}"),
        (Push::Plan(want), Ok(plan)) => (plan, want),
    };
    assert_eq!(ids(&plan.snapshots), want.snapshots, "{what}: snapshots sent");
    assert_eq!(plan.blobs.join(" "), want.blobs, "{what}: blobs offered");
    let got: Vec<String> =
        plan.branches.iter().map(|(b, o)| format!("{}:{}", b.name, outcome_name(*o))).collect();
    assert_eq!(got.join(" "), want.branches, "{what}: branch outcomes");
    let got: Vec<&str> = plan.metadata.snapshots.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(got.join(" "), want.metadata, "{what}: snapshot metadata sent");
    // The set and the branches were synced as they are: nothing to send for them.
    assert!(plan.metadata.volumeset.is_none(), "{what}: volume set metadata sent");
    assert!(plan.metadata.branches.is_empty(), "{what}: branch metadata sent");
    let want_mark = match (want.mark, case.changed) {
        (false, _) => None,
        (true, Some(_)) => Some(sync_mark()),
        (true, None) => Some(SyncMark { remote: REMOTE_REV.into(), local: LOCAL_REV.into() }),
    };
    assert_eq!(plan.mark, want_mark, "{what}: mark");

    // Rules every plan keeps. Parents first: each sent snapshot's parent was sent before
    // it or is on the hub already (listed, or synced before when the hub lists only what
    // changed).
    let on_hub: HashSet<&str> = w
        .target
        .iter()
        .flat_map(|t| &t.snapshots)
        .map(|s| s.id.as_str())
        .chain(if w.push.complete { Vec::new() } else { words(case.synced) })
        .collect();
    let mut sent = HashSet::new();
    for s in &plan.snapshots {
        if let Some(p) = &s.parent_id {
            assert!(sent.contains(p.as_str()) || on_hub.contains(p.as_str()), "{what}: {p}");
        }
        sent.insert(s.id.as_str());
    }
    // What was sent is synced; so are the branches the push creates on the hub.
    let synced: Vec<&str> = plan.synced.snapshots.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(synced.join(" "), ids(&plan.snapshots), "{what}: synced snapshots");
    let created: Vec<&str> = plan
        .branches
        .iter()
        .filter(|(_, o)| *o == BranchOutcome::Created)
        .map(|(b, _)| b.id.as_str())
        .collect();
    let synced: Vec<&str> = plan.synced.branches.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(synced, created, "{what}: synced branches");
    // Only created and extended branches are sent.
    let moves: Vec<String> = plan.moves().into_iter().map(|b| b.name).collect();
    let want: Vec<String> = plan
        .branches
        .iter()
        .filter(|(_, o)| matches!(o, BranchOutcome::Created | BranchOutcome::Extended))
        .map(|(b, _)| b.name.clone())
        .collect();
    assert_eq!(moves, want, "{what}: branches sent");
    assert_eq!(plan.synced.volsets.len(), usize::from(w.target.is_none()), "{what}: set synced");
}

fn check_pull(case: &Case, w: &World) {
    let what = case.what;
    let (Some(want), Some(target)) = (&case.pull, &w.target) else {
        assert!(case.pull.is_none(), "{what}: a pull needs the hub to have the set");
        return;
    };
    let plan = plan::pull(&w.pull, target, &w.here)
        .unwrap_or_else(|err| panic!("{what}: pull plan failed: {err}"));
    assert_eq!(ids(&plan.snapshots), want.snapshots, "{what}: snapshots taken");
    assert_eq!(plan.blobs.join(" "), want.blobs, "{what}: blobs downloaded");
    assert_eq!(plan.bytes, want.bytes, "{what}: bytes");
    let got: Vec<String> = plan
        .branches
        .iter()
        .map(|step| match step {
            PullBranch::Unchanged(b) => format!("{}:unchanged", b.name),
            PullBranch::Import(b) => format!("{}:import", b.name),
        })
        .collect();
    assert_eq!(got.join(" "), want.branches, "{what}: branches");
    let got: Vec<String> = plan
        .snapshot_meta
        .iter()
        .map(|t| {
            let how = match (&t.conflict, t.pulled) {
                (Some(_), _) => "conflict",
                (None, true) => "pulled",
                (None, false) => "quiet",
            };
            format!("{}:{how}", t.id)
        })
        .collect();
    assert_eq!(got.join(" "), want.takes, "{what}: snapshot metadata taken");
    // What is taken is always the hub's copy.
    for t in &plan.snapshot_meta {
        let theirs = target.snapshots.iter().find(|s| s.id == t.id).map(|s| s.meta());
        assert_eq!(Some(&t.meta), theirs.as_ref(), "{what}: {} takes the hub's copy", t.id);
    }
    assert!(plan.branch_meta.is_empty(), "{what}: branch metadata taken");
}

#[test]
fn push_and_pull_plans_of_small_histories() {
    for case in CASES {
        let w = world(case);
        check_push(case, &w);
        check_pull(case, &w);
    }
}

#[test]
fn a_conflict_shows_all_three_copies() {
    let tgt = strata_hub::SnapshotMeta {
        name: "theirs".into(),
        description: String::new(),
        attrs: Default::default(),
    };
    let cur = strata_hub::SnapshotMeta { name: "mine".into(), ..tgt.clone() };
    let init = strata_hub::SnapshotMeta { name: "b".into(), ..tgt.clone() };
    let take = plan::take("snapshot", "b", &tgt, &cur, Some(&init)).expect("the hub's copy wins");
    assert!(take.pulled);
    assert_eq!(take.meta, tgt);
    let conflict = take.conflict.expect("a conflict");
    assert_eq!((conflict.kind, conflict.id.as_str()), ("snapshot", "b"));
    assert_eq!(conflict.initial["name"], "b");
    assert_eq!(conflict.current["name"], "mine");
    assert_eq!(conflict.target["name"], "theirs");
    // Changed here only: nothing to take, the push sends it.
    assert_eq!(plan::take("snapshot", "b", &init, &cur, Some(&init)), None);
}
