//! containerd's `Snapshots` gRPC service over a unix socket: strata as a containerd proxy
//! snapshotter (`[proxy_plugins.strata] type = "snapshot"`).
//!
//! [`serve`] binds the socket ([`Listener`], for callers that announce readiness between
//! binding and serving) and answers every call with the [`crate::Snapshotter`]; the
//! wire types are in [`proto`], generated from `proto/` by the build script. This module
//! only translates: every rule (kinds, parents, labels, filters) is the snapshotter's and
//! the metastore's, and every error code is derived from [`crate::Error::category`].

pub mod proto;

mod connections;
mod convert;
mod metrics;
mod server;
mod service;

pub use crate::grpc::convert::status_of;
pub use crate::grpc::server::{Listener, ServeConfig, serve, serve_with};
pub use crate::grpc::service::SnapshotsService;
