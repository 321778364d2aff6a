//! Helpers of the tests: a seeded random tree mutator, a reader of a tree that shares no code
//! with the crate (to compare trees byte for byte, with modes), and a builder of hand-made
//! (possibly malicious) diff blobs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_volume::{BlobId, BlobStore};

/// What a tree holds at one path, read straight off the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A file: mode and content.
    File(u32, Vec<u8>),
    /// A directory: mode.
    Dir(u32),
    /// A symlink: target.
    Link(String),
}

/// Every path under `dir` (relative, `/`-separated) with what it holds.
pub fn read_tree(dir: &Path) -> anyhow::Result<BTreeMap<String, Node>> {
    let mut out = BTreeMap::new();
    read_into(dir, "", &mut out)?;
    Ok(out)
}

fn read_into(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Node>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let name =
            entry.file_name().into_string().map_err(|n| anyhow::anyhow!("non-UTF-8 {n:?}"))?;
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let meta = fs::symlink_metadata(entry.path())?;
        let mode = meta.mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path())?
                .into_os_string()
                .into_string()
                .map_err(|t| anyhow::anyhow!("{t:?}"))?;
            out.insert(rel, Node::Link(target));
        } else if meta.is_dir() {
            out.insert(rel.clone(), Node::Dir(mode));
            read_into(&entry.path(), &rel, out)?;
        } else {
            out.insert(rel, Node::File(mode, fs::read(entry.path())?));
        }
    }
    Ok(())
}

/// Asserts two trees hold the same paths with the same kinds, modes, contents and targets.
pub fn assert_same_tree(expected: &Path, actual: &Path) -> anyhow::Result<()> {
    let (e, a) = (read_tree(expected)?, read_tree(actual)?);
    let missing: Vec<_> = e.keys().filter(|k| !a.contains_key(*k)).collect();
    let extra: Vec<_> = a.keys().filter(|k| !e.contains_key(*k)).collect();
    anyhow::ensure!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
    for (path, node) in &e {
        anyhow::ensure!(
            a[path] == *node,
            "{path}: expected {}, found {}",
            describe(node),
            describe(&a[path])
        );
    }
    Ok(())
}

fn describe(node: &Node) -> String {
    match node {
        Node::File(mode, content) => format!("file {mode:o} of {} bytes", content.len()),
        Node::Dir(mode) => format!("dir {mode:o}"),
        Node::Link(target) => format!("symlink to {target:?}"),
    }
}

/// A seeded random mutator of a tree: creates, rewrites, chmods, deletes and changes the
/// kind of files, directories and symlinks.
///
/// Directories stay owner-writable while it works and get their chosen modes at the end of
/// each [`Mutator::mutate`], so it works for users other than root too.
pub struct Mutator {
    rng: fastrand::Rng,
    root: PathBuf,
    counter: u64,
    dir_modes: BTreeMap<PathBuf, u32>,
}

const FILE_MODES: [u32; 6] = [0o644, 0o600, 0o755, 0o444, 0o640, 0o4755];
const DIR_MODES: [u32; 4] = [0o755, 0o700, 0o555, 0o750];

impl Mutator {
    /// A mutator of the tree at `root` (created if missing), seeded with `seed`.
    pub fn new(root: &Path, seed: u64) -> anyhow::Result<Mutator> {
        fs::create_dir_all(root)?;
        Ok(Mutator {
            rng: fastrand::Rng::with_seed(seed),
            root: root.to_owned(),
            counter: 0,
            dir_modes: BTreeMap::new(),
        })
    }

