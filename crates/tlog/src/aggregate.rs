//! The stored form of an aggregate: the blocks of one flush, compressed, encrypted and
//! hash-chained. `docs/design/tlog-format.md` gives the layout byte by byte.
//!
//! Sealing: the blocks' fields and the chain link are encoded as a Cap'n Proto
//! `TlogAggregation`, followed by the blocks' data; that plaintext is compressed with LZ4
//! (kept only when it shrinks), encrypted with AES-256-GCM under a fresh random 96-bit nonce
//! with the envelope header and the vdisk id as authenticated data, and prefixed by the
//! header. The aggregate's name is a BLAKE3 hash (see [`Namer`]); the next aggregate of the
//! vdisk names it as `prev`.

use capnp::message::Builder;
use capnp::serialize;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use strata_proto::tlog_capnp::{tlog_aggregation, tlog_block};

use crate::message::{Block, HASH_LEN, reader_options};
use crate::{Error, Result};

/// A hash naming an aggregate (see [`Namer`]).
pub type Hash = [u8; HASH_LEN];
/// The `prev` of a vdisk's first aggregate.
pub const NO_PREV: Hash = [0; HASH_LEN];

const MAGIC: &[u8; 4] = b"STLA";
/// The format written; readers accept [`OLDEST_FORMAT`] to this one.
const FORMAT: u8 = 3;
/// Format 1 had no run-start flag; everything else is the same as format 2.
const OLDEST_FORMAT: u8 = 1;
/// From format 3 the blocks' data follows the Cap'n Proto message instead of being in it,
/// and an encrypted envelope is named through a checksum of its body (see [`Namer`]).
const TRAILING_DATA: u8 = 3;
const FLAG_COMPRESSED: u8 = 1;
const FLAG_ENCRYPTED: u8 = 2;
/// Format 2: the aggregate starts a new run of sequences (after a reset), so its first
/// sequence need not follow the previous aggregate's last.
const FLAG_RUN_START: u8 = 4;
/// The envelope header's size.
pub const HEADER_LEN: usize = 88;
/// The largest plaintext an envelope may declare (bounds allocation on decode).
const MAX_PLAINTEXT: u64 = 1 << 30;

/// The AES-GCM tag appended to an encrypted body.
const TAG_LEN: usize = 16;
/// The bytes of each sample [`worth_compressing`] tries.
const SAMPLE: usize = 4 << 10;

/// Whether LZ4 is worth running over all of `plain`: at least two of three samples (start,
/// middle, end) must shrink to 7/8 of their size. Random or already compressed data (what
/// an encrypted or compressed file system writes) fails fast this way instead of costing a
/// full LZ4 pass that is then thrown away, and the start alone cannot decide: it holds the
/// message's block list, which compresses whatever the data is. Small plaintexts are always
/// tried.
fn worth_compressing(plain: &[u8]) -> bool {
    if plain.len() <= 4 * SAMPLE {
        return true;
    }
    let starts = [0, plain.len() / 2 - SAMPLE / 2, plain.len() - SAMPLE];
    let shrinking = starts
        .into_iter()
        .filter(|&start| {
            let sample = &plain[start..start + SAMPLE];
            lz4_flex::block::compress(sample).len() * 8 <= sample.len() * 7
        })
        .count();
    shrinking >= 2
}

/// A 256-bit AES-GCM key.
#[derive(Clone)]
pub struct Key(LessSafeKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        // A 32-byte slice is always a valid AES-256 key.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        Key(LessSafeKey::new(unbound))
    }

    /// A fresh random key.
    pub fn generate() -> Result<[u8; 32]> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Unavailable("the system random generator failed".into()))?;
        Ok(bytes)
    }
}

/// The plaintext of one aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The vdisk the blocks belong to.
    pub vdisk_id: String,
    /// Unix nanoseconds of the flush.
    pub timestamp: u64,
    /// The blocks, in sequence order.
    pub blocks: Vec<Block>,
    /// The name of the vdisk's previous aggregate ([`NO_PREV`] for the first).
    pub prev: Hash,
}

/// What the envelope header says, readable without the key (and authenticated by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The previous aggregate's name.
    pub prev: Hash,
    /// The first block's sequence.
    pub first_sequence: u64,
    /// The last block's sequence.
    pub last_sequence: u64,
    /// Unix nanoseconds of the flush.
    pub timestamp: u64,
    /// How many blocks.
    pub blocks: u32,
    /// Whether the body is encrypted.
    pub encrypted: bool,
    /// Whether the aggregate starts a new run of sequences, recorded by the server after a
    /// reset: a jump in sequence before it is deliberate, not a gap.
    pub run_start: bool,
    compressed: bool,
    nonce: [u8; NONCE_LEN],
    plaintext_len: u64,
    format: u8,
}

