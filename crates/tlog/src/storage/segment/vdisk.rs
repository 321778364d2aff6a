//! One vdisk's segments and index: loading them (with the torn-tail repair), and appending
//! a record (with preallocation, rotation and the syncs that make it durable).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FallocateFlags;

use crate::aggregate::{Hash, Header, NO_PREV, Sealed, hex};
use crate::storage::Stored;
use crate::storage::segment::SegmentConfig;
use crate::storage::segment::format::{
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, parse_segment_name, record_header, seal, segment_header,
    segment_name,
};
use crate::storage::segment::scan::{
    Found, SegmentScan, Stop, scan_segment, valid_record_after, verify_last,
};
use crate::storage::segment::writer::{Failed, Outcome, PENDING_LIMIT, Pending, Target, Writer};
use crate::{Error, Result};

/// Preallocation ahead of the write position is what the segment already holds, within
/// these bounds: small vdisks stay small, busy ones extend rarely.
const MIN_PREALLOCATION: u64 = 1 << 20;
const MAX_PREALLOCATION: u64 = 64 << 20;
/// Smaller envelopes are copied into the pending batch even when placed: a copy of less
/// costs less than handing a write to the writer thread, and a small flush is written
/// in one piece on the flushing thread.
const IN_PLACE_MIN: usize = 256 << 10;

/// Whether a store may change its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The server's store: repairs a torn tail, appends.
    Writable,
    /// A reader's store: reads the consistent prefix and changes nothing.
    ReadOnly,
}

/// The in-memory state of one vdisk.
#[derive(Debug)]
pub(super) struct Vdisk {
    id: String,
    /// `<root>/<id>`; created by the first append.
    dir: PathBuf,
    /// Its segment files, oldest first, numbered consecutively.
    segments: Vec<Segment>,
    /// Every aggregate, oldest first.
    entries: Vec<Entry>,
    /// Aggregate name to its index in `entries`.
    by_hash: HashMap<Hash, usize>,
    /// Where the next record goes.
    tail: Tail,
    /// Set when a write or sync failed: the files' state is unknown until a reopen.
    poisoned: bool,
    /// Cleared when the file system refuses `fallocate`, so it is not asked again.
    can_preallocate: bool,
    /// Records appended but not yet handed to the writer.
    pending: Pending,
    /// Writes full batches of `pending` while the next aggregates are sealed.
    writer: Writer,
    /// How records reach the last segment (see [`Direct`]).
    direct: Direct,
    /// Where the next envelope would start in its segment, for sealing ahead of the
    /// append (`Storage::placement`); read without the vdisk's lock. `u64::MAX`: unknown.
    placement: Arc<AtomicU64>,
    /// Records written from their own buffers (see [`Vdisk::append_owned`]).
    pub(super) in_place: u64,
}

/// Records are written to the last segment with `O_DIRECT` where the file system allows,
/// in whole aligned blocks (the partial block before them read back first, zeros after
/// them): the page cache's copy and write-back cost more than the disk does, here about
/// four times. Where `O_DIRECT` is refused (tmpfs), records are written through the cache.
#[derive(Debug)]
enum Direct {
    /// Not tried yet for this segment.
    Untried,
    /// An `O_DIRECT` handle on segment `number`.
    Open { number: u64, file: Arc<File> },
    /// Refused here: buffered writes from now on.
    Refused,
}

/// One segment file, kept open for reads (and, for the last one of a writable store, writes).
#[derive(Debug)]
struct Segment {
    number: u64,
    path: PathBuf,
    file: Arc<File>,
}

/// What [`Vdisk::admit`] found for a record about to be appended.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    header: Header,
    /// The envelope's length.
    len: u32,
    /// Where the record goes.
    end: u64,
    /// The records the segment holds before it.
    records: u32,
}

/// Where an aggregate lives.
#[derive(Debug)]
struct Entry {
    stored: Stored,
    /// Index into `Vdisk::segments`.
    segment: usize,
    /// Offset of the envelope in the segment file.
    offset: u64,
}

/// The state of the last segment.
#[derive(Debug, Clone, Copy)]
enum Tail {
    /// No segment yet, or the last one is sealed: the next append starts a new one.
    Closed,
    /// The last segment takes appends at `end`; `allocated` bytes of it exist on disk.
    Open { end: u64, allocated: u64, records: u32 },
}

