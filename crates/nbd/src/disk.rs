//! One open vdisk, shared by every connection to its export: the image file, one tlog
//! client, the lock that numbers changes, and the changes in flight.
//!
//! Every change (write, trim, write-zeroes) is made into tlog blocks first (hashed, unless
//! the tlog server is in this process), then takes the order lock only
//! to hand its blocks to the tlog client (which numbers them) and to register its byte range
//! among the changes in flight. It then waits for every earlier registered change whose
//! range it overlaps, copies itself into the image, and leaves. Changes to different ranges
//! reach the image in parallel; overlapping ones in the order of their sequences, so a
//! replay of the log rebuilds the image exactly.
//! A flush waits until the tlog has every sequence issued so far durable, and syncs the
//! image (`fdatasync`).
//!
//! A tlog block that could not be handed over (the client's buffer stayed full past the
//! timeout, or the client gave up) may leave a gap in the sequence the tlog server waits
//! on forever, so the disk is then *broken*: every later request gets EIO, and the next
//! connection after the last one closed opens a new session with fresh sequences.
//!
//! A session marks the disk's record open and clears the mark only when it closes cleanly
//! (image synced, every write durable in the log). A session that finds the mark set
//! follows one that crashed or lost its tlog, whose image may hold writes the log never
//! got; it rebuilds the image from the log first (when it can read the log), or refuses to
//! open, naming `strata vdisk restore`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rustix::fs::FallocateFlags;
use strata_tlog::aggregate::Key;
use strata_tlog::client::{Client, ClientConfig};
use strata_tlog::message::Block;
use strata_tlog::server::LocalConnector;
use strata_tlog::storage::Storage;
use tokio::sync::{Mutex, watch};

use crate::proto::{allocation, errno};
use crate::record::{Records, Vdisk};
use crate::{Error, Result};

/// Writes up to this size are copied into the image on the request's own task: a thread
/// hand-off costs more than the copy.
const INLINE_WRITE: usize = 16 << 10;

/// Larger writes reach the image in pieces of this size. The page cache then holds the
/// image in folios of at most this size, and a later small write into one stays cheap: on
/// ext4 a buffered write walks every block of the folio it lands in, so 4 KiB writes into
/// the 1 MiB folios a 1 MiB write leaves cost about half of their time there (measured with
/// fio: 4 KiB random writes after a 1 MiB fill, 25,000-30,000 IOPS whole, 40,000-47,000 in
/// pieces of 16 or 64 KiB; 1 MiB writes unchanged).
const IMAGE_PIECE: usize = 64 << 10;

/// The largest tlog block a write is cut into (the tlog refuses messages over 4 MiB).
pub const MAX_BLOCK: usize = 1 << 20;

/// How a disk talks to the tlog.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// The tlog servers, `host:port`, tried in order.
    pub tlog_servers: Vec<String>,
    /// The tlog server of this process (`strata serve`): journal to it in-process instead
    /// of over TCP to `tlog_servers` (blocks are handed over, not encoded and sent).
    pub tlog_local: Option<LocalConnector>,
    /// How long a write may wait for room in the tlog client's buffer, and a flush for
    /// durability, before the request fails with EIO.
    pub tlog_timeout: Duration,
    /// The most bytes of written but not yet durable data held for the tlog.
    pub max_unflushed_bytes: usize,
    /// The log's storage, when this process can read it (as `strata serve` can): a disk
    /// whose last session did not close cleanly is then rebuilt from it on open instead of
    /// refused.
    pub log: Option<LogAccess>,
    /// Whether writes are journaled. Only benchmarks turn this off, to measure what
    /// journaling costs: an unjournaled disk's image no longer matches its log, and its
    /// record is left alone (no session, no sequences).
    pub journal: bool,
}

/// Read access to the tlog's storage, and the key its aggregates are sealed with.
#[derive(Debug, Clone)]
pub struct LogAccess {
    /// Where the aggregates are.
    pub storage: Arc<dyn Storage>,
    /// The key, when the log is encrypted.
    pub key: Option<Key>,
}

