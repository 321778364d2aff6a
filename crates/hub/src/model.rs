//! The hub's records: volume sets, snapshots, branches, volumes, bushes; ids, names, and
//! the metadata each three-way sync compares.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Free-form key/value attributes.
pub type Attrs = BTreeMap<String, String>;

/// Declares a record with its own fields followed by those volume sets and snapshots share:
/// free text, attributes, size, creator, owner and times.
macro_rules! record {
    ($(#[$attr:meta])* pub struct $name:ident { $($(#[$f_attr:meta])* pub $f:ident: $t:ty,)* }) => {
        $(#[$attr])*
        pub struct $name {
            $($(#[$f_attr])* pub $f: $t,)*
            /// Free text.
            #[serde(default)]
            pub description: String,
            /// Attributes.
            #[serde(default)]
            pub attrs: Attrs,
            /// Bytes: a snapshot's blob size; a volume set's, the sum of its snapshots'.
            #[serde(default)]
            pub size: u64,
            /// Who created it.
            #[serde(default)]
            pub creator: String,
            /// Who owns it (a snapshot: its volume set's owner).
            #[serde(default)]
            pub owner: String,
            /// Creation time, Unix nanoseconds.
            #[serde(default)]
            pub created_at: u64,
            /// Last metadata change, Unix nanoseconds.
            #[serde(default)]
            pub updated_at: u64,
        }
    };
}

record! {
    /// A named collection of snapshots on branches.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct VolumeSet {
        /// Random UUID, the same on every store the set is synced to.
        pub id: String,
        /// The user-facing name, unique per owner.
        pub name: String,
        /// A namespace prefix (free-form, may be empty).
        #[serde(default)]
        pub prefix: String,
        /// What its snapshots hold: directory trees or disk images. Fixed at creation; a
        /// record without one (made before block sets existed) is a filesystem set.
        #[serde(default)]
        pub kind: VolumeKind,
    }
}

/// What the snapshots of a volume set hold, and so what their blobs are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    /// Directory trees: blobs are compressed tars (`strata volume`).
    #[default]
    Filesystem,
    /// Disk images (vdisks): blobs are changed extents (`strata vdisk snapshot`).
    Block,
}

impl VolumeKind {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::Filesystem => "filesystem",
            VolumeKind::Block => "block",
        }
    }
}

impl std::fmt::Display for VolumeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VolumeKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<VolumeKind> {
        match s {
            "filesystem" | "fs" => Ok(VolumeKind::Filesystem),
            "block" => Ok(VolumeKind::Block),
            _ => Err(Error::InvalidArgument(format!(
                "unknown volume set kind {s:?}: filesystem or block"
            ))),
        }
    }
}

record! {
    /// One recorded state of a volume.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Snapshot {
        /// Random UUID, globally unique.
        pub id: String,
        /// The snapshot it was taken on top of; `None` for a root.
        pub parent_id: Option<String>,
        /// Its volume set.
        pub volset_id: String,
        /// Name (not unique).
        #[serde(default)]
        pub name: String,
        /// The blob holding the difference from the parent; `None` until one is set.
        #[serde(default)]
        pub blob_id: Option<String>,
        /// The parent's blob, the base this snapshot's blob applies to.
        #[serde(default)]
        pub prev_blob_id: Option<String>,
        /// 1 for a root, parent's depth + 1 otherwise.
        pub depth: u64,
    }
}

/// A line of snapshots; its tip is its newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    /// Random UUID, the same on every store.
    pub id: String,
    /// Its volume set.
    pub volset_id: String,
    /// Name, unique in the volume set when not empty; no `:` or `*`.
    #[serde(default)]
    pub name: String,
    /// The newest snapshot.
    pub tip: String,
    /// Attributes.
    #[serde(default)]
    pub attrs: Attrs,
}

/// A writable copy made from a snapshot: a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Random UUID.
    pub id: String,
    /// Name, unique in the store when not empty.
    pub name: String,
    /// Its volume set.
    pub volset_id: String,
    /// The snapshot its contents started from (the base of its next snapshot); `None` for an
    /// empty volume.
    pub snapshot_id: Option<String>,
    /// The branch its next snapshot extends; `None` until its first snapshot, or when the
    /// base is no longer a tip.
    pub branch_id: Option<String>,
    /// Its directory.
    pub path: String,
    /// Creation time, Unix nanoseconds.
    pub created_at: u64,
}

