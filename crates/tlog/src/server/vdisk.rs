//! One task per vdisk: orders its blocks, decides when to flush, seals and stores
//! aggregates, and tells its clients what is durable.
//!
//! Ordering: a block with the expected sequence joins the ordered buffer and the expected
//! sequence advances, pulling any waiting successors out of the out-of-order buffer; a later
//! block waits there; an earlier one is a duplicate, answered `RecvOK` while it waits to be
//! flushed, `FlushOK` again only when the chain holds that very block, and `RecvFailed`
//! otherwise (a sequence a reset skipped, or a different block under a stored sequence), so
//! `FlushOK` always means "this block is durable". Flushes happen when the ordered buffer
//! holds `flush_size` blocks (`local_flush_size` while every client attached is in this
//! process: see [`Transport`]) or `max_aggregate_bytes` of data, when `flush_time` has
//! passed since the last flush, and when a forced flush's sequence has been ordered. A
//! flush answers `FlushOK` only after storage said the aggregates and the new head are
//! durable; a failed flush answers `FlushFailed` and closes the vdisk, so clients reconnect
//! and resend. The next flush may begin once storage has taken the last aggregate of the
//! one before (while that one is written and synced): it seals from that head, and is
//! stored only after the one before succeeded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::aggregate::{Aggregate, Hash, NO_PREV};
use crate::message::{Block, Response, now_nanos, status};
use crate::server::Shared;
use crate::server::stored::{Found, StoredBlocks, check_head};
use crate::{Error, Result};

/// The most events waiting for one vdisk task before senders wait.
const EVENT_QUEUE: usize = 4096;
/// The most responses waiting for one connection before it is dropped as too slow.
pub(crate) const RESPONSE_QUEUE: usize = 16 * 1024;
/// The most blocks sealed into one aggregate.
const MAX_AGGREGATE_BLOCKS: usize = 16 * 1024;
/// The most flushes of one vdisk in flight: one being stored, and the next, sealing from
/// its head meanwhile.
const MAX_FLIGHTS: usize = 2;
/// The most aggregates a flush seals ahead of what storage has taken.
const SEAL_AHEAD: usize = 4;

/// How a client reaches its vdisk task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Over TCP: answered `RecvOK` for each block, as the wire protocol asks. A client of
    /// the protocol may wait for `FlushOK` before it sends more, so its vdisk flushes every
    /// `flush_size` blocks.
    Wire,
    /// In the server's process: no receipts, and it never waits for `FlushOK` to send more
    /// (its client asks for a flush when its window is full), so a vdisk with only such
    /// clients flushes every `local_flush_size` blocks.
    Local,
}

/// What connections tell a vdisk task.
#[derive(Debug)]
pub(crate) enum Event {
    /// A connection joins; `reset` drops what the vdisk buffered and restarts its
    /// sequence at `first_sequence`, disconnecting its other clients.
    Attach {
        conn: u64,
        first_sequence: u64,
        reset: bool,
        transport: Transport,
        responses: mpsc::Sender<Response>,
    },
    /// A block that passed its checks, with the buffer budget it holds until flushed.
    Block { conn: u64, block: Block, budget: OwnedSemaphorePermit },
    /// Flush as soon as `sequence` has been ordered.
    ForceFlush { sequence: u64 },
    /// Flush everything ordered and answer `WaitNbdSlaveSyncReceived` to `conn`.
    SlaveSync { conn: u64, sequence: u64 },
    /// Send `response` to `conn`, in order with the vdisk's other answers to it.
    Reply { conn: u64, response: Response },
    /// A connection left.
    Detach { conn: u64 },
    /// Flush what is ordered and stop.
    Shutdown,
}

/// A running vdisk task, as connections see it.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) events: mpsc::Sender<Event>,
    /// Bytes of block data the vdisk may still buffer; a connection takes a block's size
    /// before handing it over, so a fast writer waits instead of growing memory.
    pub(crate) budget: Arc<Semaphore>,
}

/// Every running vdisk task of a server.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    running: Mutex<HashMap<String, (Handle, JoinHandle<()>)>>,
    /// Set (under the `running` lock) once the server shut down: no vdisk starts again.
    closed: std::sync::atomic::AtomicBool,
}

