//! Getting records into the last segment: the aligned batch they are gathered in
//! ([`Pending`]), and the thread that writes full batches ([`Writer`]) while the caller seals
//! the next aggregates, so a large flush keeps the disk and a core busy at once instead of
//! taking turns.
//!
//! Batches are written in the order they were handed over, each with one positioned write:
//! with `O_DIRECT` in whole aligned blocks where the file system allows, else through the
//! page cache. A batch ends inside a block; the next batch starts with a copy of that block
//! from memory (mid-flush the file may not have it yet, and between flushes reading it back
//! would be a disk read, as the cache is bypassed), and rewrites it whole after the earlier
//! write, so the order of the writes is what keeps the bytes right.
//!
//! A record sealed for its place (`Aggregate::seal_placed`) is not copied into a batch: it
//! is a batch of its own ([`InPlace`]), written from the envelope's buffer with the partial
//! block before it and its record header put in front of it there, and the partial block
//! after it carried into the next batch the same way.
//! Nothing is durable before [`Writer::finish`] returned and the caller synced the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::aggregate::Sealed;

/// The alignment of `O_DIRECT` offsets, lengths and buffers.
pub(super) const DIRECT_ALIGN: usize = 4096;
/// Pending records are handed to the writer once they reach this many bytes, so a large
/// flush is neither held in memory whole nor written only after it is all sealed.
pub(super) const PENDING_LIMIT: usize = 8 << 20;
/// Batches handed over and not yet written, at most: bounds the memory a vdisk holds.
const MAX_QUEUED: usize = 2;

/// Records waiting to be written, in a buffer whose memory is aligned for `O_DIRECT`: from
/// the aligned file offset `start`, the `head` bytes already in the file (or in the batch
/// before) ahead of the first record, then the records. Reused from one batch to the next.
#[derive(Debug, Default)]
pub(super) struct Pending {
    raw: Vec<u8>,
    /// Where the aligned window starts in `raw`.
    offset: usize,
    start: u64,
    head: usize,
    len: usize,
}

impl Pending {
    /// Bytes of records held.
    pub(super) fn records_len(&self) -> usize {
        self.len.saturating_sub(self.head)
    }

    /// Starts a batch at file offset `at` of `file`: reads the partial block before it.
    pub(super) fn begin(&mut self, file: &File, at: u64) -> std::io::Result<()> {
        debug_assert_eq!(self.records_len(), 0, "records would be dropped unwritten");
        self.start_at(at);
        let (head, start) = (self.head, self.start);
        file.read_exact_at(&mut self.window()[..head], start)
    }

    /// Whether the next record at file offset `at` can go into this batch as it stands: it
    /// ends there, holding the partial block before `at` (records not yet written, or the
    /// block [`Pending::carry_tail`] kept from the last batch written).
    pub(super) fn ends_at(&self, at: u64) -> bool {
        self.len > 0 && self.start + self.len as u64 == at
    }

    /// Leaves in the buffer only the partial block after the last record, as the head of
    /// the next batch: once the batch is written, the file holds the same bytes, so the
    /// next batch need not read them back (a disk read per flush, as the file is written
    /// around the page cache).
    pub(super) fn carry_tail(&mut self) {
        let end = self.start + self.len as u64;
        let start = end - end % DIRECT_ALIGN as u64;
        let head = (end - start) as usize;
        let from = self.offset + (start - self.start) as usize;
        self.raw.copy_within(from..from + head, self.offset);
        (self.start, self.head, self.len) = (start, head, head);
    }

    /// Starts a batch at file offset `at`, with `head` as the partial block before it.
    fn continue_from(&mut self, at: u64, head: &[u8]) {
        self.start_at(at);
        debug_assert_eq!(self.head, head.len());
        let offset = self.offset;
        self.raw[offset..offset + head.len()].copy_from_slice(head);
    }

    /// Starts a batch where `before` ends, taking the partial block before that point from
    /// `before`'s memory.
    fn continue_after(&mut self, before: &Pending) {
        let at = before.start + before.len as u64;
        self.start_at(at);
        let from = before.offset + (self.start - before.start) as usize;
        let head = self.head;
        self.raw[self.offset..self.offset + head].copy_from_slice(&before.raw[from..from + head]);
    }

