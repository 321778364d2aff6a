//! Deciding whether a version directory already holds a payload, so a write can skip the work.
//!
//! This is not a diff: it answers yes or no, and any difference at all (content, mode, an
//! extra or missing entry, an entry of another kind) is a no.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::payload::{CheckedPayload, DIR_MODE};

/// True when the version directory `root` holds exactly `payload`: the same files with the
/// same bytes and modes, the same directories with [`DIR_MODE`], and nothing else.
///
/// An entry the writer cannot read counts as a difference, so the write goes ahead.
pub(crate) fn holds(root: &Path, payload: &CheckedPayload<'_>) -> io::Result<bool> {
    let mut seen = Seen::default();
    match walk(root, Path::new(""), payload, &mut seen) {
        Ok(same) => {
            Ok(same && seen.files == payload.files.len() && seen.dirs == payload.dirs.len())
        }
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Ok(false),
        Err(err) => Err(err),
    }
}

/// How many of the payload's entries a walk found.
#[derive(Debug, Default)]
struct Seen {
    files: usize,
    dirs: usize,
}

/// Compares the entries of `root/rel` with the payload; stops at the first difference.
fn walk(
    root: &Path,
    rel: &Path,
    payload: &CheckedPayload<'_>,
    seen: &mut Seen,
) -> io::Result<bool> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path: PathBuf = rel.join(entry.file_name());
        let meta = entry.metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        let same = if meta.is_dir() {
            seen.dirs += 1;
            payload.dirs.contains(&path) && mode == DIR_MODE && walk(root, &path, payload, seen)?
        } else if meta.is_file() {
            seen.files += 1;
            match payload.files.get(&path) {
                Some(file) if file.mode == mode && file.data.len() as u64 == meta.len() => {
                    std::fs::read(root.join(&path))? == file.data
                }
                _ => false,
            }
        } else {
            false
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}
