//! `strata volumeset`, `strata volume`, `strata log`, `strata push|pull|sync`: filesystem
//! volumes with snapshots on branches, and their exchange with a hub.
//!
//! Local layout: the volume store (volume sets, snapshots, branches, volumes, and the
//! copies last synced) in DATA-DIR/volumes/store.redb, or with `[kv] engine = "etcd"` in
//! etcd under the prefix `volumes/`; each volume a directory DATA-DIR/volumes/<id>/; the
//! snapshot blobs in DATA-DIR/blobs/. `strata serve` holds DATA-DIR/strata.redb, not these,
//! so volume commands work while it runs.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_hub::{Progress, Query, Report, Take, Taken, VolumeSet};

use crate::config::Config;
use crate::exit::Failure;
use crate::exit::categorized;
use crate::show::{Table, human_bytes, print};

/// Volume sets: create, ls, rm.
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
        /// What its snapshots hold: filesystem (directories: `strata volume`) or block
        /// (vdisks: `strata vdisk snapshot`; `strata vdisk snapshot` also makes one).
        #[arg(long, default_value = "filesystem", value_parser = ["filesystem", "block"])]
        kind: String,
        /// Print `{"id", "name", "kind", ...}`.
        #[arg(long)]
        json: bool,
    },
    /// List volume sets.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove a volume set from this data directory. Refused while a volume is made from
    /// it (`strata volume rm` those first) and, without --force, while it has snapshots.
    /// Blobs stay (another set may share them); a hub keeps its own copy.
    Rm {
        /// The volume set's name or id.
        volset: String,
        /// Delete its snapshots with it.
        #[arg(long)]
        force: bool,
    },
}