    fn start_at(&mut self, at: u64) {
        self.start = at - at % DIRECT_ALIGN as u64;
        self.len = 0;
        self.head = (at - self.start) as usize;
        self.reserve(self.head + PENDING_LIMIT);
        self.len = self.head;
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        let at = self.len;
        self.window()[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The aligned window of `raw`.
    fn window(&mut self) -> &mut [u8] {
        &mut self.raw[self.offset..]
    }

    /// Makes room for `extra` more bytes plus padding to the next aligned end, keeping the
    /// window aligned (a new buffer is aligned afresh and the bytes so far copied over).
    fn reserve(&mut self, extra: usize) {
        let needed = (self.len + extra).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        if self.raw.len() >= self.offset + needed {
            return;
        }
        let mut raw = vec![0u8; needed.max(PENDING_LIMIT) + 2 * DIRECT_ALIGN];
        let offset = raw.as_ptr().align_offset(DIRECT_ALIGN);
        raw[offset..offset + self.len]
            .copy_from_slice(&self.raw[self.offset..self.offset + self.len]);
        (self.raw, self.offset) = (raw, offset);
    }

    /// Writes the batch: through `direct` (an `O_DIRECT` handle) in whole aligned blocks
    /// when given and the file system takes it, else the records alone through `cached`.
    /// Returns whether `O_DIRECT` was refused (EINVAL), so the caller stops trying it.
    fn write(&mut self, direct: Option<&File>, cached: &File) -> (std::io::Result<()>, bool) {
        let Some(direct) = direct else { return (self.write_cached(cached), false) };
        match self.write_direct(direct) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                tracing::debug!("O_DIRECT writes refused; writing through the cache");
                (self.write_cached(cached), true)
            }
            written => (written, false),
        }
    }

    /// Writes the whole aligned blocks through `direct`, zeroing the padding after the
    /// records first. What lies after the last record is zeros anyway (preallocated, or past
    /// the end), so the padding changes nothing a reader sees.
    fn write_direct(&mut self, direct: &File) -> std::io::Result<()> {
        let len = self.len.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let used = self.len;
        let window = &mut self.raw[self.offset..self.offset + len];
        window[used..].fill(0);
        direct.write_all_at(window, self.start)
    }

    /// Writes the records through the page cache.
    fn write_cached(&self, file: &File) -> std::io::Result<()> {
        let records = &self.raw[self.offset + self.head..self.offset + self.len];
        file.write_all_at(records, self.start + self.head as u64)
    }

    /// Empties the buffer for another batch (its bytes are overwritten before use, and
    /// the padding is zeroed when written).
    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.head = 0;
    }
}

/// A record written from its envelope's own buffer: from `span.start`, the partial block
/// before the record (`lead` bytes), the record header, the envelope, and zeros to the
/// block's end; `span.start` is aligned in memory and stands for the aligned file offset
/// `start`.
#[derive(Debug)]
struct InPlace {
    sealed: Sealed,
    span: std::ops::Range<usize>,
    start: u64,
    lead: usize,
    /// The record header and envelope.
    record_len: usize,
}

impl InPlace {
    /// Places `sealed` to be written as the record at file offset `at`, framed by
    /// `framing`, after `head` (the partial block before `at`), if its buffer is placed
    /// for that (see `Aggregate::seal_placed`); else gives it back (boxed: the rare case).
    fn new(
        mut sealed: Sealed,
        framing: &[u8],
        at: u64,
        head: &[u8],
    ) -> Result<InPlace, Box<Sealed>> {
        let envelope_len = sealed.bytes().len();
        let (buffer, envelope) = sealed.buffer_mut();
        let lead = head.len();
        let front = lead + framing.len();
        let record_len = framing.len() + envelope_len;
        let span_len = (lead + record_len).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let placed = envelope >= front
            && (buffer.as_ptr() as usize + envelope - front).is_multiple_of(DIRECT_ALIGN)
            && buffer.capacity() >= envelope - front + span_len;
        if !placed {
            return Err(Box::new(sealed));
        }
        let from = envelope - front;
        buffer[from..from + lead].copy_from_slice(head);
        buffer[from + lead..envelope].copy_from_slice(framing);
        // Zeros after the record, as the preallocated file has there; within the capacity,
        // so the buffer stays where it is.
        buffer.resize(from + span_len, 0);
        let span = from..from + span_len;
        Ok(InPlace { sealed, span, start: at - lead as u64, lead, record_len })
    }

    /// The partial block after the record, and the file offset it ends at.
    fn tail(&mut self) -> (u64, &[u8]) {
        let end = self.start + (self.lead + self.record_len) as u64;
        let block = (end - end % DIRECT_ALIGN as u64 - self.start) as usize;
        let (buffer, _) = self.sealed.buffer_mut();
        let from = self.span.start;
        (end, &buffer[from + block..from + self.lead + self.record_len])
    }

    /// Writes the span through `direct` when given and the file system takes it, else the
    /// record alone through `cached`; returns whether `O_DIRECT` was refused.
    fn write(&mut self, direct: Option<&File>, cached: &File) -> (std::io::Result<()>, bool) {
        let (buffer, _) = self.sealed.buffer_mut();
        let record = self.span.start + self.lead..self.span.start + self.lead + self.record_len;
        let at = self.start + self.lead as u64;
        let Some(direct) = direct else { return (cached.write_all_at(&buffer[record], at), false) };
        match direct.write_all_at(&buffer[self.span.clone()], self.start) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                tracing::debug!("O_DIRECT writes refused; writing through the cache");
                (cached.write_all_at(&buffer[record], at), true)
            }
            written => (written, false),
        }
    }
}

