//! Integration tests of the snapshot metastore and snapshotter.

mod metastore;
mod overlay;
mod util;