/// A sealed aggregate: its name and its bytes as stored. Only [`Aggregate::seal`] and
/// [`Sealed::from_bytes`] make one, so its hash always names its bytes and storage need not
/// name them again.
#[derive(Debug, Clone)]
pub struct Sealed {
    hash: Hash,
    /// The envelope from `start` on; before it, room a store may write its framing into
    /// (see [`Aggregate::seal_placed`]).
    bytes: Vec<u8>,
    start: usize,
    header: Header,
}

/// How a sealed envelope may be placed in memory for a store that writes it in place
/// with `O_DIRECT` (see [`Aggregate::seal_placed`]): the alignment, and the most bytes the
/// store puts in front of the envelope in the same write.
pub const PLACE_ALIGN: usize = 4096;
/// See [`PLACE_ALIGN`]: a partial block and a record header fit.
pub const PLACE_ROOM: usize = PLACE_ALIGN + 64;

impl Drop for Sealed {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.bytes));
    }
}

/// Envelope buffers of dropped [`Sealed`] values, kept for the next seal. A fresh buffer of
/// a few MiB is fresh memory from the kernel, which faults in and zeroes each of its pages
/// as the seal first writes it: 6% of the NBD server's CPU at 1 MiB writes, in perf. A vdisk
/// seals its aggregates one after another, and storage drops each once it is written, so a
/// few buffers go round.
mod spare {
    use std::sync::Mutex;

    /// Buffers kept, at most.
    pub(super) const KEPT: usize = 8;
    /// Smaller buffers are cheap to allocate and not kept; larger ones are not kept either,
    /// so that what is kept stays bounded (a few aggregates of the default size).
    const KEPT_CAPACITY: std::ops::RangeInclusive<usize> = (64 << 10)..=(8 << 20);

    /// The buffers kept.
    pub(super) static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// An empty buffer with room for `capacity` bytes, kept or new.
    pub(super) fn take(capacity: usize) -> Vec<u8> {
        if KEPT_CAPACITY.contains(&capacity)
            && let Ok(mut spare) = SPARE.lock()
            && let Some(i) = spare.iter().position(|b| b.capacity() >= capacity)
        {
            return spare.swap_remove(i);
        }
        Vec::with_capacity(capacity)
    }

    /// Keeps `buffer` for a later [`take`], if it is worth keeping and there is room.
    pub(super) fn give(mut buffer: Vec<u8>) {
        if !KEPT_CAPACITY.contains(&buffer.capacity()) {
            return;
        }
        buffer.clear();
        if let Ok(mut spare) = SPARE.lock()
            && spare.len() < KEPT
        {
            spare.push(buffer);
        }
    }
}

impl Sealed {
    /// The aggregate's name (see [`Namer`]).
    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// The envelope as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// The buffer the envelope is in, and where in it the envelope starts: for a store
    /// that writes its framing into the room before the envelope and padding after it, and
    /// the whole from memory (see [`Aggregate::seal_placed`]). The envelope's own bytes must
    /// stay as they are, and the buffer must not be reallocated while they are in use.
    pub(crate) fn buffer_mut(&mut self) -> (&mut Vec<u8>, usize) {
        (&mut self.bytes, self.start)
    }

    /// The header inside the bytes.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// An envelope as stored elsewhere (a copy of a log, another store, an older strata):
    /// named from its bytes, with a header that decodes. Nothing else is checked here;
    /// opening it checks the rest.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Sealed> {
        let header = Header::decode(&bytes)
            .map_err(|e| Error::Corrupted(format!("an aggregate of {} bytes: {e}", bytes.len())))?;
        let hash = Namer::name(&header, &bytes);
        Ok(Sealed { hash, bytes, start: 0, header })
    }
}

/// Computes an envelope's name, from its bytes in one piece or in several (the segment scan
/// reads large records a chunk at a time).
///
/// The name is BLAKE3 of the whole envelope, except for an encrypted envelope of format 3 or
/// later: that is named by BLAKE3 of its header followed by the 16-byte XXH3-128 (little
/// endian) of its body. Its body is then hashed once, by XXH3 at several times BLAKE3's
/// speed, which catches damage (a torn write, a flipped bit) as surely; the AES-GCM tag at
/// its end, checked by every reader with the key, is what authenticates it. The header
/// (flags, `prev`, sequences) is always under BLAKE3, so a changed link, or a changed flag
/// that would choose the other rule, changes the name. An envelope without encryption keeps
/// a BLAKE3 name over every byte: there the name is all that vouches for the body, and a
/// head recorded elsewhere then pins the whole log.
pub struct Namer {
    /// BLAKE3 of everything, or of the header then the body's checksum.
    blake: blake3::Hasher,
    /// The body's checksum, for envelopes named by it.
    body: Option<twox_hash::XxHash3_128>,
    /// Header bytes still to come, for envelopes named by their body's checksum.
    header_left: usize,
}