/// What the writer thread writes.
#[derive(Debug)]
enum Batch {
    Pending(Pending),
    InPlace(InPlace),
}

impl Batch {
    fn write(&mut self, direct: Option<&File>, cached: &File) -> (std::io::Result<()>, bool) {
        match self {
            Batch::Pending(pending) => pending.write(direct, cached),
            Batch::InPlace(record) => record.write(direct, cached),
        }
    }
}

/// Where a batch goes: the last segment, by `O_DIRECT` handle when there is one.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) direct: Option<Arc<File>>,
    pub(super) cached: Arc<File>,
    pub(super) path: PathBuf,
}

/// A failed write: the segment it was for, and why.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) path: PathBuf,
    pub(super) error: std::io::Error,
}

/// What became of the batches written since the last look.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// A write that failed (the first one).
    pub(super) failed: Option<Failed>,
    /// The file system refused `O_DIRECT`.
    pub(super) direct_refused: bool,
}

struct Job {
    batch: Batch,
    target: Target,
}

struct Done {
    batch: Batch,
    path: PathBuf,
    written: std::io::Result<()>,
    direct_refused: bool,
}

/// See the module documentation. The thread starts with the first batch handed over and
/// stops when the writer is dropped (after the batches queued).
#[derive(Debug, Default)]
pub(super) struct Writer {
    thread: Option<Thread>,
    /// Batches handed over whose outcome was not collected.
    queued: usize,
    /// An emptied buffer to start the next batch in.
    spare: Option<Pending>,
}

#[derive(Debug)]
struct Thread {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
    handle: JoinHandle<()>,
}

impl Writer {
    /// Whether every batch handed over is written (and its outcome collected).
    pub(super) fn is_idle(&self) -> bool {
        self.queued == 0
    }

    /// Writes `pending` on this thread, now (nothing may be queued: see [`Writer::is_idle`]),
    /// and leaves in it only the partial block after its last record ([`Pending::carry_tail`]).
    pub(super) fn write_here(&mut self, pending: &mut Pending, target: &Target) -> Outcome {
        debug_assert!(self.is_idle());
        let (written, direct_refused) = pending.write(target.direct.as_deref(), &target.cached);
        pending.carry_tail();
        let failed = written.err().map(|error| Failed { path: target.path.clone(), error });
        Outcome { failed, direct_refused }
    }

    /// Hands the batch in `pending` over to the thread and leaves in `pending` the next
    /// batch, continuing where this one ends. Waits first while [`MAX_QUEUED`] batches are
    /// queued; returns what became of the batches written meanwhile.
    pub(super) fn hand_over(&mut self, pending: &mut Pending, target: Target) -> Outcome {
        let mut outcome = Outcome::default();
        let mut next = self.spare.take().unwrap_or_default();
        next.continue_after(pending);
        let batch = std::mem::replace(pending, next);
        self.send(Batch::Pending(batch), target, &mut outcome);
        outcome
    }

    /// Hands over the record of `sealed`, framed by `framing`, to be written from its own
    /// buffer after the batch in `pending` (handed over first when it holds records), and
    /// leaves in `pending` the next batch, continuing after the record. Gives `sealed`
    /// back, with nothing done, when its buffer is not placed for where the record goes
    /// (`pending`'s end). Returns what became of the batches written meanwhile.
    pub(super) fn hand_over_in_place(
        &mut self,
        pending: &mut Pending,
        sealed: Sealed,
        framing: &[u8],
        target: Target,
    ) -> Result<Outcome, Box<Sealed>> {
        let at = pending.start + pending.len as u64;
        let lead = (at % DIRECT_ALIGN as u64) as usize;
        let head_at = pending.offset + pending.len - lead;
        let mut record = InPlace::new(sealed, framing, at, &pending.raw[head_at..head_at + lead])?;
        let mut outcome = Outcome::default();
        if pending.records_len() > 0 {
            outcome = self.hand_over(pending, target.clone());
        }
        let (end, tail) = record.tail();
        pending.continue_from(end, tail);
        self.send(Batch::InPlace(record), target, &mut outcome);
        Ok(outcome)
    }