/// Where an aggregate's bytes are, for a read outside the vdisk's lock.
#[derive(Debug)]
pub(super) struct Location {
    pub(super) file: Arc<File>,
    pub(super) path: PathBuf,
    pub(super) offset: u64,
    pub(super) len: u64,
}

impl Vdisk {
    /// Loads `<root>/<id>`: scans its segments, rebuilds the index, and handles a torn tail
    /// (cut back when writable, ignored when read-only). A vdisk without a directory is empty.
    pub(super) fn load(root: &Path, id: &str, mode: Mode) -> Result<Vdisk> {
        let dir = root.join(id);
        let mut vdisk = Vdisk {
            id: id.to_string(),
            dir,
            segments: Vec::new(),
            entries: Vec::new(),
            by_hash: HashMap::new(),
            tail: Tail::Closed,
            poisoned: false,
            can_preallocate: true,
            pending: Pending::default(),
            writer: Writer::default(),
            direct: Direct::Untried,
            placement: Arc::new(AtomicU64::new(u64::MAX)),
            in_place: 0,
        };
        let numbers = segment_numbers(&vdisk.dir)?;
        for (i, &number) in numbers.iter().enumerate() {
            let is_last = i + 1 == numbers.len();
            vdisk.load_segment(number, is_last, mode)?;
        }
        vdisk.publish_placement();
        Ok(vdisk)
    }

    /// Where the next envelope would start, kept current for readers without the lock.
    pub(super) fn placement(&self) -> Arc<AtomicU64> {
        self.placement.clone()
    }

    /// Updates [`Vdisk::placement`]: after the open segment's last record, or in a new
    /// segment after its header.
    fn publish_placement(&self) {
        let next_record = match self.tail {
            Tail::Open { end, .. } => end,
            Tail::Closed => SEGMENT_HEADER_LEN,
        };
        self.placement.store(next_record + RECORD_HEADER_LEN, Ordering::Relaxed);
    }

    /// The newest aggregate.
    pub(super) fn head(&self) -> Option<Stored> {
        self.entries.last().map(|e| e.stored)
    }

    /// Every aggregate, oldest first.
    pub(super) fn list(&self) -> Vec<Stored> {
        self.entries.iter().map(|e| e.stored).collect()
    }

    /// Where the aggregate `hash` is stored.
    pub(super) fn locate(&self, hash: &Hash) -> Option<Location> {
        let entry = &self.entries[*self.by_hash.get(hash)?];
        let segment = &self.segments[entry.segment];
        Some(Location {
            file: segment.file.clone(),
            path: segment.path.clone(),
            offset: entry.offset,
            len: entry.stored.len,
        })
    }

    /// Appends `sealed` durably. Its `prev` must be the head.
    pub(super) fn append(&mut self, sealed: &Sealed, config: &SegmentConfig) -> Result<()> {
        self.append_unsynced(sealed, config)?;
        self.sync()
    }

    /// Makes everything appended so far durable (the open segment's data; closed segments
    /// were synced when they were sealed).
    pub(super) fn sync(&mut self) -> Result<()> {
        self.write_pending()?;
        if let Tail::Closed = self.tail {
            return Ok(());
        }
        let file = self.last_file()?;
        let started = std::time::Instant::now();
        let synced = file.sync_data();
        metrics::histogram!("strata_tlog_fsync_duration_seconds").record(started.elapsed());
        if let Err(e) = synced {
            self.poisoned = true;
            let path = self.segments.last().map(|s| s.path.clone()).unwrap_or_default();
            return Err(Error::file(path)(e));
        }
        Ok(())
    }

    /// Marks the log unusable until the server restarts (and rescans it): what is on disk
    /// may no longer be what this index says.
    pub(super) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Appends `sealed` without syncing: durable only after [`Vdisk::sync`]. Its `prev`
    /// must be the head. Copies it into the pending batch.
    pub(super) fn append_unsynced(
        &mut self,
        sealed: &Sealed,
        config: &SegmentConfig,
    ) -> Result<()> {
        let admitted = self.admit(sealed, config)?;
        self.push_pending(sealed, &admitted)?;
        self.note(*sealed.hash(), admitted);
        Ok(())
    }

