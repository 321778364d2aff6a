//! The messages of the store-sharing protocol and their framing.
//!
//! Every message is one frame: a 4-byte big-endian length, then the message in postcard.
//! A connection opens one store, then either reads through one consistent view or commits
//! one transaction at a time. This module only encodes and decodes; the engine and the
//! server decide what a message does.

use std::io::{Read, Write};
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Error;

/// The largest frame either side sends or accepts: a transaction's writes or a range's
/// entries larger than this fail with a clear error instead of exhausting memory.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// A key as sent.
pub(crate) type Key = Vec<u8>;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first request of a connection: the store kept in this redb file (as the server
    /// process names it, canonicalized).
    Open { file: String },
    /// Opens the connection's read view.
    Snapshot,
    /// Reads one key in the view.
    Get { key: Key },
    /// Reads up to `limit` entries of `[start, end)` in the view.
    Range { start: Bound<Key>, end: Bound<Key>, limit: u64 },
    /// Validates and applies one transaction.
    Commit(WireCommit),
}

/// A transaction as sent: see `engine::Commit`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireCommit {
    pub(crate) revision: Option<u64>,
    pub(crate) keys: Vec<(Key, Option<u64>)>,
    pub(crate) ranges: Vec<(Bound<Key>, Bound<Key>)>,
    pub(crate) writes: Vec<(Key, Option<Vec<u8>>)>,
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    /// The store is open: its engine and capabilities.
    Opened { engine: String, max_txn_ops: Option<u64>, validates_scans_by_key: bool },
    /// The view is open.
    Snapshot,
    /// A point read: the value and its revision, and the view's revision.
    Found { found: Option<(Vec<u8>, u64)>, revision: Option<u64> },
    /// A range read: `(key, value, revision)` in key order, and the view's revision.
    Entries { entries: Vec<(Key, Vec<u8>, u64)>, revision: Option<u64> },
    /// The transaction is durable.
    Committed,
    /// The request failed.
    Failed(WireError),
}

/// A kv error as sent, so the client gets the same variant (a conflict stays a conflict,
/// which `Store::with_txn` retries).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    Conflict(String),
    InvalidArgument(String),
    AlreadyExists(String),
    Unavailable(String),
    Poisoned(String),
    Corrupted(String),
    Redb(String),
    Busy(String),
    Etcd(String),
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> WireError {
        match err {
            Error::Conflict(m) => WireError::Conflict(m.clone()),
            Error::InvalidArgument(m) => WireError::InvalidArgument(m.clone()),
            Error::AlreadyExists(m) => WireError::AlreadyExists(m.clone()),
            Error::Unavailable(m) => WireError::Unavailable(m.clone()),
            Error::Poisoned(m) => WireError::Poisoned(m.clone()),
            Error::Corrupted(m) => WireError::Corrupted(m.clone()),
            Error::Redb(m) => WireError::Redb(m.clone()),
            Error::Busy(m) => WireError::Busy(m.clone()),
            Error::Etcd(m) => WireError::Etcd(m.clone()),
        }
    }
}

impl From<WireError> for Error {
    fn from(err: WireError) -> Error {
        match err {
            WireError::Conflict(m) => Error::Conflict(m),
            WireError::InvalidArgument(m) => Error::InvalidArgument(m),
            WireError::AlreadyExists(m) => Error::AlreadyExists(m),
            WireError::Unavailable(m) => Error::Unavailable(m),
            WireError::Poisoned(m) => Error::Poisoned(m),
            WireError::Corrupted(m) => Error::Corrupted(m),
            WireError::Redb(m) => Error::Redb(m),
            WireError::Busy(m) => Error::Busy(m),
            WireError::Etcd(m) => Error::Etcd(m),
        }
    }
}

/// Encodes `message` as one frame.
pub(crate) fn encode(message: &impl Serialize) -> std::io::Result<Vec<u8>> {
    let mut frame = postcard::to_extend(message, vec![0; 4])
        .map_err(|err| std::io::Error::other(format!("encode: {err}")))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        return Err(too_large(len));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Decodes one message from a frame's body.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> std::io::Result<T> {
    postcard::from_bytes(body).map_err(|err| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed message: {err}"))
    })
}

/// Reads one frame's body from a blocking stream.
pub(crate) fn read_frame(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0; 4];
    stream.read_exact(&mut len)?;
    let len = checked_len(len)?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Writes one message to a blocking stream.
pub(crate) fn write_message(
    stream: &mut impl Write,
    message: &impl Serialize,
) -> std::io::Result<()> {
    stream.write_all(&encode(message)?)
}

/// Reads one frame's body from an async stream; `None` at a clean end of stream.
pub(crate) async fn read_frame_async(
    stream: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = checked_len(len)?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes one message to an async stream.
pub(crate) async fn write_message_async(
    stream: &mut (impl AsyncWrite + Unpin),
    message: &impl Serialize,
) -> std::io::Result<()> {
    stream.write_all(&encode(message)?).await
}

fn checked_len(len: [u8; 4]) -> std::io::Result<usize> {
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(too_large(len));
    }
    Ok(len)
}

fn too_large(len: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a message of {len} bytes is larger than the {MAX_FRAME}-byte limit"),
    )
}
