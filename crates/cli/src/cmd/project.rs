//! `strata project`: projects a set of files into a directory atomically, once, or again on
//! every change of a source directory.
//!
//! This is glue: reading payloads, watching the source and the write protocol all live in
//! `strata-atomic`; this file checks the arguments and drives them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use strata_atomic::{AtomicWriter, Payload, Source, Watcher};

/// Project files into a directory atomically, the way Kubernetes updates a mounted ConfigMap.
///
/// Readers of the target see the whole old set of files or the whole new one, never a mix:
/// the files live in a hidden version directory that the symlink DIR/..data points at, and
/// each user-visible name is a symlink through it. An update writes a new version, makes it
/// durable, and switches ..data in one rename. Watch ..data (inotify, IN_MOVED_TO on DIR) to
/// learn of updates. Names starting with `..` in DIR belong to strata; one process at a time
/// may project into DIR (a second one fails at once).
#[derive(Debug, clap::Args)]
pub struct ProjectArgs {
    /// The directory to project into; created if missing. Files the projection does not own
    /// are left alone, but a payload name they take is refused.
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,

    /// Take the payload from the files under SRC, with their permission bits (setuid, setgid
    /// and sticky bits are dropped). Symlinks are followed; top-level names starting with `..`
    /// are skipped, so SRC may itself be a projected directory.
    #[arg(
        long,
        value_name = "SRC",
        conflicts_with = "payload",
        required_unless_present = "payload"
    )]
    pub from_dir: Option<PathBuf>,

    /// Take the payload from a JSON file, an object mapping relative paths to files:
    /// {"path": {"data": "<base64>", "mode": "0644"}}, or "text": "<UTF-8>" in place of "data".
    /// The mode is octal and defaults to 0644.
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,

    /// Keep running, and project again whenever anything under SRC changes (inotify, with
    /// --debounce-ms). Needs --from-dir; SRC itself must stay in place.
    #[arg(long, requires = "from_dir")]
    pub watch: bool,

    /// With --watch: how long SRC must stay quiet before projecting again, in milliseconds.
    /// Under a steady stream of changes it projects at least every ten such periods.
    #[arg(long, value_name = "MS", default_value_t = 200, requires = "watch")]
    pub debounce_ms: u64,
}

/// Projects once, or keeps projecting with `--watch`.
///
/// The first payload is read and checked before the target is created or opened, so a
/// refused payload leaves the target as it was (no directory, no lock file).
pub fn run(args: ProjectArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args)?;
    match (&plan.source, plan.debounce) {
        (Source::Dir(src), Some(debounce)) => {
            let watcher = Watcher::new()?;
            let payload = plan.source.read(Some(&watcher))?;
            let mut writer = create_and_open(&plan.target, &payload)?;
            write(&mut writer, &payload)?;
            watch(writer, &plan.target, src, debounce, &watcher)
        }
        (source, _) => {
            let payload = source.read(None)?;
            let mut writer = create_and_open(&plan.target, &payload)?;
            write(&mut writer, &payload)
        }
    }
}

/// The checked arguments.
#[derive(Debug)]
struct Plan {
    /// The target directory, which exists.
    target: PathBuf,
    /// Where the payload comes from.
    source: Source,
    /// With `--watch`, the quiet period before projecting again.
    debounce: Option<Duration>,
}

impl Plan {
    /// Checks the arguments.
    fn new(args: ProjectArgs) -> anyhow::Result<Plan> {
        let source = match (args.from_dir, args.payload) {
            (Some(dir), None) => Source::Dir(dir),
            (None, Some(file)) => Source::Json(file),
            _ => bail!("give exactly one of --from-dir and --payload"),
        };
        if let Source::Dir(src) = &source {
            let (src, target) = (resolve(src)?, resolve(&args.target)?);
            ensure!(
                !target.starts_with(&src) && !src.starts_with(&target),
                "--target {} and --from-dir {} overlap",
                target.display(),
                src.display()
            );
        } else {
            ensure!(!args.watch, "--watch needs --from-dir");
        }
        let debounce = args.watch.then(|| Duration::from_millis(args.debounce_ms));
        Ok(Plan { target: args.target, source, debounce })
    }
}

/// `path` made absolute with symlinks resolved, as far as it exists.
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("resolve {}", path.display()))?;
    let mut existing = absolute.as_path();
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let resolved = std::fs::canonicalize(existing)
        .with_context(|| format!("resolve {}", existing.display()))?;
    match absolute.strip_prefix(existing) {
        Ok(rest) if !rest.as_os_str().is_empty() => Ok(resolved.join(rest)),
        _ => Ok(resolved),
    }
}

/// Checks `payload`, then creates `target` if missing and opens its writer.
fn create_and_open(target: &Path, payload: &Payload) -> anyhow::Result<AtomicWriter> {
    strata_atomic::check_payload(payload).context("refused payload")?;
    std::fs::create_dir_all(target)
        .with_context(|| format!("create target {}", target.display()))?;
    open(target)
}

/// Opens the writer of `target`.
fn open(target: &Path) -> anyhow::Result<AtomicWriter> {
    AtomicWriter::open(target).with_context(|| format!("open target {}", target.display()))
}

/// Writes `payload` into the writer's target.
fn write(writer: &mut AtomicWriter, payload: &Payload) -> anyhow::Result<()> {
    let outcome = writer
        .write(payload)
        .with_context(|| format!("project into {}", writer.target().display()))?;
    let dir = writer.target().display();
    tracing::info!(%dir, files = payload.len(), ?outcome, "projected");
    Ok(())
}

/// Projects from `src` into `target` after every change under `src`, until killed.
///
/// A failed projection is logged and retried on the next change; a writer poisoned by a
/// failed sync is opened again. Killing the process at any moment is safe: the protocol
/// leaves the old or the new version, and the kernel drops the lock.
fn watch(
    mut writer: AtomicWriter,
    target: &Path,
    src: &Path,
    debounce: Duration,
    watcher: &Watcher,
) -> anyhow::Result<()> {
    tracing::info!(src = %src.display(), dir = %target.display(), "watching");
    let source = Source::Dir(src.to_path_buf());
    loop {
        watcher.wait_for_change(debounce)?;
        let projected = source
            .read(Some(watcher))
            .map_err(anyhow::Error::from)
            .and_then(|payload| write(&mut writer, &payload));
        if let Err(err) = projected {
            tracing::error!("{err:#}");
            let poisoned = err.chain().any(|cause| {
                matches!(cause.downcast_ref(), Some(strata_atomic::Error::Poisoned { .. }))
            });
            if poisoned {
                drop(writer);
                writer = open(target)?;
            }
        }
    }
}
