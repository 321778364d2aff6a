//! Integration tests of the snapshot metastore and snapshotter.

mod containerd;
mod grpc;
mod metastore;
mod overlay;