    /// Appends `sealed` as [`Vdisk::append_unsynced`] does, but writes it from its own
    /// buffer, without a copy, when it was sealed for the place it lands in
    /// (`Aggregate::seal_placed`), is not small ([`IN_PLACE_MIN`]) and the segment takes
    /// `O_DIRECT`: the partial block
    /// before it and its record header go into the room before it, zeros after it to the
    /// block's end, and the whole is one aligned write, queued after the batches before.
    pub(super) fn append_owned(&mut self, sealed: Sealed, config: &SegmentConfig) -> Result<()> {
        let admitted = self.admit(&sealed, config)?;
        let hash = *sealed.hash();
        let placeable =
            !matches!(self.direct, Direct::Refused) && sealed.bytes().len() >= IN_PLACE_MIN;
        let target = if placeable { Some(self.target()?) } else { None };
        let unplaced = match target.filter(|t| t.direct.is_some()) {
            None => Some(sealed),
            Some(target) => {
                let framing = record_header(admitted.len, &hash);
                match self.writer.hand_over_in_place(&mut self.pending, sealed, &framing, target) {
                    Ok(outcome) => {
                        self.in_place += 1;
                        self.written(outcome)?;
                        None
                    }
                    Err(unplaced) => Some(*unplaced),
                }
            }
        };
        if let Some(sealed) = unplaced {
            self.push_pending(&sealed, &admitted)?;
        }
        self.note(hash, admitted);
        Ok(())
    }

