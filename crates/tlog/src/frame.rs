//! Framing: how many bytes make one message on the wire, checked before parsing.
//!
//! A message is in Cap'n Proto's standard stream framing: a segment table (segment count
//! minus one, then each segment's size in words, as little-endian u32s, padded to a whole
//! word) and the segments. After the handshake, each client message is preceded by one
//! type byte. [`message_len`] answers "how long is the message at the start of this
//! buffer" without trusting it: `Ok(None)` means "read more", and a message over
//! [`MAX_MESSAGE`] bytes or [`MAX_SEGMENTS`] segments is refused before any of it is read.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::message::MessageType;
use crate::{Error, Result};

/// The largest message accepted: a 4 MiB block with room for its envelope.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 + 4096;
/// The most segments a message may have.
pub const MAX_SEGMENTS: usize = 64;

/// The length of the message at the start of `buf`, `None` when more bytes are needed.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>> {
    let Some(count) = read_u32(buf, 0) else { return Ok(None) };
    let segments = count as usize + 1;
    if segments > MAX_SEGMENTS {
        return Err(Error::Protocol(format!(
            "message with {segments} segments (at most {MAX_SEGMENTS})"
        )));
    }
    let table = (4 * (1 + segments)).next_multiple_of(8);
    if buf.len() < 4 * (1 + segments) {
        return Ok(None);
    }
    let mut words = 0usize;
    for i in 0..segments {
        let size = read_u32(buf, 4 * (1 + i)).unwrap_or(0) as usize;
        words = words.saturating_add(size);
    }
    let total = table.saturating_add(words.saturating_mul(8));
    if total > MAX_MESSAGE {
        return Err(Error::Protocol(format!("message of {total} bytes (at most {MAX_MESSAGE})")));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// The length of the typed frame (type byte and message) at the start of `buf`.
pub fn typed_frame_len(buf: &[u8]) -> Result<Option<(MessageType, usize)>> {
    let Some(&byte) = buf.first() else { return Ok(None) };
    let kind = MessageType::from_byte(byte)
        .ok_or_else(|| Error::Protocol(format!("unknown message type {byte}")))?;
    Ok(message_len(&buf[1..])?.map(|len| (kind, len + 1)))
}

/// Splits `bytes` into typed frames and decodes each as the server would, stopping at the
/// first error or incomplete frame; returns how many frames decoded. The fuzz target and
/// the robustness tests drive this: no input may make it panic or allocate past the limits.
pub fn decode_frames(mut bytes: &[u8]) -> Result<usize> {
    let mut decoded = 0;
    while let Some((kind, len)) = typed_frame_len(bytes)? {
        let message = bytes::Bytes::copy_from_slice(&bytes[1..len]);
        match kind {
            MessageType::Block => {
                let block = crate::message::Block::decode_shared(&message)?;
                let _ = block.check();
            }
            MessageType::ForceFlushAtSeq | MessageType::WaitNbdSlaveSync => {
                crate::message::Command::decode(&message)?;
            }
        }
        decoded += 1;
        bytes = &bytes[len..];
    }
    Ok(decoded)
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Reads whole messages from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buffer: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader { inner, buffer: BytesMut::with_capacity(64 * 1024) }
    }

    /// The next untyped message (handshakes, server responses); `None` at a clean end of
    /// stream.
    pub async fn message(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(len) = message_len(&self.buffer)? {
                return Ok(Some(self.buffer.split_to(len).freeze()));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next typed message (client messages after the handshake); `None` at a clean end
    /// of stream.
    pub async fn typed(&mut self) -> Result<Option<(MessageType, Bytes)>> {
        loop {
            if let Some((kind, len)) = typed_frame_len(&self.buffer)? {
                let mut frame = self.buffer.split_to(len);
                frame.advance(1);
                return Ok(Some((kind, frame.freeze())));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads more bytes; false at the end of the stream with nothing buffered.
    async fn fill(&mut self) -> Result<bool> {
        self.buffer.reserve(64 * 1024);
        let read = self.inner.read_buf(&mut self.buffer).await?;
        if read == 0 {
            if self.buffer.is_empty() {
                return Ok(false);
            }
            return Err(Error::Protocol(format!(
                "connection closed in the middle of a message ({} bytes buffered)",
                self.buffer.len()
            )));
        }
        Ok(true)
    }

    /// The stream, for shutting it down.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Command;

    #[test]
    fn lengths_are_checked_before_parsing() {
        let message = Command { kind: 2, sequence: 5 }.encode();
        assert_eq!(message_len(&message).unwrap(), Some(message.len()));
        for cut in 0..message.len() {
            assert_eq!(message_len(&message[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut huge = vec![0u8; 8];
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(message_len(&huge).is_err());
        let many = 1000u32.to_le_bytes();
        assert!(message_len(&many).is_err());
        assert!(typed_frame_len(&[9, 0, 0, 0, 0]).is_err());
        let mut typed = vec![2u8];
        typed.extend_from_slice(&message);
        assert_eq!(
            typed_frame_len(&typed).unwrap(),
            Some((MessageType::ForceFlushAtSeq, typed.len()))
        );
    }
}