impl std::fmt::Debug for Namer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namer").field("by_checksum", &self.body.is_some()).finish_non_exhaustive()
    }
}

impl Namer {
    /// A namer for the envelope whose header is `header`; give it every byte of the
    /// envelope, header included, in order.
    pub fn new(header: &Header) -> Namer {
        let by_checksum = header.encrypted && header.format >= TRAILING_DATA;
        Namer {
            blake: blake3::Hasher::new(),
            body: by_checksum.then(twox_hash::XxHash3_128::new),
            header_left: HEADER_LEN,
        }
    }

    /// The name of `envelope`, whose header is `header`.
    pub fn name(header: &Header, envelope: &[u8]) -> Hash {
        let mut namer = Namer::new(header);
        namer.update(envelope);
        namer.finish()
    }

    /// Takes the next bytes of the envelope.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.body {
            None => {
                self.blake.update(bytes);
            }
            Some(body) => {
                let (head, rest) = bytes.split_at(self.header_left.min(bytes.len()));
                self.blake.update(head);
                self.header_left -= head.len();
                body.write(rest);
            }
        }
    }

    /// The name.
    pub fn finish(mut self) -> Hash {
        if let Some(body) = &self.body {
            self.blake.update(&body.finish_128().to_le_bytes());
        }
        *self.blake.finalize().as_bytes()
    }
}

/// The name of `envelope`, or `None` when its header does not decode (then it has none).
pub fn name_of(envelope: &[u8]) -> Option<Hash> {
    let header = Header::decode(envelope).ok()?;
    Some(Namer::name(&header, envelope))
}

impl Aggregate {
    /// Seals the aggregate, encrypting it when `key` is given.
    pub fn seal(&self, key: Option<&Key>) -> Result<Sealed> {
        self.seal_marked(key, false)
    }

    /// Seals the aggregate as the start of a new run of sequences (see
    /// [`Header::run_start`]), encrypting it when `key` is given.
    pub fn seal_run_start(&self, key: Option<&Key>) -> Result<Sealed> {
        self.seal_marked(key, true)
    }

    fn seal_marked(&self, key: Option<&Key>, run_start: bool) -> Result<Sealed> {
        self.seal_into(key, run_start, None)
    }

    /// Seals the aggregate (as the start of a run with `run_start`) into a buffer placed
    /// for a store that will write the envelope at byte `offset` of a file with `O_DIRECT`:
    /// the envelope's address is `offset` modulo [`PLACE_ALIGN`], with at least
    /// [`PLACE_ROOM`] bytes of room before it and room after it to the next aligned end.
    /// Such a store writes the envelope from this buffer, framing and all, instead of
    /// copying it into its own (see `storage::segment`). The envelope is the same as
    /// [`Aggregate::seal`]'s.
    pub fn seal_placed(&self, key: Option<&Key>, run_start: bool, offset: u64) -> Result<Sealed> {
        self.seal_into(key, run_start, Some(offset))
    }

    fn seal_into(&self, key: Option<&Key>, run_start: bool, place: Option<u64>) -> Result<Sealed> {
        let (Some(first), Some(last)) = (self.blocks.first(), self.blocks.last()) else {
            return Err(Error::InvalidArgument("an aggregate needs at least one block".into()));
        };
        // The envelope is built in one buffer: header room, then the plaintext, encrypted in
        // place; only a compressed body is copied (smaller) into a second one.
        let envelope = HEADER_LEN + self.encoded_len_estimate() + TAG_LEN;
        let (mut bytes, start) = match place {
            None => (spare::take(envelope), 0),
            Some(offset) => {
                let bytes = spare::take(PLACE_ROOM + 2 * PLACE_ALIGN + envelope);
                let address = bytes.as_ptr() as usize + PLACE_ROOM;
                let want = (offset % PLACE_ALIGN as u64) as usize;
                let shift = (want + PLACE_ALIGN - address % PLACE_ALIGN) % PLACE_ALIGN;
                (bytes, PLACE_ROOM + shift)
            }
        };
        bytes.resize(start + HEADER_LEN, 0);
        self.encode_into(&mut bytes)?;
        let header = Header {
            prev: self.prev,
            first_sequence: first.sequence,
            last_sequence: last.sequence,
            timestamp: self.timestamp,
            blocks: u32::try_from(self.blocks.len()).unwrap_or(u32::MAX),
            encrypted: key.is_some(),
            run_start,
            compressed: false,
            nonce: [0; NONCE_LEN],
            plaintext_len: 0,
            format: FORMAT,
        };
        wrap(bytes, start, header, &self.vdisk_id, key)
    }