    /// The checks and the room an append needs: the log not poisoned, the link, the length,
    /// the segment (a new one when full) and its preallocation, and the pending batch
    /// ending where the record goes.
    fn admit(&mut self, sealed: &Sealed, config: &SegmentConfig) -> Result<Admitted> {
        if self.poisoned {
            return Err(Error::Unavailable(format!(
                "vdisk {}: an earlier write to its log failed; restart the server to recover",
                self.id
            )));
        }
        let header = self.check_append(sealed)?;
        if !config.direct_io {
            self.direct = Direct::Refused;
        }
        let len = u32::try_from(sealed.bytes().len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "an aggregate of {} bytes is too large",
                sealed.bytes().len()
            ))
        })?;
        let record_len = RECORD_HEADER_LEN + u64::from(len);
        let (end, records) = self.prepare(record_len, config)?;
        if !self.pending.ends_at(end) {
            let file = self.last_file()?;
            let path = self.segments.last().map(|s| s.path.clone()).unwrap_or_default();
            if let Err(e) = self.pending.begin(&file, end) {
                self.poisoned = true;
                return Err(Error::file(path)(e));
            }
        }
        Ok(Admitted { header, len, end, records })
    }

    /// Copies the record into the pending batch, and hands the batch to the writer once
    /// it is full.
    fn push_pending(&mut self, sealed: &Sealed, admitted: &Admitted) -> Result<()> {
        self.pending.push(&record_header(admitted.len, sealed.hash()));
        self.pending.push(sealed.bytes());
        if self.pending.records_len() >= PENDING_LIMIT {
            let target = self.target()?;
            let outcome = self.writer.hand_over(&mut self.pending, target);
            self.written(outcome)?;
        }
        Ok(())
    }

    /// Indexes the record of `hash` written (or pending) and moves the tail past it.
    fn note(&mut self, hash: Hash, admitted: Admitted) {
        let Admitted { header, len, end, records } = admitted;
        let stored = Stored { hash, header, len: u64::from(len) };
        let record_len = RECORD_HEADER_LEN + stored.len;
        if let Tail::Open { allocated, .. } = self.tail {
            let end = end + record_len;
            self.tail = Tail::Open { end, allocated: allocated.max(end), records: records + 1 };
        }
        let segment = self.segments.len() - 1;
        self.push(Entry { stored, segment, offset: end + RECORD_HEADER_LEN });
        self.publish_placement();
    }

    /// Checks what `append` is given: the chain link and the name; returns the header as
    /// the bytes carry it.
    fn check_append(&self, sealed: &Sealed) -> Result<Header> {
        let head = self.head().map_or(NO_PREV, |s| s.hash);
        let header = Header::decode(sealed.bytes())
            .map_err(|e| Error::InvalidArgument(format!("not an aggregate envelope: {e}")))?;
        if header.prev != head {
            return Err(Error::StaleHead(format!(
                "vdisk {}: the aggregate's prev is {}, but the head is {}",
                self.id,
                hex(&header.prev),
                hex(&head)
            )));
        }
        // No re-hash: only `Aggregate::seal` makes a `Sealed`, so its name is its hash.
        Ok(header)
    }

    /// Makes room for a record of `record_len` bytes: a new segment when there is none or
    /// the open one is full, then preallocation. Returns the write offset and how many
    /// records the segment holds.
    fn prepare(&mut self, record_len: u64, config: &SegmentConfig) -> Result<(u64, u32)> {
        if let Tail::Open { end, records, .. } = self.tail
            && records > 0
            && end + record_len + RECORD_HEADER_LEN > config.segment_size
        {
            self.sync()?;
            self.seal_last(end, records)?;
        }
        if let Tail::Closed = self.tail {
            self.create_segment()?;
        }
        let Tail::Open { end, allocated, records } = self.tail else {
            return Err(Error::Unavailable("segment state lost".into()));
        };
        let needed = end + record_len + RECORD_HEADER_LEN;
        if needed > allocated {
            let ahead = end.clamp(MIN_PREALLOCATION, MAX_PREALLOCATION);
            let target = needed.max((end + ahead).min(config.segment_size));
            let allocated = self.preallocate(allocated, target)?;
            self.tail = Tail::Open { end, allocated, records };
        }
        Ok((end, records))
    }

    /// Closes the last segment: writes its seal, cuts the preallocated rest, syncs.
    fn seal_last(&mut self, end: u64, records: u32) -> Result<()> {
        let last = self.head().map_or(NO_PREV, |s| s.hash);
        let file = self.last_file()?;
        let path = self.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        let sealed = file
            .write_all_at(&seal(records, &last), end)
            .and_then(|()| file.set_len(end + RECORD_HEADER_LEN))
            .and_then(|()| file.sync_data());
        if let Err(e) = sealed {
            self.poisoned = true;
            return Err(Error::file(path)(e));
        }
        self.tail = Tail::Closed;
        // The block kept for the next batch belongs to this segment.
        self.pending.clear();
        self.publish_placement();
        Ok(())
    }

    /// Starts the next segment file: header, sync, directory sync.
    fn create_segment(&mut self) -> Result<()> {
        if self.segments.is_empty() {
            create_dir_durably(&self.dir)?;
        }
        let number = self.segments.last().map_or(1, |s| s.number + 1);
        let path = self.dir.join(segment_name(number));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::file(&path))?;
        let created = file
            .write_all_at(&segment_header(number), 0)
            .and_then(|()| file.sync_data())
            .map_err(Error::file(&path))
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = created {
            self.poisoned = true;
            return Err(e);
        }
        self.segments.push(Segment { number, path, file: Arc::new(file) });
        self.tail =
            Tail::Open { end: SEGMENT_HEADER_LEN, allocated: SEGMENT_HEADER_LEN, records: 0 };
        Ok(())
    }

    /// Extends the last segment to `target` bytes of allocated space, if the file system
    /// can; returns the allocated size. Nothing is written, so a failure poisons nothing.
    fn preallocate(&mut self, allocated: u64, target: u64) -> Result<u64> {
        if !self.can_preallocate {
            return Ok(allocated);
        }
        let file = self.last_file()?;
        match rustix::fs::fallocate(&*file, FallocateFlags::empty(), allocated, target - allocated)
        {
            Ok(()) => Ok(target),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                tracing::debug!(dir = %self.dir.display(), "no fallocate here; appending without");
                self.can_preallocate = false;
                Ok(allocated)
            }
            Err(e) => {
                let path = self.segments.last().map(|s| s.path.clone()).unwrap_or_default();
                Err(Error::file(path)(e.into()))
            }
        }
    }

    /// Writes the pending records to the last segment and waits for every batch handed
    /// to the writer (not synced). A flush that never filled a batch is written on this
    /// thread: a hand-over would only add latency.
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.records_len() > 0 {
            let target = self.target()?;
            let outcome = if self.writer.is_idle() {
                self.writer.write_here(&mut self.pending, &target)
            } else {
                self.writer.hand_over(&mut self.pending, target)
            };
            self.written(outcome)?;
        }
        let outcome = self.writer.finish();
        // What is left is at most the partial block after the last record: the file has
        // it now, and the next batch starts from this copy of it.
        self.pending.carry_tail();
        self.written(outcome)
    }

    /// Takes note of what became of batches written: the file system's refusal of
    /// `O_DIRECT`, and a failed write, which poisons the log.
    fn written(&mut self, outcome: Outcome) -> Result<()> {
        if outcome.direct_refused {
            self.direct = Direct::Refused;
        }
        match outcome.failed {
            Some(Failed { path, error }) => {
                self.poisoned = true;
                Err(Error::file(path)(error))
            }
            None => Ok(()),
        }
    }

    /// Where the pending records go: the last segment.
    fn target(&mut self) -> Result<Target> {
        let cached = self.last_file()?;
        let (number, path) =
            self.segments.last().map(|s| (s.number, s.path.clone())).unwrap_or_default();
        let direct = self.direct_file(number, &path);
        Ok(Target { direct, cached, path })
    }

    /// The `O_DIRECT` handle on segment `number`, opened on first use; `None` where the
    /// file system refuses it.
    fn direct_file(&mut self, number: u64, path: &Path) -> Option<Arc<File>> {
        use std::os::unix::fs::OpenOptionsExt;
        let stale = match &self.direct {
            Direct::Refused => return None,
            Direct::Open { number: n, .. } => *n != number,
            Direct::Untried => true,
        };
        if stale {
            let flags = rustix::fs::OFlags::DIRECT.bits() as i32;
            self.direct = match OpenOptions::new().write(true).custom_flags(flags).open(path) {
                Ok(file) => Direct::Open { number, file: Arc::new(file) },
                Err(err) => {
                    tracing::debug!(path = %path.display(), "no O_DIRECT here ({err}); writing through the cache");
                    Direct::Refused
                }
            };
        }
        match &self.direct {
            Direct::Open { file, .. } => Some(file.clone()),
            _ => None,
        }
    }

    fn last_file(&self) -> Result<Arc<File>> {
        self.segments
            .last()
            .map(|s| s.file.clone())
            .ok_or_else(|| Error::Unavailable(format!("vdisk {}: no open segment", self.id)))
    }

    fn push(&mut self, entry: Entry) {
        self.by_hash.insert(entry.stored.hash, self.entries.len());
        self.entries.push(entry);
    }

    /// Scans segment `number` and adds its records; decides what its end means.
    fn load_segment(&mut self, number: u64, is_last: bool, mode: Mode) -> Result<()> {
        let path = self.dir.join(segment_name(number));
        let file = OpenOptions::new()
            .read(true)
            .write(mode == Mode::Writable)
            .open(&path)
            .map_err(Error::file(&path))?;
        if mode == Mode::ReadOnly {
            // Readers (the player) read oldest first: a larger readahead window triples
            // cold reads here. Only a hint; failure changes nothing.
            let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        }
        let prev = self.head().map(|s| s.hash);
        // The server's open hashes every record of the last segment, to find a torn tail
        // and repair it. A reader hashes only the last one (a write under way can only be
        // the last); every aggregate it reads is checked against its name anyway.
        let lazy = is_last && mode == Mode::ReadOnly;
        let mut scan = scan_segment(&file, &path, number, prev, is_last && !lazy)?;
        if lazy {
            verify_last(&file, &path, &mut scan)?;
        }
        let segment = self.segments.len();
        for found in &scan.records {
            let Found { hash, header, offset, len } = *found;
            let stored = Stored { hash, header, len: u64::from(len) };
            self.push(Entry { stored, segment, offset });
        }
        let records = u32::try_from(scan.records.len()).unwrap_or(u32::MAX);
        self.segments.push(Segment { number, path: path.clone(), file: Arc::new(file) });
        let SegmentScan { end, stop, .. } = scan;
        match stop {
            Stop::Sealed => self.tail = Tail::Closed,
            Stop::End if is_last => {
                // Zeros at a record boundary end the log only if nothing valid follows:
                // a valid record after them means media damage, not preallocated space.
                let file = self.segments[segment].file.clone();
                if let Some(at) = valid_record_after(&file, &path, end + 1)? {
                    let reason = format!(
                        "zeros where a record should start, yet a valid record follows at \
                         offset {at}"
                    );
                    return Err(corrupted(&path, end, &reason));
                }
                let allocated =
                    self.segments[segment].file.metadata().map_err(Error::file(&path))?.len();
                self.tail = Tail::Open { end, allocated, records };
            }
            Stop::End => {
                return Err(corrupted(
                    &path,
                    end,
                    "the segment ends without its seal, but a later segment follows",
                ));
            }
            Stop::Bad { offset, reason, definite } => {
                if !is_last || definite {
                    return Err(corrupted(&path, offset, &reason));
                }
                let file = self.segments[segment].file.clone();
                if let Some(at) = valid_record_after(&file, &path, offset + 1)? {
                    let reason = format!("{reason}; yet a valid record follows at offset {at}");
                    return Err(corrupted(&path, offset, &reason));
                }
                self.torn_tail(offset, records, &reason, mode)?;
            }
        }
        Ok(())
    }

    /// The last segment ends in a torn write at `offset`: cut it back (writable) or just
    /// read up to it (read-only).
    fn torn_tail(&mut self, offset: u64, records: u32, reason: &str, mode: Mode) -> Result<()> {
        let Some(segment) = self.segments.last() else { return Ok(()) };
        let path = segment.path.clone();
        if mode == Mode::ReadOnly {
            // A reader beside a writing server sees this all the time: not a warning.
            tracing::info!(
                "{}: offset {offset}: incomplete last record ({reason}); reading up to it \
                 (normal while a server writes; a server cuts it back when it starts)",
                path.display()
            );
            return Ok(());
        }
        tracing::warn!(
            "{}: offset {offset}: torn last record ({reason}); cutting the segment back to \
             the last durable aggregate",
            path.display()
        );
        if offset < SEGMENT_HEADER_LEN {
            // The segment's own header never became durable: it holds nothing.
            std::fs::remove_file(&path).map_err(Error::file(&path))?;
            sync_dir(&self.dir)?;
            self.segments.pop();
            self.tail = Tail::Closed;
            return Ok(());
        }
        let file = segment.file.clone();
        file.set_len(offset).and_then(|()| file.sync_data()).map_err(Error::file(&path))?;
        self.tail = Tail::Open { end: offset, allocated: offset, records };
        Ok(())
    }

    /// Whether the vdisk has no aggregates.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The numbers of the segment files in `dir`, sorted; they must be consecutive.
