//! The wire messages as Rust values, and their Cap'n Proto encoding.
//!
//! Client to server: a [`HandshakeRequest`], then frames of one type byte ([`MessageType`])
//! followed by a [`Block`] or a [`Command`]. Server to client: a [`HandshakeResponse`], then
//! [`Response`]s. Framing (how many bytes make a message) lives in `crate::frame`.

use bytes::Bytes;
use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;
use strata_proto::tlog_capnp::{
    command, handshake_request, handshake_response, tlog_block, tlog_response,
};

use crate::{Error, Result};

/// The size of a block hash (BLAKE3).
pub const HASH_LEN: usize = 32;
/// The hash of a write made by [`Block::write_in_process`]: left out, all zeros.
pub const UNHASHED: [u8; HASH_LEN] = [0; HASH_LEN];

/// The type byte that precedes every client message after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A [`Block`].
    Block = 1,
    /// A [`Command`]: flush once the given sequence has arrived.
    ForceFlushAtSeq = 2,
    /// A [`Command`]: bring the vdisk's slave copy up to date.
    WaitNbdSlaveSync = 3,
}

impl MessageType {
    /// The type a byte names, if any.
    pub fn from_byte(byte: u8) -> Option<MessageType> {
        match byte {
            1 => Some(MessageType::Block),
            2 => Some(MessageType::ForceFlushAtSeq),
            3 => Some(MessageType::WaitNbdSlaveSync),
            _ => None,
        }
    }
}

/// Handshake statuses.
pub mod handshake_status {
    /// Accepted.
    pub const OK: i8 = 1;
    /// The request could not be decoded.
    pub const INVALID_REQUEST: i8 = -1;
    /// The client is older than the oldest supported version.
    pub const INVALID_VERSION: i8 = -2;
    /// The vdisk id is empty or not acceptable.
    pub const INVALID_VDISK_ID: i8 = -3;
    /// The server failed.
    pub const INTERNAL_ERROR: i8 = -4;
}

/// Response statuses.
pub mod status {
    /// The block was received (one sequence).
    pub const RECV_OK: i8 = 1;
    /// These sequences are durable.
    pub const FLUSH_OK: i8 = 2;
    /// The force flush command was received.
    pub const FORCE_FLUSH_RECEIVED: i8 = 3;
    /// The slave sync finished.
    pub const WAIT_NBD_SLAVE_SYNC_RECEIVED: i8 = 4;
    /// The block was refused (a hash mismatch, say); its sequence is given.
    pub const RECV_FAILED: i8 = -1;
    /// A flush failed; the server closes the vdisk.
    pub const FLUSH_FAILED: i8 = -2;
}

/// Block operations.
pub mod operation {
    /// Write `data` at `offset`.
    pub const WRITE: u8 = 1;
    /// Discard `size` bytes at `offset` (they read back as zeros).
    pub const DISCARD: u8 = 2;
}

/// The first message of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The client's protocol version.
    pub version: u32,
    /// The virtual disk the connection writes to.
    pub vdisk_id: String,
    /// The sequence the client sends first.
    pub first_sequence: u64,
    /// Drop what the server buffered for this vdisk and start over at `first_sequence`.
    pub reset_first_sequence: bool,
}

/// The server's answer to a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// The server's protocol version.
    pub version: u32,
    /// One of [`handshake_status`].
    pub status: i8,
}

/// Unix nanoseconds now: the timestamp blocks and aggregates carry.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One block write or discard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The block's sequence number in its vdisk.
    pub sequence: u64,
    /// Byte offset in the disk.
    pub offset: u64,
    /// Bytes written or discarded.
    pub size: u64,
    /// BLAKE3 of `data`; [`UNHASHED`] for a write made by [`Block::write_in_process`].
    pub hash: [u8; HASH_LEN],
    /// The data written; empty for a discard.
    pub data: Bytes,
    /// Unix nanoseconds when the client made the write.
    pub timestamp: u64,
    /// One of [`operation`].
    pub operation: u8,
}

impl Block {
    /// A write of `data` at `offset`, hashed.
    pub fn write(sequence: u64, offset: u64, data: Bytes, timestamp: u64) -> Block {
        let hash = *blake3::hash(&data).as_bytes();
        Block {
            sequence,
            offset,
            size: data.len() as u64,
            hash,
            data,
            timestamp,
            operation: operation::WRITE,
        }
    }