    /// Opens an envelope of `vdisk_id` named `hash`: checks the header and the name,
    /// decrypts (with `key` when the envelope is encrypted), decompresses and decodes, and
    /// checks that the plaintext agrees with the header. With a key, a plaintext envelope is
    /// refused: a log with a key is encrypted throughout, and the AEAD tag over the header
    /// (its `prev` and sequences among it) is what authenticates the chain, so an
    /// unencrypted aggregate can only be forged or written by someone without the key.
    pub fn open(vdisk_id: &str, hash: &Hash, bytes: &[u8], key: Option<&Key>) -> Result<Aggregate> {
        let name = hex(hash);
        let header = Header::decode(bytes)
            .map_err(|e| Error::Corrupted(format!("aggregate {name}: {e}")))?;
        if Namer::name(&header, bytes) != *hash {
            return Err(Error::Corrupted(format!(
                "aggregate {name}: hash does not match its bytes"
            )));
        }
        if key.is_some() && !header.encrypted {
            return Err(Error::Corrupted(format!(
                "aggregate {name} is not encrypted, but this log has a key: it was forged, or \
                 written without the key; refusing it"
            )));
        }
        let mut body = bytes[HEADER_LEN..].to_vec();
        if header.encrypted {
            let key = key.ok_or_else(|| {
                Error::InvalidArgument(format!("aggregate {name} is encrypted; give the key file"))
            })?;
            let aad = aad(&bytes[..HEADER_LEN], vdisk_id);
            let plain = key
                .0
                .open_in_place(Nonce::assume_unique_for_key(header.nonce), Aad::from(aad), &mut body)
                .map_err(|_| {
                    Error::Corrupted(format!(
                        "aggregate {name}: decryption failed (wrong key, wrong vdisk, or damaged data)"
                    ))
                })?;
            let len = plain.len();
            body.truncate(len);
        }
        let plain = if header.compressed {
            lz4_flex::block::decompress(&body, header.plaintext_len as usize)
                .map_err(|e| Error::Corrupted(format!("aggregate {name}: decompression: {e}")))?
        } else {
            body
        };
        let aggregate = Aggregate::decode(plain, header.format >= TRAILING_DATA)
            .map_err(|e| Error::Corrupted(format!("aggregate {name}: {e}")))?;
        let agrees = aggregate.vdisk_id == vdisk_id
            && aggregate.prev == header.prev
            && aggregate.timestamp == header.timestamp
            && aggregate.blocks.len() == header.blocks as usize
            && aggregate.blocks.first().map(|b| b.sequence) == Some(header.first_sequence)
            && aggregate.blocks.last().map(|b| b.sequence) == Some(header.last_sequence);
        if !agrees {
            return Err(Error::Corrupted(format!(
                "aggregate {name}: its contents do not match its header (or it belongs to vdisk {:?})",
                aggregate.vdisk_id
            )));
        }
        // The envelope's name (and, when encrypted, its seal) vouch for every byte; the
        // block hashes were checked when the server received the blocks over the wire
        // (writes from a client in the server's process carry none).
        for block in &aggregate.blocks {
            block.check_shape().map_err(|e| {
                Error::Corrupted(format!("aggregate {name}: block {}: {e}", block.sequence))
            })?;
        }
        Ok(aggregate)
    }

    /// Roughly the plaintext's size: the block data and a little per block.
    fn encoded_len_estimate(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum::<usize>() + self.fields_len_estimate()
    }

    /// Roughly the Cap'n Proto message's size without the data: a block's fields and hash
    /// take 11 words.
    fn fields_len_estimate(&self) -> usize {
        self.blocks.len() * 96 + 256
    }

