//! The NBD server: fixed newstyle negotiation, then transmission, on TCP and unix sockets.
//!
//! Negotiation (bounded by a timeout) answers NBD_OPT_LIST, INFO, GO, EXPORT_NAME,
//! STRUCTURED_REPLY and ABORT; every other option gets NBD_REP_ERR_UNSUP. Export names are
//! vdisk names, looked up in the records when the client asks, so a disk created while the
//! server runs is served. Transmission reads requests in order and runs each in its own
//! task (replies may come out of order, as NBD allows), with the bytes in flight per
//! connection bounded. All connections to one export share one [`Disk`]; when the last
//! one closes, the disk is flushed and closed. On shutdown the server stops accepting,
//! every connection finishes the request it is in, and every disk is flushed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio::task::JoinSet;

use strata_tlog::server::LocalConnector;

use crate::disk::{Disk, DiskConfig, Failed, LogAccess};
use crate::proto::{self, allocation, chunk, cmd, cmd_flag, errno, flag, info, opt, rep};
use crate::record::{Records, Vdisk};
use crate::tls::Tls;
use crate::{Error, Result};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The tlog servers (`host:port`) every disk journals to.
    pub tlog_servers: Vec<String>,
    /// See [`DiskConfig::tlog_local`].
    pub tlog_local: Option<LocalConnector>,
    /// The most connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// How long a client may take to negotiate.
    pub negotiation_timeout: Duration,
    /// The largest READ or WRITE accepted.
    pub max_request: u32,
    /// Bytes of requests in flight per connection.
    pub max_in_flight: u32,
    /// See [`DiskConfig::tlog_timeout`].
    pub tlog_timeout: Duration,
    /// See [`DiskConfig::max_unflushed_bytes`].
    pub max_unflushed_bytes: usize,
    /// See [`DiskConfig::log`].
    pub log: Option<LogAccess>,
    /// See [`DiskConfig::journal`]: off only in benchmarks.
    pub journal: bool,
    /// TLS offered (STARTTLS), and whether it is required.
    pub tls: Option<Tls>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            tlog_servers: vec!["127.0.0.1:11211".into()],
            tlog_local: None,
            max_connections: 128,
            negotiation_timeout: Duration::from_secs(30),
            max_request: 32 << 20,
            max_in_flight: 64 << 20,
            tlog_timeout: Duration::from_secs(30),
            max_unflushed_bytes: 256 << 20,
            log: None,
            journal: true,
            tls: None,
        }
    }
}

impl ServerConfig {
    fn disk(&self) -> DiskConfig {
        DiskConfig {
            tlog_servers: self.tlog_servers.clone(),
            tlog_local: self.tlog_local.clone(),
            tlog_timeout: self.tlog_timeout,
            max_unflushed_bytes: self.max_unflushed_bytes,
            log: self.log.clone(),
            journal: self.journal,
        }
    }

    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<()> {
        if self.tlog_servers.is_empty() && self.tlog_local.is_none() {
            return Err(Error::InvalidArgument("nbd: no tlog servers given".into()));
        }
        if self.max_connections == 0 || self.max_request == 0 {
            return Err(Error::InvalidArgument(
                "nbd: max connections and max request must be positive".into(),
            ));
        }
        if self.max_in_flight < self.max_request {
            return Err(Error::InvalidArgument(format!(
                "nbd: max in flight {} must be at least max request {}",
                self.max_in_flight, self.max_request
            )));
        }
        Ok(())
    }
}

/// A socket the server accepts on.
#[derive(Debug)]
pub enum Listen {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket, removed when the server stops.
    Unix(UnixListener, PathBuf),
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct NbdServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    records: Records,
    config: ServerConfig,
    /// Open disks by name; a disk lives while a connection holds it.
    disks: Mutex<HashMap<String, Weak<Disk>>>,
    stopping: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
}

/// What the server has done since it started, over every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered, by command (indexed by the NBD command number, 0 to 7).
    pub requests: [u64; 8],
    /// Bytes sent in answer to READs.
    pub bytes_read: u64,
    /// Bytes of WRITEs accepted.
    pub bytes_written: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: [AtomicU64; 8],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// The same, with durations, in the process's metrics.
    metrics: crate::metrics::Metrics,
}