    /// Queues `batch` for the thread (started on first use), once fewer than [`MAX_QUEUED`]
    /// are queued, or writes it here when there is no thread; collects what finished
    /// meanwhile into `outcome`.
    fn send(&mut self, batch: Batch, target: Target, outcome: &mut Outcome) {
        while self.queued >= MAX_QUEUED {
            if !self.collect(true, outcome) {
                break;
            }
        }
        if self.thread.is_none() {
            match Thread::start() {
                Ok(thread) => self.thread = Some(thread),
                Err(err) => tracing::warn!("no segment writer thread ({err}); writing in turn"),
            }
        }
        let job = Job { batch, target };
        let unsent = match &self.thread {
            Some(thread) => thread.jobs.send(job).map_err(|mpsc::SendError(job)| job),
            None => Err(job),
        };
        match unsent {
            Ok(()) => self.queued += 1,
            Err(Job { mut batch, target }) => {
                // No thread (it could not start, or it died): write here, in order, since
                // nothing is queued (`collect` counts a dead thread's batches as failed).
                let (written, direct_refused) =
                    batch.write(target.direct.as_deref(), &target.cached);
                outcome.merge(written, direct_refused, &target.path);
                self.keep_spare(batch);
            }
        }
        while self.collect(false, outcome) {}
    }

    /// Keeps a written batch's buffer, emptied, for the next batch (an envelope's buffer
    /// goes back to the envelopes' own pool as it is dropped).
    fn keep_spare(&mut self, batch: Batch) {
        if let Batch::Pending(mut pending) = batch {
            pending.clear();
            self.spare = Some(pending);
        }
    }

    /// Waits until every batch handed over is written; returns what became of them.
    pub(super) fn finish(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        while self.queued > 0 && self.collect(true, &mut outcome) {}
        outcome
    }

    /// Collects one finished batch (waiting for it with `wait`); false when there is none
    /// (or the thread is gone, whose batches are then counted as failed).
    fn collect(&mut self, wait: bool, outcome: &mut Outcome) -> bool {
        let Some(thread) = &self.thread else { return false };
        if self.queued == 0 {
            return false;
        }
        let done = if wait {
            thread.done.recv().map_err(|_| mpsc::TryRecvError::Disconnected)
        } else {
            thread.done.try_recv()
        };
        match done {
            Ok(done) => {
                self.queued -= 1;
                outcome.merge(done.written, done.direct_refused, &done.path);
                self.keep_spare(done.batch);
                true
            }
            Err(mpsc::TryRecvError::Empty) => false,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.queued = 0;
                self.thread = None;
                let error = std::io::Error::other("the segment writer thread stopped");
                outcome.merge(Err(error), false, Path::new(""));
                false
            }
        }
    }
}

impl Outcome {
    fn merge(&mut self, written: std::io::Result<()>, direct_refused: bool, path: &Path) {
        self.direct_refused |= direct_refused;
        if let Err(error) = written
            && self.failed.is_none()
        {
            self.failed = Some(Failed { path: path.to_path_buf(), error });
        }
    }
}

impl Thread {
    fn start() -> std::io::Result<Thread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (report, done) = mpsc::channel();
        let handle =
            std::thread::Builder::new().name("tlog-segment-writer".into()).spawn(move || {
                for Job { mut batch, target } in queue {
                    let (written, direct_refused) =
                        batch.write(target.direct.as_deref(), &target.cached);
                    let done = Done { batch, path: target.path, written, direct_refused };
                    if report.send(done).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Thread { jobs, done, handle })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(Thread { jobs, done, handle }) = self.thread.take() {
            // The thread writes what is queued, then sees the channel closed and ends.
            drop(jobs);
            let _ = handle.join();
            drop(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    /// A batch that ends mid-block leaves that block in memory, and the next batch starts
    /// from it: written whole with `O_DIRECT`, it must carry the same bytes as the file, or
    /// the end of the record before it would be overwritten.
    #[test]
    fn the_next_batch_starts_from_the_carried_partial_block() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("segment");
        let cached = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let flags = rustix::fs::OFlags::DIRECT.bits() as i32;
        // Where the file system refuses O_DIRECT, `write` falls back to the page cache.
        let direct = OpenOptions::new().write(true).custom_flags(flags).open(&path).ok();
        let first: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let second: Vec<u8> = (0..5_000u32).map(|i| (i % 241) as u8 + 1).collect();
        let at = 100;
        cached.write_all_at(&[7; 100], 0)?;

        let mut pending = Pending::default();
        pending.begin(&cached, at)?;
        pending.push(&first);
        pending.write(direct.as_ref(), &cached).0?;
        pending.carry_tail();
        let end = at + first.len() as u64;
        assert!(pending.ends_at(end), "the batch continues at the end of the last record");
        assert!(!pending.ends_at(end + 1));
        assert_eq!(pending.records_len(), 0, "nothing is left to write");

        pending.push(&second);
        pending.write(direct.as_ref(), &cached).0?;
        let mut expected = vec![7; 100];
        expected.extend_from_slice(&first);
        expected.extend_from_slice(&second);
        let mut read = vec![0; expected.len()];
        cached.read_exact_at(&mut read, 0)?;
        assert!(read == expected, "the file holds both batches, the first intact");
        Ok(())
    }
}