/// A failed request: the NBD errno and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The errno sent to the client.
    pub errno: u32,
    /// Logged and, with structured replies, sent along.
    pub message: String,
}

impl Failed {
    fn eio(message: impl Into<String>) -> Failed {
        Failed { errno: errno::EIO, message: message.into() }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Disk {
    vdisk: Vdisk,
    file: Arc<File>,
    /// `None` only when journaling is off.
    tlog: Option<Client>,
    records: Records,
    config: DiskConfig,
    /// The end (exclusive) of the sequences this session reserved.
    order: Mutex<u64>,
    /// Changes journaled but not yet applied to the image.
    in_flight: Ranges,
    /// Whether the image's file system punches holes and zeroes ranges itself.
    fallocate: Arc<Fallocate>,
    broken: AtomicBool,
}

impl Disk {
    /// Opens `vdisk` for serving: reserves a span of sequences in its record, opens the
    /// image and connects a tlog client that starts at the span (telling the tlog server to
    /// expect exactly that sequence next).
    pub async fn open(vdisk: Vdisk, records: Records, config: DiskConfig) -> Result<Disk> {
        if !config.journal {
            tracing::warn!(vdisk = %vdisk.name, "vdisk opened WITHOUT journaling (benchmarks only)");
            let file = Arc::new(open_image(&vdisk)?);
            return Ok(Disk::new(vdisk, file, None, records, config, u64::MAX));
        }
        let (name, tlog_id) = (vdisk.name.clone(), vdisk.tlog_id.clone());
        let recs = records.clone();
        let (start, end, unclean) =
            tokio::task::spawn_blocking(move || recs.begin_session(&name, &tlog_id))
                .await
                .map_err(|e| Error::Unavailable(format!("reserve sequences: {e}")))??;
        if unclean {
            reconcile(&vdisk, config.log.clone()).await?;
        }
        let file = Arc::new(open_image(&vdisk)?);
        let mut client = ClientConfig::new(config.tlog_servers.clone(), &vdisk.tlog_id);
        client.local = config.tlog_local.clone();
        client.first_sequence = start;
        client.reset_first_sequence = true;
        client.max_unflushed_bytes = config.max_unflushed_bytes;
        let tlog = Client::connect(client).await.map_err(|e| {
            let servers = match config.tlog_local {
                Some(_) => "in this process".to_string(),
                None => config.tlog_servers.join(","),
            };
            Error::Unavailable(format!(
                "tlog servers {servers} unreachable for vdisk {}: {e}",
                vdisk.name
            ))
        })?;
        tracing::info!(vdisk = %vdisk.name, tlog = %vdisk.tlog_id, first_sequence = start, "vdisk opened");
        Ok(Disk::new(vdisk, file, Some(tlog), records, config, end))
    }

    fn new(
        vdisk: Vdisk,
        file: Arc<File>,
        tlog: Option<Client>,
        records: Records,
        config: DiskConfig,
        end: u64,
    ) -> Disk {
        Disk {
            vdisk,
            file,
            tlog,
            records,
            config,
            order: Mutex::new(end),
            in_flight: Ranges::default(),
            fallocate: Arc::new(Fallocate::default()),
            broken: AtomicBool::new(false),
        }
    }

    /// The record the disk was opened with.
    pub fn vdisk(&self) -> &Vdisk {
        &self.vdisk
    }

    /// Whether a tlog failure broke the disk (see the module documentation).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    fn check(&self) -> std::result::Result<(), Failed> {
        if self.is_broken() {
            return Err(Failed::eio(format!(
                "vdisk {}: the tlog failed earlier; reconnect every client to start over",
                self.vdisk.name
            )));
        }
        Ok(())
    }

    /// Reads `length` bytes at `offset` (the caller checked the range) into a buffer that
    /// starts with `headroom` bytes for the reply's header, so the reply goes out in one
    /// write.
    pub async fn read(
        &self,
        offset: u64,
        length: u32,
        headroom: usize,
    ) -> std::result::Result<Vec<u8>, Failed> {
        let file = self.file.clone();
        blocking(move || {
            let mut buf = vec![0u8; headroom + length as usize];
            file.read_exact_at(&mut buf[headroom..], offset).map(|()| buf)
        })
        .await
    }

    /// The allocation of `length` bytes at `offset` (the caller checked the range), as
    /// `base:allocation` extents: (length, [`allocation::HOLE`] | [`allocation::ZERO`]) for
    /// holes, (length, 0) for data; with `one`, only the first. At most [`MAX_EXTENTS`],
    /// covering at least the first byte.
    pub async fn extents(
        &self,
        offset: u64,
        length: u32,
        one: bool,
    ) -> std::result::Result<Vec<(u32, u32)>, Failed> {
        let file = self.file.clone();
        let size = self.vdisk.size;
        blocking(move || allocation(&file, offset, length, size, if one { 1 } else { MAX_EXTENTS }))
            .await
    }

    /// Asks the kernel to read `length` bytes at `offset` into its cache ahead of use.
    pub async fn cache(&self, offset: u64, length: u32) -> std::result::Result<(), Failed> {
        let file = self.file.clone();
        blocking(move || {
            let length = std::num::NonZeroU64::new(u64::from(length));
            rustix::fs::fadvise(&*file, offset, length, rustix::fs::Advice::WillNeed)
                .map_err(std::io::Error::from)
        })
        .await
    }

    /// Journals and applies a write; with `fua`, returns once it is durable.
    ///
    /// Only the journaling (numbering the blocks, handing them to the tlog client) is
    /// serial; the copy into the image runs beside other requests', after the earlier
    /// changes it overlaps (the changes in flight; see the module documentation).
    pub async fn write(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
    ) -> std::result::Result<(), Failed> {
        self.check()?;
        let length = data.len() as u64;
        // Made (and, for a tlog server over TCP, hashed) here, beside other requests;
        // numbered under the lock. The in-process tlog server needs no hash: no wire carries
        // the block, and the aggregate's name and seal vouch for it once stored.
        let now = strata_tlog::message::now_nanos();
        let make = match self.config.tlog_local {
            Some(_) => Block::write_in_process,
            None => Block::write,
        };
        let blocks: Vec<Block> = match &self.tlog {
            Some(_) => (0..data.len())
                .step_by(MAX_BLOCK)
                .map(|at| {
                    let chunk = data.slice(at..(at + MAX_BLOCK).min(data.len()));
                    make(0, offset + at as u64, chunk, now)
                })
                .collect(),
            None => Vec::new(),
        };
        let (last, ticket) = {
            let mut end = self.order.lock().await;
            self.room(&mut end, blocks.len().max(1) as u64).await?;
            let mut last = 0;
            if let Some(tlog) = &self.tlog {
                for block in blocks {
                    last = self.journal(tlog.send_next(block)).await?;
                }
            }
            (last, self.in_flight.begin(offset, length))
        };
        ticket.after_earlier().await;
        if data.len() <= INLINE_WRITE {
            // A small copy into the page cache costs less than handing it to another thread.
            self.file
                .write_all_at(&data, offset)
                .map_err(|e| Failed::eio(format!("image: {e}")))?;
        } else {
            let file = self.file.clone();
            blocking(move || write_in_pieces(&file, &data, offset)).await?;
        }
        drop(ticket);
        if fua { self.durable(last).await } else { Ok(()) }
    }

    /// Journals a discard of `length` bytes at `offset` and applies it to the image: a
    /// punched hole, or with `allocate` zeroes written in place (NBD_CMD_FLAG_NO_HOLE).
    /// With `fast`, fails with ENOTSUP (before journaling anything) when the image's file
    /// system was found unable to do that without writing zeros.
    pub async fn zero(
        &self,
        offset: u64,
        length: u32,
        allocate: bool,
        fua: bool,
        fast: bool,
    ) -> std::result::Result<(), Failed> {
        self.check()?;
        let fallocate = self.fallocate.clone();
        if fast && !fallocate.works(allocate) {
            return Err(Failed {
                errno: errno::ENOTSUP,
                message: "the image's file system zeroes only by writing zeros".into(),
            });
        }
        let length = u64::from(length);
        let (last, ticket) = {
            let mut end = self.order.lock().await;
            self.room(&mut end, 1).await?;
            let last = match &self.tlog {
                Some(tlog) => self.journal(tlog.discard(offset, length)).await?,
                None => 0,
            };
            (last, self.in_flight.begin(offset, length))
        };
        ticket.after_earlier().await;
        let file = self.file.clone();
        blocking(move || zero_range(&file, &fallocate, offset, length, allocate)).await?;
        drop(ticket);
        if fua { self.durable(last).await } else { Ok(()) }
    }

    /// Returns once every change made so far is durable in the tlog and in the image.
    pub async fn flush(&self) -> std::result::Result<(), Failed> {
        self.check()?;
        let last = self.tlog.as_ref().map_or(0, |t| t.next_sequence().saturating_sub(1));
        self.durable(last).await
    }

    async fn durable(&self, sequence: u64) -> std::result::Result<(), Failed> {
        let file = self.file.clone();
        blocking(move || file.sync_data()).await?;
        let Some(tlog) = &self.tlog else { return Ok(()) };
        if sequence == 0 || tlog.durable_to().is_some_and(|d| d >= sequence) {
            return Ok(());
        }
        let limit = self.config.tlog_timeout;
        let wait = async {
            tlog.force_flush(sequence).await?;
            tlog.wait_durable(sequence).await
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(Failed::eio(format!("tlog flush of {}: {err}", self.vdisk.name))),
            Err(_) => Err(Failed::eio(format!(
                "tlog flush of {}: not durable within {limit:?} (is the tlog server up?)",
                self.vdisk.name
            ))),
        }
    }

    /// Hands one block to the tlog client within the timeout, or breaks the disk.
    async fn journal(
        &self,
        send: impl Future<Output = strata_tlog::Result<u64>>,
    ) -> std::result::Result<u64, Failed> {
        let limit = self.config.tlog_timeout;
        let why = match tokio::time::timeout(limit, send).await {
            Ok(Ok(sequence)) => return Ok(sequence),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("the tlog client's buffer stayed full for {limit:?}"),
        };
        self.broken.store(true, Ordering::SeqCst);
        tracing::error!(vdisk = %self.vdisk.name, why, "tlog write failed; the disk answers EIO until reopened");
        Err(Failed::eio(format!("journal write of {}: {why}", self.vdisk.name)))
    }

    /// Makes sure `blocks` more sequences fit in the reserved span, reserving the next span
    /// (contiguously) when they do not.
    async fn room(&self, end: &mut u64, blocks: u64) -> std::result::Result<(), Failed> {
        let Some(tlog) = &self.tlog else { return Ok(()) };
        if tlog.next_sequence().saturating_add(blocks) <= *end {
            return Ok(());
        }
        let (records, name, tlog_id, from) =
            (self.records.clone(), self.vdisk.name.clone(), self.vdisk.tlog_id.clone(), *end);
        let reserved =
            tokio::task::spawn_blocking(move || records.reserve(&name, &tlog_id, Some(from)))
                .await
                .map_err(|e| Failed::eio(format!("reserve sequences: {e}")))?
                .map_err(|e| Failed::eio(format!("reserve sequences: {e}")))?;
        if reserved.0 != from {
            self.broken.store(true, Ordering::SeqCst);
            return Err(Failed::eio(format!(
                "vdisk {}: another server reserved sequences meanwhile; serve a vdisk from one server only",
                self.vdisk.name
            )));
        }
        *end = reserved.1;
        Ok(())
    }

    /// Flushes everything to the tlog and the image, and closes the tlog client. Only when
    /// both succeeded (and the disk is not broken) is the session ended cleanly; otherwise
    /// the next session reconciles the image with the log. A tlog client that cannot
    /// finish within the timeout is stopped, so it never sends this session's blocks after
    /// the next session began.
    pub async fn close(self) -> Result<()> {
        let synced = self
            .file
            .sync_data()
            .map_err(Error::io(format!("sync image {}", self.vdisk.image.display())));
        let Some(tlog) = self.tlog else {
            tracing::info!(vdisk = %self.vdisk.name, "unjournaled vdisk closed");
            return synced;
        };
        let limit = self.config.tlog_timeout;
        let closed = tlog
            .close_within(limit)
            .await
            .map_err(|e| Error::Unavailable(format!("vdisk {}: {e}", self.vdisk.name)));
        let clean = synced.and(closed).and_then(|()| {
            if self.broken.load(Ordering::SeqCst) {
                return Err(Error::Unavailable(format!(
                    "vdisk {}: its tlog failed during the session",
                    self.vdisk.name
                )));
            }
            Ok(())
        });
        match &clean {
            Ok(()) => {
                let (records, name, tlog_id) =
                    (self.records.clone(), self.vdisk.name.clone(), self.vdisk.tlog_id.clone());
                tokio::task::spawn_blocking(move || records.end_session(&name, &tlog_id))
                    .await
                    .map_err(|e| Error::Unavailable(format!("end session: {e}")))??;
                tracing::info!(vdisk = %self.vdisk.name, "vdisk closed");
            }
            Err(err) => tracing::warn!(
                vdisk = %self.vdisk.name,
                error = %err,
                "vdisk closed uncleanly; its next session rebuilds the image from the log"
            ),
        }
        clean
    }
}

/// Makes the image of `vdisk`, whose last session did not close cleanly, agree with its log
/// again: rebuilds it from `log`, or refuses when this process cannot read the log.
async fn reconcile(vdisk: &Vdisk, log: Option<LogAccess>) -> Result<()> {
    let Some(log) = log else {
        return Err(Error::FailedPrecondition(format!(
            "vdisk {name}: its last session did not close cleanly (the server crashed or lost \
             its tlog), so its image may hold writes its log lacks; rebuild it from the log \
             with `strata vdisk restore {name}`, then serve it again",
            name = vdisk.name
        )));
    };
    tracing::warn!(
        vdisk = %vdisk.name,
        "the last session did not close cleanly; rebuilding the image from the log"
    );
    let vdisk = vdisk.clone();
    tokio::task::spawn_blocking(move || {
        crate::restore::rebuild_image(&*log.storage, log.key.as_ref(), &vdisk)
    })
    .await
    .map_err(|e| Error::Unavailable(format!("rebuild task: {e}")))?
}

/// Opens a vdisk's image for reading and writing.
fn open_image(vdisk: &Vdisk) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&vdisk.image)
        .map_err(Error::io(format!("open image {}", vdisk.image.display())))
}