/// Volumes: create, ls, snapshot, rm.
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
    /// Remove a volume: its record and its directory. Its snapshots stay; files changed
    /// since its last snapshot are lost.
    Rm {
        /// The volume's name, id or path.
        volume: String,
    },
    /// Record a snapshot of a volume's directory: the difference from the snapshot it is
    /// based on, as a content-addressed blob. It extends the branch whose tip the base
    /// is, or forks a new branch when the base is not a tip (or for a first snapshot).
    /// When nothing changed since the base, none is recorded (exit 0; --allow-empty
    /// records one anyway).
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
        /// Record a snapshot even when nothing changed since the volume's base.
        #[arg(long)]
        allow_empty: bool,
        /// Print the snapshot as JSON (`{"unchanged": true, "base": ID}` when nothing
        /// changed and none was recorded).
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
    /// The hub's URL, http://HOST:PORT or https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    remote: String,
    /// Your bearer token on that hub (`strata hub token create USER` on the hub's machine).
    #[arg(long, value_name = "TOKEN", env = "STRATA_HUB_TOKEN", hide_env_values = true)]
    token: String,
    /// A CA certificate (PEM) to trust for an https remote, besides the system's roots
    /// [default: hub.ca_file].
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn hub_err<T>(r: strata_hub::Result<T>) -> anyhow::Result<T> {
    r.map_err(categorized)
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(crate) fn run_volumeset(a: VolumesetArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    let ws = crate::open::workspace(c, d)?;
    let hub = ws.hub();
    match a.command {
        VolumesetCommand::Create { name, description, kind, json } => {
            let kind = hub_err(kind.parse())?;
            let vs = hub_err(hub.create_volset_of(kind, &name, &description, ws.user()))?;
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
            let mut table = Table::new(["NAME", "ID", "KIND", ">SNAPSHOTS", ">BRANCHES", "OWNER"]);
            for vs in all {
                let snaps = hub_err(hub.snapshots(&vs.id, &Query::default()))?.len();
                let branches = hub_err(hub.branches(&vs.id))?.len();
                let kind = vs.kind.to_string();
                table.row([
                    vs.name,
                    vs.id,
                    kind,
                    snaps.to_string(),
                    branches.to_string(),
                    vs.owner,
                ]);
            }
            print(&table.render())
        }
        VolumesetCommand::Rm { volset, force } => {
            let (vs, snapshots) = hub_err(ws.remove_volset(&volset, force))?;
            print(&format!(
                "removed volume set {} ({}) and {snapshots} snapshots; its blobs stay in {}",
                vs.name,
                vs.id,
                d.join("blobs").display()
            ))
        }
    }
}

pub(crate) fn run_volume(a: VolumeArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    let ws = crate::open::workspace(c, d)?;
    let hub = ws.hub();
    match a.command {
        VolumeCommand::Create { volset, from, name, json } => {
            let volume = hub_err(ws.create_volume(&volset, from.as_deref(), name.as_deref()))?;
            if json {
                print(&serde_json::to_string(&volume)?)
            } else {
                print(&format!("created volume {} ({}) at {}", volume.name, volume.id, volume.path))
            }
        }
        VolumeCommand::Ls { json } => {
            let all = hub_err(hub.volumes())?;
            if json {
                return print(&serde_json::to_string(&all)?);
            }
            let mut table = Table::new(["NAME", "ID", "VOLSET", "SNAPSHOT", "PATH"]);
            for v in all {
                let vs = hub.volset(&v.volset_id).map(|s| s.name).unwrap_or_default();
                let snap = v.snapshot_id.as_deref().map_or("-", short).to_string();
                table.row([v.name, v.id, vs, snap, v.path]);
            }
            print(&table.render())
        }
        VolumeCommand::Rm { volume } => {
            let vol = hub_err(ws.remove_volume(&volume))?;
            print(&format!("removed volume {} ({}) and {}", vol.name, vol.id, vol.path))
        }
        VolumeCommand::Snapshot { volume, name, description, branch, allow_empty, json } => {
            let take = Take { name, description, branch, allow_empty };
            let Some(Taken { snapshot: snap, branch, diff }) =
                hub_err(ws.snapshot_volume(&volume, &take))?
            else {
                let vol = hub_err(hub.find_volume(&volume))?;
                let base = vol.snapshot_id.unwrap_or_default();
                return if json {
                    print(&serde_json::json!({ "unchanged": true, "base": base }).to_string())
                } else {
                    print(&format!(
                        "volume {}: nothing changed since snapshot {}; no snapshot recorded \
                         (--allow-empty records one)",
                        vol.name,
                        short(&base)
                    ))
                };
            };
            if json {
                print(&serde_json::to_string(&snap)?)
            } else {
                print(&format!(
                    "snapshot {} ({}) on branch {}: {} added, {} changed, {} deleted, blob {}",
                    snap.name,
                    snap.id,
                    branch.name,
                    diff.added,
                    diff.changed,
                    diff.deleted,
                    human_bytes(diff.size)
                ))
            }
        }
        VolumeCommand::Edit { volset, snapshot, name, description, attrs } => {
            let vs = hub_err(ws.local().volset(&volset))?;
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
            let vs = hub_err(ws.local().volset(&volset))?;
            let b = hub_err(hub.rename_branch(&vs.id, &old, &new))?;
            print(&format!("renamed branch {old} to {} ({})", b.name, b.id))
        }
        VolumeCommand::Snapshots { volset, branch, json } => {
            let vs = hub_err(ws.local().volset(&volset))?;
            let query = Query { branch, sort: strata_hub::SortBy::Depth, ..Query::default() };
            let all = hub_err(hub.snapshots(&vs.id, &query))?;
            if json {
                return print(&serde_json::to_string(&all)?);
            }
            let mut table = Table::new(["ID", "NAME", ">DEPTH", ">SIZE", "DESCRIPTION"]);
            for s in all {
                table.row([s.id, s.name, s.depth.to_string(), human_bytes(s.size), s.description]);
            }
            print(&table.render())
        }
    }
}

pub(crate) fn run_log(a: LogArgs, c: &Config, d: &Path) -> anyhow::Result<()> {
    let ws = crate::open::workspace(c, d)?;
    let hub = ws.hub();
    let vs: VolumeSet = hub_err(ws.local().volset(&a.volset))?;
    let export = hub_err(hub.export(&vs.id))?;
    if a.json {
        return print(&serde_json::to_string(&export)?);
    }
    let text = strata_hub::graph(&export.snapshots, &export.branches);
    let mut out = std::io::stdout().lock();
    writeln!(out, "volume set {} ({}), {}", vs.name, vs.id, vs.kind)?;
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
    let ws = crate::open::workspace(c, d)?;
    let local = ws.local();
    let client = crate::open::hub_client(c, &a.remote, &a.token, a.ca_file.as_deref())?;
    let bars = Bars { bar: Mutex::new(None), visible: std::io::stderr().is_terminal() };
    let runtime = crate::runtime::runtime()?;
    let report = runtime.block_on(async {
        match direction {
            Direction::Push => {
                let vs = local.volset(&a.volset)?;
                local.push(&client, &vs.id, &bars).await
            }
            Direction::Pull => local.pull(&client, &a.volset, &bars).await,
            Direction::Sync => local.sync(&client, &a.volset, &bars).await,
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
    let size = human_bytes(r.bytes);
    let mut out = match direction {
        Direction::Push => format!(
            "pushed {} snapshots ({} blobs, {size}) to {remote}",
            r.snapshots_pushed, r.blobs_pushed
        ),
        Direction::Pull => format!(
            "pulled {} snapshots ({} blobs, {size}) from {remote}",
            r.snapshots_pulled, r.blobs_pulled
        ),
        Direction::Sync => format!(
            "synced with {remote}: pulled {} snapshots ({} blobs), pushed {} snapshots ({} blobs), {size}",
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
        out.push_str(&conflict.table());
    }
    out
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

    #[test]
    fn the_progress_templates_parse() {
        for template in [BYTES_TEMPLATE, COUNT_TEMPLATE] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
