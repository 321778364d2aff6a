//! Where a payload comes from: the files under a directory (symlinks followed, loops
//! refused), or a JSON payload file; and a watcher that tells when a source directory
//! changed (`notify`: inotify on Linux; debounced here).
//!
//! This is not the write protocol (`writer`): a payload read here is checked there.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::payload::{FileProjection, Payload};

/// Everything reading a payload source or watching it can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A file system operation on the source failed.
    #[error("{}: {op}", .path.display())]
    Io {
        /// What was being done, such as `read`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error of the operation.
        #[source]
        source: io::Error,
    },
    /// A symlink in the source directory points back up at one of its ancestors.
    #[error("{}: symlink loop", .path.display())]
    SymlinkLoop {
        /// The directory reached again.
        path: PathBuf,
    },
    /// A JSON payload file is not valid.
    #[error("payload {}: {message}", .path.display())]
    Json {
        /// The payload file.
        path: PathBuf,
        /// What is wrong, naming the payload path when it concerns one.
        message: String,
    },
    /// The inotify watcher failed.
    #[error("watch: {op}")]
    Watch {
        /// What was being done.
        op: String,
        /// The error of the operation.
        #[source]
        source: io::Error,
    },
}

impl strata_error::Categorized for SourceError {
    fn error_category(&self) -> Option<strata_error::Category> {
        use strata_error::Category;
        match self {
            SourceError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Some(Category::NotFound)
            }
            SourceError::SymlinkLoop { .. } | SourceError::Json { .. } => {
                Some(Category::InvalidArgument)
            }
            _ => None,
        }
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io { op, path, source }
}

/// Where a payload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The regular files under a directory, with their permission bits.
    Dir(PathBuf),
    /// A JSON payload file: `{"path": {"data": "<base64>" | "text": "...", "mode": "0644"}}`.
    Json(PathBuf),
}

impl Source {
    /// Reads the payload; with `watcher`, each directory of a [`Source::Dir`] is watched
    /// just before it is read, so no change after the read is missed.
    pub fn read(&self, watcher: Option<&Watcher>) -> Result<Payload, SourceError> {
        match self {
            Source::Dir(src) => read_dir_payload(src, &mut |dir| match watcher {
                Some(watcher) => watcher.watch(dir),
                None => Ok(()),
            }),
            Source::Json(file) => {
                let bytes = std::fs::read(file).map_err(io_error("read", file))?;
                parse_json_payload(&bytes)
                    .map_err(|message| SourceError::Json { path: file.clone(), message })
            }
        }
    }
}

/// Reads the regular files under `src`, following symlinks, into a payload; `on_dir` sees
/// each directory just before it is read. Names starting with `..` at the top are skipped
/// (the writer keeps them); entries that vanish meanwhile, dangling links and special files
/// are skipped with a warning.
pub fn read_dir_payload(
    src: &Path,
    on_dir: &mut dyn FnMut(&Path) -> Result<(), SourceError>,
) -> Result<Payload, SourceError> {
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
    on_dir: &'a mut dyn FnMut(&Path) -> Result<(), SourceError>,
    /// The payload being read.
    payload: &'a mut Payload,
    /// Device and inode of the directories from `src` down to the current one, so a symlink
    /// back up is refused rather than followed forever.
    ancestors: Vec<(u64, u64)>,
}

impl Walk<'_> {
    /// Reads the directory `src/rel` and everything under it.
    fn dir(&mut self, rel: &Path) -> Result<(), SourceError> {
        let dir = self.src.join(rel);
        let meta = std::fs::metadata(&dir).map_err(io_error("stat", &dir))?;
        let id = (meta.dev(), meta.ino());
        if self.ancestors.contains(&id) {
            return Err(SourceError::SymlinkLoop { path: dir });
        }
        self.ancestors.push(id);
        (self.on_dir)(&dir)?;
        let entries = std::fs::read_dir(&dir).map_err(io_error("read", &dir))?;
        for entry in entries {
            let name = entry.map_err(io_error("read", &dir))?.file_name();
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
    fn entry(&mut self, rel: &Path) -> Result<(), SourceError> {
        let path = self.src.join(rel);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            // Removed since the directory was read, or a dangling symlink.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "skipping: vanished or dangling");
                return Ok(());
            }
            Err(err) => return Err(io_error("stat", &path)(err)),
        };
        if meta.is_dir() {
            return self.dir(rel);
        }
        if !meta.is_file() {
            tracing::warn!(path = %path.display(), "skipping: not a regular file");
            return Ok(());
        }
        let data = std::fs::read(&path).map_err(io_error("read", &path))?;
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

/// Parses a JSON payload: `{"path": {"data": "<base64>" | "text": "...", "mode": "0644"}}`.
/// The error names the payload path it concerns.
pub fn parse_json_payload(bytes: &[u8]) -> Result<Payload, String> {
    let files: BTreeMap<String, JsonFile> =
        serde_json::from_slice(bytes).map_err(|e| format!("parse JSON: {e}"))?;
    let mut payload = Payload::new();
    for (path, file) in files {
        let data = match (file.data, file.text) {
            (Some(data), None) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("{path:?}: data is not base64: {e}"))?,
            (None, Some(text)) => text.into_bytes(),
            _ => return Err(format!("{path:?}: give exactly one of \"data\" and \"text\"")),
        };
        let mode = parse_mode(file.mode.as_deref().unwrap_or("0644"))
            .map_err(|e| format!("{path:?}: mode: {e}"))?;
        payload.insert(path.into(), FileProjection::new(data, mode));
    }
    Ok(payload)
}

/// Parses an octal mode such as `0644`, `644` or `0o644`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let octal =
        !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| matches!(b, b'0'..=b'7'));
    match octal.then(|| u32::from_str_radix(digits, 8)) {
        Some(Ok(mode)) => Ok(mode),
        _ => Err(format!("{text:?} is not an octal mode")),
    }
}

