//! Helpers shared by the integration tests: building payloads, reading a target back the way
//! a consumer sees it, checking the layout, and file systems that record, fail or pause.
//!
//! This is not a test: nothing here asserts behaviour on its own, except `assert_layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use strata_atomic::{
    AtomicWriter, DATA_LINK, Error, FileProjection, Fs, LOCK_FILE, Payload, RealFs, clean_path,
    is_version_dir_name,
};

/// Files by clean path: bytes and permission bits.
pub type Tree = BTreeMap<PathBuf, (Vec<u8>, u32)>;

/// Opens `target` with `fs`, waiting out [`Error::Locked`] for a while.
///
/// A writer this process just dropped can still hold the lock for a moment: a child that
/// another test forked holds a copy of the lock's descriptor until it execs.
pub fn open_with<F: Fs + Clone>(target: &Path, fs: F) -> anyhow::Result<AtomicWriter<F>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match AtomicWriter::with_fs(target, fs.clone()) {
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => return Ok(other?),
        }
    }
}

/// Opens `target` on the real file system, waiting out [`Error::Locked`] like [`open_with`].
pub fn open(target: &Path) -> anyhow::Result<AtomicWriter> {
    open_with(target, RealFs)
}

/// A payload of `(path, text, mode)` entries.
pub fn payload(files: &[(&str, &str, u32)]) -> Payload {
    files.iter().map(|(p, d, m)| (PathBuf::from(p), FileProjection::new(*d, *m))).collect()
}

/// What a target should hold after projecting `payload`.
pub fn expected(payload: &Payload) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    for (path, file) in payload {
        tree.insert(clean_path(path)?, (file.data.clone(), file.mode));
    }
    Ok(tree)
}

/// The top-level names of a tree.
pub fn top_names(tree: &Tree) -> BTreeSet<OsString> {
    tree.keys().filter_map(|p| p.iter().next()).map(OsString::from).collect()
}

/// The files of the version `..data` points at, read directly.
pub fn data_tree(target: &Path) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    read_tree(&target.join(DATA_LINK), Path::new(""), &mut tree)?;
    Ok(tree)
}

/// What a consumer sees through the user-visible names, following links.
#[derive(Debug, Default)]
pub struct Visible {
    /// The files reached.
    pub files: Tree,
    /// User-visible links whose destination is missing.
    pub dangling: Vec<PathBuf>,
}

/// Reads the target as a consumer does: every name not starting with `..`, followed.
pub fn visible(target: &Path) -> anyhow::Result<Visible> {
    let mut seen = Visible::default();
    for entry in std::fs::read_dir(target)? {
        let name = entry?.file_name();
        if name.as_encoded_bytes().starts_with(b"..") {
            continue;
        }
        let path = target.join(&name);
        match std::fs::metadata(&path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => seen.dangling.push(name.into()),
            Err(err) => return Err(err).context(format!("stat {}", path.display())),
            Ok(meta) if meta.is_dir() => read_tree(target, Path::new(&name), &mut seen.files)?,
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o7777;
                seen.files.insert(name.into(), (std::fs::read(&path)?, mode));
            }
        }
    }
    Ok(seen)
}

/// Reads every file under `root/rel` into `tree`, keyed by path relative to `root`.
fn read_tree(root: &Path, rel: &Path, tree: &mut Tree) -> anyhow::Result<()> {
    let dir = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(rel) };
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let path = entry.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            read_tree(root, &rel_path, tree)?;
        } else {
            let mode = meta.permissions().mode() & 0o7777;
            tree.insert(rel_path, (std::fs::read(&path)?, mode));
        }
    }
    Ok(())
}

