//! Filesystem volumes: a content-addressed blob store and snapshot diffs (added, changed
//! and deleted entries as a compressed tar) made from and applied to directories.
