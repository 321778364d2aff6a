//! The blob format's constants and checks, shared by the writer and the reader.
//!
//! Layout (details in `docs/design/volume.md`): a zstd frame holding one tar whose first
//! entry is [`DIFF_ENTRY`] (version and deletions), then the added and changed entries under
//! [`TREE_PREFIX`] sorted by path, and last [`MANIFEST_ENTRY`] (the whole resulting tree).

use serde::{Deserialize, Serialize};

/// First tar entry: a JSON [`DiffHeader`].
pub(crate) const DIFF_ENTRY: &str = "strata/diff.json";
/// Last tar entry: the JSON manifest of the resulting tree, without stat caches.
pub(crate) const MANIFEST_ENTRY: &str = "strata/manifest.json";
/// Prefix of every tree entry's name in the tar.
pub(crate) const TREE_PREFIX: &str = "tree/";
/// The only format version.
pub(crate) const VERSION: u32 = 1;
/// zstd level; fixed, so the same diff always compresses to the same bytes.
pub(crate) const ZSTD_LEVEL: i32 = 3;
/// Largest JSON entry a reader accepts (the manifest of a tree of a few million paths).
pub(crate) const MAX_JSON: u64 = 1 << 30;

/// The first entry of a diff: its version and the paths it deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffHeader {
    /// [`VERSION`].
    pub(crate) version: u32,
    /// Paths of the parent tree absent from this one, sorted; a deleted directory is listed
    /// alone, not with the paths under it.
    pub(crate) deleted: Vec<String>,
}

/// Why `rel` is not a safe relative path of a tree, or `None` if it is.
pub(crate) fn unsafe_path(rel: &str) -> Option<&'static str> {
    if rel.is_empty() {
        return Some("empty path");
    }
    if rel.starts_with('/') {
        return Some("absolute path");
    }
    if rel.contains('\0') {
        return Some("NUL byte in the path");
    }
    for part in rel.split('/') {
        match part {
            "" => return Some("empty path element"),
            "." => return Some("`.` element"),
            ".." => return Some("`..` element escapes the directory"),
            _ => {}
        }
    }
    None
}

/// The parent of relative path `rel`, or `None` for a top-level path.
pub(crate) fn parent_of(rel: &str) -> Option<&str> {
    rel.rfind('/').map(|i| &rel[..i])
}