/// Checks the layout of a settled target: `..data` links to the only version directory, the
/// lock file, and for the user-visible names only links `name -> ..data/name`, one for each
/// top-level name of `tree`, which is what the target must show.
pub fn assert_layout(target: &Path, tree: &Tree) -> anyhow::Result<()> {
    let mut versions = Vec::new();
    let mut links = BTreeSet::new();
    for entry in std::fs::read_dir(target)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if name == DATA_LINK {
            ensure!(kind.is_symlink(), "..data is not a symlink");
        } else if name == LOCK_FILE {
            ensure!(kind.is_file(), "..lock is not a file");
        } else if is_version_dir_name(&name) {
            ensure!(kind.is_dir(), "{name:?} is not a directory");
            versions.push(name);
        } else {
            let dest = std::fs::read_link(entry.path())
                .with_context(|| format!("{name:?} is not a symlink"))?;
            ensure!(dest == Path::new(DATA_LINK).join(&name), "{name:?} -> {dest:?}");
            links.insert(name);
        }
    }
    ensure!(versions.len() == 1, "version directories: {versions:?}");
    let data = std::fs::read_link(target.join(DATA_LINK))?;
    ensure!(data == Path::new(&versions[0]), "..data -> {data:?}, versions {versions:?}");
    ensure!(links == top_names(tree), "links {links:?}");
    let seen = visible(target)?;
    ensure!(seen.dangling.is_empty(), "dangling {:?}", seen.dangling);
    ensure!(
        seen.files == *tree,
        "visible files differ:\n{:?}\n{:?}",
        seen.files.keys(),
        tree.keys()
    );
    ensure!(data_tree(target)? == *tree, "..data differs");
    Ok(())
}

/// One change made through a [`Fs`], as [`RecordingFs`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `create_dir`.
    CreateDir(PathBuf),
    /// `write_file`.
    WriteFile(PathBuf),
    /// `sync_dir`.
    SyncDir(PathBuf),
    /// `symlink(target, link)`: the link.
    Symlink(PathBuf),
    /// `rename(from, to)`: the destination.
    Rename(PathBuf),
    /// `remove_file`.
    RemoveFile(PathBuf),
    /// `remove_dir_all`.
    RemoveDirAll(PathBuf),
}

/// A real file system that records every change and can fail or pause at the n-th one.
///
/// Clones share the record, so a test keeps one to read after the writer took the other.
#[derive(Debug, Default, Clone)]
pub struct RecordingFs {
    /// The changes made so far, in order.
    pub ops: Arc<Mutex<Vec<Op>>>,
    /// What to do at the call with this index (0-based), if anything.
    pub at: Option<(usize, Act)>,
}

/// What [`RecordingFs`] does at its chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Fail the call with an injected I/O error, without doing it.
    Fail,
    /// Announce the call on stderr and wait forever, for the parent's `SIGKILL`.
    Pause,
}

impl RecordingFs {
    /// A file system that does `act` at the call with index `at`.
    pub fn acting(at: usize, act: Act) -> RecordingFs {
        RecordingFs { ops: Arc::default(), at: Some((at, act)) }
    }

    /// The changes made so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().map(|ops| ops.clone()).unwrap_or_default()
    }

    /// Records `op`, then fails or pauses if it is the chosen call.
    fn step(&mut self, op: Op) -> io::Result<()> {
        let mut ops = self.ops.lock().map_err(|_| io::Error::other("op log poisoned"))?;
        let index = ops.len();
        ops.push(op);
        drop(ops);
        match self.at {
            Some((at, Act::Fail)) if at == index => Err(io::Error::other("injected failure")),
            Some((at, Act::Pause)) if at == index => {
                eprintln!("{POINT_MARK} {index}");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            _ => Ok(()),
        }
    }
}

impl Fs for RecordingFs {
    fn create_dir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        self.step(Op::CreateDir(path.into()))?;
        RealFs.create_dir(path, mode)
    }
    fn write_file(&mut self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        self.step(Op::WriteFile(path.into()))?;
        RealFs.write_file(path, data, mode)
    }
    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        self.step(Op::SyncDir(path.into()))?;
        RealFs.sync_dir(path)
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.step(Op::Symlink(link.into()))?;
        RealFs.symlink(target, link)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Rename(to.into()))?;
        RealFs.rename(from, to)
    }
    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.step(Op::RemoveFile(path.into()))?;
        RealFs.remove_file(path)
    }
    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        self.step(Op::RemoveDirAll(path.into()))?;
        RealFs.remove_dir_all(path)
    }
}

