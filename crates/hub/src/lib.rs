//! The hub: volume sets, snapshots on branches, volumes, on the KV layer; three-way sync
//! with a remote hub; the hub's HTTP server and client.
//!
//! # Brief overview
//!
//! - [`model`]: the records ([`VolumeSet`], [`Snapshot`], [`Branch`], [`Volume`], [`Bush`])
//!   and the metadata three-way sync compares.
//! - [`Hub`] (`store/`, a file per object): every operation of the model on a `strata_kv::Store` — fork,
//!   extend, idempotent import, the blob compare-and-swap, delete, queries,
//!   FindNonMissingSnapshot and RequestBlobDiff.
//! - [`sync`]: the decision rule and the target's side of a sync.
//! - [`plan`]: what a push or pull does (snapshots, blobs, branch outcomes, metadata),
//!   decided from both sides' state without I/O.
//! - [`transfer`]: push, pull and sync of one volume set against a [`Remote`].
//! - [`server`] and [`client`]: the JSON HTTP API (`docs/hub-openapi.yaml`) and its client,
//!   a [`Remote`]; [`tokens`]: bearer tokens kept as hashes in a file the server re-reads.
//! - [`workspace`]: a data directory's volumes, made from snapshots and snapshotted back.
//! - [`graph`] and [`Conflict::table`]: the history and a conflict drawn for people.

pub mod client;
mod config;
mod error;
pub mod model;
pub mod plan;
mod render;
pub mod server;
pub mod service;
mod store;
pub mod sync;
pub mod tokens;
pub mod transfer;
pub mod workspace;

pub use crate::client::Client;
pub use crate::config::HubConfig;
pub use crate::error::{Category, Error, Result};
pub use crate::model::{
    Attrs, Branch, BranchMeta, Bush, Snapshot, SnapshotMeta, Volume, VolumeKind, VolumeSet,
    VolumeSetMeta,
};
pub use crate::render::graph;
pub use crate::server::{HubServerConfig, Server};
pub use crate::service::HubService;
pub use crate::store::{
    BranchOutcome, Changes, Hub, IMPORT_CHUNK, NewSnapshot, Query, SortBy, SyncMark,
};
pub use crate::sync::{Decision, decide};
pub use crate::transfer::{Conflict, InProcess, Local, NoProgress, Progress, Remote, Report};
pub use crate::workspace::{Take, Taken, Workspace};

/// The OpenAPI 3 description of the HTTP API, as served at `GET /openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../../docs/hub-openapi.yaml");