/// Tells when a source directory changed: a `notify` watch (inotify on Linux) on each
/// directory read.
#[derive(Debug)]
pub struct Watcher {
    /// Adds watches; `notify` needs it mutably, watches are added from `&self`.
    watcher: Mutex<notify::RecommendedWatcher>,
    /// The events of every watch, as `notify`'s thread reads them.
    events: Mutex<mpsc::Receiver<notify::Result<notify::Event>>>,
}

impl Watcher {
    /// A watcher with no directory watched yet.
    pub fn new() -> Result<Watcher, SourceError> {
        let (send, events) = mpsc::channel();
        let watcher = notify::recommended_watcher(send)
            .map_err(|e| watch_error("create the watcher".into(), e))?;
        Ok(Watcher { watcher: Mutex::new(watcher), events: Mutex::new(events) })
    }

    /// Watches `dir` for any change to its entries or to itself.
    pub fn watch(&self, dir: &Path) -> Result<(), SourceError> {
        use notify::Watcher as _;
        let mut watcher = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(format!("watch {}", dir.display()), e))
    }

    /// Blocks until a change arrives, then until none has arrived for `debounce`, or for
    /// ten times `debounce` since the first one.
    pub fn wait_for_change(&self, debounce: Duration) -> Result<(), SourceError> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        wait_for(&events, None)?;
        let first = Instant::now();
        drain(&events)?;
        while first.elapsed() < debounce * 10 && wait_for(&events, Some(debounce))? {
            drain(&events)?;
        }
        tracing::debug!(after = ?first.elapsed(), "change settled");
        Ok(())
    }
}

/// Waits until a change is pending or `timeout` passes; true when one is. Reads (access
/// events) are not changes: reading the source must not wake its own watcher.
fn wait_for(
    events: &mpsc::Receiver<notify::Result<notify::Event>>,
    timeout: Option<Duration>,
) -> Result<bool, SourceError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let event = match deadline {
            None => events.recv().map_err(|_| closed()),
            Some(deadline) => {
                match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(event) => Ok(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => return Ok(false),
                    Err(mpsc::RecvTimeoutError::Disconnected) => Err(closed()),
                }
            }
        }?;
        if is_change(event)? {
            return Ok(true);
        }
    }
}

/// Takes the pending events: any change means "read again", which the caller does anyway.
fn drain(events: &mpsc::Receiver<notify::Result<notify::Event>>) -> Result<(), SourceError> {
    loop {
        match events.try_recv() {
            Ok(event) => _ = is_change(event)?,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => return Err(closed()),
        }
    }
}

fn is_change(event: notify::Result<notify::Event>) -> Result<bool, SourceError> {
    let event = event.map_err(|e| watch_error("read events".into(), e))?;
    Ok(!matches!(event.kind, notify::EventKind::Access(_)))
}

fn closed() -> SourceError {
    SourceError::Watch { op: "read events".into(), source: io::Error::other("the watcher stopped") }
}

fn watch_error(op: String, err: notify::Error) -> SourceError {
    let source = match err.kind {
        notify::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("{other:?}")),
    };
    SourceError::Watch { op, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        for bad in ["", "0o", "0x1ff", "0648", "rw-r--r--", "01234567"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_payload() {
        let json = br#"{
            "a/b.bin": {"data": "AAEC/w==", "mode": "0600"},
            "motd": {"text": "hello\n"}
        }"#;
        let payload = parse_json_payload(json).unwrap();
        assert_eq!(payload[Path::new("a/b.bin")], FileProjection::new(vec![0, 1, 2, 255], 0o600));
        assert_eq!(payload[Path::new("motd")], FileProjection::new("hello\n", 0o644));
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
            let err = parse_json_payload(json).err().unwrap_or_default();
            assert!(err.contains(want), "{err}");
        }
    }

    /// A source directory for this test process and `name`: `sub/file` (mode 4750), a link
    /// `link -> sub`, and a reserved `..data` at the top.
    fn scratch_src(name: &str) -> std::io::Result<PathBuf> {
        let src = std::env::temp_dir().join(format!("strata-source-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(src.join("sub"))?;
        std::fs::write(src.join("sub/file"), "x")?;
        std::fs::set_permissions(src.join("sub/file"), std::fs::Permissions::from_mode(0o4750))?;
        std::os::unix::fs::symlink("sub", src.join("link"))?;
        std::fs::write(src.join("..data"), "reserved")?;
        Ok(src)
    }

    #[test]
    fn dir_payload_follows_links_and_skips_reserved_names() {
        let src = scratch_src("links").unwrap();
        let mut dirs = Vec::new();
        let read = read_dir_payload(&src, &mut |dir| {
            dirs.push(dir.to_path_buf());
            Ok(())
        });
        std::fs::remove_dir_all(&src).unwrap();
        let files: Vec<_> = read.unwrap().into_iter().map(|(p, f)| (p, f.data, f.mode)).collect();
        let want = |p: &str| (PathBuf::from(p), b"x".to_vec(), 0o750);
        assert_eq!(files, [want("link/file"), want("sub/file")]);
        assert_eq!(dirs, [src.clone(), src.join("link"), src.join("sub")]);
    }

    #[test]
    fn dir_payload_refuses_symlink_loops() {
        let src = scratch_src("loop").unwrap();
        std::os::unix::fs::symlink(".", src.join("sub/loop")).unwrap();
        let read = read_dir_payload(&src, &mut |_| Ok(()));
        std::fs::remove_dir_all(&src).unwrap();
        let err = read.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.ends_with("/loop: symlink loop"), "{err}");
    }
}
