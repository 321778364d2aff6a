//! The tlog client: streams a vdisk's blocks to a tlog server, pipelined, and keeps every
//! block until the server says it is durable.
//!
//! A background task owns the connection. It resends what is unacknowledged when no flush
//! progress is seen for `resend_timeout`, and on a network error or `FlushFailed` it
//! reconnects, rotating through the server list, handshakes with `firstSequence` = the
//! oldest unflushed sequence, and resends everything not flushed, in order. Callers wait
//! for durability with [`Client::wait_durable`] or [`Client::flush`].
//!
//! The connection is TCP, or, with [`ClientConfig::local`], an in-process link to a
//! [`Server`](crate::server::Server) running in the same process: blocks are then handed
//! over as `Block` values (their data shared, not copied), with the same handshake,
//! answers, resends and reconnects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::frame::FrameReader;
use crate::message::{
    Block, Command, HandshakeRequest, HandshakeResponse, MessageType, Response, handshake_status,
    now_nanos, status,
};
use crate::server::LocalConnector;
use crate::server::local::LocalLink;
use crate::version::Version;
use crate::{Error, Result};

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Servers as `host:port`, tried in order and rotated through on failure. Unused (and
    /// may be empty) with a `local` connector.
    pub servers: Vec<String>,
    /// Connect in-process to the server in this process that made this connector, instead
    /// of over TCP to `servers`.
    pub local: Option<LocalConnector>,
    /// The vdisk written.
    pub vdisk_id: String,
    /// The sequence of the first block this client sends.
    pub first_sequence: u64,
    /// Ask the server to drop what it buffered for the vdisk and restart at
    /// `first_sequence` (on the first connection only).
    pub reset_first_sequence: bool,
    /// Resend unacknowledged blocks when no flush progress came for this long; reconnect
    /// to the next server when a resend did not help either.
    pub resend_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// The most bytes of unflushed block data held; writers wait beyond it.
    pub max_unflushed_bytes: usize,
}

impl ClientConfig {
    /// A configuration with defaults for `vdisk_id` on `servers`.
    pub fn new(servers: Vec<String>, vdisk_id: &str) -> ClientConfig {
        ClientConfig {
            servers,
            local: None,
            vdisk_id: vdisk_id.to_string(),
            first_sequence: 1,
            reset_first_sequence: false,
            resend_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_unflushed_bytes: 256 * 1024 * 1024,
        }
    }

    /// A configuration with defaults for `vdisk_id`, connecting through `local`.
    pub fn local(local: LocalConnector, vdisk_id: &str) -> ClientConfig {
        ClientConfig { local: Some(local), ..ClientConfig::new(Vec::new(), vdisk_id) }
    }

    /// Where this client connects, for messages.
    fn server_name(&self, index: usize) -> &str {
        match self.local {
            Some(_) => "local",
            None => self.servers.get(index).map_or("none", String::as_str),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Client {
    requests: mpsc::Sender<Request>,
    /// The highest sequence below which everything is durable.
    durable: watch::Receiver<Durable>,
    /// The next sequence [`Client::write`] assigns.
    next_sequence: AtomicU64,
    /// Bytes of unflushed data the client may still take.
    budget: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

/// What is durable, as the background task reports it.
#[derive(Debug, Clone, Default)]
struct Durable {
    /// Every sequence up to this one is flushed (`None`: nothing yet).
    to: Option<u64>,
    /// Set when the client gave up (a block the server keeps refusing).
    failed: Option<String>,
}

#[derive(Debug)]
enum Request {
    Block(Block, OwnedSemaphorePermit),
    ForceFlush(u64),
    SlaveSync(u64, oneshot::Sender<()>),
}

impl Client {
    /// Connects to the first server that answers and starts the background task.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.servers.is_empty() && config.local.is_none() {
            return Err(Error::InvalidArgument("tlog client: no servers given".into()));
        }
        let mut worker = Worker::new(config.clone());
        worker.connect_any().await?;
        let (requests, queue) = mpsc::channel(1024);
        let first = config.first_sequence;
        let (durable_tx, durable) = watch::channel(Durable {
            to: first.checked_sub(1).filter(|_| first > 0),
            failed: None,
        });
        let budget = Arc::new(Semaphore::new(config.max_unflushed_bytes));
        worker.durable = durable_tx;
        let task = tokio::spawn(worker.run(queue));
        Ok(Client { requests, durable, next_sequence: AtomicU64::new(first), budget, task })
    }

    /// Sends a write of `data` at `offset` with the next sequence, and returns the sequence.
    /// Returns once the block is queued, not once it is durable.
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<u64> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        self.send(Block::write(sequence, offset, data, now_nanos())).await?;
        Ok(sequence)
    }

    /// Sends `block` (made with [`Block::write`] or [`Block::discard`], so already hashed,
    /// or, for a local connector only, with [`Block::write_in_process`]) with the next
    /// sequence, which it returns. Callers that order their writes under a lock make the
    /// block outside it and call this inside. Over TCP, an unhashed block is hashed as it is
    /// framed.
    pub async fn send_next(&self, mut block: Block) -> Result<u64> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        block.sequence = sequence;
        self.send(block).await?;
        Ok(sequence)
    }