impl Registry {
    /// The task of `vdisk`, started (with its chain head read from storage) if needed.
    pub(crate) async fn get(&self, shared: &Arc<Shared>, vdisk: &str) -> Result<Handle> {
        let mut running = self.running.lock().await;
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Unavailable("the tlog server has stopped".into()));
        }
        if let Some((handle, _)) = running.get(vdisk)
            && !handle.events.is_closed()
        {
            return Ok(handle.clone());
        }
        let storage = shared.storage.clone();
        let id = vdisk.to_string();
        let head = tokio::task::spawn_blocking(move || storage.head(&id))
            .await
            .map_err(|e| Error::Unavailable(format!("storage task failed: {e}")))??;
        if let Some(head) = head {
            let (shared, id) = (shared.clone(), vdisk.to_string());
            tokio::task::spawn_blocking(move || check_head(&shared, &id, &head))
                .await
                .map_err(|e| Error::Unavailable(format!("storage task failed: {e}")))??;
        }
        let (events, queue) = mpsc::channel(EVENT_QUEUE);
        let handle =
            Handle { events, budget: Arc::new(Semaphore::new(shared.config.max_buffered_bytes)) };
        let task = VdiskTask {
            id: vdisk.to_string(),
            shared: shared.clone(),
            expected: None,
            ordered: Vec::new(),
            ordered_bytes: 0,
            waiting: BTreeMap::new(),
            flushed_to: head.map(|h| h.header.last_sequence),
            stored: StoredBlocks::default(),
            run_start_pending: false,
            head: head.map_or(NO_PREV, |h| h.hash),
            force_at: None,
            clients: HashMap::new(),
            deadline: Instant::now() + shared.config.flush_time,
            in_flight: VecDeque::new(),
        };
        let join = tokio::spawn(task.run(queue));
        running.insert(vdisk.to_string(), (handle.clone(), join));
        Ok(handle)
    }

    /// Tells every vdisk task to flush and stop, and waits for them.
    pub(crate) async fn shutdown_all(&self) {
        let running: Vec<_> = {
            let mut running = self.running.lock().await;
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            running.drain().collect()
        };
        for (_, (handle, _)) in &running {
            let _ = handle.events.send(Event::Shutdown).await;
        }
        for (vdisk, (_, join)) in running {
            if let Err(err) = join.await {
                tracing::error!(vdisk, error = %err, "vdisk task failed");
            }
        }
    }
}

struct VdiskTask {
    id: String,
    shared: Arc<Shared>,
    /// The next sequence to order; `None` until the first client attaches.
    expected: Option<u64>,
    /// Blocks in sequence order, waiting to be flushed.
    ordered: Vec<(Block, OwnedSemaphorePermit)>,
    /// The data bytes in `ordered`.
    ordered_bytes: usize,
    /// Blocks that arrived ahead of a gap.
    waiting: BTreeMap<u64, (Block, OwnedSemaphorePermit)>,
    /// The highest sequence flushed in the current order of sequences (after a reset, the
    /// one before the reset point). Only for flush triggers: `FlushOK` for a resent block
    /// is decided by what the chain holds (`stored`).
    flushed_to: Option<u64>,
    /// Headers and blocks read from the chain to answer resent blocks.
    stored: StoredBlocks,
    /// The next aggregate starts a new run and is marked so in the chain.
    run_start_pending: bool,
    /// The name of the newest stored aggregate.
    head: Hash,
    /// A forced flush not yet done.
    force_at: Option<u64>,
    /// Where each attached connection's responses go.
    clients: HashMap<u64, Attachment>,
    /// When the flush timer fires next.
    deadline: Instant,
    /// The flushes being sealed and stored in the background, oldest first: at most
    /// [`MAX_FLIGHTS`]. The next one starts once the newest has handed its last aggregate
    /// to storage (so the chain's head is known), sealing while that one is written and
    /// synced; storage takes a vdisk's aggregates in that order. Blocks ordered meanwhile
    /// wait for the next one.
    in_flight: VecDeque<InFlight>,
}

/// What became of the flushes in flight (see [`flight_progress`]).
enum Progress {
    /// The oldest ended.
    Landed(std::result::Result<Result<Hash>, tokio::task::JoinError>),
    /// The newest handed its last aggregate to storage; the chain's head is now this.
    Sealed(std::result::Result<Hash, oneshot::error::RecvError>),
}

/// An attached connection.
struct Attachment {
    responses: mpsc::Sender<Response>,
    transport: Transport,
}

