//! `strata project`: projects a set of files into a directory atomically, once, or again on
//! every change of a source directory.
//!
//! This is not the write protocol, which lives in `strata-atomic`: this file reads a payload
//! from a directory or a JSON file, drives the writer, and watches the source with inotify.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;
use strata_atomic::{AtomicWriter, FileProjection, Payload};

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
            let (inotify, mut add_watch) = watcher()?;
            let payload = read_payload(&plan.source, &mut add_watch)?;
            let mut writer = create_and_open(&plan.target, &payload)?;
            write(&mut writer, &payload)?;
            watch(writer, &plan.target, src, debounce, &inotify, &mut add_watch)
        }
        (source, _) => {
            let payload = read_payload(source, &mut |_| Ok(()))?;
            let mut writer = create_and_open(&plan.target, &payload)?;
            write(&mut writer, &payload)
        }
    }
}

/// Where the payload comes from.
#[derive(Debug)]
enum Source {
    /// The files under a directory.
    Dir(PathBuf),
    /// A JSON payload file.
    Json(PathBuf),
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

/// Reads the payload from `source`; `on_dir` sees each directory read.
fn read_payload(
    source: &Source,
    on_dir: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Payload> {
    match source {
        Source::Dir(src) => read_dir_payload(src, on_dir),
        Source::Json(file) => read_json_payload(file),
    }
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

/// An inotify instance and the function that watches a directory with it, before it is read,
/// so no change after the read is missed.
fn watcher() -> anyhow::Result<(OwnedFd, impl FnMut(&Path) -> anyhow::Result<()>)> {
    let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
        .context("create inotify instance")?;
    let flags = WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MODIFY
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::ATTRIB
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR;
    let fd = inotify.try_clone().context("clone inotify descriptor")?;
    let add_watch = move |dir: &Path| -> anyhow::Result<()> {
        inotify::add_watch(&fd, dir, flags)
            .with_context(|| format!("watch {}", dir.display()))
            .map(drop)
    };
    Ok((inotify, add_watch))
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
    inotify: &OwnedFd,
    add_watch: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    tracing::info!(src = %src.display(), dir = %target.display(), "watching");
    loop {
        wait_for_change(inotify, debounce)?;
        let projected = read_payload(&Source::Dir(src.to_path_buf()), add_watch)
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

/// Blocks until an inotify event arrives, then until none has arrived for `debounce`, or for
/// ten times `debounce` since the first one.
fn wait_for_change(inotify: &OwnedFd, debounce: Duration) -> anyhow::Result<()> {
    wait_readable(inotify, None)?;
    let first = Instant::now();
    drain(inotify)?;
    while first.elapsed() < debounce * 10 && wait_readable(inotify, Some(debounce))? {
        drain(inotify)?;
    }
    tracing::debug!(after = ?first.elapsed(), "change settled");
    Ok(())
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
fn wait_readable(fd: &OwnedFd, timeout: Option<Duration>) -> anyhow::Result<bool> {
    let timeout = timeout.map(Timespec::try_from).transpose().context("debounce too long")?;
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(ready) => return Ok(ready > 0),
            Err(Errno::INTR) => continue,
            Err(err) => return Err(err).context("wait for inotify events"),
        }
    }
}

/// Reads and discards the pending inotify events: any event means "scan again".
fn drain(fd: &OwnedFd) -> anyhow::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(Errno::AGAIN) => return Ok(()),
            Ok(_) | Err(Errno::INTR) => continue,
            Err(err) => return Err(err).context("read inotify events"),
        }
    }
}

/// Reads the regular files under `src`, following symlinks, into a payload; `on_dir` sees
/// each directory just before it is read.
fn read_dir_payload(
    src: &Path,
    on_dir: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Payload> {
    let mut payload = Payload::new();
    let mut walk = Walk { src, on_dir, payload: &mut payload, ancestors: Vec::new() };
    walk.dir(Path::new(""))?;
    Ok(payload)
}

/// A walk of a source directory.
struct Walk<'a> {
    /// The source directory.
    src: &'a Path,
    /// Called with each directory before it is read.
    on_dir: &'a mut dyn FnMut(&Path) -> anyhow::Result<()>,
    /// The payload being read.
    payload: &'a mut Payload,
    /// Device and inode of the directories from `src` down to the current one, so a symlink
    /// back up is refused rather than followed forever.
    ancestors: Vec<(u64, u64)>,
}

impl Walk<'_> {
    /// Reads the directory `src/rel` and everything under it.
    fn dir(&mut self, rel: &Path) -> anyhow::Result<()> {
        let dir = self.src.join(rel);
        let meta = std::fs::metadata(&dir).with_context(|| format!("stat {}", dir.display()))?;
        let id = (meta.dev(), meta.ino());
        ensure!(!self.ancestors.contains(&id), "{}: symlink loop", dir.display());
        self.ancestors.push(id);
        (self.on_dir)(&dir)?;
        let entries = std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))?;
        for entry in entries {
            let name = entry.with_context(|| format!("read {}", dir.display()))?.file_name();
            if rel.as_os_str().is_empty() && name.as_encoded_bytes().starts_with(b"..") {
                tracing::debug!(name = ?name, "skipping reserved name");
                continue;
            }
            self.entry(&rel.join(name))?;
        }
        self.ancestors.pop();
        Ok(())
    }

    /// Reads the entry `src/rel`: a directory, a file, or something skipped.
    fn entry(&mut self, rel: &Path) -> anyhow::Result<()> {
        let path = self.src.join(rel);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            // Removed since the directory was read, or a dangling symlink.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "skipping: vanished or dangling");
                return Ok(());
            }
            Err(err) => return Err(err).with_context(|| format!("stat {}", path.display())),
        };
        if meta.is_dir() {
            return self.dir(rel);
        }
        if !meta.is_file() {
            tracing::warn!(path = %path.display(), "skipping: not a regular file");
            return Ok(());
        }
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        self.payload.insert(rel.to_path_buf(), FileProjection::new(data, mode));
        Ok(())
    }
}