/// A tree of snapshots growing from one root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bush {
    /// Its volume set.
    pub volset_id: String,
    /// The root snapshot.
    pub root: String,
    /// Where its data lives (the blob store's description).
    pub data_server: String,
}

/// What the user may change of a volume set: the fields three-way sync compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSetMeta {
    /// Name.
    pub name: String,
    /// Prefix.
    pub prefix: String,
    /// Description.
    pub description: String,
    /// Attributes.
    pub attrs: Attrs,
}

/// What the user may change of a snapshot: the fields three-way sync compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Attributes.
    pub attrs: Attrs,
}

/// What the user may change of a branch: the fields three-way sync compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchMeta {
    /// Name.
    pub name: String,
    /// Attributes.
    pub attrs: Attrs,
}

impl VolumeSet {
    /// The synced metadata.
    pub fn meta(&self) -> VolumeSetMeta {
        VolumeSetMeta {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            description: self.description.clone(),
            attrs: self.attrs.clone(),
        }
    }

    /// Replaces the synced metadata.
    pub fn set_meta(&mut self, meta: &VolumeSetMeta) {
        self.name = meta.name.clone();
        self.prefix = meta.prefix.clone();
        self.description = meta.description.clone();
        self.attrs = meta.attrs.clone();
        self.updated_at = now();
    }
}

impl Snapshot {
    /// The synced metadata.
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            name: self.name.clone(),
            description: self.description.clone(),
            attrs: self.attrs.clone(),
        }
    }

    /// Replaces the synced metadata.
    pub fn set_meta(&mut self, meta: &SnapshotMeta) {
        self.name = meta.name.clone();
        self.description = meta.description.clone();
        self.attrs = meta.attrs.clone();
        self.updated_at = now();
    }
}

impl Branch {
    /// The synced metadata.
    pub fn meta(&self) -> BranchMeta {
        BranchMeta { name: self.name.clone(), attrs: self.attrs.clone() }
    }

    /// Replaces the synced metadata.
    pub fn set_meta(&mut self, meta: &BranchMeta) {
        self.name = meta.name.clone();
        self.attrs = meta.attrs.clone();
    }
}

/// A new random id: a UUID v4 from the operating system's secure RNG, so that knowing some
/// ids tells nothing about others.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks that `id` looks like an id this crate makes (hex and dashes, 1..=64 bytes), so it
/// cannot break a key layout.
pub fn validate_id(what: &str, id: &str) -> Result<()> {
    let ok =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} id {id:?} is not an id (hex digits and dashes)"
        )))
    }
}

/// Checks a branch name: may be empty; no `:` or `*`, no control characters, at most 255
/// bytes.
pub fn validate_branch_name(name: &str) -> Result<()> {
    if name.contains(':') || name.contains('*') {
        return Err(Error::InvalidArgument(format!(
            "invalid branch name {name:?}: branch names may not contain ':' or '*'"
        )));
    }
    if name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "invalid branch name {name:?}: at most 255 bytes, no control characters"
        )));
    }
    Ok(())
}

/// Checks a volume set or volume name: not empty, at most 255 bytes, no `/`, no control
/// characters, not only hex digits and dashes of id length (so names and ids never clash).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(Error::InvalidArgument(format!(
            "invalid {what} name {name:?}: 1 to 255 bytes, no '/' and no control characters"
        )));
    }
    Ok(())
}

/// Now, Unix nanoseconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_valid() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        validate_id("test", &id).unwrap();
        assert_ne!(id, new_id());
        assert!(validate_id("test", "a/b").is_err());
    }

    #[test]
    fn branch_names_refuse_colon_and_star() {
        validate_branch_name("").unwrap();
        validate_branch_name("main").unwrap();
        assert!(validate_branch_name("a:b").is_err());
        assert!(validate_branch_name("a*").is_err());
    }
}