    /// Appends the plaintext to `out`: the message (in one segment sized for it), then each
    /// block's data, copied once.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let words = (self.fields_len_estimate() / 8) as u32;
        let allocator = capnp::message::HeapAllocator::new().first_segment_words(words);
        let mut message = Builder::new(allocator);
        let mut list = self.init_message(&mut message);
        let blocks = &self.blocks[..list.len() as usize];
        for (i, block) in blocks.iter().enumerate() {
            block.write_fields_to(list.reborrow().get(i as u32), &block.hash);
        }
        serialize::write_message(&mut *out, &message)?;
        for block in blocks {
            out.extend_from_slice(&block.data);
        }
        Ok(())
    }

    /// Sets the message's fields but the blocks, and returns the list the blocks go in.
    fn init_message<'a, A: capnp::message::Allocator>(
        &self,
        message: &'a mut Builder<A>,
    ) -> capnp::struct_list::Builder<'a, tlog_block::Owned> {
        let mut root = message.init_root::<tlog_aggregation::Builder<'_>>();
        root.set_name("tlog");
        root.set_size(self.blocks.len() as u64);
        root.set_timestamp(self.timestamp);
        root.set_vdisk_i_d(&self.vdisk_id);
        root.set_prev(&self.prev);
        root.init_blocks(u32::try_from(self.blocks.len()).unwrap_or(u32::MAX))
    }

    /// Decodes a plaintext; with `trailing` (format 3), the writes' data follows the
    /// message, in block order, and must be exactly used up.
    fn decode(plain: Vec<u8>, trailing: bool) -> Result<Aggregate> {
        let bytes = bytes::Bytes::from(plain);
        let mut options = reader_options();
        options.traversal_limit_in_words(Some(bytes.len() / 8 * 2 + 1024));
        let mut slice = &bytes[..];
        let message = serialize::read_message_from_flat_slice(&mut slice, options)?;
        let mut data = bytes.slice_ref(slice);
        let root = message.get_root::<tlog_aggregation::Reader<'_>>()?;
        let prev = root.get_prev()?;
        let prev: Hash =
            prev.try_into().map_err(|_| Error::Protocol("prev is not 32 bytes".into()))?;
        let mut blocks = Vec::new();
        for block in root.get_blocks()? {
            let mut block = Block::read_from(block, |data| bytes.slice_ref(data))?;
            if trailing {
                if !block.data.is_empty() {
                    return Err(Error::Protocol(format!(
                        "block {} carries its data inside the message",
                        block.sequence
                    )));
                }
                if block.operation == crate::message::operation::WRITE {
                    let size = usize::try_from(block.size)
                        .ok()
                        .filter(|&size| size <= data.len())
                        .ok_or_else(|| {
                            Error::Protocol(format!(
                                "block {} writes {} bytes, but only {} bytes of data are left",
                                block.sequence,
                                block.size,
                                data.len()
                            ))
                        })?;
                    block.data = data.split_to(size);
                }
            }
            blocks.push(block);
        }
        if trailing && !data.is_empty() {
            return Err(Error::Protocol(format!(
                "{} bytes of data belong to no block",
                data.len()
            )));
        }
        Ok(Aggregate {
            vdisk_id: root
                .get_vdisk_i_d()?
                .to_string()
                .map_err(|_| Error::Protocol("vdisk id is not UTF-8".into()))?,
            timestamp: root.get_timestamp(),
            blocks,
            prev,
        })
    }
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(MAGIC);
        h[4] = self.format;
        h[5] = (if self.compressed { FLAG_COMPRESSED } else { 0 })
            | (if self.encrypted { FLAG_ENCRYPTED } else { 0 })
            | (if self.run_start { FLAG_RUN_START } else { 0 });
        h[8..20].copy_from_slice(&self.nonce);
        h[20..52].copy_from_slice(&self.prev);
        h[52..60].copy_from_slice(&self.first_sequence.to_le_bytes());
        h[60..68].copy_from_slice(&self.last_sequence.to_le_bytes());
        h[68..76].copy_from_slice(&self.timestamp.to_le_bytes());
        h[76..80].copy_from_slice(&self.blocks.to_le_bytes());
        h[80..88].copy_from_slice(&self.plaintext_len.to_le_bytes());
        h
    }

    /// Reads the header at the start of an envelope.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Header, String> {
        let h = bytes.get(..HEADER_LEN).ok_or("shorter than its header")?;
        if &h[0..4] != MAGIC {
            return Err("not a strata tlog aggregate (bad magic)".into());
        }
        let format = h[4];
        if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
            return Err(format!(
                "format version {format} (this strata reads {OLDEST_FORMAT} to {FORMAT})"
            ));
        }
        let flags = h[5];
        let known = match format {
            1 => FLAG_COMPRESSED | FLAG_ENCRYPTED,
            _ => FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_RUN_START,
        };
        if flags & !known != 0 || h[6] != 0 || h[7] != 0 {
            return Err(format!("unknown flags {flags:#x}"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or_default());
        let plaintext_len = u64_at(80);
        if plaintext_len > MAX_PLAINTEXT {
            return Err(format!("declares {plaintext_len} bytes of plaintext"));
        }
        Ok(Header {
            prev: h[20..52].try_into().unwrap_or_default(),
            first_sequence: u64_at(52),
            last_sequence: u64_at(60),
            timestamp: u64_at(68),
            blocks: u32::from_le_bytes(h[76..80].try_into().unwrap_or_default()),
            encrypted: flags & FLAG_ENCRYPTED != 0,
            run_start: flags & FLAG_RUN_START != 0,
            compressed: flags & FLAG_COMPRESSED != 0,
            nonce: h[8..20].try_into().unwrap_or_default(),
            plaintext_len,
            format,
        })
    }
}

