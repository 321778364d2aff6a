//! `strata snapshot`: people's access to the snapshots of a snapshotter root.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use strata_snapshots::{Filters, Info, Mount};

use crate::config::Config;
use crate::show::Table;

/// Work with the container snapshots of a snapshotter root directory: the same layers and
/// metadata the snapshotter serves to containerd. The metadata is DIR/metadata.redb unless
/// the configuration names etcd. While `strata serve` runs on the data directory, these
/// commands work through it on its root (DATA-DIR/snapshotter); a standalone
/// `strata snapshotter` holds its file alone, so stop it first or configure etcd.
#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The snapshotter's root directory [default: DATA-DIR/snapshotter, the one
    /// `strata serve` runs].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Create a writable snapshot KEY on the committed PARENT (none: empty) and print its mounts.
    Prepare {
        key: String,
        parent: Option<String>,
        /// A label K=V (repeatable).
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// Create a read-only view KEY of the committed PARENT and print its mounts.
    View {
        key: String,
        parent: String,
        /// A label K=V (repeatable).
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// Commit the active snapshot KEY as NAME, measuring its disk usage.
    Commit {
        name: String,
        key: String,
        /// A label K=V for the committed snapshot (repeatable; nothing is inherited).
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Remove snapshots (refused for one that has children).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// List snapshots, all or those matching any FILTER (containerd syntax, e.g.
    /// `kind==committed,labels.team==storage`).
    #[command(alias = "list")]
    Ls {
        filters: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one snapshot's info.
    Info {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Set labels K=V on KEY; an empty V removes the label. Prints the labels after.
    Label {
        key: String,
        #[arg(required = true, value_name = "K=V", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// Draw the snapshots as a tree of parents and children.
    Tree {
        #[arg(long)]
        json: bool,
    },
    /// Print the mounts of an active or view snapshot.
    Mounts {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Disk usage of KEY, or of every snapshot.
    Usage {
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Copy the snapshots' metadata, as of one moment, into a new redb file FILE (beside a
    /// running `strata serve` too). The layers themselves are the directories under
    /// ROOT/snapshots: back them up with the file system. To restore, stop strata and put
    /// FILE in place of ROOT/metadata.redb.
    Backup {
        file: PathBuf,
        /// Print {"file", "keys", "revision"}.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: SnapshotArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let root = args.root.unwrap_or_else(|| data_dir.join("snapshotter"));
    let sn = crate::open::snapshotter(&root, &config.kv, data_dir)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        SnapshotCommand::Prepare { key, parent, labels, json } => {
            let mounts = sn.prepare(&key, parent.as_deref().unwrap_or(""), to_map(labels))?;
            print_mounts(&mut out, &mounts, json)?;
        }
        SnapshotCommand::View { key, parent, labels, json } => {
            let mounts = sn.view(&key, &parent, to_map(labels))?;
            print_mounts(&mut out, &mounts, json)?;
        }
        SnapshotCommand::Commit { name, key, labels } => sn.commit(&name, &key, to_map(labels))?,
        SnapshotCommand::Rm { keys } => {
            for key in keys {
                sn.remove(&key).with_context(|| format!("remove {key}"))?;
            }
        }
        SnapshotCommand::Ls { filters, json } => {
            let all = sn.list(&Filters::parse(&filters)?)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&all)?)?;
            } else {
                let mut table = Table::new(["KEY", "PARENT", "KIND"]);
                for info in all {
                    table.row([info.name, info.parent, info.kind.to_string()]);
                }
                writeln!(out, "{}", table.render())?;
            }
        }
        SnapshotCommand::Info { key, json } => print_info(&mut out, &sn.stat(&key)?, json)?,
        SnapshotCommand::Label { key, labels, json } => {
            let mut info = sn.stat(&key)?;
            let paths: Vec<String> = labels.iter().map(|(k, _)| format!("labels.{k}")).collect();
            info.labels = to_map(labels);
            let updated = sn.update(&info, &paths)?;
            print_info(&mut out, &updated, json)?;
        }
        SnapshotCommand::Tree { json } => {
            print_tree(&mut out, &sn.list(&Filters::default())?, json)?
        }
        SnapshotCommand::Mounts { key, json } => print_mounts(&mut out, &sn.mounts(&key)?, json)?,
        SnapshotCommand::Backup { file, json } => {
            let backup = sn.store().backup(&file).map_err(crate::exit::categorized)?;
            crate::show::backup(&mut out, &file, &backup, json)?;
        }
        SnapshotCommand::Usage { key, json } => {
            let keys = match key {
                Some(key) => vec![key],
                None => sn.list(&Filters::default())?.into_iter().map(|i| i.name).collect(),
            };
            let mut rows = Vec::new();
            for key in keys {
                let usage = sn.usage(&key)?;
                rows.push((key, usage));
            }
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|(k, u)| json!({ "key": k, "size": u.size, "inodes": u.inodes }))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
            } else {
                let mut table = Table::new(["KEY", ">SIZE", ">INODES"]);
                for (key, usage) in rows {
                    table.row([
                        key,
                        crate::show::human_bytes(u64::try_from(usage.size).unwrap_or(0)),
                        usage.inodes.to_string(),
                    ]);
                }
                writeln!(out, "{}", table.render())?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) =
        text.split_once('=').ok_or_else(|| format!("label {text:?} is not of the form K=V"))?;
    if key.is_empty() {
        return Err(format!("label {text:?} has an empty key"));
    }
    Ok((key.to_string(), value.to_string()))
}

fn to_map(labels: Vec<(String, String)>) -> BTreeMap<String, String> {
    labels.into_iter().collect()
}

fn print_mounts(out: &mut impl Write, mounts: &[Mount], json: bool) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(mounts)?)?;
        return Ok(());
    }
    for mount in mounts {
        writeln!(
            out,
            "mount -t {} {} <target> -o {}",
            mount.kind,
            mount.source,
            mount.options.join(",")
        )?;
    }
    Ok(())
}

fn print_info(out: &mut impl Write, info: &Info, json: bool) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(info)?)?;
        return Ok(());
    }
    writeln!(out, "name:    {}", info.name)?;
    writeln!(out, "parent:  {}", info.parent)?;
    writeln!(out, "kind:    {}", info.kind)?;
    writeln!(out, "created: {}", rfc3339(info.created))?;
    writeln!(out, "updated: {}", rfc3339(info.updated))?;
    for (key, value) in &info.labels {
        writeln!(out, "label:   {key}={value}")?;
    }
    Ok(())
}

fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Draws children under their parents, roots first, in name order.
fn print_tree(out: &mut impl Write, all: &[Info], json: bool) -> anyhow::Result<()> {
    let mut children: BTreeMap<&str, Vec<&Info>> = BTreeMap::new();
    for info in all {
        children.entry(info.parent.as_str()).or_default().push(info);
    }
    if json {
        fn node(info: &Info, children: &BTreeMap<&str, Vec<&Info>>) -> serde_json::Value {
            let kids: Vec<_> = children
                .get(info.name.as_str())
                .map(|kids| kids.iter().map(|k| node(k, children)).collect())
                .unwrap_or_default();
            json!({ "name": info.name, "kind": info.kind, "children": kids })
        }
        let roots: Vec<_> = children
            .get("")
            .map(|r| r.iter().map(|i| node(i, &children)).collect())
            .unwrap_or_default();
        writeln!(out, "{}", serde_json::Value::Array(roots))?;
        return Ok(());
    }
    fn draw(
        out: &mut impl Write,
        info: &Info,
        children: &BTreeMap<&str, Vec<&Info>>,
        depth: usize,
    ) -> std::io::Result<()> {
        writeln!(out, "{}{} ({})", "  ".repeat(depth), info.name, info.kind)?;
        for child in children.get(info.name.as_str()).into_iter().flatten() {
            draw(out, child, children, depth + 1)?;
        }
        Ok(())
    }
    for root in children.get("").into_iter().flatten() {
        draw(out, root, &children, 0)?;
    }
    Ok(())
}
