//! Virtual disks: records in kv, a sparse image per disk, an NBD server whose every write
//! is journaled through the tlog, and restore from the log.
//!
//! # Brief overview
//!
//! - [`record`]: the vdisk record (`Vdisk`) and [`record::Records`], where records live
//!   (a small redb file opened only briefly, or the shared kv store on etcd).
//! - [`proto`]: the NBD wire constants and message helpers (fixed newstyle).
//! - [`disk`]: one open vdisk shared by all its connections: the image file, the tlog
//!   client, the lock that numbers changes and the in-flight ranges that keep overlapping
//!   ones in log order on the image.
//! - [`server`]: the NBD server: negotiation (with STARTTLS and the `base:allocation`
//!   metadata context), transmission, limits, shutdown; [`tls`]: its TLS setup.
//! - [`restore`]: rebuilding a vdisk from its log (and its origins') up to a bound, on top
//!   of the block snapshot it was made from, if any.
//! - [`client`]: a minimal NBD client for a flush barrier (`strata vdisk snapshot`).
//!
//! Design and journaling contract: `docs/design/nbd.md`.

pub mod client;
mod config;
pub mod disk;
mod error;
mod metrics;
pub mod proto;
pub mod record;
pub mod restore;
pub mod server;
pub mod tls;

pub use crate::config::NbdConfig;
pub use crate::disk::LogAccess;
pub use crate::error::{Error, Result};
pub use crate::record::{Base, Origin, Records, Tracked, Vdisk};
pub use crate::server::{Listen, NbdServer, ServerConfig, Stats};
pub use crate::tls::Tls;