    /// A write of `data` at `offset` for a client in the tlog server's own process (one
    /// given a `LocalConnector`): not hashed, its hash [`UNHASHED`]. No wire carries it to the
    /// server, so there is no transit to check it against; once stored, the aggregate's name
    /// and seal vouch for its bytes, and [`Block::data_hash`] hashes it where a hash is
    /// needed (a resent block compared with the stored one, a frame for a TCP server). This
    /// spares the largest pass over the data that journaling makes.
    pub fn write_in_process(sequence: u64, offset: u64, data: Bytes, timestamp: u64) -> Block {
        Block {
            sequence,
            offset,
            size: data.len() as u64,
            hash: UNHASHED,
            data,
            timestamp,
            operation: operation::WRITE,
        }
    }

    /// The BLAKE3 hash of the data: the block's own, or computed now for a write made by
    /// [`Block::write_in_process`].
    pub fn data_hash(&self) -> [u8; HASH_LEN] {
        if self.hash == UNHASHED && self.operation == operation::WRITE {
            *blake3::hash(&self.data).as_bytes()
        } else {
            self.hash
        }
    }

    /// A discard of `size` bytes at `offset`.
    pub fn discard(sequence: u64, offset: u64, size: u64, timestamp: u64) -> Block {
        let hash = *blake3::hash(b"").as_bytes();
        Block {
            sequence,
            offset,
            size,
            hash,
            data: Bytes::new(),
            timestamp,
            operation: operation::DISCARD,
        }
    }

    /// Checks the hash, the operation and that `size` matches the data.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.check_shape()?;
        if blake3::hash(&self.data).as_bytes() != &self.hash {
            return Err("hash does not match the data".into());
        }
        Ok(())
    }

    /// Checks the operation and that `size` matches the data, not the hash: for blocks read
    /// back from an aggregate whose own hash (and seal) already vouch for every byte.
    pub fn check_shape(&self) -> std::result::Result<(), String> {
        match self.operation {
            operation::WRITE if self.size != self.data.len() as u64 => {
                return Err(format!("size {} but {} bytes of data", self.size, self.data.len()));
            }
            operation::DISCARD if !self.data.is_empty() => {
                return Err("a discard carries data".into());
            }
            operation::WRITE | operation::DISCARD => {}
            other => return Err(format!("unknown operation {other}")),
        }
        if self.offset.checked_add(self.size).is_none() {
            return Err("offset plus size overflows".into());
        }
        Ok(())
    }

    /// Writes the block as the wire carries it: with its data, and with its hash (computed
    /// now for a write made by [`Block::write_in_process`]: a server checks it).
    pub(crate) fn write_to(&self, mut b: tlog_block::Builder<'_>) {
        self.write_fields_to(b.reborrow(), &self.data_hash());
        b.set_data(&self.data);
    }

    /// Writes everything but the data, with `hash` as the block's hash: an aggregate of
    /// format 3 stores the data after the message, and the hash as the block has it.
    pub(crate) fn write_fields_to(&self, mut b: tlog_block::Builder<'_>, hash: &[u8]) {
        b.set_sequence(self.sequence);
        b.set_offset(self.offset);
        b.set_size(self.size);
        b.set_hash(hash);
        b.set_timestamp(self.timestamp);
        b.set_operation(self.operation);
    }

    /// Reads a block; `data` turns the data slice into `Bytes` (a copy, or a slice of the
    /// buffer the message was decoded in place from).
    pub(crate) fn read_from(
        r: tlog_block::Reader<'_>,
        data: impl FnOnce(&[u8]) -> Bytes,
    ) -> Result<Block> {
        let hash = r.get_hash()?;
        let hash: [u8; HASH_LEN] = hash
            .try_into()
            .map_err(|_| Error::Protocol(format!("block hash of {} bytes", hash.len())))?;
        Ok(Block {
            sequence: r.get_sequence(),
            offset: r.get_offset(),
            size: r.get_size(),
            hash,
            data: data(r.get_data()?),
            timestamp: r.get_timestamp(),
            operation: r.get_operation(),
        })
    }
}

