//! One client, over TCP or in-process: the handshake's rules (`attach`), then blocks and
//! commands handed to the vdisk task (`Attached`), until the client leaves, goes idle,
//! breaks the protocol, or the server shuts down.
//!
//! Both transports go through `attach` and `Attached`, so the rules (what a handshake
//! accepts, the byte budget a block takes, how a command is answered in order with the
//! blocks) are written once. TCP adds only framing, decoding and hashing (`run`); the
//! in-process link (`server::local`) hands `Block` values over as they are.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use strata_net::Stopping;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::frame::FrameReader;
use crate::message::{
    Block, Command, HandshakeRequest, HandshakeResponse, MessageType, Response, handshake_status,
    status,
};
use crate::server::Shared;
use crate::server::vdisk::{Event, Handle, RESPONSE_QUEUE, Transport};
use crate::storage::check_vdisk_id;
use crate::version::Version;
use crate::{Error, Result};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A new connection number, unique in the process.
pub(crate) fn next_conn() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// A client attached to its vdisk task, by whichever transport.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) vdisk: String,
    pub(crate) conn: u64,
    pub(crate) handle: Handle,
}

/// Checks a handshake and attaches connection `conn`, reaching it by `transport`, to its
/// vdisk (started if needed). On failure, the handshake status to answer and why.
pub(crate) async fn attach(
    shared: &Arc<Shared>,
    request: HandshakeRequest,
    conn: u64,
    transport: Transport,
) -> std::result::Result<(Attached, mpsc::Receiver<Response>), (i8, Error)> {
    if Version(request.version) < Version::MIN_SUPPORTED {
        return Err((
            handshake_status::INVALID_VERSION,
            Error::Handshake(format!(
                "client version {} is older than {}",
                Version(request.version),
                Version::MIN_SUPPORTED
            )),
        ));
    }
    if let Err(why) = check_vdisk_id(&request.vdisk_id) {
        return Err((handshake_status::INVALID_VDISK_ID, Error::Handshake(why)));
    }
    let handle = match shared.vdisks.get(shared, &request.vdisk_id).await {
        Ok(handle) => handle,
        Err(err) => return Err((handshake_status::INTERNAL_ERROR, err)),
    };
    let (responses_tx, responses) = mpsc::channel(RESPONSE_QUEUE);
    let attach = Event::Attach {
        conn,
        first_sequence: request.first_sequence,
        reset: request.reset_first_sequence,
        transport,
        responses: responses_tx,
    };
    if handle.events.send(attach).await.is_err() {
        return Err((handshake_status::INTERNAL_ERROR, closed(())));
    }
    Ok((Attached { vdisk: request.vdisk_id, conn, handle }, responses))
}

impl Attached {
    /// Hands a checked block to the vdisk, once the vdisk's byte budget has room for it.
    pub(crate) async fn block(&self, block: Block) -> Result<()> {
        let size = u32::try_from(block.data.len()).unwrap_or(u32::MAX).max(1);
        let budget = self.handle.budget.clone().acquire_many_owned(size).await.map_err(closed)?;
        self.send(Event::Block { conn: self.conn, block, budget }).await
    }

    /// Answers `RecvFailed` for a block that failed its checks, in order with the others.
    pub(crate) async fn refuse(&self, sequence: u64) -> Result<()> {
        let failed = Response { status: status::RECV_FAILED, sequences: vec![sequence] };
        self.send(Event::Reply { conn: self.conn, response: failed }).await
    }

    /// Asks for a flush once `sequence` is ordered, and answers `ForceFlushReceived`.
    pub(crate) async fn force_flush(&self, sequence: u64) -> Result<()> {
        self.send(Event::ForceFlush { sequence }).await?;
        // Answered through the vdisk so it stays in order with the block answers.
        let received = Response { status: status::FORCE_FLUSH_RECEIVED, sequences: vec![sequence] };
        self.send(Event::Reply { conn: self.conn, response: received }).await
    }

    /// Flushes everything ordered (and syncs the slave copy), then answers
    /// `WaitNbdSlaveSyncReceived`.
    pub(crate) async fn slave_sync(&self, sequence: u64) -> Result<()> {
        self.send(Event::SlaveSync { conn: self.conn, sequence }).await
    }

    /// Tells the vdisk this client left.
    pub(crate) async fn detach(&self) {
        let _ = self.handle.events.send(Event::Detach { conn: self.conn }).await;
    }

    /// Tells the vdisk this client left, without waiting (for `Drop`).
    pub(crate) fn detach_now(&self) {
        let detach = Event::Detach { conn: self.conn };
        if let Err(mpsc::error::TrySendError::Full(detach)) = self.handle.events.try_send(detach)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let events = self.handle.events.clone();
            runtime.spawn(async move {
                let _ = events.send(detach).await;
            });
        }
    }

    async fn send(&self, event: Event) -> Result<()> {
        self.handle.events.send(event).await.map_err(closed)
    }
}