/// The line a pausing child prints before it waits: `STRATA-POINT <index>`.
pub const POINT_MARK: &str = "STRATA-POINT";

/// The line a child prints when it is done: `STRATA-DONE <detail>`.
pub const DONE_MARK: &str = "STRATA-DONE";

/// The environment variable that puts the test binary in child mode, naming the role.
pub const CHILD_ENV: &str = "STRATA_ATOMIC_TEST_CHILD";

/// A child process: this test binary running only `child::entry`, in `role`, with `envs`.
#[derive(Debug)]
pub struct ChildProc {
    child: Child,
    stderr: BufReader<ChildStderr>,
}

impl ChildProc {
    /// Starts the child, with `umask` applied first through `sh` when given.
    pub fn spawn(role: &str, envs: &[(&str, String)], umask: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let args = ["--exact", "child::entry", "--nocapture", "--test-threads=1"];
        let mut command = match umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("umask {mask} && exec \"$0\" \"$@\"")).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command.args(args).env(CHILD_ENV, role).envs(envs.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().context("spawn child")?;
        let stderr = BufReader::new(child.stderr.take().context("child stderr")?);
        Ok(ChildProc { child, stderr })
    }

    /// Reads the child's stderr up to its next mark line; returns the line.
    pub fn next_mark(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stderr.read_line(&mut line)? == 0 {
                bail!("child ended without a mark: {:?}", self.child.wait()?);
            }
            if line.starts_with(POINT_MARK) || line.starts_with(DONE_MARK) {
                return Ok(line.trim_end().to_string());
            }
        }
    }

    /// Kills the child with `SIGKILL` and reaps it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for the child to exit and checks that it succeeded.
    pub fn wait(mut self) -> anyhow::Result<()> {
        let status = self.child.wait()?;
        ensure!(status.success(), "child failed: {status}");
        Ok(())
    }
}

/// Checks a target whose write from `old` to `new` was interrupted, before any healing:
/// `..data` holds exactly one of the two (no `..data` counts as the empty `old` of a first
/// write), no user-visible link dangles, every visible file is that version's, and a
/// missing name is one whose link the interrupted write was adding or removing.
///
/// Returns the version on disk.
pub fn check_interrupted(target: &Path, old: &Tree, new: &Tree) -> anyhow::Result<Tree> {
    let has_data = std::fs::symlink_metadata(target.join(DATA_LINK)).is_ok();
    let data = if has_data { data_tree(target)? } else { Tree::new() };
    let (version, changing) = if data == *new {
        (new, top_names(new).difference(&top_names(old)).cloned().collect::<BTreeSet<_>>())
    } else if data == *old {
        (old, top_names(old).difference(&top_names(new)).cloned().collect())
    } else {
        bail!("..data holds neither version: {:?}", data.keys());
    };
    let seen = visible(target)?;
    ensure!(seen.dangling.is_empty(), "dangling links {:?}", seen.dangling);
    for (path, file) in &seen.files {
        ensure!(version.get(path) == Some(file), "{path:?} is not the version's");
    }
    let missing: BTreeSet<_> =
        top_names(version).difference(&top_names(&seen.files)).cloned().collect();
    ensure!(missing.is_subset(&changing), "missing {missing:?}, changing {changing:?}");
    let whole =
        version.iter().filter(|(p, _)| !p.iter().next().is_some_and(|t| missing.contains(t)));
    ensure!(whole.count() == seen.files.len(), "a name is only partly visible");
    Ok(version.clone())
}

/// Checks a healed target that holds `tree`; a target that never got a version must hold
/// nothing but the lock file.
pub fn assert_healed(target: &Path, tree: &Tree) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(target.join(DATA_LINK)).is_ok() {
        return assert_layout(target, tree);
    }
    ensure!(tree.is_empty(), "no ..data, but a version with files");
    let names: Vec<_> =
        std::fs::read_dir(target)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    ensure!(names == [LOCK_FILE], "left over: {names:?}");
    Ok(())
}
