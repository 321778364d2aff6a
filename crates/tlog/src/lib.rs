//! The block-device transaction log.
//!
//! Clients stream every block write of a virtual disk to a tlog server over TCP, as Cap'n
//! Proto messages. The server orders them by sequence, aggregates them, compresses,
//! encrypts and hash-chains each aggregate, stores it durably, and only then acknowledges
//! the blocks as flushed. A player replays the log to rebuild a disk as of any sequence or
//! time.
//!
//! # Brief overview
//!
//! - [`message`]: the wire messages; [`frame`]: how bytes become messages.
//! - [`aggregate`]: the stored format ([`aggregate::Aggregate::seal`] and `open`).
//! - [`storage`]: where aggregates live ([`storage::Storage`]; segment files by default).
//! - [`server`]: the server; [`client`]: the client library.
//! - [`player`]: replay into an image, verification, listing.

#![deny(missing_docs)]

pub mod aggregate;
pub mod client;
pub mod config;
mod error;
pub mod frame;
pub mod keyfile;
pub mod message;
pub mod player;
pub mod server;
pub mod storage;
pub mod version;

pub use crate::error::{Error, Result};