fn segment_numbers(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::file(dir)(e)),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let name = entry.map_err(Error::file(dir))?.file_name();
        match name.to_str().and_then(parse_segment_name) {
            Some(n) => numbers.push(n),
            None => tracing::debug!(dir = %dir.display(), ?name, "not a segment file; ignored"),
        }
    }
    numbers.sort_unstable();
    for pair in numbers.windows(2) {
        if pair[1] != pair[0] + 1 {
            let missing = dir.join(segment_name(pair[0] + 1));
            return Err(Error::Corrupted(format!(
                "{}: missing (segments {} and {} exist); restore it from a copy",
                missing.display(),
                pair[0],
                pair[1]
            )));
        }
    }
    Ok(numbers)
}

fn corrupted(path: &Path, offset: u64, reason: &str) -> Error {
    Error::Corrupted(format!(
        "{}: offset {offset}: {reason}; restore the segment from a copy, or move the vdisk's \
         directory aside to start its log over",
        path.display()
    ))
}

/// Creates `dir` (and its parent chain) and makes its entry durable in its parent. When
/// `dir` exists already its parent is synced all the same: an earlier process may have
/// created it and crashed before that sync.
pub(super) fn create_dir_durably(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                create_dir_durably(parent)?;
            }
            std::fs::create_dir(dir).map_err(Error::file(dir))?;
        }
        Err(e) => return Err(Error::file(dir)(e)),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Makes the entries of directory `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::file(dir))
}