/// ForceFlushAtSeq or WaitNbdSlaveSync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// The [`MessageType`] byte, repeated inside the message.
    pub kind: u8,
    /// The sequence the command is about.
    pub sequence: u64,
}

/// A server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// One of [`status`].
    pub status: i8,
    /// The sequences the status is about.
    pub sequences: Vec<u64>,
}

/// Decoding limits: a message bigger than the frame limit never reaches here, but the
/// traversal limit also bounds the work a hostile message can cause.
pub(crate) fn reader_options() -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options.traversal_limit_in_words(Some(crate::frame::MAX_MESSAGE / 8 * 2));
    options.nesting_limit(16);
    options
}

/// Decodes in place: no copy of the segments (the `unaligned` feature allows any buffer).
fn decode<T>(
    bytes: &[u8],
    read: impl FnOnce(capnp::message::Reader<serialize::BufferSegments<&[u8]>>) -> Result<T>,
) -> Result<T> {
    let mut slice = bytes;
    let message = serialize::read_message_from_flat_slice(&mut slice, reader_options())?;
    read(message)
}

/// Small messages: one small first segment instead of the default 8 KiB one.
fn encode(build: impl FnOnce(&mut Builder<capnp::message::HeapAllocator>)) -> Vec<u8> {
    encode_sized(32, build)
}

/// Encodes with a first segment of `words` words, so a message that fits needs one
/// allocation of the right size.
fn encode_sized(
    words: u32,
    build: impl FnOnce(&mut Builder<capnp::message::HeapAllocator>),
) -> Vec<u8> {
    let mut message = Builder::new(capnp::message::HeapAllocator::new().first_segment_words(words));
    build(&mut message);
    serialize::write_message_to_words(&message)
}

impl HandshakeRequest {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(|m| {
            let mut b = m.init_root::<handshake_request::Builder<'_>>();
            b.set_version(self.version);
            b.set_vdisk_i_d(&self.vdisk_id);
            b.set_first_sequence(self.first_sequence);
            b.set_reset_first_sequence(self.reset_first_sequence);
        })
    }

    /// Parses message bytes.
    pub fn decode(bytes: &[u8]) -> Result<HandshakeRequest> {
        decode(bytes, |m| {
            let r = m.get_root::<handshake_request::Reader<'_>>()?;
            Ok(HandshakeRequest {
                version: r.get_version(),
                vdisk_id: r
                    .get_vdisk_i_d()?
                    .to_string()
                    .map_err(|_| Error::Protocol("vdisk id is not UTF-8".into()))?,
                first_sequence: r.get_first_sequence(),
                reset_first_sequence: r.get_reset_first_sequence(),
            })
        })
    }
}

impl HandshakeResponse {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(|m| {
            let mut b = m.init_root::<handshake_response::Builder<'_>>();
            b.set_version(self.version);
            b.set_status(self.status);
        })
    }

    /// Parses message bytes.
    pub fn decode(bytes: &[u8]) -> Result<HandshakeResponse> {
        decode(bytes, |m| {
            let r = m.get_root::<handshake_response::Reader<'_>>()?;
            Ok(HandshakeResponse { version: r.get_version(), status: r.get_status() })
        })
    }
}

