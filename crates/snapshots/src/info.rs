//! The snapshot model: kinds, info, usage, and what an active or view snapshot resolves to.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

/// A snapshot's kind. Views and actives are created; an active becomes committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-only, from a committed parent; never committed.
    View,
    /// Writable; may be committed to a name.
    Active,
    /// Immutable; may be the parent of actives and views.
    Committed,
}

impl Kind {
    /// The name containerd's filters and tools use: `view`, `active`, `committed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Kind::View => 1,
            Kind::Active => 2,
            Kind::Committed => 3,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::View),
            2 => Some(Kind::Active),
            3 => Some(Kind::Committed),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What containerd calls `snapshots.Info`: a snapshot's user-visible metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    /// The key (active, view) or name (committed).
    pub name: String,
    /// The parent's name; empty for none.
    pub parent: String,
    /// The kind.
    pub kind: Kind,
    /// Arbitrary labels.
    pub labels: BTreeMap<String, String>,
    /// When the snapshot was created (for committed ones: committed).
    #[serde(with = "unix_nanos")]
    pub created: SystemTime,
    /// When its info last changed.
    #[serde(with = "unix_nanos")]
    pub updated: SystemTime,
}

/// Disk usage of a snapshot's own layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Bytes used.
    pub size: i64,
    /// Inodes used.
    pub inodes: i64,
}

/// An active or view snapshot as the snapshotter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot's id (its directory name).
    pub id: String,
    /// Active or view.
    pub kind: Kind,
    /// Ids of the parent chain, nearest first.
    pub parent_ids: Vec<String>,
}

/// Serializes times as Unix nanoseconds for `--json` output.
mod unix_nanos {
    use std::time::SystemTime;

    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i128(crate::schema::to_nanos(*time) as i128)
    }
}