    /// Sends a discard of `size` bytes at `offset` with the next sequence.
    pub async fn discard(&self, offset: u64, size: u64) -> Result<u64> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        self.send(Block::discard(sequence, offset, size, now_nanos())).await?;
        Ok(sequence)
    }

    /// Sends a block as it is, with its own sequence (for callers that number blocks
    /// themselves). Waits while too much data is unflushed; then it first asks the server
    /// to flush the blocks before this one, so the wait ends with their `FlushOK`, not with
    /// the server's flush timer (a server need not flush before `flush_size` blocks wait).
    pub async fn send(&self, block: Block) -> Result<()> {
        self.check_failed()?;
        let size = u32::try_from(block.data.len()).unwrap_or(u32::MAX).max(1);
        let permit = match self.budget.clone().try_acquire_many_owned(size) {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(before) = block.sequence.checked_sub(1) {
                    self.force_flush(before).await?;
                }
                self.budget.clone().acquire_many_owned(size).await.map_err(|_| stopped())?
            }
        };
        self.requests.send(Request::Block(block, permit)).await.map_err(|_| stopped())
    }

    /// Asks the server to flush as soon as it has every block up to `sequence`.
    pub async fn force_flush(&self, sequence: u64) -> Result<()> {
        self.requests.send(Request::ForceFlush(sequence)).await.map_err(|_| stopped())
    }

    /// Waits until every block up to `sequence` is durable.
    pub async fn wait_durable(&self, sequence: u64) -> Result<()> {
        let mut durable = self.durable.clone();
        let reached = durable
            .wait_for(|d| d.failed.is_some() || d.to.is_some_and(|to| to >= sequence))
            .await
            .map_err(|_| stopped())?;
        match &reached.failed {
            Some(why) => Err(Error::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    /// Forces a flush of everything sent so far and waits until it is durable. Returns the
    /// last sequence sent (`None` when nothing was).
    pub async fn flush(&self) -> Result<Option<u64>> {
        let next = self.next_sequence.load(Ordering::SeqCst);
        let Some(last) = next.checked_sub(1).filter(|l| self.durable.borrow().to < Some(*l)) else {
            return Ok(next.checked_sub(1));
        };
        self.force_flush(last).await?;
        self.wait_durable(last).await?;
        Ok(Some(last))
    }

    /// Asks the server to bring the vdisk's slave copy up to date, and waits for it at most
    /// `limit`.
    pub async fn wait_slave_sync(&self, limit: Duration) -> Result<()> {
        let sequence = self.next_sequence.load(Ordering::SeqCst).saturating_sub(1);
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::SlaveSync(sequence, tx)).await.map_err(|_| stopped())?;
        tokio::time::timeout(limit, rx)
            .await
            .map_err(|_| Error::Unavailable(format!("slave sync did not finish within {limit:?}")))?
            .map_err(|_| stopped())
    }

    /// Every sequence up to this one is durable: each one from the first this client sends
    /// was handed to its background task and acknowledged `FlushOK` by the server (those
    /// before the first are not this client's, and count as done). Never past a sequence
    /// taken but not yet handed over, however many threads write at once.
    pub fn durable_to(&self) -> Option<u64> {
        self.durable.borrow().to
    }

    /// The sequence the next [`Client::write`] gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence.load(Ordering::SeqCst)
    }

    /// Flushes and stops the background task.
    pub async fn close(self) -> Result<()> {
        let flushed = self.flush().await;
        drop(self.requests);
        let _ = self.task.await;
        flushed.map(drop)
    }

    /// Like [`Client::close`], but gives up after `limit`: the background task is then
    /// stopped, so blocks not yet durable are never sent later by a task nobody waits for.
    pub async fn close_within(self, limit: Duration) -> Result<()> {
        let task = self.task.abort_handle();
        match tokio::time::timeout(limit, self.close()).await {
            Ok(closed) => closed,
            Err(_) => {
                task.abort();
                Err(Error::Unavailable(format!(
                    "the tlog did not make the last writes durable within {limit:?}; the \
                     client was stopped"
                )))
            }
        }
    }

    fn check_failed(&self) -> Result<()> {
        match &self.durable.borrow().failed {
            Some(why) => Err(Error::Unavailable(why.clone())),
            None => Ok(()),
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable("the tlog client has stopped".into())
}

/// How often one block may be refused (`RecvFailed`) before the client gives up.
const MAX_REFUSALS: u32 = 3;

/// A connection to the server.
#[derive(Debug)]
enum Connection {
    Tcp { reader: FrameReader<OwnedReadHalf>, writer: BufWriter<OwnedWriteHalf> },
    Local(LocalLink),
}

impl Connection {
    /// The next answer; `Ok(None)` when the server closed the connection.
    async fn response(&mut self) -> Result<Option<Response>> {
        match self {
            Connection::Tcp { reader, .. } => match reader.message().await? {
                Some(bytes) => Response::decode(&bytes).map(Some),
                None => Ok(None),
            },
            Connection::Local(link) => Ok(link.response().await),
        }
    }
}

/// What the worker sends.
enum Out<'a> {
    Block(&'a Block),
    ForceFlush(u64),
    SlaveSync(u64),
}

/// The background task's state.
struct Worker {
    config: ClientConfig,
    /// Which server is (or was last) used.
    server: usize,
    connection: Option<Connection>,
    /// Blocks not yet flushed, with the budget they hold.
    unflushed: BTreeMap<u64, (Block, OwnedSemaphorePermit, u32)>,
    /// The highest sequence up to which every sequence from the first was handed to the
    /// task. Writers on several threads take sequences in one order and hand blocks over
    /// in another, so a later block can arrive (and be flushed) before an earlier one.
    handed_to: Option<u64>,
    /// Sequences handed over beyond `handed_to + 1`, waiting for the gap to fill.
    ahead: BTreeSet<u64>,
    /// A forced flush not yet seen durable.
    force_at: Option<u64>,
    slave_waiters: Vec<oneshot::Sender<()>>,
    durable: watch::Sender<Durable>,
    /// Last time flush progress was seen (or a resend was made).
    progress_at: Instant,
    /// Whether a resend was already tried since the last progress.
    resent: bool,
    first_connection: bool,
}

impl Worker {
    fn new(config: ClientConfig) -> Worker {
        Worker {
            config,
            server: 0,
            connection: None,
            unflushed: BTreeMap::new(),
            handed_to: None,
            ahead: BTreeSet::new(),
            force_at: None,
            slave_waiters: Vec::new(),
            durable: watch::channel(Durable::default()).0,
            progress_at: Instant::now(),
            resent: false,
            first_connection: true,
        }
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        loop {
            if self.connection.is_none()
                && let Err(err) = self.reconnect().await
            {
                tracing::warn!(error = %err, "tlog: reconnect failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let deadline = self.progress_at + self.config.resend_timeout;
            let waiting = !self.unflushed.is_empty();
            let Some(connection) = self.connection.as_mut() else { continue };
            tokio::select! {
                request = queue.recv() => match request {
                    Some(request) => self.request(request, &mut queue).await,
                    None if self.unflushed.is_empty() => return,
                    // The client is gone but blocks are unflushed: keep going until they are.
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                message = connection.response() => self.response(message).await,
                () = tokio::time::sleep_until(deadline), if waiting => self.no_progress().await,
            }
        }
    }

    /// Handles a request and every other one already queued, then flushes the socket once.
    async fn request(&mut self, first: Request, queue: &mut mpsc::Receiver<Request>) {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Block(block, permit) => {
                    let sequence = block.sequence;
                    if self.unflushed.is_empty() {
                        self.progress_at = Instant::now();
                    }
                    self.handed_over(sequence);
                    self.send(Out::Block(&block)).await;
                    self.unflushed.insert(sequence, (block, permit, 0));
                }
                Request::ForceFlush(sequence) => {
                    self.force_at = Some(self.force_at.map_or(sequence, |f| f.max(sequence)));
                    self.send(Out::ForceFlush(sequence)).await;
                }
                Request::SlaveSync(sequence, waiter) => {
                    self.slave_waiters.push(waiter);
                    self.send(Out::SlaveSync(sequence)).await;
                }
            }
            next = queue.try_recv().ok();
        }
        self.flush_socket().await;
    }

    async fn response(&mut self, message: Result<Option<Response>>) {
        let response = match message.and_then(|m| {
            m.ok_or_else(|| Error::Unavailable("the server closed the connection".into()))
        }) {
            Ok(response) => response,
            Err(err) => return self.disconnect(&err.to_string()),
        };
        match response.status {
            status::FLUSH_OK => {
                for sequence in &response.sequences {
                    self.unflushed.remove(sequence);
                }
                self.progress_at = Instant::now();
                self.resent = false;
                self.publish();
            }
            status::RECV_FAILED => {
                for sequence in response.sequences {
                    self.refused(sequence).await;
                }
            }
            status::FLUSH_FAILED => self.disconnect("the server failed to flush"),
            status::WAIT_NBD_SLAVE_SYNC_RECEIVED => {
                for waiter in self.slave_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
            _ => {}
        }
    }

    /// A block the server refused: resend it a few times, then give up loudly.
    async fn refused(&mut self, sequence: u64) {
        let Some(entry) = self.unflushed.get_mut(&sequence) else { return };
        entry.2 += 1;
        if entry.2 > MAX_REFUSALS {
            let why = format!("the server refused block {sequence} {MAX_REFUSALS} times");
            tracing::error!("tlog: {why}");
            self.durable.send_modify(|d| d.failed = Some(why));
            return;
        }
        let block = entry.0.clone();
        self.send(Out::Block(&block)).await;
        self.flush_socket().await;
    }

    /// No flush progress for a resend timeout: resend once, then change servers.
    async fn no_progress(&mut self) {
        if self.resent {
            self.disconnect("no flush progress after a resend");
            return;
        }
        tracing::info!(blocks = self.unflushed.len(), "tlog: no flush progress; resending");
        self.resent = true;
        self.progress_at = Instant::now();
        self.resend().await;
    }

    async fn resend(&mut self) {
        // Clones share the blocks' data.
        let blocks: Vec<Block> = self.unflushed.values().map(|(b, _, _)| b.clone()).collect();
        for block in &blocks {
            self.send(Out::Block(block)).await;
        }
        if let Some(at) = self.force_at {
            self.send(Out::ForceFlush(at)).await;
        }
        self.flush_socket().await;
    }

    /// Notes that block `sequence` reached the task.
    fn handed_over(&mut self, sequence: u64) {
        let next = self.handed_to.map_or(self.config.first_sequence, |h| h + 1);
        if sequence < next {
            return;
        }
        self.ahead.insert(sequence);
        let mut next = next;
        while self.ahead.remove(&next) {
            self.handed_to = Some(next);
            next += 1;
        }
    }

    /// Tells waiters how far everything is durable: every sequence handed over without a
    /// gap, up to the oldest one not yet flushed. Never past a sequence the task has not
    /// seen, whatever the server acknowledged after it.
    fn publish(&mut self) {
        let flushed_to = match self.unflushed.keys().next() {
            Some(oldest) => oldest.checked_sub(1),
            None => self.handed_to,
        };
        let to = flushed_to.min(self.handed_to).or(self.durable.borrow().to);
        if self.force_at.is_some_and(|f| to.is_some_and(|t| t >= f)) {
            self.force_at = None;
        }
        self.durable.send_if_modified(|d| {
            let changed = d.to != to && to > d.to;
            if changed {
                d.to = to;
            }
            changed
        });
    }

    fn disconnect(&mut self, why: &str) {
        if self.connection.take().is_some() {
            tracing::warn!(
                why,
                server = self.config.server_name(self.server),
                "tlog: connection lost"
            );
        }
        self.server = (self.server + 1) % self.config.servers.len().max(1);
    }

    async fn reconnect(&mut self) -> Result<()> {
        self.connect_any().await?;
        self.progress_at = Instant::now();
        self.resent = false;
        self.resend().await;
        Ok(())
    }

    /// Connects to the current server, or the next ones in turn, and handshakes.
    async fn connect_any(&mut self) -> Result<()> {
        if let Some(local) = self.config.local.clone() {
            let limit = self.config.connect_timeout;
            let link = tokio::time::timeout(limit, local.connect(self.handshake_request()))
                .await
                .map_err(|_| {
                    Error::Unavailable(format!("the local tlog server: no answer within {limit:?}"))
                })??;
            self.connection = Some(Connection::Local(link));
            self.first_connection = false;
            return Ok(());
        }
        let mut last = None;
        for _ in 0..self.config.servers.len() {
            match self.connect_one().await {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.first_connection = false;
                    return Ok(());
                }
                Err(err) => {
                    tracing::debug!(server = %self.config.servers[self.server], error = %err, "tlog: connect failed");
                    last = Some(err);
                    self.server = (self.server + 1) % self.config.servers.len();
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("no tlog server".into())))
    }

    /// The handshake: the oldest unflushed sequence first, and a reset only at first.
    fn handshake_request(&self) -> HandshakeRequest {
        let first_sequence = match self.unflushed.keys().next() {
            Some(oldest) => *oldest,
            None => self
                .ahead
                .last()
                .copied()
                .or(self.handed_to)
                .map_or(self.config.first_sequence, |h| h + 1),
        };
        HandshakeRequest {
            version: Version::CURRENT.0,
            vdisk_id: self.config.vdisk_id.clone(),
            first_sequence,
            reset_first_sequence: self.first_connection && self.config.reset_first_sequence,
        }
    }

    async fn connect_one(&self) -> Result<Connection> {
        let server = &self.config.servers[self.server];
        let limit = self.config.connect_timeout;
        let attempt = async {
            let stream = TcpStream::connect(server).await?;
            let _ = stream.set_nodelay(true);
            let (read, write) = stream.into_split();
            let (mut reader, mut writer) = (FrameReader::new(read), BufWriter::new(write));
            let request = self.handshake_request();
            writer.write_all(&request.encode()).await?;
            writer.flush().await?;
            let answer = reader
                .message()
                .await?
                .ok_or_else(|| Error::Unavailable("closed during the handshake".into()))?;
            let answer = HandshakeResponse::decode(&answer)?;
            if answer.status != handshake_status::OK {
                return Err(Error::Handshake(format!(
                    "server {server} answered status {} (server version {})",
                    answer.status,
                    Version(answer.version)
                )));
            }
            Ok(Connection::Tcp { reader, writer })
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| Error::Unavailable(format!("{server}: no answer within {limit:?}")))?
    }

    /// Sends a block or command: framed into the socket, or handed to the local vdisk.
    async fn send(&mut self, out: Out<'_>) {
        let sent = match self.connection.as_mut() {
            None => return,
            Some(Connection::Tcp { writer, .. }) => {
                let frame = match out {
                    Out::Block(block) => block.frame(),
                    Out::ForceFlush(sequence) => command(MessageType::ForceFlushAtSeq, sequence),
                    Out::SlaveSync(sequence) => command(MessageType::WaitNbdSlaveSync, sequence),
                };
                writer.write_all(&frame).await.map_err(Error::from)
            }
            Some(Connection::Local(link)) => match out {
                Out::Block(block) => link.block(block.clone()).await,
                Out::ForceFlush(sequence) => link.force_flush(sequence).await,
                Out::SlaveSync(sequence) => link.slave_sync(sequence).await,
            },
        };
        if let Err(err) = sent {
            self.disconnect(&err.to_string());
        }
    }

    async fn flush_socket(&mut self) {
        let Some(Connection::Tcp { writer, .. }) = self.connection.as_mut() else { return };
        if let Err(err) = writer.flush().await {
            self.disconnect(&err.to_string());
        }
    }
}

fn typed(kind: MessageType, message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1 + message.len());
    frame.push(kind as u8);
    frame.extend_from_slice(message);
    frame
}

fn command(kind: MessageType, sequence: u64) -> Vec<u8> {
    typed(kind, &Command { kind: kind as u8, sequence }.encode())
}