/// The changes journaled but not yet applied to the image, so that overlapping changes
/// reach the image in the order of their sequences (the order a replay applies them in)
/// while changes to other ranges are copied in parallel.
///
/// A change registers its range while it holds the order lock, which also numbers it, so
/// registration order is sequence order; it then waits for every earlier registered change
/// it overlaps to finish.
#[derive(Debug, Default)]
struct Ranges {
    changes: std::sync::Mutex<Vec<InFlight>>,
    next_id: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    start: u64,
    end: u64,
    /// Dropped when the change is applied; overlapping later changes wait for that.
    done: watch::Sender<()>,
}

/// One registered change; dropping it marks the change applied.
struct Ticket<'a> {
    ranges: &'a Ranges,
    id: u64,
    earlier: Vec<watch::Receiver<()>>,
}

impl Ranges {
    fn begin(&self, offset: u64, length: u64) -> Ticket<'_> {
        let (start, end) = (offset, offset.saturating_add(length.max(1)));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let earlier = changes
            .iter()
            .filter(|c| c.start < end && start < c.end)
            .map(|c| c.done.subscribe())
            .collect();
        changes.push(InFlight { id, start, end, done: watch::channel(()).0 });
        Ticket { ranges: self, id, earlier }
    }
}

impl Ticket<'_> {
    /// Waits until every earlier change this one overlaps is applied.
    async fn after_earlier(&self) {
        for done in &self.earlier {
            let mut done = done.clone();
            // Err once the sender is dropped: that change is applied.
            while done.changed().await.is_ok() {}
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut changes = self.ranges.changes.lock().unwrap_or_else(|e| e.into_inner());
        changes.retain(|c| c.id != self.id);
    }
}