    /// Applies `n` random changes.
    pub fn mutate(&mut self, n: usize) -> anyhow::Result<()> {
        let dirs = self.dirs()?;
        for dir in &dirs {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        for _ in 0..n {
            self.one()?;
        }
        for dir in self.dirs()?.iter().rev() {
            let mode = self.dir_modes.get(dir).copied().unwrap_or(0o755);
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    fn dirs(&self) -> anyhow::Result<Vec<PathBuf>> {
        Ok(self
            .paths()?
            .into_iter()
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
            .collect())
    }

    fn one(&mut self) -> anyhow::Result<()> {
        let paths = self.paths()?;
        let pick = if paths.is_empty() {
            None
        } else {
            Some(paths[self.rng.usize(..paths.len())].clone())
        };
        match (self.rng.u8(..10), pick) {
            (0..=2, _) | (_, None) => {
                let parent = self.random_dir()?;
                let path = parent.join(self.fresh_name());
                self.write_file(&path)?;
            }
            (3, _) => {
                let parent = self.random_dir()?;
                let path = parent.join(self.fresh_name());
                fs::create_dir(&path)?;
                let mode = *self.rng.choice(&DIR_MODES).unwrap_or(&0o755);
                self.dir_modes.insert(path, mode);
            }
            (4, _) => {
                let parent = self.random_dir()?;
                let path = parent.join(self.fresh_name());
                let targets = ["../up", "/etc/passwd", "dangling", "a/b/c", "."];
                symlink(targets[self.rng.usize(..targets.len())], &path)?;
            }
            (5, Some(p)) => {
                let meta = fs::symlink_metadata(&p)?;
                if meta.is_file() {
                    let same_size = self.rng.bool();
                    if same_size {
                        let mut content = fs::read(&p)?;
                        if let Some(b) = content.first_mut() {
                            *b = b.wrapping_add(1);
                        }
                        let mode = meta.mode() & 0o7777;
                        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))?;
                        fs::write(&p, content)?;
                        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
                    } else {
                        self.write_file(&p)?;
                    }
                }
            }
            (6, Some(p)) => {
                let meta = fs::symlink_metadata(&p)?;
                if meta.is_dir() {
                    let mode = DIR_MODES[self.rng.usize(..DIR_MODES.len())];
                    self.dir_modes.insert(p, mode);
                } else if !meta.file_type().is_symlink() {
                    let mode = FILE_MODES[self.rng.usize(..FILE_MODES.len())];
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
                }
            }
            (7, Some(p)) => remove(&p)?,
            (_, Some(p)) => {
                // Change the kind of what is at `p`.
                let meta = fs::symlink_metadata(&p)?;
                remove(&p)?;
                if meta.is_dir() {
                    if self.rng.bool() { symlink("elsewhere", &p)? } else { self.write_file(&p)? }
                } else if meta.file_type().is_symlink() {
                    self.write_file(&p)?;
                } else {
                    fs::create_dir(&p)?;
                    let child = p.join(self.fresh_name());
                    self.write_file(&child)?;
                }
            }
        }
        Ok(())
    }

    fn write_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let len = match self.rng.u8(..4) {
            0 => 0,
            1 => self.rng.usize(..100),
            2 => self.rng.usize(..20_000),
            _ => self.rng.usize(..200_000),
        };
        let mut content = vec![0u8; len];
        if self.rng.bool() {
            self.rng.fill(&mut content);
        } else {
            for (i, b) in content.iter_mut().enumerate() {
                *b = b"strata volume "[i % 14];
            }
        }
        if fs::symlink_metadata(path).is_ok() {
            fs::remove_file(path)?;
        }
        let mut f = fs::File::create(path)?;
        f.write_all(&content)?;
        fs::set_permissions(
            path,
            fs::Permissions::from_mode(*self.rng.choice(&FILE_MODES).unwrap_or(&0o644)),
        )?;
        Ok(())
    }

    fn fresh_name(&mut self) -> String {
        self.counter += 1;
        let names = ["f", "dir", "a b", "ünï", "x.txt", ".hidden", "long-name-that-goes-on"];
        format!("{}{}", names[self.rng.usize(..names.len())], self.counter)
    }

    fn random_dir(&mut self) -> anyhow::Result<PathBuf> {
        let dirs = self.dirs()?;
        if dirs.is_empty() || self.rng.u8(..4) == 0 {
            return Ok(self.root.clone());
        }
        Ok(dirs[self.rng.usize(..dirs.len())].clone())
    }

    fn paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        Ok(read_tree(&self.root)?.into_keys().map(|k| self.root.join(k)).collect())
    }
}

fn remove(p: &Path) -> anyhow::Result<()> {
    if fs::symlink_metadata(p)?.is_dir() {
        fs::remove_dir_all(p)?
    } else {
        fs::remove_file(p)?
    }
    Ok(())
}

/// One entry of a hand-made tar: name bytes written into the header as they are.
pub struct Raw {
    /// The name, unchecked.
    pub name: Vec<u8>,
    /// The entry type.
    pub kind: tar::EntryType,
    /// The mode.
    pub mode: u32,
    /// Content of a regular entry.
    pub data: Vec<u8>,
    /// Link target of a link entry.
    pub link: Vec<u8>,
}

impl Raw {
    /// A regular entry.
    pub fn file(name: &str, data: &[u8]) -> Raw {
        Raw {
            name: name.into(),
            kind: tar::EntryType::Regular,
            mode: 0o644,
            data: data.to_vec(),
            link: Vec::new(),
        }
    }

    /// A link entry of `kind` (symlink, hard link).
    pub fn link(name: &str, kind: tar::EntryType, target: &str) -> Raw {
        Raw { name: name.into(), kind, mode: 0o777, data: Vec::new(), link: target.into() }
    }
}

/// Builds a zstd-compressed tar of `entries` exactly as given and stores it, returning its id.
pub fn store_raw(store: &BlobStore, entries: &[Raw]) -> anyhow::Result<BlobId> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().context("gnu header")?;
        gnu.name[..e.name.len()].copy_from_slice(&e.name);
        gnu.linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        builder.append(&h, e.data.as_slice())?;
    }
    let tar = builder.into_inner()?;
    store_bytes(store, &zstd::encode_all(tar.as_slice(), 3)?)
}

/// Stores `bytes` as a blob.
pub fn store_bytes(store: &BlobStore, bytes: &[u8]) -> anyhow::Result<BlobId> {
    let mut w = store.writer()?;
    w.write_all(bytes)?;
    Ok(w.finish()?)
}

/// The JSON of a diff header with these deletions.
pub fn diff_json(deleted: &[&str]) -> Vec<u8> {
    serde_json::json!({ "version": 1, "deleted": deleted }).to_string().into_bytes()
}

/// The JSON of a manifest of the given `(path, entry JSON)` pairs.
pub fn manifest_json(entries: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let map: serde_json::Map<String, serde_json::Value> =
        entries.iter().map(|(p, v)| ((*p).to_owned(), v.clone())).collect();
    serde_json::json!({ "entries": map }).to_string().into_bytes()
}

/// The lowercase hex BLAKE3 of `data`.
pub fn hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}
