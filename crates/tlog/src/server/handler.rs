//! One client connection: the handshake, then blocks and commands until the client leaves,
//! goes idle, breaks the protocol, or the server shuts down.

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
use crate::server::vdisk::{Event, Handle, RESPONSE_QUEUE};
use crate::storage::check_vdisk_id;
use crate::version::Version;
use crate::{Error, Result};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Serves one connection to its end; errors are logged, never propagated.
pub(crate) async fn run(stream: TcpStream, peer: String, shared: Arc<Shared>, mut stop: Stopping) {
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let mut writer = BufWriter::new(write);
    let attached = tokio::select! {
        attached = handshake(&mut reader, &mut writer, &shared, conn) => attached,
        () = stop.wait() => return,
    };
    let (vdisk, handle, responses) = match attached {
        Ok(attached) => attached,
        Err(err) => {
            tracing::info!(%peer, error = %err, "handshake failed");
            return;
        }
    };
    tracing::debug!(%peer, conn, vdisk, "client attached");
    let mut sender = tokio::spawn(write_responses(writer, responses));
    let mut sender_done = false;
    let result = tokio::select! {
        result = serve(&mut reader, &shared, &handle, conn) => result,
        _ = &mut sender => {
            sender_done = true;
            Err(Error::Unavailable("the vdisk closed this connection".into()))
        }
        () = stop.wait() => Ok(()),
    };
    let _ = handle.events.send(Event::Detach { conn }).await;
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
) -> Result<(String, Handle, mpsc::Receiver<Response>)> {
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
    if Version(request.version) < Version::MIN_SUPPORTED {
        send_raw(writer, &answer(handshake_status::INVALID_VERSION)).await;
        return Err(Error::Handshake(format!(
            "client version {} is older than {}",
            Version(request.version),
            Version::MIN_SUPPORTED
        )));
    }
    if let Err(why) = check_vdisk_id(&request.vdisk_id) {
        send_raw(writer, &answer(handshake_status::INVALID_VDISK_ID)).await;
        return Err(Error::Handshake(why));
    }
    let handle = match shared.vdisks.get(shared, &request.vdisk_id).await {
        Ok(handle) => handle,
        Err(err) => {
            send_raw(writer, &answer(handshake_status::INTERNAL_ERROR)).await;
            return Err(err);
        }
    };
    let (responses_tx, responses) = mpsc::channel(RESPONSE_QUEUE);
    let attach = Event::Attach {
        conn,
        first_sequence: request.first_sequence,
        reset: request.reset_first_sequence,
        responses: responses_tx,
    };
    if handle.events.send(attach).await.is_err() {
        send_raw(writer, &answer(handshake_status::INTERNAL_ERROR)).await;
        return Err(Error::Unavailable("the vdisk closed".into()));
    }
    send_raw(writer, &answer(handshake_status::OK)).await;
    Ok((request.vdisk_id, handle, responses))
}

/// Reads client messages and hands them to the vdisk until the client leaves.
async fn serve(
    reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    shared: &Arc<Shared>,
    handle: &Handle,
    conn: u64,
) -> Result<()> {
    let idle = shared.config.idle_timeout;
    loop {
        let frame = tokio::time::timeout(idle, reader.typed())
            .await
            .map_err(|_| Error::Protocol(format!("idle for {idle:?}")))??;
        let Some((kind, bytes)) = frame else { return Ok(()) };
        let event = match kind {
            MessageType::Block => match block(bytes, handle, conn).await? {
                Some(event) => event,
                None => continue,
            },
            MessageType::ForceFlushAtSeq => {
                let command = Command::decode(&bytes)?;
                let received = Response {
                    status: status::FORCE_FLUSH_RECEIVED,
                    sequences: vec![command.sequence],
                };
                // Answered through the vdisk so it stays in order with the block answers.
                handle
                    .events
                    .send(Event::ForceFlush { sequence: command.sequence })
                    .await
                    .map_err(closed)?;
                Event::Reply { conn, response: received }
            }
            MessageType::WaitNbdSlaveSync => {
                let command = Command::decode(&bytes)?;
                Event::SlaveSync { conn, sequence: command.sequence }
            }
        };
        handle.events.send(event).await.map_err(closed)?;
    }
}

/// Checks a block; a bad one is answered `RecvFailed` here and goes no further.
async fn block(bytes: Bytes, handle: &Handle, conn: u64) -> Result<Option<Event>> {
    let block = Block::decode_shared(&bytes)?;
    if let Err(why) = block.check() {
        tracing::warn!(sequence = block.sequence, why, "block refused");
        let failed = Response { status: status::RECV_FAILED, sequences: vec![block.sequence] };
        handle.events.send(Event::Reply { conn, response: failed }).await.map_err(closed)?;
        return Ok(None);
    }
    let size = u32::try_from(block.data.len()).unwrap_or(u32::MAX).max(1);
    let budget = handle
        .budget
        .clone()
        .acquire_many_owned(size)
        .await
        .map_err(|_| Error::Unavailable("the vdisk closed".into()))?;
    Ok(Some(Event::Block { conn, block, budget }))
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