/// Makes the envelope of a plaintext that follows [`HEADER_LEN`] bytes of room from `start`
/// in `bytes`: compresses it when that pays, fills in and writes `header`, encrypts in place
/// under `key`, and names the result.
fn wrap(
    mut bytes: Vec<u8>,
    start: usize,
    mut header: Header,
    vdisk_id: &str,
    key: Option<&Key>,
) -> Result<Sealed> {
    let body = start + HEADER_LEN;
    let plain = &bytes[body..];
    header.plaintext_len = plain.len() as u64;
    let compressed = worth_compressing(plain)
        .then(|| lz4_flex::block::compress(plain))
        .filter(|c| c.len() < plain.len());
    header.compressed = compressed.is_some();
    if key.is_some() {
        SystemRandom::new()
            .fill(&mut header.nonce)
            .map_err(|_| Error::Unavailable("the system random generator failed".into()))?;
    }
    let head = header.encode();
    if let Some(compressed) = compressed {
        bytes.truncate(body);
        bytes.extend_from_slice(&compressed);
    }
    bytes[start..body].copy_from_slice(&head);
    if let Some(key) = key {
        let aad = aad(&head, vdisk_id);
        let tag = key
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(header.nonce),
                Aad::from(aad),
                &mut bytes[body..],
            )
            .map_err(|_| Error::InvalidArgument("aggregate too large to encrypt".into()))?;
        bytes.extend_from_slice(tag.as_ref());
    }
    let hash = Namer::name(&header, &bytes[start..]);
    Ok(Sealed { hash, bytes, start, header })
}

/// Authenticated data: the whole header, then the vdisk id.
fn aad(header: &[u8], vdisk_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + vdisk_id.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(vdisk_id.as_bytes());
    aad
}