/// A flush running on a blocking thread while the task keeps taking blocks.
struct InFlight {
    task: JoinHandle<Result<Hash>>,
    /// Fires with the chain's new head once storage has taken the last aggregate.
    sealed: Option<oneshot::Receiver<Hash>>,
    /// That head, once it fired: the next flush chains from it.
    head: Option<Hash>,
    /// Fires once this flush is stored; taken by the next flush, which stores nothing
    /// before.
    stored: Option<oneshot::Receiver<()>>,
    sequences: Vec<u64>,
    /// Released once the flush is over, letting writers buffer more.
    budget: Vec<OwnedSemaphorePermit>,
}

impl VdiskTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Event>) {
        tracing::debug!(vdisk = %self.id, flushed_to = ?self.flushed_to, "vdisk opened");
        let result = self.serve(&mut queue).await;
        if let Err(err) = result {
            tracing::error!(vdisk = %self.id, error = %err, "vdisk closed after a failed flush");
        }
        // Dropping the clients' response channels closes their connections.
        self.clients.clear();
    }

    async fn serve(&mut self, queue: &mut mpsc::Receiver<Event>) -> Result<()> {
        loop {
            let timer_armed = !self.ordered.is_empty() && self.in_flight.is_empty();
            let flying = !self.in_flight.is_empty();
            tokio::select! {
                event = queue.recv() => {
                    let Some(event) = event else { return self.flush().await };
                    if self.handle(event).await? {
                        return self.flush().await;
                    }
                    // Take whatever else is already queued before deciding to flush, so a
                    // burst becomes one flush.
                    while let Ok(event) = queue.try_recv() {
                        if self.handle(event).await? {
                            return self.flush().await;
                        }
                    }
                }
                progress = flight_progress(&mut self.in_flight), if flying => match progress {
                    Progress::Landed(joined) => self.finish(joined)?,
                    Progress::Sealed(head) => {
                        if let Some(newest) = self.in_flight.back_mut() {
                            newest.sealed = None;
                            newest.head = head.ok();
                        }
                    }
                },
                () = tokio::time::sleep_until(self.deadline), if timer_armed => self.launch(),
            }
            if self.flush_due() {
                self.launch();
            }
        }
    }

    /// Handles one event; true when the task should stop.
    async fn handle(&mut self, event: Event) -> Result<bool> {
        match event {
            Event::Attach { conn, first_sequence, reset, transport, responses } => {
                if reset {
                    self.reset(conn, first_sequence).await?;
                } else if self.expected.is_none() {
                    let after_flushed = self.flushed_to.map_or(0, |f| f + 1);
                    let expected = first_sequence.max(after_flushed);
                    self.expected = Some(expected);
                    if expected > after_flushed && self.flushed_to.is_some() {
                        // The client skips sequences the log never had: the chain records
                        // it, so the player does not take the jump for a gap.
                        self.run_start_pending = true;
                    }
                }
                self.clients.insert(conn, Attachment { responses, transport });
            }
            Event::Block { conn, block, budget } => self.receive(conn, block, budget).await,
            Event::ForceFlush { sequence } => {
                if self.flushed_to.is_none_or(|f| f < sequence) {
                    self.force_at = Some(self.force_at.map_or(sequence, |s| s.min(sequence)));
                }
            }
            Event::SlaveSync { conn, sequence } => {
                self.flush().await?;
                if let Some(dir) = self.shared.config.slave_dir.clone() {
                    let (shared, vdisk) = (self.shared.clone(), self.id.clone());
                    let synced = tokio::task::spawn_blocking(move || {
                        crate::server::slave::sync(&shared, &dir, &vdisk)
                    })
                    .await
                    .map_err(|e| Error::Unavailable(format!("slave sync task failed: {e}")))
                    .and_then(|r| r);
                    if let Err(err) = synced {
                        tracing::error!(vdisk = %self.id, error = %err, "slave sync failed");
                        // No status means "failed" for this command: the client's wait
                        // times out, and it learns why from the closed connection.
                        self.clients.remove(&conn);
                        return Ok(false);
                    }
                }
                let done = Response {
                    status: status::WAIT_NBD_SLAVE_SYNC_RECEIVED,
                    sequences: vec![sequence],
                };
                self.reply(conn, done);
            }
            Event::Reply { conn, response } => self.reply(conn, response),
            Event::Detach { conn } => {
                self.clients.remove(&conn);
            }
            Event::Shutdown => return Ok(true),
        }
        Ok(false)
    }

    async fn reset(&mut self, conn: u64, first_sequence: u64) -> Result<()> {
        // What is ordered is flushed (and answered FlushOK) before the other clients are
        // cut off, so a client that sees its connection close knows the flush is done.
        self.waiting.clear();
        self.flush().await?;
        let others: Vec<u64> = self.clients.keys().copied().filter(|c| *c != conn).collect();
        for other in others {
            self.clients.remove(&other);
        }
        // The next aggregate is marked as a new run's start, so the chain records the reset:
        // a resent block is then looked up in the sequences as they run after it (blocks
        // stored under sequences from `first_sequence` on before the reset are not its).
        self.run_start_pending = self.head != NO_PREV;
        self.flushed_to = first_sequence.checked_sub(1);
        self.expected = Some(first_sequence);
        self.force_at = None;
        tracing::info!(vdisk = %self.id, first_sequence, "first sequence reset");
        Ok(())
    }

    async fn receive(&mut self, conn: u64, block: Block, budget: OwnedSemaphorePermit) {
        let sequence = block.sequence;
        let expected = *self.expected.get_or_insert(sequence);
        if sequence < expected {
            drop(budget);
            if let Some(status) = self.duplicate(&block).await {
                self.reply(conn, Response { status, sequences: vec![sequence] });
            }
            return;
        }
        if sequence > expected {
            self.waiting.entry(sequence).or_insert((block, budget));
        } else {
            self.ordered_bytes += block.data.len();
            self.ordered.push((block, budget));
            let mut next = expected + 1;
            while let Some(entry) = self.waiting.remove(&next) {
                self.ordered_bytes += entry.0.data.len();
                self.ordered.push(entry);
                next += 1;
            }
            self.expected = Some(next);
        }
        self.reply(conn, Response { status: status::RECV_OK, sequences: vec![sequence] });
    }

    /// The answer to a block below the expected sequence: `RecvOK` while it waits to be
    /// flushed in this run, `FlushOK` when the chain holds that very block, `RecvFailed`
    /// when it holds another one or none (a sequence a reset skipped: never stored, and
    /// never will be under this order). No answer when storage cannot tell now: the client
    /// sends it again later, and nothing claims it durable meanwhile.
    async fn duplicate(&mut self, block: &Block) -> Option<i8> {
        let sequence = block.sequence;
        let in_flight = self.in_flight.iter().any(|f| {
            f.sequences.first().is_some_and(|&a| a <= sequence)
                && f.sequences.last().is_some_and(|&b| sequence <= b)
        });
        let ordered = self.ordered.first().is_some_and(|(b, _)| b.sequence <= sequence);
        if in_flight || ordered {
            return Some(status::RECV_OK);
        }
        let mut stored = std::mem::take(&mut self.stored);
        let (shared, vdisk, head, copy) =
            (self.shared.clone(), self.id.clone(), self.head, block.clone());
        let looked = tokio::task::spawn_blocking(move || {
            let found = stored.find(&shared, &vdisk, head, &copy);
            (stored, found)
        })
        .await;
        let found = match looked {
            Ok((stored, found)) => {
                self.stored = stored;
                found
            }
            Err(e) => Err(Error::Unavailable(format!("storage task failed: {e}"))),
        };
        match found {
            Ok(Found::Same) => Some(status::FLUSH_OK),
            Ok(found) => {
                tracing::warn!(
                    vdisk = %self.id,
                    sequence,
                    "a resent block is not the one stored under its sequence ({}); refused",
                    if found == Found::Never {
                        "none is: a reset skipped it"
                    } else {
                        "another block is"
                    }
                );
                Some(status::RECV_FAILED)
            }
            Err(err) => {
                tracing::error!(vdisk = %self.id, sequence, error = %err, "cannot tell whether a resent block is stored; not answered");
                None
            }
        }
    }

    fn flush_due(&self) -> bool {
        // A full aggregate's worth flushes too: with large blocks, `flush_size` blocks could
        // be more than a client may leave unflushed, and it would wait for the timer.
        let config = &self.shared.config;
        let local = |c: &Attachment| c.transport == Transport::Local;
        let flush_size = if !self.clients.is_empty() && self.clients.values().all(local) {
            config.local_flush_size
        } else {
            config.flush_size
        };
        if self.ordered.len() >= flush_size || self.ordered_bytes >= config.max_aggregate_bytes {
            return true;
        }
        match (self.force_at, self.ordered.last()) {
            (Some(at), Some((last, _))) => last.sequence >= at,
            _ => false,
        }
    }

    /// Flushes everything ordered and waits until it is stored (or failed).
    async fn flush(&mut self) -> Result<()> {
        self.land().await?;
        self.launch();
        self.land().await
    }

    /// Starts sealing and storing everything ordered, in the background, when the flushes
    /// in flight leave room for it (see [`VdiskTask::in_flight`]).
    fn launch(&mut self) {
        let prev = match self.in_flight.back() {
            None => self.head,
            Some(InFlight { head: Some(head), .. }) if self.in_flight.len() < MAX_FLIGHTS => *head,
            Some(_) => return,
        };
        self.deadline = Instant::now() + self.shared.config.flush_time;
        if self.ordered.is_empty() {
            return;
        }
        let after = self.in_flight.back_mut().and_then(|newest| newest.stored.take());
        let taken = std::mem::take(&mut self.ordered);
        self.ordered_bytes = 0;
        let (blocks, budget): (Vec<Block>, Vec<OwnedSemaphorePermit>) = taken.into_iter().unzip();
        let sequences: Vec<u64> = blocks.iter().map(|b| b.sequence).collect();
        let shared = self.shared.clone();
        let vdisk = self.id.clone();
        let run_start = std::mem::take(&mut self.run_start_pending);
        let (sealed_tx, sealed) = oneshot::channel();
        let (stored_tx, stored) = oneshot::channel();
        let order = Order { after, sealed: sealed_tx, stored: stored_tx };
        let task = tokio::task::spawn_blocking(move || {
            store(&shared, &vdisk, prev, blocks, run_start, order)
        });
        self.in_flight.push_back(InFlight {
            task,
            sealed: Some(sealed),
            head: None,
            stored: Some(stored),
            sequences,
            budget,
        });
    }

    /// Waits for every flush in flight, and answers the clients.
    async fn land(&mut self) -> Result<()> {
        while let Some(flight) = self.in_flight.front_mut() {
            let joined = (&mut flight.task).await;
            self.finish(joined)?;
        }
        Ok(())
    }

    /// Answers the clients about the oldest flush in flight, which has ended with `joined`.
    fn finish(&mut self, joined: Result<Result<Hash>, tokio::task::JoinError>) -> Result<()> {
        let Some(flight) = self.in_flight.pop_front() else { return Ok(()) };
        let stored = joined
            .map_err(|e| Error::Unavailable(format!("flush task failed: {e}")))
            .and_then(|r| r);
        drop(flight.budget);
        let sequences = flight.sequences;
        match stored {
            Ok(head) => {
                let last = sequences.last().copied();
                self.head = head;
                self.flushed_to = last;
                if self.force_at.is_some_and(|at| last.is_some_and(|l| l >= at)) {
                    self.force_at = None;
                }
                self.broadcast(Response { status: status::FLUSH_OK, sequences });
                Ok(())
            }
            Err(err) => {
                self.broadcast(Response { status: status::FLUSH_FAILED, sequences });
                Err(err)
            }
        }
    }

    fn reply(&mut self, conn: u64, response: Response) {
        let Some(client) = self.clients.get(&conn) else { return };
        if response.status == status::RECV_OK && client.transport != Transport::Wire {
            return;
        }
        if client.responses.try_send(response).is_err() {
            tracing::warn!(vdisk = %self.id, conn, "client does not read its responses; dropping it");
            self.clients.remove(&conn);
        }
    }

    fn broadcast(&mut self, response: Response) {
        let conns: Vec<u64> = self.clients.keys().copied().collect();
        for conn in conns {
            self.reply(conn, response.clone());
        }
    }
}

