//! What a write projects: the payload type, the path rules, and the checked form a write
//! works from.
//!
//! This is pure: nothing here touches the disk. The rules follow Kubernetes' `validatePath`,
//! except that they are applied to the clean path as well, so `./..data` is refused too.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::PayloadError;

/// The longest payload path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// The longest element of a payload path accepted, in bytes.
pub const MAX_ELEMENT_LEN: usize = 255;

/// The mode of every directory the writer creates for the payload.
pub const DIR_MODE: u32 = 0o755;

/// The bytes and permission bits of one projected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// The content of the file.
    pub data: Vec<u8>,
    /// The permission bits, within `0o777`; set exactly, whatever the process umask.
    pub mode: u32,
}

impl FileProjection {
    /// A file with `data` and permission bits `mode`.
    pub fn new(data: impl Into<Vec<u8>>, mode: u32) -> FileProjection {
        FileProjection { data: data.into(), mode }
    }
}

/// What a write projects: relative paths, which [`clean_path`] must accept, mapped to files.
///
/// Directories are implied by the paths of the files under them and get [`DIR_MODE`].
pub type Payload = BTreeMap<PathBuf, FileProjection>;

/// Checks `path` against the payload path rules and returns its clean form: no empty or `.`
/// elements and no trailing `/`.
///
/// A valid path is not empty, relative, at most [`MAX_PATH_LEN`] bytes with no element longer
/// than [`MAX_ELEMENT_LEN`], holds no `..` element and no NUL byte, and its first element does
/// not start with `..`, since the writer keeps those names for itself.
pub fn clean_path(path: &Path) -> Result<PathBuf, PayloadError> {
    let raw = path.as_os_str().as_bytes();
    let err_path = || path.to_path_buf();
    if raw.is_empty() {
        return Err(PayloadError::Empty { path: err_path() });
    }
    if raw.contains(&0) {
        return Err(PayloadError::Nul { path: err_path() });
    }
    if raw[0] == b'/' {
        return Err(PayloadError::Absolute { path: err_path() });
    }
    if raw.len() > MAX_PATH_LEN {
        let (len, limit) = (raw.len(), MAX_PATH_LEN);
        return Err(PayloadError::TooLong { path: err_path(), len, limit });
    }
    let elements: Vec<&[u8]> =
        raw.split(|&b| b == b'/').filter(|e| !e.is_empty() && *e != b".").collect();
    if elements.iter().any(|e| *e == b"..") {
        return Err(PayloadError::ParentElement { path: err_path() });
    }
    if let Some(len) = elements.iter().map(|e| e.len()).filter(|&l| l > MAX_ELEMENT_LEN).max() {
        return Err(PayloadError::ElementTooLong { path: err_path(), len, limit: MAX_ELEMENT_LEN });
    }
    match elements.first() {
        None => Err(PayloadError::Empty { path: err_path() }),
        Some(first) if first.starts_with(b"..") => Err(PayloadError::Reserved { path: err_path() }),
        Some(_) => Ok(PathBuf::from(OsString::from_vec(elements.join(&b'/')))),
    }
}

/// Checks every path and mode of `payload` against the rules [`AtomicWriter::write`] applies,
/// without touching the disk: a caller can refuse a payload before it creates or opens a
/// target.
///
/// [`AtomicWriter::write`]: crate::AtomicWriter::write
pub fn check_payload(payload: &Payload) -> Result<(), PayloadError> {
    CheckedPayload::new(payload).map(drop)
}

/// A payload that passed every rule, keyed by clean paths, with what a write derives from it.
#[derive(Debug)]
pub(crate) struct CheckedPayload<'a> {
    /// The files, by clean path.
    pub(crate) files: BTreeMap<PathBuf, &'a FileProjection>,
    /// Every directory the files imply, parents before children.
    pub(crate) dirs: BTreeSet<PathBuf>,
    /// The first elements of the paths: the names that appear in the target.
    pub(crate) top: BTreeSet<OsString>,
}

impl<'a> CheckedPayload<'a> {
    /// Checks every path and mode of `payload`.
    pub(crate) fn new(payload: &'a Payload) -> Result<CheckedPayload<'a>, PayloadError> {
        let mut files = BTreeMap::new();
        let mut given: BTreeMap<PathBuf, &Path> = BTreeMap::new();
        for (path, file) in payload {
            let clean = clean_path(path)?;
            if file.mode & !0o777 != 0 {
                return Err(PayloadError::Mode { path: path.clone(), mode: file.mode });
            }
            if let Some(other) = given.insert(clean.clone(), path) {
                return Err(PayloadError::Duplicate { path: path.clone(), other: other.into() });
            }
            files.insert(clean, file);
        }
        let mut dirs = BTreeSet::new();
        let mut top = BTreeSet::new();
        for path in files.keys() {
            for dir in path.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
                if files.contains_key(dir) {
                    let (path, other) = (dir.to_path_buf(), path.clone());
                    return Err(PayloadError::FileIsDirectory { path, other });
                }
                dirs.insert(dir.to_path_buf());
            }
            top.extend(path.iter().next().map(OsStr::to_os_string));
        }
        Ok(CheckedPayload { files, dirs, top })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_drops_empty_and_dot_elements() {
        let clean = |p: &str| clean_path(Path::new(p)).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(clean("foo//bar").ok().as_deref(), Some("foo/bar"));
        assert_eq!(clean("./foo/./bar/").ok().as_deref(), Some("foo/bar"));
        assert_eq!(clean(".hidden/.x").ok().as_deref(), Some(".hidden/.x"));
        assert!(matches!(clean("./"), Err(PayloadError::Empty { .. })));
        assert!(matches!(clean("./..data"), Err(PayloadError::Reserved { .. })));
    }

    #[test]
    fn derived_dirs_and_top_names() -> Result<(), PayloadError> {
        let mut payload = Payload::new();
        for p in ["a/b/c", "a/d", "e"] {
            payload.insert(p.into(), FileProjection::new("x", 0o644));
        }
        let checked = CheckedPayload::new(&payload)?;
        let dirs: Vec<_> = checked.dirs.iter().map(|d| d.to_string_lossy().into_owned()).collect();
        assert_eq!(dirs, ["a", "a/b"]);
        assert_eq!(checked.top, BTreeSet::from(["a".into(), "e".into()]));
        Ok(())
    }
}
