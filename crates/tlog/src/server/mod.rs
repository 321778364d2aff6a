//! The tlog server: accepts client connections, orders each vdisk's blocks, and flushes
//! them as sealed aggregates to storage before acknowledging them.
//!
//! - `listener`: the accept loop, the connection limit and shutdown ([`Server`], [`serve`]).
//! - `handler`: one client: handshake, then blocks and commands (the rules both transports
//!   share, and the TCP connection).
//! - `local`: the in-process transport ([`LocalConnector`]): a client in the server's own
//!   process hands `Block` values to the vdisk task, with no encoding, socket or re-hashing.
//! - `vdisk`: one task per vdisk, owning its ordering buffer, flush triggers and chain head.
//! - `stored`: what the chain holds under a sequence, for answering resent blocks.

mod handler;
mod listener;
pub(crate) mod local;
mod slave;
mod stored;
mod vdisk;

use std::sync::Arc;
use std::time::Duration;

use crate::aggregate::Key;
pub use crate::server::listener::{Server, serve};
pub use crate::server::local::LocalConnector;
use crate::storage::Storage;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Flush when this many ordered blocks are waiting (the original's default: 25).
    pub flush_size: usize,
    /// The same, for a vdisk whose clients are all in this process (`LocalConnector`):
    /// they never wait for `FlushOK` to send more (our client asks for a flush when its
    /// window is full), so larger flushes cost them nothing and spare a flush, an
    /// `O_DIRECT` write and an `fdatasync`, per `flush_size` blocks.
    pub local_flush_size: usize,
    /// Flush what is waiting this long after the last flush (the original's default: 25 s).
    pub flush_time: Duration,
    /// Encrypt aggregates with this key; `None` stores them unencrypted.
    pub key: Option<Key>,
    /// The most client connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The most block bytes one vdisk buffers before its clients are made to wait.
    pub max_buffered_bytes: usize,
    /// The most bytes of block data sealed into one aggregate; a larger backlog becomes
    /// several aggregates.
    pub max_aggregate_bytes: usize,
    /// Keep a slave copy of each vdisk here (`<vdisk>.img`, with its replayed sequence in
    /// `<vdisk>.seq`), brought up to date by replaying the log on WaitNbdSlaveSync. `None`:
    /// no slaves, and WaitNbdSlaveSync only flushes.
    pub slave_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            flush_size: 25,
            local_flush_size: 128,
            flush_time: Duration::from_secs(25),
            key: None,
            max_connections: 256,
            idle_timeout: Duration::from_secs(300),
            max_buffered_bytes: 256 * 1024 * 1024,
            max_aggregate_bytes: 4 * 1024 * 1024,
            slave_dir: None,
        }
    }
}

impl ServerConfig {
    /// Checks the values make sense together.
    pub fn validate(&self) -> crate::Result<()> {
        let fail = |m: &str| Err(crate::Error::InvalidArgument(m.to_string()));
        if self.flush_size == 0 || self.local_flush_size == 0 {
            return fail("flush size must be at least 1 block");
        }
        if self.flush_time.is_zero() {
            return fail("flush time must be more than 0");
        }
        if self.max_connections == 0 {
            return fail("max connections must be at least 1");
        }
        if self.max_buffered_bytes < crate::frame::MAX_MESSAGE {
            return fail("max buffered bytes must hold at least one message (4 MiB)");
        }
        Ok(())
    }
}

/// What every connection and vdisk task of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) vdisks: vdisk::Registry,
}
