//! `strata volumeset`, `strata volume`, `strata log`, `strata push|pull|sync`: filesystem
//! volumes with snapshots on branches, and their exchange with a hub.
//!
//! Local layout: the volume store (volume sets, snapshots, branches, volumes, and the
//! copies last synced) in DATA-DIR/volumes/store.redb, or with `[kv] engine = "etcd"` in
//! etcd under the prefix `volumes/`; each volume a directory DATA-DIR/volumes/<id>/; the
//! snapshot blobs in DATA-DIR/blobs/. `strata serve` holds DATA-DIR/strata.redb, not these,
//! so volume commands work while it runs.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use strata_hub::{
    Branch, Client, Local, NewSnapshot, Progress, Query, Report, Snapshot, Volume, VolumeSet,
};
use strata_volume::{BlobId, BlobStore, Manifest};

use crate::config::Config;
use crate::exit::Failure;
use crate::exit::categorized;

/// Volume sets: create, ls.
#[derive(Debug, Args)]
pub(crate) struct VolumesetArgs {
    #[command(subcommand)]
    command: VolumesetCommand,
}

#[derive(Debug, Subcommand)]
enum VolumesetCommand {
    /// Create a volume set and print it.
    Create {
        /// Its name (unique among yours).
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Print `{"id", "name", ...}`.
        #[arg(long)]
        json: bool,
    },
    /// List volume sets.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Volumes: create, ls, snapshot.
#[derive(Debug, Args)]
pub(crate) struct VolumeArgs {
    #[command(subcommand)]
    command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
enum VolumeCommand {
    /// Make a volume (a directory under DATA-DIR/volumes/) of a volume set, empty or with
    /// the files of a snapshot, and print it.
    Create {
        /// The volume set's name or id.
        volset: String,
        /// The snapshot (name or id) whose files it starts with; its whole chain of blobs
        /// must be here (`strata pull` fetches them).
        #[arg(long, value_name = "SNAPSHOT")]
        from: Option<String>,
        /// The volume's name [default: VOLSET-N].
        #[arg(long)]
        name: Option<String>,
        /// Print `{"id", "name", "path", ...}`.
        #[arg(long)]
        json: bool,
    },
    /// List volumes.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Record a snapshot of a volume's directory: the difference from the snapshot it is
    /// based on, as a content-addressed blob. It extends the branch whose tip the base
    /// is, or forks a new branch when the base is not a tip (or for a first snapshot).
    Snapshot {
        /// The volume's name, id or path.
        volume: String,
        /// The snapshot's name.
        #[arg(long)]
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// The new branch's name when this snapshot forks one [default: main when free,
        /// else the volume's name].
        #[arg(long)]
        branch: Option<String>,
        /// Print the snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a snapshot's metadata (name, description, attributes); synced three ways.
    Edit {
        /// The volume set's name or id.
        volset: String,
        /// The snapshot's name or id.
        snapshot: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// Set an attribute, KEY=VALUE (repeatable); KEY= removes it.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
    },
    /// Rename a branch (synced as a rename, matched by the branch's id).
    RenameBranch {
        /// The volume set's name or id.
        volset: String,
        /// The branch's current name or id.
        old: String,
        /// Its new name (no `:` or `*`).
        new: String,
    },
    /// List a volume set's snapshots.
    Snapshots {
        /// The volume set's name or id.
        volset: String,
        /// Only those on this branch.
        #[arg(long)]
        branch: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// `strata log VOLSET`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// The volume set's name or id.
    volset: String,
    /// Print `{"volumeset", "branches", "snapshots"}` instead of the graph.
    #[arg(long)]
    json: bool,
}

/// `strata push|pull|sync VOLSET --remote URL --token TOKEN`.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    /// The volume set's name or id (for pull, as the hub knows it when it is not here yet).
    volset: String,
    /// The hub's URL, http://HOST:PORT.
    #[arg(long, value_name = "URL")]
    remote: String,
    /// Your bearer token on that hub (`strata hub token create USER` on the hub's machine).
    #[arg(long, value_name = "TOKEN", env = "STRATA_HUB_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

struct Ctx {
    local: Local,
    data_dir: PathBuf,
    user: String,
}

fn open(config: &Config, data_dir: &Path) -> anyhow::Result<Ctx> {
    let hub =
        super::hub::open_store(config, &data_dir.join("volumes").join("store.redb"), "volumes/")?;
    let blobs_dir = data_dir.join("blobs");
    let blobs =
        BlobStore::open(&blobs_dir).with_context(|| format!("open {}", blobs_dir.display()))?;
    Ok(Ctx {
        local: Local { hub, blobs },
        data_dir: data_dir.to_path_buf(),
        user: config.hub.local_user(),
    })
}

fn hub_err<T>(r: strata_hub::Result<T>) -> anyhow::Result<T> {
    r.map_err(categorized)
}

fn vol_err<T>(r: strata_volume::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::Error::new(Failure { category: e.category(), message: e.to_string() }))
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(crate) fn run_volumeset(a: VolumesetArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    let ctx = open(c, d)?;
    let hub = &ctx.local.hub;
    match a.command {
        VolumesetCommand::Create { name, description, json } => {
            let vs = hub_err(hub.create_volset(&name, &description, &ctx.user))?;
            if json {
                print(&serde_json::to_string(&vs)?)
            } else {
                print(&format!("created volume set {} ({})", vs.name, vs.id))
            }
        }
        VolumesetCommand::Ls { json } => {
            let all = hub_err(
                hub.volsets(&Query { sort: strata_hub::SortBy::Name, ..Query::default() }),
            )?;
            if json {
                return print(&serde_json::to_string(&all)?);
            }
            let mut out =
                format!("{:<24} {:<36} {:>9} {:>8}  OWNER", "NAME", "ID", "SNAPSHOTS", "BRANCHES");
            for vs in &all {
                let snaps = hub_err(hub.snapshots(&vs.id, &Query::default()))?.len();
                let branches = hub_err(hub.branches(&vs.id))?.len();
                out.push_str(&format!(
                    "\n{:<24} {:<36} {:>9} {:>8}  {}",
                    vs.name, vs.id, snaps, branches, vs.owner
                ));
            }
            print(&out)
        }
    }
}

fn volume_json(v: &Volume) -> serde_json::Value {
    json!({
        "id": v.id, "name": v.name, "path": v.path, "volset_id": v.volset_id,
        "snapshot_id": v.snapshot_id, "branch_id": v.branch_id, "created_at": v.created_at,
    })
}

/// The blob ids of `snap`'s chain, root first; each must be in `blobs`.
fn chain_blobs(ctx: &Ctx, snap: &Snapshot) -> anyhow::Result<Vec<BlobId>> {
    let mut ids = Vec::new();
    for s in hub_err(ctx.local.hub.chain(&snap.id))? {
        let Some(blob) = &s.blob_id else {
            anyhow::bail!(Failure {
                category: strata_kv::Category::FailedPrecondition,
                message: format!("snapshot {} has no blob here; pull it first", s.id),
            });
        };
        let id: BlobId =
            blob.parse().map_err(|e| anyhow::anyhow!("snapshot {}: bad blob id: {e}", s.id))?;
        if !ctx.local.blobs.has(&id) {
            anyhow::bail!(Failure {
                category: strata_kv::Category::FailedPrecondition,
                message: format!(
                    "blob {id} of snapshot {} is not here; `strata pull` fetches it",
                    s.id
                ),
            });
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Where a volume's last manifest (with the stat cache that spares hashing unchanged files)
/// is kept: DATA-DIR/volumes/<id>.manifest.json. A cache: when it is missing, stale or
/// unreadable, the base snapshot's blob supplies the manifest.
fn manifest_path(ctx: &Ctx, volume_id: &str) -> PathBuf {
    ctx.data_dir.join("volumes").join(format!("{volume_id}.manifest.json"))
}

fn load_manifest(ctx: &Ctx, volume_id: &str, snapshot_id: &str) -> Option<Manifest> {
    let bytes = std::fs::read(manifest_path(ctx, volume_id)).ok()?;
    let (snapshot, manifest): (String, Manifest) = serde_json::from_slice(&bytes).ok()?;
    (snapshot == snapshot_id).then_some(manifest)
}

fn save_manifest(ctx: &Ctx, volume_id: &str, snapshot_id: &str, manifest: &Manifest) {
    let path = manifest_path(ctx, volume_id);
    let temp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(&(snapshot_id, manifest))
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temp, bytes))
        .and_then(|()| std::fs::rename(&temp, &path));
    if let Err(err) = written {
        tracing::warn!(path = %path.display(), "could not cache the volume's manifest: {err}");
    }
}

pub(crate) fn run_volume(a: VolumeArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    let ctx = open(c, d)?;
    let hub = &ctx.local.hub;
    match a.command {
        VolumeCommand::Create { volset, from, name, json } => {
            let vs = hub_err(ctx.local.volset(&volset))?;
            let id = strata_hub::model::new_id();
            let name = match name {
                Some(n) => n,
                None => {
                    let taken: Vec<String> =
                        hub_err(hub.volumes())?.into_iter().map(|v| v.name).collect();
                    (1..)
                        .map(|i| format!("{}-{i}", vs.name))
                        .find(|n| !taken.contains(n))
                        .unwrap_or_default()
                }
            };
            hub_err(strata_hub::model::validate_name("volume", &name))?;
            let path = ctx.data_dir.join("volumes").join(&id);
            let (snapshot_id, branch_id) = match &from {
                Some(from) => {
                    let snap = hub_err(hub.find_snapshot(&vs.id, from))?;
                    let chain = chain_blobs(&ctx, &snap)?;
                    let manifest =
                        vol_err(strata_volume::materialize(&ctx.local.blobs, &chain, &path))?;
                    save_manifest(&ctx, &id, &snap.id, &manifest);
                    let branch =
                        hub_err(hub.branches(&vs.id))?.into_iter().find(|b| b.tip == snap.id);
                    (Some(snap.id), branch.map(|b| b.id))
                }
                None => {
                    std::fs::create_dir_all(&path)
                        .with_context(|| format!("create {}", path.display()))?;
                    (None, None)
                }
            };
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            let volume = Volume {
                id,
                name,
                volset_id: vs.id.clone(),
                snapshot_id,
                branch_id,
                path: path.to_string_lossy().into_owned(),
                created_at: strata_hub::model::now(),
            };
            if let Err(err) = hub.put_volume(&volume) {
                let _ = std::fs::remove_dir_all(&path);
                return Err(categorized(err));
            }
            if json {
                print(&volume_json(&volume).to_string())
            } else {
                print(&format!("created volume {} ({}) at {}", volume.name, volume.id, volume.path))
            }
        }
        VolumeCommand::Ls { json } => {
            let all = hub_err(hub.volumes())?;
            if json {
                return print(
                    &serde_json::Value::Array(all.iter().map(volume_json).collect()).to_string(),
                );
            }
            let mut out =
                format!("{:<20} {:<36} {:<10} {:<10} PATH", "NAME", "ID", "VOLSET", "SNAPSHOT");
            for v in &all {
                let vs = hub.volset(&v.volset_id).map(|s| s.name).unwrap_or_default();
                let snap = v.snapshot_id.as_deref().map(short).unwrap_or("-");
                out.push_str(&format!(
                    "\n{:<20} {:<36} {:<10} {:<10} {}",
                    v.name, v.id, vs, snap, v.path
                ));
            }
            print(&out)
        }
        VolumeCommand::Snapshot { volume, name, description, branch, json } => {
            let mut vol = hub_err(hub.find_volume(&volume))?;
            let base = match &vol.snapshot_id {
                Some(id) => Some(hub_err(hub.snapshot(id))?),
                None => None,
            };
            let cached = base.as_ref().and_then(|b| load_manifest(&ctx, &vol.id, &b.id));
            let base_manifest = match (cached, base.as_ref().and_then(|b| b.blob_id.clone())) {
                (Some(manifest), _) => manifest,
                (None, Some(blob)) => {
                    let blob: BlobId =
                        blob.parse().map_err(|e| anyhow::anyhow!("bad blob id: {e}"))?;
                    vol_err(strata_volume::manifest_of(&ctx.local.blobs, &blob))
                        .context("read the base snapshot's manifest (pull its blobs first)")?
                }
                (None, None) => Manifest::empty(),
            };
            let made = vol_err(strata_volume::snapshot(
                Path::new(&vol.path),
                &base_manifest,
                &ctx.local.blobs,
            ))?;
            let spec = NewSnapshot {
                name: name.clone(),
                description,
                size: made.size,
                blob_id: Some(made.blob.to_string()),
                creator: ctx.user.clone(),
                ..NewSnapshot::default()
            };
            let base_is_tip = match &base {
                Some(b) => hub_err(hub.branches(&vol.volset_id))?.iter().any(|br| br.tip == b.id),
                None => false,
            };
            let (branch, snap) = if base_is_tip && branch.is_none() {
                let Some(b) = &base else { anyhow::bail!("unreachable: a tip without a base") };
                hub_err(hub.extend(&vol.volset_id, &b.id, &spec))?
            } else {
                let name = match branch {
                    Some(n) => n,
                    None => {
                        let taken: Vec<String> = hub_err(hub.branches(&vol.volset_id))?
                            .into_iter()
                            .map(|b| b.name)
                            .collect();
                        ["main".to_string(), vol.name.clone()]
                            .into_iter()
                            .find(|n| !taken.contains(n))
                            .unwrap_or_default()
                    }
                };
                hub_err(hub.fork(
                    &vol.volset_id,
                    base.as_ref().map(|b| b.id.as_str()),
                    &name,
                    &spec,
                ))?
            };
            vol.snapshot_id = Some(snap.id.clone());
            vol.branch_id = Some(branch.id.clone());
            hub_err(hub.put_volume(&vol))?;
            save_manifest(&ctx, &vol.id, &snap.id, &made.manifest);
            if json {
                print(&serde_json::to_string(&snap)?)
            } else {
                print(&format!(
                    "snapshot {} ({}) on branch {}: {} added, {} changed, {} deleted, blob {} bytes",
                    snap.name,
                    snap.id,
                    branch.name,
                    made.added,
                    made.changed,
                    made.deleted,
                    made.size
                ))
            }
        }
        VolumeCommand::Edit { volset, snapshot, name, description, attrs } => {
            let vs = hub_err(ctx.local.volset(&volset))?;
            let snap = hub_err(hub.find_snapshot(&vs.id, &snapshot))?;
            let mut meta = snap.meta();
            if let Some(n) = name {
                meta.name = n;
            }
            if let Some(d) = description {
                meta.description = d;
            }
            for kv in attrs {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!(Failure {
                        category: strata_kv::Category::InvalidArgument,
                        message: format!("--attr {kv:?}: expected KEY=VALUE"),
                    })
                })?;
                if v.is_empty() {
                    meta.attrs.remove(k);
                } else {
                    meta.attrs.insert(k.into(), v.into());
                }
            }
            let snap = hub_err(hub.update_snapshot_meta(&snap.id, &meta))?;
            print(&format!("updated snapshot {} ({})", snap.name, snap.id))
        }
        VolumeCommand::RenameBranch { volset, old, new } => {
            let vs = hub_err(ctx.local.volset(&volset))?;
            let b = hub_err(hub.rename_branch(&vs.id, &old, &new))?;
            print(&format!("renamed branch {old} to {} ({})", b.name, b.id))
        }
        VolumeCommand::Snapshots { volset, branch, json } => {
            let vs = hub_err(ctx.local.volset(&volset))?;
            let query = Query { branch, sort: strata_hub::SortBy::Depth, ..Query::default() };
            let all = hub_err(hub.snapshots(&vs.id, &query))?;
            if json {
                return print(&serde_json::to_string(&all)?);
            }
            let mut out =
                format!("{:<36} {:<20} {:>5} {:>12}  DESCRIPTION", "ID", "NAME", "DEPTH", "SIZE");
            for s in &all {
                out.push_str(&format!(
                    "\n{:<36} {:<20} {:>5} {:>12}  {}",
                    s.id, s.name, s.depth, s.size, s.description
                ));
            }
            print(&out)
        }
    }
}

/// Draws snapshots newest first with one column per line of descent, like
/// `git log --graph`.
fn graph(snaps: &[Snapshot], branches: &[Branch]) -> String {
    let mut order: Vec<&Snapshot> = snaps.iter().collect();
    order.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.depth.cmp(&a.depth)));
    // Children before parents, whatever the clocks said.
    let mut placed = std::collections::HashSet::new();
    let mut sorted: Vec<&Snapshot> = Vec::new();
    let children: std::collections::HashMap<&str, usize> = snaps
        .iter()
        .filter_map(|s| s.parent_id.as_deref())
        .fold(std::collections::HashMap::new(), |mut m, p| {
            *m.entry(p).or_insert(0) += 1;
            m
        });
    let mut pending = children.clone();
    while sorted.len() < order.len() {
        let before = sorted.len();
        for s in &order {
            if !placed.contains(s.id.as_str())
                && pending.get(s.id.as_str()).copied().unwrap_or(0) == 0
            {
                placed.insert(s.id.as_str());
                sorted.push(s);
                if let Some(n) = s.parent_id.as_deref().and_then(|p| pending.get_mut(p)) {
                    *n -= 1;
                }
                break;
            }
        }
        if sorted.len() == before {
            break;
        }
    }
    let labels: BTreeMap<&str, Vec<&str>> = branches.iter().fold(BTreeMap::new(), |mut m, b| {
        m.entry(b.tip.as_str()).or_insert_with(Vec::new).push(if b.name.is_empty() {
            "(unnamed)"
        } else {
            b.name.as_str()
        });
        m
    });
    let mut columns: Vec<Option<String>> = Vec::new();
    let mut out = String::new();
    let row = |columns: &[Option<String>], mark: Option<usize>, merged: &[usize]| -> String {
        let mut line: Vec<char> = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            let mark = if Some(i) == mark {
                '*'
            } else if c.is_some() && !merged.contains(&i) {
                '|'
            } else {
                ' '
            };
            line.extend([mark, ' ']);
        }
        // A merged line of descent leans into the column on its left.
        for &m in merged {
            if m > 0 {
                line[2 * m - 1] = '/';
            }
        }
        line.into_iter().collect::<String>()
    };
    for s in sorted {
        let waiting: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_deref() == Some(s.id.as_str()))
            .map(|(i, _)| i)
            .collect();
        let col = match waiting.first() {
            Some(&c) => c,
            None => match columns.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    columns.push(None);
                    columns.len() - 1
                }
            },
        };
        if waiting.len() > 1 {
            let merged = &waiting[1..];
            out.push_str(row(&columns, None, merged).trim_end());
            out.push('\n');
            for &m in merged {
                columns[m] = None;
            }
            while columns.last().is_some_and(Option::is_none) {
                columns.pop();
            }
        }
        columns[col] = Some(s.id.clone());
        let mut line = row(&columns, Some(col), &[]);
        line.push_str(short(&s.id));
        line.push(' ');
        if let Some(names) = labels.get(s.id.as_str()) {
            line.push_str(&format!("({}) ", names.join(", ")));
        }
        line.push_str(&s.name);
        if !s.description.is_empty() {
            line.push_str(&format!(" — {}", s.description));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        columns[col] = s.parent_id.clone();
        while columns.last().is_some_and(Option::is_none) {
            columns.pop();
        }
    }
    out
}