/// Serves one TCP connection to its end; errors are logged, never propagated.
pub(crate) async fn run(stream: TcpStream, peer: String, shared: Arc<Shared>, mut stop: Stopping) {
    let conn = next_conn();
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let mut writer = BufWriter::new(write);
    let attached = tokio::select! {
        attached = handshake(&mut reader, &mut writer, &shared, conn) => attached,
        () = stop.wait() => return,
    };
    let (attached, responses) = match attached {
        Ok(attached) => attached,
        Err(err) => {
            tracing::info!(%peer, error = %err, "handshake failed");
            return;
        }
    };
    tracing::debug!(%peer, conn, vdisk = attached.vdisk, "client attached");
    let mut sender = tokio::spawn(write_responses(writer, responses));
    let mut sender_done = false;
    let result = tokio::select! {
        result = serve(&mut reader, &shared, &attached) => result,
        _ = &mut sender => {
            sender_done = true;
            Err(Error::Unavailable("the vdisk closed this connection".into()))
        }
        () = stop.wait() => Ok(()),
    };
    attached.detach().await;
    match result {
        Ok(()) => tracing::debug!(%peer, conn, "client left"),
        Err(err) => tracing::info!(%peer, conn, error = %err, "connection closed"),
    }
    // The sender ends once the vdisk has dropped our response channel and it drained (a
    // finished task must not be awaited twice).
    if !sender_done {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sender).await;
    }
}

/// Reads and answers the handshake; on success the connection is attached to its vdisk.
async fn handshake(
    reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut BufWriter<OwnedWriteHalf>,
    shared: &Arc<Shared>,
    conn: u64,
) -> Result<(Attached, mpsc::Receiver<Response>)> {
    let idle = shared.config.idle_timeout;
    let message = tokio::time::timeout(idle, reader.message())
        .await
        .map_err(|_| Error::Protocol("no handshake within the idle timeout".into()))?;
    let answer = |status: i8| HandshakeResponse { version: Version::CURRENT.0, status }.encode();
    let request = match message.and_then(|m| {
        m.ok_or_else(|| Error::Protocol("closed before the handshake".into()))
            .and_then(|bytes| HandshakeRequest::decode(&bytes))
    }) {
        Ok(request) => request,
        Err(err) => {
            send_raw(writer, &answer(handshake_status::INVALID_REQUEST)).await;
            return Err(err);
        }
    };
    match attach(shared, request, conn, Transport::Wire).await {
        Ok(attached) => {
            send_raw(writer, &answer(handshake_status::OK)).await;
            Ok(attached)
        }
        Err((status, err)) => {
            send_raw(writer, &answer(status)).await;
            Err(err)
        }
    }
}

/// Reads client messages and hands them to the vdisk until the client leaves.
async fn serve(
    reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    shared: &Arc<Shared>,
    attached: &Attached,
) -> Result<()> {
    let idle = shared.config.idle_timeout;
    loop {
        let frame = tokio::time::timeout(idle, reader.typed())
            .await
            .map_err(|_| Error::Protocol(format!("idle for {idle:?}")))??;
        let Some((kind, bytes)) = frame else { return Ok(()) };
        match kind {
            MessageType::Block => block(bytes, attached).await?,
            MessageType::ForceFlushAtSeq => {
                attached.force_flush(Command::decode(&bytes)?.sequence).await?;
            }
            MessageType::WaitNbdSlaveSync => {
                attached.slave_sync(Command::decode(&bytes)?.sequence).await?;
            }
        }
    }
}

/// Decodes and checks a block from the wire; a bad one is answered `RecvFailed` here and
/// goes no further.
async fn block(bytes: Bytes, attached: &Attached) -> Result<()> {
    let block = Block::decode_shared(&bytes)?;
    if let Err(why) = block.check() {
        tracing::warn!(sequence = block.sequence, why, "block refused");
        return attached.refuse(block.sequence).await;
    }
    attached.block(block).await
}

fn closed<T>(_: T) -> Error {
    Error::Unavailable("the vdisk closed".into())
}

/// Writes responses as they come, flushing the socket whenever none is waiting.
async fn write_responses(
    mut writer: BufWriter<OwnedWriteHalf>,
    mut responses: mpsc::Receiver<Response>,
) {
    while let Some(response) = responses.recv().await {
        if writer.write_all(&response.encode()).await.is_err() {
            return;
        }
        if responses.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

async fn send_raw(writer: &mut BufWriter<OwnedWriteHalf>, bytes: &[u8]) {
    let _ = writer.write_all(bytes).await;
    let _ = writer.flush().await;
}