/// Waits for the oldest flush to end, or the newest to hand its last aggregate over.
async fn flight_progress(in_flight: &mut VecDeque<InFlight>) -> Progress {
    let mut flights = in_flight.iter_mut();
    let (oldest, newest) = (flights.next(), flights.next());
    let (task, sealed) = match (oldest, newest) {
        (Some(oldest), Some(newest)) => (&mut oldest.task, newest.sealed.as_mut()),
        (Some(InFlight { task, sealed, .. }), None) => (task, sealed.as_mut()),
        (None, _) => return std::future::pending().await,
    };
    match sealed {
        Some(sealed) => tokio::select! {
            joined = task => Progress::Landed(joined),
            head = sealed => Progress::Sealed(head),
        },
        None => Progress::Landed(task.await),
    }
}

/// How a flush keeps its place among a vdisk's flushes in flight.
struct Order {
    /// Fires once the flush before this one is stored; dropped unfired when it failed.
    /// `None` when there was none in flight.
    after: Option<oneshot::Receiver<()>>,
    /// Hears the chain's new head as soon as storage has taken the last aggregate, before
    /// it is durable, so the next flush can seal meanwhile.
    sealed: oneshot::Sender<Hash>,
    /// Fired once this flush is stored.
    stored: oneshot::Sender<()>,
}