pub(crate) fn run_log(a: LogArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    let ctx = open(c, d)?;
    let hub = &ctx.local.hub;
    let vs: VolumeSet = hub_err(ctx.local.volset(&a.volset))?;
    let export = hub_err(hub.export(&vs.id))?;
    if a.json {
        return print(&serde_json::to_string(&export)?);
    }
    let text = graph(&export.snapshots, &export.branches);
    let mut out = std::io::stdout().lock();
    writeln!(out, "volume set {} ({})", vs.name, vs.id)?;
    write!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

const BYTES_TEMPLATE: &str = "{msg:>16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
const COUNT_TEMPLATE: &str = "{msg:>16} [{bar:30}] {pos}/{len}";

/// indicatif bars on stderr, hidden when it is not a terminal.
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total: u64) {
        let bar = if self.visible && total > 0 {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = if phase.contains("blobs") { BYTES_TEMPLATE } else { COUNT_TEMPLATE };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(phase.to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(n);
        }
    }
    fn end(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Push,
    Pull,
    Sync,
}

fn transfer(a: TransferArgs, c: &Config, d: &Path, direction: Direction) -> anyhow::Result<()> {
    let ctx = open(c, d)?;
    let client = hub_err(Client::new(&a.remote, &a.token))?;
    let bars = Bars { bar: Mutex::new(None), visible: std::io::stderr().is_terminal() };
    let runtime = crate::runtime::runtime()?;
    let report = runtime.block_on(async {
        match direction {
            Direction::Push => {
                let vs = ctx.local.volset(&a.volset)?;
                ctx.local.push(&client, &vs.id, &bars).await
            }
            Direction::Pull => ctx.local.pull(&client, &a.volset, &bars).await,
            Direction::Sync => ctx.local.sync(&client, &a.volset, &bars).await,
        }
    });
    let report = hub_err(report)
        .with_context(|| format!("{direction:?} {} with {}", a.volset, a.remote).to_lowercase())?;
    if a.json {
        return print(&serde_json::to_string(&report)?);
    }
    print(&summary(&report, &a.remote, direction))
}

fn summary(r: &Report, remote: &str, direction: Direction) -> String {
    let mb = r.bytes as f64 / 1e6;
    let mut out = match direction {
        Direction::Push => format!(
            "pushed {} snapshots ({} blobs, {mb:.1} MB) to {remote}",
            r.snapshots_pushed, r.blobs_pushed
        ),
        Direction::Pull => format!(
            "pulled {} snapshots ({} blobs, {mb:.1} MB) from {remote}",
            r.snapshots_pulled, r.blobs_pulled
        ),
        Direction::Sync => format!(
            "synced with {remote}: pulled {} snapshots ({} blobs), pushed {} snapshots ({} blobs), {mb:.1} MB",
            r.snapshots_pulled, r.blobs_pulled, r.snapshots_pushed, r.blobs_pushed
        ),
    };
    let branches: Vec<String> = r
        .branches
        .iter()
        .map(|(name, outcome)| {
            format!(
                "{name} {}",
                serde_json::to_value(outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
                    .replace('_', " ")
            )
        })
        .collect();
    if !branches.is_empty() {
        out.push_str(&format!("\nbranches: {}", branches.join(", ")));
    }
    out.push_str(&format!(
        "\nmetadata: {} changes sent, {} taken from the hub",
        r.metadata_pushed, r.metadata_pulled
    ));
    for conflict in &r.conflicts {
        out.push_str(&format!(
            "\n\nconflict on {} {} (both sides changed it; the hub's copy won):\n",
            conflict.kind, conflict.id
        ));
        out.push_str(&side_by_side(&conflict.initial, &conflict.current, &conflict.target));
    }
    out
}

/// A table of the fields that differ: field, initial, current, target.
fn side_by_side(
    init: &serde_json::Value,
    cur: &serde_json::Value,
    tgt: &serde_json::Value,
) -> String {
    let field = |v: &serde_json::Value, k: &str| -> String {
        match v.get(k) {
            None => "-".into(),
            Some(serde_json::Value::String(s)) => format!("{s:?}"),
            Some(other) => other.to_string(),
        }
    };
    let mut keys: Vec<String> = Vec::new();
    for v in [init, cur, tgt] {
        if let Some(obj) = v.as_object() {
            for k in obj.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let mut rows = vec![["field".to_string(), "initial".into(), "current".into(), "target".into()]];
    for k in keys {
        let row = [k.clone(), field(init, &k), field(cur, &k), field(tgt, &k)];
        if row[1] != row[2] || row[2] != row[3] {
            rows.push(row);
        }
    }
    let widths: Vec<usize> =
        (0..4).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> =
                (0..4).map(|i| format!("{:<w$}", r[i], w = widths[i])).collect();
            format!("  {}", cells.join("  ").trim_end())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn run_push(a: TransferArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    transfer(a, c, d, Direction::Push)
}

pub(crate) fn run_pull(a: TransferArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    transfer(a, c, d, Direction::Pull)
}

pub(crate) fn run_sync(a: TransferArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    transfer(a, c, d, Direction::Sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, parent: Option<&str>, at: u64) -> Snapshot {
        Snapshot {
            id: id.into(),
            parent_id: parent.map(String::from),
            volset_id: "vs".into(),
            name: format!("n{id}"),
            description: String::new(),
            attrs: Default::default(),
            size: 0,
            creator: String::new(),
            owner: String::new(),
            created_at: at,
            updated_at: at,
            blob_id: None,
            prev_blob_id: None,
            depth: 0,
        }
    }

    #[test]
    fn the_progress_templates_parse() {
        for template in [BYTES_TEMPLATE, COUNT_TEMPLATE] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn graph_draws_a_fork() {
        let snaps = [
            snap("1", None, 1),
            snap("2", Some("1"), 2),
            snap("3", Some("2"), 3),
            snap("4", Some("1"), 4),
        ];
        let branches = [
            Branch {
                id: "b".into(),
                volset_id: "vs".into(),
                name: "main".into(),
                tip: "3".into(),
                attrs: Default::default(),
            },
            Branch {
                id: "c".into(),
                volset_id: "vs".into(),
                name: "dev".into(),
                tip: "4".into(),
                attrs: Default::default(),
            },
        ];
        let text = graph(&snaps, &branches);
        assert_eq!(text, "* 4 (dev) n4\n| * 3 (main) n3\n| * 2 n2\n|/\n* 1 n1\n");
    }
}