/// One file of a JSON payload.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFile {
    /// The content, base64 (standard alphabet, padded).
    data: Option<String>,
    /// The content, as UTF-8 text.
    text: Option<String>,
    /// The permission bits in octal, such as "0644"; 0644 when absent.
    mode: Option<String>,
}

/// Reads a JSON payload file.
fn read_json_payload(file: &Path) -> anyhow::Result<Payload> {
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    parse_json_payload(&bytes).with_context(|| format!("payload {}", file.display()))
}

/// Parses a JSON payload: `{"path": {"data": "<base64>" | "text": "...", "mode": "0644"}}`.
fn parse_json_payload(bytes: &[u8]) -> anyhow::Result<Payload> {
    let files: BTreeMap<String, JsonFile> = serde_json::from_slice(bytes).context("parse JSON")?;
    let mut payload = Payload::new();
    for (path, file) in files {
        let data = match (file.data, file.text) {
            (Some(data), None) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .with_context(|| format!("{path:?}: data is not base64"))?,
            (None, Some(text)) => text.into_bytes(),
            _ => bail!("{path:?}: give exactly one of \"data\" and \"text\""),
        };
        let mode = parse_mode(file.mode.as_deref().unwrap_or("0644"))
            .with_context(|| format!("{path:?}: mode"))?;
        payload.insert(path.into(), FileProjection::new(data, mode));
    }
    Ok(payload)
}

/// Parses an octal mode such as `0644`, `644` or `0o644`.
fn parse_mode(text: &str) -> anyhow::Result<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    ensure!(
        !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| matches!(b, b'0'..=b'7')),
        "{text:?} is not an octal mode"
    );
    Ok(u32::from_str_radix(digits, 8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() -> anyhow::Result<()> {
        assert_eq!(parse_mode("0644")?, 0o644);
        assert_eq!(parse_mode("600")?, 0o600);
        assert_eq!(parse_mode("0o755")?, 0o755);
        for bad in ["", "0o", "0x1ff", "0648", "rw-r--r--", "01234567"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn json_payload() -> anyhow::Result<()> {
        let json = br#"{
            "a/b.bin": {"data": "AAEC/w==", "mode": "0600"},
            "motd": {"text": "hello\n"}
        }"#;
        let payload = parse_json_payload(json)?;
        assert_eq!(payload[Path::new("a/b.bin")], FileProjection::new(vec![0, 1, 2, 255], 0o600));
        assert_eq!(payload[Path::new("motd")], FileProjection::new("hello\n", 0o644));
        Ok(())
    }

    #[test]
    fn json_payload_errors_name_the_path() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"x": {"data": "AA==", "text": "a"}}"#, r#""x": give exactly one"#),
            (br#"{"x": {"mode": "0644"}}"#, r#""x": give exactly one"#),
            (br#"{"x": {"data": "%%%"}}"#, r#""x": data is not base64"#),
            (br#"{"x": {"text": "a", "owner": "root"}}"#, "unknown field `owner`"),
        ];
        for (json, want) in cases {
            let err = parse_json_payload(json).err().map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(err.contains(want), "{err}");
        }
    }

    /// A source directory for this test process and `name`: `sub/file` (mode 4750), a link
    /// `link -> sub`, and a reserved `..data` at the top.
    fn scratch_src(name: &str) -> anyhow::Result<PathBuf> {
        let src =
            std::env::temp_dir().join(format!("strata-project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(src.join("sub"))?;
        std::fs::write(src.join("sub/file"), "x")?;
        std::fs::set_permissions(src.join("sub/file"), std::fs::Permissions::from_mode(0o4750))?;
        std::os::unix::fs::symlink("sub", src.join("link"))?;
        std::fs::write(src.join("..data"), "reserved")?;
        Ok(src)
    }

    #[test]
    fn dir_payload_follows_links_and_skips_reserved_names() -> anyhow::Result<()> {
        let src = scratch_src("links")?;
        let mut dirs = Vec::new();
        let read = read_dir_payload(&src, &mut |dir| {
            dirs.push(dir.to_path_buf());
            Ok(())
        });
        std::fs::remove_dir_all(&src)?;
        let files: Vec<_> = read?.into_iter().map(|(p, f)| (p, f.data, f.mode)).collect();
        let want = |p: &str| (PathBuf::from(p), b"x".to_vec(), 0o750);
        assert_eq!(files, [want("link/file"), want("sub/file")]);
        assert_eq!(dirs, [src.clone(), src.join("link"), src.join("sub")]);
        Ok(())
    }

    #[test]
    fn dir_payload_refuses_symlink_loops() -> anyhow::Result<()> {
        let src = scratch_src("loop")?;
        std::os::unix::fs::symlink(".", src.join("sub/loop"))?;
        let read = read_dir_payload(&src, &mut |_| Ok(()));
        std::fs::remove_dir_all(&src)?;
        let err = read.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.ends_with("/loop: symlink loop"), "{err}");
        Ok(())
    }
}