/// Seals `blocks` into as many aggregates as the size limits ask for, chained from `prev`,
/// and stores them once the flush before is stored; returns the new head. The first is
/// marked as a run's start when `run_start` is set. Sealing runs
/// ahead of storage (up to [`SEAL_AHEAD`] aggregates), meanwhile: on this thread for one
/// aggregate, on a helper thread for more. Where storage says where the next envelope
/// goes ([`Storage::placement`](crate::storage::Storage::placement)), each is sealed placed
/// for its predicted file offset, so storage can write it without copying it.
fn store(
    shared: &Shared,
    vdisk: &str,
    prev: Hash,
    blocks: Vec<Block>,
    run_start: bool,
    order: Order,
) -> Result<Hash> {
    let started = std::time::Instant::now();
    let bytes: usize = blocks.iter().map(|b| b.data.len()).sum();
    let aggregates = cut(vdisk, blocks, shared.config.max_aggregate_bytes.max(1));
    let key = shared.config.key.as_ref();
    let count = aggregates.len();
    let mut placement = shared.storage.placement(vdisk);
    let stored = std::thread::scope(|scope| {
        let (sender, ready) = std::sync::mpsc::sync_channel(SEAL_AHEAD);
        let seal_all = move || {
            let (mut prev, mut run_start) = (prev, run_start);
            for mut aggregate in aggregates {
                aggregate.prev = prev;
                let run_start = std::mem::take(&mut run_start);
                let sealed = match &mut placement {
                    Some(place) => aggregate.seal_placed(key, run_start, place.next),
                    None if run_start => aggregate.seal_run_start(key),
                    None => aggregate.seal(key),
                };
                let failed = match &sealed {
                    Ok(sealed) => {
                        prev = *sealed.hash();
                        if let Some(place) = &mut placement {
                            place.next += sealed.bytes().len() as u64 + place.framing;
                        }
                        false
                    }
                    Err(_) => true,
                };
                // A closed channel means storage failed: nothing more is needed.
                if sender.send(sealed).is_err() || failed {
                    return;
                }
            }
        };
        if count > 1 {
            std::thread::Builder::new()
                .name("tlog-seal".into())
                .spawn_scoped(scope, seal_all)
                .map_err(|e| Error::Unavailable(format!("cannot start a sealing thread: {e}")))?;
        } else {
            seal_all();
        }
        if let Some(after) = order.after
            && after.blocking_recv().is_err()
        {
            return Err(Error::Unavailable(
                "the flush before this one failed; this one stored nothing".into(),
            ));
        }
        let mut sealed = Some(order.sealed);
        let mut taken = 0;
        let mut next = |head: &Hash| match ready.recv() {
            Ok(aggregate) => {
                taken += 1;
                aggregate.map(Some)
            }
            Err(_) if taken < count => {
                Err(Error::Unavailable("the sealing thread stopped before the end".into()))
            }
            Err(_) => {
                if let Some(sealed) = sealed.take() {
                    let _ = sealed.send(*head);
                }
                Ok(None)
            }
        };
        let stored = shared.storage.append_many(vdisk, &mut next, prev)?;
        let _ = order.stored.send(());
        Ok(stored)
    });
    let result = if stored.is_ok() { "ok" } else { "error" };
    metrics::histogram!("strata_tlog_flush_duration_seconds", "result" => result)
        .record(started.elapsed());
    metrics::histogram!("strata_tlog_flush_bytes").record(bytes as f64);
    stored
}

/// Cuts a flush's blocks into aggregates of up to `limit` bytes of data (at least one block
/// each) and [`MAX_AGGREGATE_BLOCKS`] blocks, stamped with the flush's time; sealing fills
/// in each one's `prev`.
fn cut(vdisk: &str, blocks: Vec<Block>, limit: usize) -> Vec<Aggregate> {
    let timestamp = now_nanos();
    let mut aggregates = Vec::new();
    let mut blocks = blocks.into_iter().peekable();
    while blocks.peek().is_some() {
        let mut chunk: Vec<Block> = Vec::new();
        let mut bytes = 0usize;
        while let Some(block) =
            blocks.next_if(|_| bytes < limit && chunk.len() < MAX_AGGREGATE_BLOCKS)
        {
            bytes += block.data.len();
            chunk.push(block);
        }
        aggregates.push(Aggregate {
            vdisk_id: vdisk.to_string(),
            timestamp,
            blocks: chunk,
            prev: NO_PREV,
        });
    }
    aggregates
}