impl Counters {
    fn count(&self, req: &proto::Request, ok: bool) {
        if let Some(n) = self.requests.get(usize::from(req.kind)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let length = u64::from(req.length);
        match req.kind {
            cmd::READ if ok => self.bytes_read.fetch_add(length, Ordering::Relaxed),
            cmd::WRITE if ok => self.bytes_written.fetch_add(length, Ordering::Relaxed),
            _ => 0,
        };
    }
}

impl NbdServer {
    /// A server for the vdisks in `records`.
    pub fn new(records: Records, config: ServerConfig) -> Result<NbdServer> {
        config.validate()?;
        let (stop, stopping) = watch::channel(false);
        Ok(NbdServer {
            inner: Arc::new(Inner {
                records,
                config,
                disks: Mutex::new(HashMap::new()),
                stopping,
                stop,
                counters: Arc::default(),
            }),
        })
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            requests: std::array::from_fn(|i| c.requests[i].load(Ordering::Relaxed)),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Serves on `listeners` until `shutdown` completes, then stops accepting, lets every
    /// connection finish its request in progress, and flushes every disk. Each listener runs
    /// on the shell every strata server shares (`strata-net`), with `max_connections` each;
    /// the grace period covers a disk's close (`tlog_timeout`) and ten seconds more.
    pub async fn serve(
        &self,
        listeners: Vec<Listen>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let shell = strata_net::Shell {
            grace: self.inner.config.tlog_timeout + Duration::from_secs(10),
            ..strata_net::Shell::new("nbd", self.inner.config.max_connections)
        };
        let mut serving = JoinSet::new();
        let mut sockets = Vec::new();
        for listener in listeners {
            match listener {
                Listen::Tcp(listener) => {
                    serving.spawn(self.clone().serve_one(shell.clone(), listener))
                }
                Listen::Unix(listener, path) => {
                    sockets.push(path);
                    serving.spawn(self.clone().serve_one(shell.clone(), listener))
                }
            };
        }
        shutdown.await;
        tracing::info!("nbd: shutting down");
        let _ = self.inner.stop.send(true);
        while serving.join_next().await.is_some() {}
        for path in sockets {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("nbd: stopped");
        Ok(())
    }

    /// Serves one listener until the server stops.
    async fn serve_one<L>(self, shell: strata_net::Shell, listener: L)
    where
        L: strata_net::Listener,
        L::Connection: AsyncRead + AsyncWrite + Unpin,
    {
        let mut stopping = self.inner.stopping.clone();
        let stopped = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        strata_net::serve(&shell, listener, stopped, |stream, peer, _| {
            let server = self.clone();
            async move { server.connection(stream, peer).await }
        })
        .await;
    }

    async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        stream: S,
        peer: String,
    ) {
        let limit = self.inner.config.negotiation_timeout;
        let mut stopping = self.inner.stopping.clone();
        let negotiated = tokio::select! {
            negotiated = tokio::time::timeout(limit, self.negotiate(Box::new(stream))) => negotiated,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let (disk, session, stream) = match negotiated {
            Ok(Ok(Some(chosen))) => chosen,
            Ok(Ok(None)) => return,
            Ok(Err(err)) => {
                tracing::debug!(peer, error = %err, "nbd: negotiation ended");
                return;
            }
            Err(_) => {
                tracing::info!(peer, "nbd: negotiation timed out; closing");
                return;
            }
        };
        tracing::debug!(peer, vdisk = %disk.vdisk().name, tls = session.tls, "nbd: transmission");
        let name = disk.vdisk().name.clone();
        let (reader, writer) = tokio::io::split(stream);
        if let Err(err) = self.transmit(&disk, &session, reader, writer).await {
            tracing::debug!(peer, vdisk = %name, error = %err, "nbd: connection ended");
        }
        self.release(disk).await;
    }

    /// Drops a connection's hold on its disk, closing the disk when it was the last.
    async fn release(&self, disk: Arc<Disk>) {
        let mut disks = self.inner.disks.lock().await;
        if Arc::strong_count(&disk) > 1 {
            return;
        }
        let name = disk.vdisk().name.clone();
        disks.remove(&name);
        let Ok(disk) = Arc::try_unwrap(disk) else { return };
        // Closing under the lock: a new connection to the same disk waits for it, so two
        // sessions of one log never overlap.
        if let Err(err) = disk.close().await {
            tracing::error!(vdisk = %name, error = %err, "nbd: closing the disk failed");
        }
    }

    /// The open disk of `vdisk`, opening it when no connection holds it.
    async fn open(&self, vdisk: Vdisk) -> Result<Arc<Disk>> {
        let mut disks = self.inner.disks.lock().await;
        if let Some(disk) = disks.get(&vdisk.name).and_then(Weak::upgrade) {
            if disk.is_broken() {
                return Err(Error::Unavailable(format!(
                    "vdisk {}: its tlog failed; disconnect every client, then retry",
                    vdisk.name
                )));
            }
            return Ok(disk);
        }
        let disk = Arc::new(
            Disk::open(vdisk.clone(), self.inner.records.clone(), self.inner.config.disk()).await?,
        );
        disks.insert(vdisk.name, Arc::downgrade(&disk));
        Ok(disk)
    }

    async fn lookup(&self, name: String) -> Result<Option<Vdisk>> {
        let records = self.inner.records.clone();
        match tokio::task::spawn_blocking(move || records.get(&name)).await {
            Ok(Ok(vdisk)) => Ok(Some(vdisk)),
            Ok(Err(Error::NotFound(_))) => Ok(None),
            Ok(Err(err)) => Err(err),
            Err(err) => Err(Error::Unavailable(format!("record lookup: {err}"))),
        }
    }

    async fn list(&self) -> Result<Vec<Vdisk>> {
        let records = self.inner.records.clone();
        tokio::task::spawn_blocking(move || records.list())
            .await
            .map_err(|e| Error::Unavailable(format!("record listing: {e}")))?
    }

    /// Fixed newstyle negotiation: the greeting, then options, upgrading the stream to TLS
    /// on STARTTLS. Returns the chosen disk, what was negotiated and the stream to transmit
    /// on, or `None` when the client aborted.
    async fn negotiate(&self, mut stream: Conn) -> Result<Option<(Arc<Disk>, Session, Conn)>> {
        let mut hello = Vec::with_capacity(18);
        hello.extend_from_slice(&proto::NBD_MAGIC.to_be_bytes());
        hello.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
        hello
            .extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
        stream.write_all(&hello).await.map_err(net)?;
        stream.flush().await.map_err(net)?;
        let client_flags = stream.read_u32().await.map_err(net)?;
        if client_flags & !(proto::CLIENT_FIXED_NEWSTYLE | proto::CLIENT_NO_ZEROES) != 0 {
            return Err(Error::InvalidArgument(format!("unknown client flags {client_flags:#x}")));
        }
        let mut session = Session {
            no_zeroes: client_flags & proto::CLIENT_NO_ZEROES != 0,
            ..Session::default()
        };
        loop {
            match self.options(&mut stream, &mut session).await? {
                Chosen::Disk(disk) => return Ok(Some((disk, session, stream))),
                Chosen::Abort => return Ok(None),
                Chosen::StartTls => {
                    let Some(tls) = &self.inner.config.tls else {
                        return Err(Error::InvalidArgument("STARTTLS without TLS".into()));
                    };
                    let upgraded = tls.acceptor.accept(stream).await.map_err(net)?;
                    stream = Box::new(upgraded);
                    // Nothing negotiated before STARTTLS carries over.
                    session =
                        Session { no_zeroes: session.no_zeroes, tls: true, ..Session::default() };
                }
            }
        }
    }

    /// Answers options until the client chooses an export, aborts or starts TLS.
    async fn options(&self, w: &mut Conn, session: &mut Session) -> Result<Chosen> {
        let tls_required = self.inner.config.tls.as_ref().is_some_and(|t| t.required);
        loop {
            if w.read_u64().await.map_err(net)? != proto::IHAVEOPT {
                return Err(Error::InvalidArgument("option without IHAVEOPT magic".into()));
            }
            let option = w.read_u32().await.map_err(net)?;
            let length = w.read_u32().await.map_err(net)?;
            if length > MAX_OPTION {
                reply(w, option, rep::ERR_TOO_BIG, b"option data too long").await?;
                return Err(Error::InvalidArgument(format!("option of {length} bytes")));
            }
            let mut data = vec![0u8; length as usize];
            w.read_exact(&mut data).await.map_err(net)?;
            if *self.inner.stopping.borrow() {
                reply(w, option, rep::ERR_SHUTDOWN, b"the server is shutting down").await?;
                return Ok(Chosen::Abort);
            }
            if tls_required && !session.tls && !matches!(option, opt::STARTTLS | opt::ABORT) {
                if option == opt::EXPORT_NAME {
                    return Err(Error::InvalidArgument("EXPORT_NAME before STARTTLS".into()));
                }
                reply(w, option, rep::ERR_TLS_REQD, b"this server requires TLS: STARTTLS first")
                    .await?;
                continue;
            }
            match option {
                opt::ABORT => {
                    let _ = reply(w, option, rep::ACK, b"").await;
                    return Ok(Chosen::Abort);
                }
                opt::STARTTLS => {
                    let refusal = match (&self.inner.config.tls, session.tls) {
                        (None, _) => {
                            Some((rep::ERR_POLICY, "TLS is not configured on this server"))
                        }
                        (Some(_), true) => Some((rep::ERR_INVALID, "TLS is already up")),
                        (Some(_), false) if !data.is_empty() => {
                            Some((rep::ERR_INVALID, "STARTTLS takes no data"))
                        }
                        (Some(_), false) => None,
                    };
                    match refusal {
                        Some((kind, why)) => reply(w, option, kind, why.as_bytes()).await?,
                        None => {
                            reply(w, option, rep::ACK, b"").await?;
                            return Ok(Chosen::StartTls);
                        }
                    }
                }
                opt::LIST => {
                    if !data.is_empty() {
                        reply(w, option, rep::ERR_INVALID, b"LIST takes no data").await?;
                        continue;
                    }
                    match self.list().await {
                        Ok(vdisks) => {
                            for v in vdisks {
                                let mut item = (v.name.len() as u32).to_be_bytes().to_vec();
                                item.extend_from_slice(v.name.as_bytes());
                                reply(w, option, rep::SERVER, &item).await?;
                            }
                            reply(w, option, rep::ACK, b"").await?;
                        }
                        Err(err) => {
                            reply(w, option, rep::ERR_POLICY, err.to_string().as_bytes()).await?
                        }
                    }
                }
                opt::STRUCTURED_REPLY => {
                    if data.is_empty() {
                        session.structured = true;
                        reply(w, option, rep::ACK, b"").await?;
                    } else {
                        reply(w, option, rep::ERR_INVALID, b"STRUCTURED_REPLY takes no data")
                            .await?;
                    }
                }
                opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => {
                    self.meta_context(w, option, &data, session).await?;
                }
                opt::EXPORT_NAME => {
                    let name = String::from_utf8_lossy(&data).into_owned();
                    // No error reply is possible: an unknown export closes the connection.
                    let Some(vdisk) = self.lookup(name.clone()).await? else {
                        return Err(Error::NotFound(name));
                    };
                    let disk = self.open(vdisk).await?;
                    let mut answer = disk.vdisk().size.to_be_bytes().to_vec();
                    answer.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                    if !session.no_zeroes {
                        answer.extend_from_slice(&[0u8; 124]);
                    }
                    let sent = async {
                        w.write_all(&answer).await?;
                        w.flush().await
                    };
                    if let Err(err) = sent.await {
                        self.release(disk).await;
                        return Err(net(err));
                    }
                    session.export = Some(name);
                    return Ok(Chosen::Disk(disk));
                }
                opt::INFO | opt::GO => {
                    let Some((name, requests)) = parse_info(&data) else {
                        reply(w, option, rep::ERR_INVALID, b"malformed INFO/GO request").await?;
                        continue;
                    };
                    let Some(vdisk) = self.export(w, option, &name).await? else { continue };
                    let disk = if option == opt::GO {
                        match self.open(vdisk.clone()).await {
                            Ok(disk) => Some(disk),
                            Err(err) => {
                                tracing::warn!(vdisk = %vdisk.name, error = %err, "nbd: cannot open");
                                reply(w, option, rep::ERR_POLICY, err.to_string().as_bytes())
                                    .await?;
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    let described = self
                        .describe(w, option, disk.as_ref().map_or(&vdisk, |d| d.vdisk()), &requests)
                        .await;
                    match (disk, described) {
                        (Some(disk), Ok(())) => {
                            session.export = Some(name);
                            return Ok(Chosen::Disk(disk));
                        }
                        (None, Ok(())) => {}
                        (Some(disk), Err(err)) => {
                            self.release(disk).await;
                            return Err(err);
                        }
                        (None, Err(err)) => return Err(err),
                    }
                }
                _ => {
                    let why = format!("option {option} is not supported");
                    reply(w, option, rep::ERR_UNSUP, why.as_bytes()).await?;
                }
            }
        }
    }

    /// The vdisk an option names, or `None` after replying that it cannot be had.
    async fn export(&self, w: &mut Conn, option: u32, name: &str) -> Result<Option<Vdisk>> {
        match self.lookup(name.to_string()).await {
            Ok(Some(vdisk)) => Ok(Some(vdisk)),
            Ok(None) => {
                let why = format!("no vdisk named {name:?}");
                reply(w, option, rep::ERR_UNKNOWN, why.as_bytes()).await?;
                Ok(None)
            }
            Err(err) => {
                reply(w, option, rep::ERR_POLICY, err.to_string().as_bytes()).await?;
                Ok(None)
            }
        }
    }

    /// LIST_META_CONTEXT and SET_META_CONTEXT: the one context served is `base:allocation`.
    /// SET selects it for the export it names when a query names it exactly; LIST lists it
    /// for no query, `base:` or `base:allocation`. Other namespaces are ignored.
    async fn meta_context(
        &self,
        w: &mut Conn,
        option: u32,
        data: &[u8],
        session: &mut Session,
    ) -> Result<()> {
        let set = option == opt::SET_META_CONTEXT;
        if set {
            // Whatever happens next, earlier selections are gone.
            session.allocation_for = None;
        }
        if !session.structured {
            return reply(w, option, rep::ERR_INVALID, b"negotiate structured replies first").await;
        }
        let Some((name, queries)) = parse_meta_context(data) else {
            return reply(w, option, rep::ERR_INVALID, b"malformed metadata context request").await;
        };
        if self.export(w, option, &name).await?.is_none() {
            return Ok(());
        }
        let matches = if set {
            queries.iter().any(|q| q == allocation::CONTEXT)
        } else {
            queries.is_empty() || queries.iter().any(|q| q == "base:" || q == allocation::CONTEXT)
        };
        if matches {
            let id = if set { allocation::ID } else { 0 };
            let mut item = id.to_be_bytes().to_vec();
            item.extend_from_slice(allocation::CONTEXT.as_bytes());
            reply(w, option, rep::META_CONTEXT, &item).await?;
            if set {
                session.allocation_for = Some(name);
            }
        }
        reply(w, option, rep::ACK, b"").await
    }

    /// The replies to INFO or GO: the export, what the client asked for, and ACK.
    async fn describe<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        option: u32,
        vdisk: &Vdisk,
        requests: &[u16],
    ) -> Result<()> {
        let mut export = info::EXPORT.to_be_bytes().to_vec();
        export.extend_from_slice(&vdisk.size.to_be_bytes());
        export.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
        reply(w, option, rep::INFO, &export).await?;
        for &asked in requests {
            let mut item = asked.to_be_bytes().to_vec();
            match asked {
                info::NAME => item.extend_from_slice(vdisk.name.as_bytes()),
                info::DESCRIPTION => item.extend_from_slice(
                    format!("strata vdisk {} (tlog {})", vdisk.name, vdisk.tlog_id).as_bytes(),
                ),
                info::BLOCK_SIZE => {
                    item.extend_from_slice(&1u32.to_be_bytes());
                    item.extend_from_slice(&vdisk.block_size.to_be_bytes());
                    item.extend_from_slice(&self.inner.config.max_request.to_be_bytes());
                }
                _ => continue,
            }
            reply(w, option, rep::INFO, &item).await?;
        }
        reply(w, option, rep::ACK, b"").await
    }

    /// The transmission phase: requests in, one task each, replies out.
    async fn transmit<R, W>(
        &self,
        disk: &Arc<Disk>,
        session: &Session,
        mut reader: R,
        writer: W,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let structured = session.structured;
        let allocation = session.export.is_some() && session.allocation_for == session.export;
        let writer = Arc::new(Replies::new(writer));
        let budget = Arc::new(Semaphore::new(self.inner.config.max_in_flight as usize));
        let mut running = JoinSet::new();
        let mut stopping = self.inner.stopping.clone();
        let size = disk.vdisk().size;
        let max = self.inner.config.max_request;
        let outcome = loop {
            // Reap finished requests here, not in the select below: `read_exact` is not
            // cancellation safe, and only a shutdown may cut a header in half.
            while running.try_join_next().is_some() {}
            let mut header = [0u8; proto::Request::SIZE];
            tokio::select! {
                read = reader.read_exact(&mut header) => if let Err(err) = read { break Err(net(err)) },
                _ = stopping.wait_for(|s| *s) => break Ok(()),
            }
            let started = Instant::now();
            let Some(req) = proto::Request::parse(&header) else {
                break Err(Error::InvalidArgument("request with a bad magic".into()));
            };
            if req.kind == cmd::DISC {
                break Ok(());
            }
            let payload = if req.kind == cmd::WRITE {
                if req.length > max {
                    // Read the payload away so the stream stays in step, then refuse it.
                    let skipped = tokio::io::copy(
                        &mut (&mut reader).take(u64::from(req.length)),
                        &mut tokio::io::sink(),
                    )
                    .await;
                    if let Err(err) = skipped {
                        break Err(net(err));
                    }
                    let why = format!("write of {} bytes is over the limit of {max}", req.length);
                    answer(&writer, structured, req.cookie, Err(fail(errno::EINVAL, why))).await?;
                    self.inner.counters.metrics.observe(&req, Some(errno::EINVAL), started);
                    continue;
                }
                match read_payload(&mut reader, req.length as usize).await {
                    Ok(payload) => Some(payload),
                    Err(err) => break Err(net(err)),
                }
            } else {
                None
            };
            if let Some(refused) = refuse(&req, size, max, allocation) {
                let code = refused.errno;
                answer(&writer, structured, req.cookie, Err(refused)).await?;
                self.inner.counters.metrics.observe(&req, Some(code), started);
                continue;
            }
            let cost = req.length.clamp(1, self.inner.config.max_in_flight);
            let permit = match budget.clone().acquire_many_owned(cost).await {
                Ok(permit) => permit,
                Err(_) => break Ok(()),
            };
            let (disk, writer) = (disk.clone(), writer.clone());
            let counters = self.inner.counters.clone();
            running.spawn(async move {
                let result = execute(&disk, req, payload, structured).await;
                counters.count(&req, result.is_ok());
                let failed = result.as_ref().err().map(|f| f.errno);
                if let Err(Failed { errno, message }) = &result {
                    tracing::warn!(vdisk = %disk.vdisk().name, errno, message, "nbd: request failed");
                }
                let sent = answer(&writer, structured, req.cookie, result).await;
                counters.metrics.observe(&req, failed, started);
                drop(permit);
                sent
            });
        };
        while running.join_next().await.is_some() {}
        let _ = writer.stream.lock().await.shutdown().await;
        outcome
    }
}

/// A connection, plain or TLS.
type Conn = Box<dyn Stream>;

/// A byte stream a connection runs over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// What a connection negotiated.
#[derive(Debug, Default)]
struct Session {
    /// The client asked for no zeroes after EXPORT_NAME's reply.
    no_zeroes: bool,
    /// Structured replies were negotiated.
    structured: bool,
    /// The connection runs over TLS.
    tls: bool,
    /// The export `base:allocation` was last selected for, if any.
    allocation_for: Option<String>,
    /// The export chosen for transmission.
    export: Option<String>,
}

/// How option haggling ended.
enum Chosen {
    Disk(Arc<Disk>),
    StartTls,
    Abort,
}

/// Reads a WRITE's payload into a fresh buffer without zeroing it first.
async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    length: usize,
) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(length);
    while buf.len() < length {
        let want = (length - buf.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.freeze())
}

/// Why a request is refused before it runs, if it is.
fn refuse(req: &proto::Request, size: u64, max: u32, allocation: bool) -> Option<Failed> {
    let in_range = req.offset.checked_add(u64::from(req.length)).is_some_and(|e| e <= size);
    let past_end = || format!("{} bytes at {} go past the end ({size})", req.length, req.offset);
    match req.kind {
        cmd::READ if req.length > max => Some(fail(
            errno::EINVAL,
            format!("read of {} bytes is over the limit of {max}", req.length),
        )),
        cmd::WRITE | cmd::WRITE_ZEROES if !in_range => Some(fail(errno::ENOSPC, past_end())),
        cmd::READ | cmd::TRIM | cmd::CACHE | cmd::BLOCK_STATUS if !in_range => {
            Some(fail(errno::EINVAL, past_end()))
        }
        cmd::BLOCK_STATUS if !allocation => Some(fail(
            errno::EINVAL,
            format!("BLOCK_STATUS needs the {} metadata context selected", allocation::CONTEXT),
        )),
        cmd::CACHE if req.flags != 0 => {
            Some(fail(errno::EINVAL, format!("CACHE takes no flags ({:#x})", req.flags)))
        }
        cmd::READ
        | cmd::WRITE
        | cmd::FLUSH
        | cmd::TRIM
        | cmd::WRITE_ZEROES
        | cmd::CACHE
        | cmd::BLOCK_STATUS => None,
        other => Some(fail(errno::EINVAL, format!("command {other} is not supported"))),
    }
}

/// The largest option payload read.
const MAX_OPTION: u32 = 16 * 1024;

const TRANSMISSION_FLAGS: u16 = flag::HAS_FLAGS
    | flag::SEND_FLUSH
    | flag::SEND_FUA
    | flag::SEND_TRIM
    | flag::SEND_WRITE_ZEROES
    | flag::CAN_MULTI_CONN
    | flag::SEND_CACHE
    | flag::SEND_FAST_ZERO;

/// The bytes a read's buffer keeps free in front of the data for the reply's header: a
/// structured chunk header and the offset (28), or a simple reply (16, at the end of them).
const HEADROOM: usize = 28;

/// What a successful request sends back.
enum Done {
    /// Nothing but the reply header.
    Nothing,
    /// A read: the data at `offset`, after [`HEADROOM`] free bytes in the buffer.
    Data { offset: u64, buf: Vec<u8> },
    /// A BLOCK_STATUS: the `base:allocation` extents (length, flags).
    Extents(Vec<(u32, u32)>),
}

type Outcome = std::result::Result<Done, Failed>;

async fn execute(
    disk: &Disk,
    req: proto::Request,
    payload: Option<Bytes>,
    structured: bool,
) -> Outcome {
    let fua = req.flags & cmd_flag::FUA != 0;
    let (offset, length) = (req.offset, req.length);
    let nothing = |()| Done::Nothing;
    match req.kind {
        cmd::READ => {
            let buf = disk.read(offset, length, HEADROOM).await?;
            Ok(Done::Data { offset, buf })
        }
        cmd::WRITE => disk.write(offset, payload.unwrap_or_default(), fua).await.map(nothing),
        cmd::TRIM => disk.zero(offset, length, false, fua, false).await.map(nothing),
        cmd::WRITE_ZEROES => {
            let allocate = req.flags & cmd_flag::NO_HOLE != 0;
            let fast = req.flags & cmd_flag::FAST_ZERO != 0;
            disk.zero(offset, length, allocate, fua, fast).await.map(nothing)
        }
        cmd::FLUSH => disk.flush().await.map(nothing),
        cmd::CACHE => disk.cache(offset, length).await.map(nothing),
        cmd::BLOCK_STATUS if structured => {
            let one = req.flags & cmd_flag::REQ_ONE != 0;
            disk.extents(offset, length, one).await.map(Done::Extents)
        }
        other => Err(fail(errno::EINVAL, format!("command {other} is not supported"))),
    }
}

fn fail(errno: u32, message: String) -> Failed {
    Failed { errno, message }
}

/// The reply side of a connection, shared by its request tasks. Replies that are ready
/// together go out in one send: each is buffered, and only the last of those waiting for
/// the stream flushes it.
struct Replies<W> {
    /// The socket (or TLS stream), buffered.
    stream: Mutex<tokio::io::BufWriter<W>>,
    /// Replies ready and not yet buffered: each counts itself in before it waits for the
    /// stream, and out once buffered; the one that counts out last flushes, so every reply
    /// buffered is flushed after it by a reply that was waiting when it was buffered (or by
    /// itself).
    waiting: AtomicUsize,
}

impl<W: AsyncWrite> Replies<W> {
    /// Buffered sends of up to this many bytes gather small replies; larger ones (read
    /// data) go straight out.
    const BUFFER: usize = 64 << 10;

    fn new(stream: W) -> Replies<W> {
        Replies {
            stream: Mutex::new(tokio::io::BufWriter::with_capacity(Self::BUFFER, stream)),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Sends a request's reply: simple, or a structured chunk when negotiated (for reads,
/// BLOCK_STATUS and errors; other commands may always get simple replies).
async fn answer<W: AsyncWrite + Unpin>(
    writer: &Replies<W>,
    structured: bool,
    cookie: u64,
    outcome: Outcome,
) -> Result<()> {
    let mut small = Vec::new();
    let bytes: &[u8] = match outcome {
        Ok(Done::Data { offset, mut buf }) => {
            let data_len = buf.len() - HEADROOM;
            if structured && data_len == 0 {
                small.extend_from_slice(&proto::chunk_header(
                    chunk::FLAG_DONE,
                    chunk::NONE,
                    cookie,
                    0,
                ));
                &small
            } else if structured {
                let len = 8 + data_len as u32;
                buf[..20].copy_from_slice(&proto::chunk_header(
                    chunk::FLAG_DONE,
                    chunk::OFFSET_DATA,
                    cookie,
                    len,
                ));
                buf[20..28].copy_from_slice(&offset.to_be_bytes());
                small = buf;
                &small
            } else {
                buf[HEADROOM - 16..HEADROOM].copy_from_slice(&proto::simple_reply(0, cookie));
                small = buf;
                &small[HEADROOM - 16..]
            }
        }
        Ok(Done::Extents(extents)) => {
            let len = 4 + 8 * extents.len() as u32;
            small.extend_from_slice(&proto::chunk_header(
                chunk::FLAG_DONE,
                chunk::BLOCK_STATUS,
                cookie,
                len,
            ));
            small.extend_from_slice(&allocation::ID.to_be_bytes());
            for (length, flags) in extents {
                small.extend_from_slice(&length.to_be_bytes());
                small.extend_from_slice(&flags.to_be_bytes());
            }
            &small
        }
        Ok(Done::Nothing) => {
            small.extend_from_slice(&proto::simple_reply(0, cookie));
            &small
        }
        Err(Failed { errno, message }) if structured => {
            let message: String = message.chars().take(1024).collect();
            let len = 6 + message.len() as u32;
            small.extend_from_slice(&proto::chunk_header(
                chunk::FLAG_DONE,
                chunk::ERROR,
                cookie,
                len,
            ));
            small.extend_from_slice(&errno.to_be_bytes());
            small.extend_from_slice(&(message.len() as u16).to_be_bytes());
            small.extend_from_slice(message.as_bytes());
            &small
        }
        Err(Failed { errno, .. }) => {
            small.extend_from_slice(&proto::simple_reply(errno, cookie));
            &small
        }
    };
    writer.waiting.fetch_add(1, Ordering::SeqCst);
    let mut w = writer.stream.lock().await;
    let written = w.write_all(bytes).await;
    let last = writer.waiting.fetch_sub(1, Ordering::SeqCst) == 1;
    written.map_err(net)?;
    if last { w.flush().await.map_err(net) } else { Ok(()) }
}

async fn reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    option: u32,
    kind: u32,
    data: &[u8],
) -> Result<()> {
    w.write_all(&proto::option_reply(option, kind, data.len() as u32)).await.map_err(net)?;
    w.write_all(data).await.map_err(net)?;
    w.flush().await.map_err(net)
}

/// Parses LIST/SET_META_CONTEXT data: the export name and the queries.
fn parse_meta_context(data: &[u8]) -> Option<(String, Vec<String>)> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let len = u32_at(0)?;
    let name = std::str::from_utf8(data.get(4..4 + len)?).ok()?.to_string();
    let mut at = 4 + len;
    let n = u32_at(at)?;
    at += 4;
    let mut queries = Vec::new();
    for _ in 0..n {
        let len = u32_at(at)?;
        queries.push(std::str::from_utf8(data.get(at + 4..at + 4 + len)?).ok()?.to_string());
        at += 4 + len;
    }
    (at == data.len()).then_some((name, queries))
}

/// Parses INFO/GO data: the export name and the information types asked for.
fn parse_info(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(data.get(4..4 + len)?).ok()?.to_string();
    let rest = data.get(4 + len..)?;
    let n = u16::from_be_bytes(rest.get(0..2)?.try_into().ok()?) as usize;
    let items = rest.get(2..)?;
    if items.len() != 2 * n {
        return None;
    }
    Some((name, items.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()))
}

fn net(err: std::io::Error) -> Error {
    Error::Io { what: "nbd connection".into(), cause: err }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_requests_parse() {
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&info::BLOCK_SIZE.to_be_bytes());
        data.extend_from_slice(&info::NAME.to_be_bytes());
        assert_eq!(parse_info(&data), Some(("abc".into(), vec![info::BLOCK_SIZE, info::NAME])));
        assert_eq!(parse_info(&data[..data.len() - 1]), None);
        assert_eq!(parse_info(&[0, 0, 0, 9, b'a']), None);
    }

    /// Replies sent together from many tasks all reach the peer, whole, with none left in
    /// the buffer: the last one waiting flushes for the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_sent_together_are_all_flushed() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let replies = Arc::new(Replies::new(near));
        let mut tasks = JoinSet::new();
        for cookie in 0..500u64 {
            let replies = replies.clone();
            tasks.spawn(async move { answer(&replies, false, cookie, Ok(Done::Nothing)).await });
        }
        while let Some(sent) = tasks.join_next().await {
            sent.unwrap().unwrap();
        }
        // Nothing is flushed after the last answer returned: what the peer can read now is
        // all there is.
        let mut got = vec![0u8; 500 * 16];
        let read = tokio::time::timeout(Duration::from_secs(10), far.read_exact(&mut got));
        read.await.expect("every reply flushed").unwrap();
        let mut cookies: Vec<u64> = got
            .chunks(16)
            .map(|reply| {
                assert_eq!(reply[..8], proto::simple_reply(0, 0)[..8], "magic and no error");
                u64::from_be_bytes(reply[8..].try_into().unwrap())
            })
            .collect();
        cookies.sort_unstable();
        assert_eq!(cookies, (0..500).collect::<Vec<_>>());
        assert_eq!(replies.waiting.load(Ordering::SeqCst), 0);
    }
}
