//! Strata's checkpoint service: strongly consistent checkpoints for clients whose object
//! store is only eventually consistent, authorized by that store itself.
//!
//! A client names the object that holds its checkpoint in `X-Storage-Url` and sends its
//! object-store token in `X-Auth-Token`; the service authorizes every request by a GET of
//! that URL with that token. `PUT /TXID` and `DELETE /TXID` stage a change, `POST /TXID`
//! commits it durably in the KV layer, and `GET /` returns the committed value, or the
//! object's own content when none is. Once a POST has returned, no GET returns an older
//! value. Requests for one storage URL take effect in arrival order (those that cannot
//! affect each other, such as two GETs, overlap); requests for different URLs run in
//! parallel. The protocol, status codes and record layout are in `docs/design/ckpt.md`.
//!
//! # Brief overview
//!
//! - [`CkptConfig`]: `[ckpt]` in `strata.toml`; [`ConfMap`] reads the seed's `[ICKPT]`
//!   .conf format into it.
//! - [`Server`]: binds, serves until shutdown; [`serve`] does both.
//! - [`Client`]: the protocol from Rust, with the two-step [`Client::put`] and
//!   [`Client::delete`].
//! - [`Error`]: every failure, with a [`strata_kv::Category`]; only the HTTP layer turns
//!   errors into status codes.
//!
//! ```
//! use strata_ckpt::{CkptConfig, ConfMap};
//!
//! let conf = ConfMap::parse("[ICKPT]\nIPAddr: 127.0.0.1\nPort: 0\nTransactionTimeout: 2s\n", "x")?;
//! let ickpt = conf.ickpt(&CkptConfig::default())?;
//! assert_eq!(ickpt.config.listen, "127.0.0.1:0");
//! assert_eq!(ickpt.config.transaction_timeout_ms, 2000);
//! # Ok::<(), strata_ckpt::Error>(())
//! ```
//!
//! Serving, with committed values in a redb file:
//!
//! ```no_run
//! # async fn run() -> strata_ckpt::Result<()> {
//! let store = strata_kv::Store::redb(std::path::Path::new("/var/lib/strata/kv.redb"))?;
//! let config = strata_ckpt::CkptConfig::default();
//! strata_ckpt::serve(&config, store, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

#![deny(missing_docs)]

mod authorize;
mod client;
mod conf;
mod config;
mod endpoint;
mod error;
mod http_client;
mod names;
mod order;
mod request;
mod response;
mod server;
mod service;
mod staging;
mod store;
mod tls;

/// The byte buffer values travel in (re-exported from `bytes`).
pub use bytes::Bytes;

pub use crate::client::{Checkpoint, Client, ClientConfig, Target};
pub use crate::conf::{ConfMap, IckptConf, SECTION, parse_go_duration};
pub use crate::config::{Authorization, CkptConfig, TlsFiles};
pub use crate::error::{Error, Result};
pub use crate::names::{MAX_STORAGE_URL_LEN, MAX_TXID_LEN, StorageUrl, TxId};
pub use crate::request::{AUTH_TOKEN_HEADER, STORAGE_URL_HEADER};
pub use crate::response::{REVISION_HEADER, SOURCE_HEADER};
pub use crate::server::{SHUTDOWN_GRACE, Server, serve};
pub use crate::store::{KEY_PREFIX, key as record_key};