impl Block {
    /// The message bytes (without the type byte).
    pub fn encode(&self) -> Vec<u8> {
        encode_sized(self.words(), |m| self.write_to(m.init_root::<tlog_block::Builder<'_>>()))
    }

    /// The frame a client sends: the type byte, then the message, in one buffer.
    pub fn frame(&self) -> Vec<u8> {
        let mut message =
            Builder::new(capnp::message::HeapAllocator::new().first_segment_words(self.words()));
        self.write_to(message.init_root::<tlog_block::Builder<'_>>());
        let mut frame = Vec::with_capacity(1 + 16 + 8 * self.words() as usize);
        frame.push(MessageType::Block as u8);
        // Writing into a Vec cannot fail.
        let _ = serialize::write_message(&mut frame, &message);
        frame
    }

    /// Words a block message needs: the struct, the hash, the data, rounded up.
    fn words(&self) -> u32 {
        u32::try_from(16 + self.data.len().div_ceil(8) + 8).unwrap_or(u32::MAX)
    }

    /// Parses message bytes.
    pub fn decode(bytes: &[u8]) -> Result<Block> {
        decode(bytes, |m| {
            Block::read_from(m.get_root::<tlog_block::Reader<'_>>()?, Bytes::copy_from_slice)
        })
    }

    /// Parses a message in place: the block's data is a slice of `bytes`, not a copy.
    pub fn decode_shared(bytes: &Bytes) -> Result<Block> {
        let mut slice = &bytes[..];
        let message = serialize::read_message_from_flat_slice(&mut slice, reader_options())?;
        let root = message.get_root::<tlog_block::Reader<'_>>()?;
        Block::read_from(root, |data| bytes.slice_ref(data))
    }
}

impl Command {
    /// The message bytes (without the type byte).
    pub fn encode(&self) -> Vec<u8> {
        encode(|m| {
            let mut b = m.init_root::<command::Builder<'_>>();
            b.set_type(self.kind);
            b.set_sequence(self.sequence);
        })
    }

    /// Parses message bytes.
    pub fn decode(bytes: &[u8]) -> Result<Command> {
        decode(bytes, |m| {
            let r = m.get_root::<command::Reader<'_>>()?;
            Ok(Command { kind: r.get_type(), sequence: r.get_sequence() })
        })
    }
}

impl Response {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(|m| {
            let mut b = m.init_root::<tlog_response::Builder<'_>>();
            b.set_status(self.status);
            let len = u32::try_from(self.sequences.len()).unwrap_or(u32::MAX);
            let mut list = b.init_sequences(len);
            for (i, seq) in self.sequences.iter().take(len as usize).enumerate() {
                list.set(i as u32, *seq);
            }
        })
    }

    /// Parses message bytes.
    pub fn decode(bytes: &[u8]) -> Result<Response> {
        decode(bytes, |m| {
            let r = m.get_root::<tlog_response::Reader<'_>>()?;
            Ok(Response { status: r.get_status(), sequences: r.get_sequences()?.iter().collect() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let hs = HandshakeRequest {
            version: 0x0100_0001,
            vdisk_id: "vd1".into(),
            first_sequence: 7,
            reset_first_sequence: true,
        };
        assert_eq!(HandshakeRequest::decode(&hs.encode()).unwrap(), hs);
        let block = Block::write(3, 4096, Bytes::from_static(b"hello"), 99);
        assert_eq!(Block::decode(&block.encode()).unwrap(), block);
        assert!(block.check().is_ok());
        let response = Response { status: status::FLUSH_OK, sequences: vec![1, 2, 3] };
        assert_eq!(Response::decode(&response.encode()).unwrap(), response);
        let command = Command { kind: 2, sequence: 10 };
        assert_eq!(Command::decode(&command.encode()).unwrap(), command);
    }

    #[test]
    fn in_process_writes_are_hashed_only_where_a_hash_is_needed() {
        let data = Bytes::from_static(b"in process");
        let hashed = Block::write(4, 8192, data.clone(), 5);
        let unhashed = Block::write_in_process(4, 8192, data, 5);
        assert_eq!(unhashed.hash, UNHASHED);
        assert_eq!(unhashed.data_hash(), hashed.hash);
        assert_eq!(hashed.data_hash(), hashed.hash);
        // On the wire it carries its real hash, and a server's check passes.
        let sent = Block::decode(&unhashed.encode()).unwrap();
        assert_eq!(sent, hashed);
        assert!(sent.check().is_ok());
        // A discard's hash is never left out.
        let discard = Block::discard(5, 0, 4096, 6);
        assert_ne!(discard.hash, UNHASHED);
        assert_eq!(discard.data_hash(), discard.hash);
        // A server checking an unhashed block as received refuses it.
        assert!(unhashed.check().unwrap_err().contains("hash"));
    }

    #[test]
    fn bad_blocks_are_named() {
        let mut block = Block::write(1, 0, Bytes::from_static(b"data"), 0);
        block.hash[0] ^= 1;
        assert!(block.check().unwrap_err().contains("hash"));
        let mut block = Block::write(1, 0, Bytes::from_static(b"data"), 0);
        block.size = 9;
        assert!(block.check().unwrap_err().contains("size"));
        let mut block = Block::discard(1, u64::MAX, 10, 0);
        assert!(block.check().unwrap_err().contains("overflow"));
        block.operation = 9;
        assert!(block.check().is_err());
    }
}
