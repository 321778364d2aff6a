//! The in-process transport: a client in the server's own process (`strata serve`'s NBD
//! server) attaches to a vdisk task and hands it `Block` values directly.
//!
//! What the TCP path does and this one skips: Cap'n Proto encoding and decoding, the copies
//! into and out of a socket, the `RecvOK` receipt for each block (the client acts only on
//! `FlushOK` and the failures), and checking each block's BLAKE3 hash: the wire check guards
//! against corruption in transit, and there is no transit here. A write made for this
//! transport by [`Block::write_in_process`] is not hashed at all; stored, the aggregate's
//! name and seal vouch for its bytes, and the answer to a resent one hashes both blocks.
//! What it keeps, by going through the same `handler::attach` and `handler::Attached` as
//! TCP: the handshake's rules (first sequence, reset), the vdisk's byte budget, the order of
//! answers, and every rule of the vdisk task (ordering, sealing, storing, `FlushOK` only once
//! storage is durable, answers to resent blocks).

use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::Result;
use crate::message::{Block, HandshakeRequest, Response};
use crate::server::Shared;
use crate::server::handler::{self, Attached};
use crate::server::vdisk::Transport;

/// Attaches clients in the server's process to its vdisks without a socket; made by
/// [`crate::server::Server::local`] and given to a client in
/// [`crate::client::ClientConfig::local`]. Cloning is cheap.
#[derive(Clone)]
pub struct LocalConnector {
    shared: Arc<Shared>,
}

impl fmt::Debug for LocalConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalConnector").finish_non_exhaustive()
    }
}

impl LocalConnector {
    pub(crate) fn new(shared: Arc<Shared>) -> LocalConnector {
        LocalConnector { shared }
    }

    /// Attaches to the vdisk `request` names, with a handshake's rules; fails once the
    /// server has shut down.
    pub(crate) async fn connect(&self, request: HandshakeRequest) -> Result<LocalLink> {
        let conn = handler::next_conn();
        let (attached, responses) = handler::attach(&self.shared, request, conn, Transport::Local)
            .await
            .map_err(|(_, err)| err)?;
        tracing::debug!(conn, vdisk = attached.vdisk, "local client attached");
        Ok(LocalLink { attached, responses })
    }
}

/// One local client attached to its vdisk; detaches when dropped.
#[derive(Debug)]
pub(crate) struct LocalLink {
    attached: Attached,
    responses: mpsc::Receiver<Response>,
}

impl LocalLink {
    /// Hands over a block made in this process (already hashed), once the vdisk's budget
    /// has room for it.
    pub(crate) async fn block(&self, block: Block) -> Result<()> {
        self.attached.block(block).await
    }

    /// See `ForceFlushAtSeq`.
    pub(crate) async fn force_flush(&self, sequence: u64) -> Result<()> {
        self.attached.force_flush(sequence).await
    }

    /// See `WaitNbdSlaveSync`.
    pub(crate) async fn slave_sync(&self, sequence: u64) -> Result<()> {
        self.attached.slave_sync(sequence).await
    }

    /// The vdisk's next answer; `None` once it closed this link (a failed flush, a reset by
    /// another client, a client too slow to read, or the server's shutdown).
    pub(crate) async fn response(&mut self) -> Option<Response> {
        self.responses.recv().await
    }
}

impl Drop for LocalLink {
    fn drop(&mut self) {
        self.attached.detach_now();
    }
}