/// Writes `data` at `offset` of the image in pieces of [`IMAGE_PIECE`].
fn write_in_pieces(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut at = offset;
    for piece in data.chunks(IMAGE_PIECE) {
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::result::Result<T, Failed> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failed::eio(format!("image: {err}"))),
        Err(err) => Err(Failed::eio(format!("image task: {err}"))),
    }
}

/// The most extents one BLOCK_STATUS reply lists (the protocol asks for at most 2^20).
pub const MAX_EXTENTS: usize = 1024;

/// The `base:allocation` extents of `length` bytes at `offset` of `file` (of `size` bytes),
/// at most `max`, found with SEEK_DATA and SEEK_HOLE; the file position is not used by
/// anything else (reads and writes are positioned).
fn allocation(
    file: &File,
    offset: u64,
    length: u32,
    size: u64,
    max: usize,
) -> std::io::Result<Vec<(u32, u32)>> {
    use rustix::fs::SeekFrom;
    let hole = allocation::HOLE | allocation::ZERO;
    let end = offset.saturating_add(u64::from(length)).min(size);
    let mut extents: Vec<(u32, u32)> = Vec::new();
    let mut at = offset;
    while at < end && extents.len() < max {
        let data = match rustix::fs::seek(file, SeekFrom::Data(at)) {
            Ok(data) => data,
            // No data after `at`: a hole to the end.
            Err(rustix::io::Errno::NXIO) => end,
            Err(err) => return Err(err.into()),
        };
        let (next, status) = if data > at {
            (data.min(end), hole)
        } else {
            let hole_at =
                rustix::fs::seek(file, SeekFrom::Hole(at)).map_err(std::io::Error::from)?;
            (hole_at.min(end), 0)
        };
        // `next - at` fits: it is at most `length`.
        let span = (next - at) as u32;
        match extents.last_mut() {
            Some((len, flags)) if *flags == status => *len += span,
            _ => extents.push((span, status)),
        }
        at = next;
    }
    Ok(extents)
}