/// Lower-case hex of a hash, for names in messages and listings.
pub fn hex(hash: &[u8]) -> String {
    ::hex::encode(hash)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn sample() -> Aggregate {
        let blocks = (1..=5)
            .map(|seq| {
                Block::write(seq, seq * 4096, Bytes::from(vec![seq as u8; 4096]), 1000 + seq)
            })
            .chain([Block::discard(6, 0, 8192, 2000)])
            .collect();
        Aggregate { vdisk_id: "vd".into(), timestamp: 42, blocks, prev: [7; 32] }
    }

    #[test]
    fn compression_is_tried_only_when_most_samples_shrink() {
        let mut rng = fastrand::Rng::with_seed(4);
        let mut random = vec![0u8; 256 << 10];
        rng.fill(&mut random);
        assert!(!worth_compressing(&random));
        // A compressible start (like an aggregate's block list) does not decide alone.
        let mut listed = random.clone();
        listed[..SAMPLE].fill(0);
        assert!(!worth_compressing(&listed));
        let text = b"journaled block of a vdisk ".repeat(10_000);
        assert!(worth_compressing(&text));
        // Two compressible samples of three do.
        let mut mostly = text.clone();
        let end = mostly.len();
        mostly[end - SAMPLE..].copy_from_slice(&random[..SAMPLE]);
        assert!(worth_compressing(&mostly));
        assert!(worth_compressing(&random[..4 * SAMPLE]), "small plaintexts are always tried");
    }

    #[test]
    fn sealed_aggregates_open_with_the_key_only() {
        let key = Key::from_bytes(&[1; 32]);
        let sealed = sample().seal(Some(&key)).unwrap();
        assert!(sealed.header.encrypted && sealed.header.compressed);
        assert_eq!(
            Aggregate::open("vd", &sealed.hash, &sealed.bytes, Some(&key)).unwrap(),
            sample()
        );
        let wrong = Key::from_bytes(&[2; 32]);
        let err = Aggregate::open("vd", &sealed.hash, &sealed.bytes, Some(&wrong)).unwrap_err();
        assert!(err.to_string().contains("decryption failed"), "{err}");
        let err = Aggregate::open("other", &sealed.hash, &sealed.bytes, Some(&key)).unwrap_err();
        assert!(matches!(err, Error::Corrupted(_)), "{err}");
        assert!(Aggregate::open("vd", &sealed.hash, &sealed.bytes, None).is_err());
    }

    #[test]
    fn incompressible_blocks_skip_lz4_and_compressible_ones_do_not() {
        let key = Key::from_bytes(&[1; 32]);
        let mut rng = fastrand::Rng::with_seed(3);
        let random: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(256 << 10).collect();
        let mut text = Vec::new();
        while text.len() < 256 << 10 {
            text.extend_from_slice(format!("line {} of a log file\n", text.len()).as_bytes());
        }
        // Half random, half text: the samples see both, and the whole shrinks.
        let mixed = [&random[..128 << 10], &text[..128 << 10]].concat();
        for (data, compressed) in [(random, false), (text, true), (mixed, true)] {
            let aggregate = Aggregate {
                vdisk_id: "vd".into(),
                timestamp: 1,
                blocks: vec![Block::write(1, 0, Bytes::from(data), 1)],
                prev: NO_PREV,
            };
            for key in [None, Some(&key)] {
                let sealed = aggregate.seal(key).unwrap();
                assert_eq!(sealed.header.compressed, compressed);
                let opened = Aggregate::open("vd", &sealed.hash, &sealed.bytes, key).unwrap();
                assert_eq!(opened, aggregate);
            }
        }
    }

    /// Buffers of dropped envelopes are sealed into again: nothing of the old envelope may
    /// show in the new one, and what is kept stays bounded.
    #[test]
    fn reused_buffers_leave_nothing_of_their_last_envelope() {
        let mut rng = fastrand::Rng::with_seed(5);
        let aggregate = |len: usize, rng: &mut fastrand::Rng| {
            let data: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            Aggregate {
                vdisk_id: "vd".into(),
                timestamp: 1,
                blocks: vec![Block::write(1, 0, Bytes::from(data), 1)],
                prev: NO_PREV,
            }
        };
        let (large, small) = (aggregate(2 << 20, &mut rng), aggregate(200 << 10, &mut rng));
        // Without a key sealing is deterministic, whichever buffer it gets.
        let fresh = small.seal(None).unwrap().bytes().to_vec();
        for _ in 0..3 {
            drop(large.seal(None).unwrap());
            let reused = small.seal(None).unwrap();
            assert_eq!(reused.bytes(), &fresh[..]);
        }
        let held: Vec<Sealed> = (0..20).map(|_| small.seal(None).unwrap()).collect();
        drop(held);
        assert!(spare::SPARE.lock().unwrap().len() <= spare::KEPT);
    }

    /// An envelope sealed for its place is the same envelope, at an address that matches
    /// the file offset it is placed for, with room before it.
    #[test]
    fn placed_envelopes_are_the_same_and_placed() {
        let aggregate = sample();
        let plain = aggregate.seal(None).unwrap();
        for offset in [0, 1, 56, 4095, 4096, 1 << 20, (7 << 20) + 1234] {
            let mut placed = aggregate.seal_placed(None, false, offset).unwrap();
            assert_eq!(placed.bytes(), plain.bytes());
            assert_eq!(placed.hash(), plain.hash());
            let (buffer, start) = placed.buffer_mut();
            assert!(start >= PLACE_ROOM);
            let address = buffer.as_ptr() as usize + start;
            assert_eq!(address % PLACE_ALIGN, (offset % PLACE_ALIGN as u64) as usize);
            assert!(buffer.capacity() >= start + buffer[start..].len() + PLACE_ALIGN);
        }
        let marked = aggregate.seal_placed(None, true, 9).unwrap();
        assert!(marked.header().run_start);
    }

    #[test]
    fn nonces_are_never_reused() {
        let key = Key::from_bytes(&[1; 32]);
        let a = sample().seal(Some(&key)).unwrap();
        let b = sample().seal(Some(&key)).unwrap();
        assert_ne!(a.header.nonce, b.header.nonce);
        assert_ne!(a.hash, b.hash);
    }

    /// The plaintext of `aggregate` (after [`HEADER_LEN`] bytes of room) as formats 1 and 2
    /// had it: each block's data inside the message.
    fn inline_plaintext(aggregate: &Aggregate) -> Vec<u8> {
        let mut bytes = vec![0; HEADER_LEN];
        let mut message = Builder::new_default();
        let mut list = aggregate.init_message(&mut message);
        for (i, block) in aggregate.blocks.iter().enumerate() {
            block.write_to(list.reborrow().get(i as u32));
        }
        serialize::write_message(&mut bytes, &message).unwrap();
        bytes
    }

    /// Seals `aggregate` as strata wrote it in `format` (1 or 2): the data inside the
    /// message, and (`wrap` reads the format) a BLAKE3 name over every byte.
    fn seal_as(aggregate: &Aggregate, format: u8, key: Option<&Key>) -> Sealed {
        let mut header = aggregate.seal(key).unwrap().header;
        header.format = format;
        wrap(inline_plaintext(aggregate), 0, header, &aggregate.vdisk_id, key).unwrap()
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let key = Key::from_bytes(&[1; 32]);
        for key in [None, Some(&key)] {
            let sealed = sample().seal(key).unwrap();
            assert_eq!(Aggregate::open("vd", &sealed.hash, &sealed.bytes, key).unwrap(), sample());
            for at in [0, 4, 5, 30, HEADER_LEN, HEADER_LEN + 100, sealed.bytes.len() - 1] {
                let mut bytes = sealed.bytes.clone();
                bytes[at] ^= 0x40;
                assert!(name_of(&bytes) != Some(sealed.hash), "byte {at}");
                assert!(Aggregate::open("vd", &sealed.hash, &bytes, key).is_err(), "byte {at}");
            }
        }
    }

    #[test]
    fn encrypted_envelopes_are_named_through_their_body_checksum() {
        let key = Key::from_bytes(&[1; 32]);
        let sealed = sample().seal(Some(&key)).unwrap();
        let (head, body) = sealed.bytes.split_at(HEADER_LEN);
        let checksum = twox_hash::XxHash3_128::oneshot(body).to_le_bytes();
        let expected = blake3::Hasher::new().update(head).update(&checksum).finalize();
        assert_eq!(sealed.hash(), expected.as_bytes());
        // Without a key, and in formats before 3, the name is BLAKE3 of every byte.
        let plain = sample().seal(None).unwrap();
        assert_eq!(plain.hash(), blake3::hash(plain.bytes()).as_bytes());
        let old = seal_as(&sample(), 2, Some(&key));
        assert_eq!(old.hash(), blake3::hash(old.bytes()).as_bytes());
        // In pieces of any size, the name is the same.
        for sealed in [&sealed, &plain, &old] {
            for piece in [1, 7, 64, 89, 4096] {
                let mut namer = Namer::new(sealed.header());
                sealed.bytes().chunks(piece).for_each(|chunk| namer.update(chunk));
                assert_eq!(&namer.finish(), sealed.hash(), "pieces of {piece}");
            }
        }
    }

    #[test]
    fn older_formats_still_open() {
        let key = Key::from_bytes(&[1; 32]);
        for format in [1, 2] {
            for key in [None, Some(&key)] {
                let sealed = seal_as(&sample(), format, key);
                assert_eq!(sealed.bytes()[4], format);
                let opened = Aggregate::open("vd", sealed.hash(), sealed.bytes(), key).unwrap();
                assert_eq!(opened, sample(), "format {format}");
            }
        }
    }

    #[test]
    fn format_1_envelopes_have_no_run_start() {
        let mut bytes = seal_as(&sample(), 1, None).bytes().to_vec();
        assert!(!Header::decode(&bytes).unwrap().run_start);
        // Format 1 knew no run-start flag.
        bytes[5] |= FLAG_RUN_START;
        assert!(Header::decode(&bytes).unwrap_err().contains("unknown flags"));
        let marked = sample().seal_run_start(None).unwrap();
        assert!(Header::decode(marked.bytes()).unwrap().run_start);
    }

    #[test]
    fn format_3_data_must_match_the_blocks_exactly() {
        let aggregate = sample();
        let sealed = aggregate.seal(None).unwrap();
        let refused = |plain: Vec<u8>| {
            let sealed = wrap(plain, 0, sealed.header, "vd", None).unwrap();
            Aggregate::open("vd", sealed.hash(), sealed.bytes(), None).unwrap_err().to_string()
        };
        let mut plain = vec![0; HEADER_LEN];
        aggregate.encode_into(&mut plain).unwrap();
        let mut long = plain.clone();
        long.extend_from_slice(b"stray");
        assert!(refused(long).contains("5 bytes of data belong to no block"));
        let mut short = plain.clone();
        short.truncate(plain.len() - 1);
        assert!(refused(short).contains("only 4095 bytes of data are left"));
        // Data inside the message is how formats 1 and 2 kept it, not format 3.
        assert!(refused(inline_plaintext(&aggregate)).contains("carries its data inside"));
    }

    #[test]
    fn a_key_refuses_plaintext() {
        let sealed = sample().seal(None).unwrap();
        let key = Key::from_bytes(&[3; 32]);
        let err = Aggregate::open("vd", sealed.hash(), sealed.bytes(), Some(&key)).unwrap_err();
        assert!(err.to_string().contains("not encrypted"), "{err}");
    }
}
