//! The user-visible names in the target: links `name -> ..data/name`, and the leftovers of
//! earlier writes.
//!
//! This is not where versions are written or switched: see `writer.rs`. Everything here is
//! idempotent, so it doubles as the healing step after a crash.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::layout::{DATA_LINK, DATA_TMP_LINK, is_version_dir_name};

/// What a user-visible name in the target currently is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Visible {
    /// Nothing has the name.
    Missing,
    /// A link the writer made: `name -> ..data/name`.
    Ours,
    /// Something else: a file, a directory, or a link elsewhere.
    Foreign,
}

/// What the user-visible `name` in `target` is.
pub(crate) fn visible(target: &Path, name: &OsStr) -> Result<Visible> {
    let path = target.join(name);
    match std::fs::read_link(&path) {
        Ok(dest) if dest == link_dest(name) => Ok(Visible::Ours),
        Ok(_) => Ok(Visible::Foreign),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Visible::Missing),
        Err(err) if err.kind() == io::ErrorKind::InvalidInput => Ok(Visible::Foreign),
        Err(err) => Err(Error::io("read link", path)(err)),
    }
}

/// Fails with [`Error::Occupied`] when one of `names` is taken by something not ours.
pub(crate) fn check_free(target: &Path, names: &BTreeSet<OsString>) -> Result<()> {
    for name in names {
        if visible(target, name)? == Visible::Foreign {
            return Err(Error::Occupied { path: target.join(name) });
        }
    }
    Ok(())
}

/// Makes the user-visible links match `names`, the top-level names of the current version:
/// [`create_missing`] and [`remove_gone`].
pub(crate) fn sync_links(
    fs: &mut impl Fs,
    target: &Path,
    names: &BTreeSet<OsString>,
) -> Result<()> {
    create_missing(fs, target, names)?;
    remove_gone(fs, target, names).map(drop)
}

/// Creates the links of `names` that are missing, and leaves a name taken by something not
/// ours alone, with a warning.
pub(crate) fn create_missing(
    fs: &mut impl Fs,
    target: &Path,
    names: &BTreeSet<OsString>,
) -> Result<()> {
    for name in names {
        let path = target.join(name);
        match visible(target, name)? {
            Visible::Ours => {}
            Visible::Missing => {
                tracing::debug!(link = %path.display(), "creating link");
                fs.symlink(&link_dest(name), &path).map_err(Error::io("create link", path))?;
            }
            Visible::Foreign => {
                tracing::warn!(path = %path.display(), "name is taken by something not ours");
            }
        }
    }
    Ok(())
}

/// Removes our links whose name is not in `keep`, and nothing else; returns how many.
pub(crate) fn remove_gone(
    fs: &mut impl Fs,
    target: &Path,
    keep: &BTreeSet<OsString>,
) -> Result<usize> {
    let mut removed = 0;
    for name in entries(target)? {
        let reserved = name.as_encoded_bytes().starts_with(b"..");
        if !reserved && !keep.contains(&name) && visible(target, &name)? == Visible::Ours {
            let path = target.join(&name);
            tracing::debug!(link = %path.display(), "removing link");
            fs.remove_file(&path).map_err(Error::io("remove link", path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes what earlier writes left behind: [`DATA_TMP_LINK`] and every version directory
/// but `current`.
pub(crate) fn remove_stale(fs: &mut impl Fs, target: &Path, current: Option<&OsStr>) -> Result<()> {
    for name in entries(target)? {
        let path = target.join(&name);
        if name == DATA_TMP_LINK {
            tracing::debug!(link = %path.display(), "removing leftover link");
            fs.remove_file(&path).map_err(Error::io("remove link", path))?;
        } else if is_version_dir_name(&name) && Some(name.as_os_str()) != current {
            tracing::debug!(dir = %path.display(), "removing old version");
            fs.remove_dir_all(&path).map_err(Error::io("remove directory", path))?;
        }
    }
    Ok(())
}

/// The top-level names of the version directory `version` in `target`.
pub(crate) fn version_names(target: &Path, version: &OsStr) -> Result<BTreeSet<OsString>> {
    Ok(entries(&target.join(version))?.into_iter().collect())
}

/// Where the user-visible link `name` points: `..data/name`.
fn link_dest(name: &OsStr) -> PathBuf {
    Path::new(DATA_LINK).join(name)
}

/// The names in the directory `dir`.
fn entries(dir: &Path) -> Result<Vec<OsString>> {
    let read = std::fs::read_dir(dir).map_err(Error::io("read directory", dir))?;
    let names = read.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>();
    names.map_err(Error::io("read directory", dir))
}