/// What the image's file system was found able to do with `fallocate`; assumed able until
/// a call fails.
#[derive(Debug)]
struct Fallocate {
    punch: AtomicBool,
    zero: AtomicBool,
}

impl Default for Fallocate {
    fn default() -> Fallocate {
        Fallocate { punch: AtomicBool::new(true), zero: AtomicBool::new(true) }
    }
}

impl Fallocate {
    /// Whether zeroing in place (`allocate`) or punching holes works here.
    fn works(&self, allocate: bool) -> bool {
        self.flag(allocate).load(Ordering::Relaxed)
    }

    fn flag(&self, allocate: bool) -> &AtomicBool {
        if allocate { &self.zero } else { &self.punch }
    }
}

/// Zeroes a range of the image: punches a hole (or, with `allocate`, zeroes it in place),
/// falling back to writing zeros where the file system cannot (and remembering that in
/// `fallocate`, so FAST_ZERO requests are refused from then on).
fn zero_range(
    file: &File,
    fallocate: &Fallocate,
    offset: u64,
    length: u64,
    allocate: bool,
) -> std::io::Result<()> {
    let flags = if allocate {
        FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE
    } else {
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE
    };
    if rustix::fs::fallocate(file, flags, offset, length).is_ok() {
        return Ok(());
    }
    fallocate.flag(allocate).store(false, Ordering::Relaxed);
    let zeros = vec![0u8; IMAGE_PIECE.min(length as usize)];
    let mut at = 0u64;
    while at < length {
        let n = (length - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + at)?;
        at += n as u64;
    }
    Ok(())
}
