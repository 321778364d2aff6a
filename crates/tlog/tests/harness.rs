//! Test helpers for the server and client: an in-process server on a free port with its own
//! segment store, a raw protocol client for checking exact answers, and a cutting proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_tlog::frame::FrameReader;
use strata_tlog::message::{
    Block, Command, HandshakeRequest, HandshakeResponse, MessageType, Response,
};
use strata_tlog::server::{LocalConnector, ServerConfig};
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;
use strata_tlog::version::Version;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A server running in this process until dropped (or [`Server::stop`]ped).
pub struct Server {
    pub addr: SocketAddr,
    pub storage: Arc<dyn Storage>,
    /// Attaches clients in this process without TCP.
    pub local: LocalConnector,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts a server on a fresh segment store in `dir`.
    pub async fn start(dir: &Path, config: ServerConfig) -> anyhow::Result<Server> {
        let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(dir)?);
        Server::on(storage, config).await
    }

    /// Starts a server on `storage` (shared with other servers, as a cluster store is).
    pub async fn on(storage: Arc<dyn Storage>, config: ServerConfig) -> anyhow::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let server = strata_tlog::server::Server::new(config, storage.clone())?;
        let local = server.local();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = server.serve(listener, shutdown).await {
                panic!("server failed: {err}");
            }
        });
        Ok(Server { addr, storage, local, stop: Some(stop), task: Some(task) })
    }

    /// Stops cleanly: connections close, buffered blocks are flushed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await?;
        }
        Ok(())
    }

    /// Dies abruptly: the task is aborted, nothing more is flushed.
    pub fn crash(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Small flushes, quickly, for tests: every `flush_size` blocks, for clients of either
/// transport.
pub fn config(flush_size: usize) -> ServerConfig {
    ServerConfig {
        flush_size,
        local_flush_size: flush_size,
        flush_time: Duration::from_secs(60),
        ..ServerConfig::default()
    }
}

/// A client that speaks the protocol by hand, to check the server's exact answers.
pub struct Raw {
    reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Raw> {
        let (read, writer) = TcpStream::connect(addr).await?.into_split();
        Ok(Raw { reader: FrameReader::new(read), writer })
    }

    /// Connects and handshakes; fails unless the server says OK.
    pub async fn attach(
        addr: SocketAddr,
        vdisk: &str,
        first: u64,
        reset: bool,
    ) -> anyhow::Result<Raw> {
        let mut raw = Raw::connect(addr).await?;
        let status = raw.handshake(Version::CURRENT.0, vdisk, first, reset).await?;
        anyhow::ensure!(status == 1, "handshake status {status}");
        Ok(raw)
    }

    pub async fn handshake(
        &mut self,
        version: u32,
        vdisk: &str,
        first: u64,
        reset: bool,
    ) -> anyhow::Result<i8> {
        let request = HandshakeRequest {
            version,
            vdisk_id: vdisk.into(),
            first_sequence: first,
            reset_first_sequence: reset,
        };
        self.writer.write_all(&request.encode()).await?;
        let answer = self.message().await?.ok_or_else(|| anyhow::anyhow!("closed in handshake"))?;
        Ok(HandshakeResponse::decode(&answer)?.status)
    }

    /// Sends `bytes` as the handshake and returns the status answered.
    pub async fn raw_handshake(&mut self, bytes: &[u8]) -> anyhow::Result<i8> {
        self.writer.write_all(bytes).await?;
        let answer = self.message().await?.ok_or_else(|| anyhow::anyhow!("closed in handshake"))?;
        Ok(HandshakeResponse::decode(&answer)?.status)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).await?;
        Ok(())
    }

    pub async fn block(&mut self, block: &Block) -> anyhow::Result<()> {
        let mut frame = vec![MessageType::Block as u8];
        frame.extend_from_slice(&block.encode());
        self.send_raw(&frame).await
    }

    pub async fn command(&mut self, kind: MessageType, sequence: u64) -> anyhow::Result<()> {
        let mut frame = vec![kind as u8];
        frame.extend_from_slice(&Command { kind: kind as u8, sequence }.encode());
        self.send_raw(&frame).await
    }

    /// The next response, failing after five seconds.
    pub async fn response(&mut self) -> anyhow::Result<Response> {
        let bytes = self.message().await?.ok_or_else(|| anyhow::anyhow!("connection closed"))?;
        Ok(Response::decode(&bytes)?)
    }

    /// Reads responses until one satisfies `wanted` (each read fails after five seconds).
    pub async fn until(&mut self, wanted: impl Fn(&Response) -> bool) -> anyhow::Result<Response> {
        loop {
            let response = self.response().await?;
            if wanted(&response) {
                return Ok(response);
            }
        }
    }

    async fn message(&mut self) -> anyhow::Result<Option<Bytes>> {
        Ok(tokio::time::timeout(Duration::from_secs(5), self.reader.message()).await??)
    }

    /// True when the server closed the connection (within five seconds).
    pub async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.reader.message()).await,
            Ok(Ok(None) | Err(_))
        )
    }
}

/// A block of 4 KiB at `seq * 4096`, its bytes derived from the sequence.
pub fn block(seq: u64) -> Block {
    Block::write(seq, seq * 4096, data(seq), 1_000 + seq)
}

pub fn data(seq: u64) -> Bytes {
    let mut bytes = vec![0u8; 4096];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (seq as usize * 31 + i * 7) as u8;
    }
    Bytes::from(bytes)
}

/// The image a full replay of `vdisk` makes, read back.
pub fn replayed(
    storage: &dyn Storage,
    vdisk: &str,
    key: Option<&strata_tlog::aggregate::Key>,
) -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let image = dir.path().join("image");
    let bounds = strata_tlog::player::Bounds::default();
    strata_tlog::player::replay(storage, vdisk, key, bounds, &image, |_| {})?;
    Ok(std::fs::read(&image)?)
}

/// Every sequence stored for `vdisk`, from the storage's aggregate headers.
pub fn stored_sequences(storage: &dyn Storage, vdisk: &str) -> anyhow::Result<Vec<u64>> {
    let mut all = Vec::new();
    for stored in storage.list(vdisk)? {
        all.extend(stored.header.first_sequence..=stored.header.last_sequence);
    }
    Ok(all)
}

/// A TCP proxy to `target` whose connections can be cut on demand.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (mut a, mut b) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Ok(Proxy { addr, cut })
    }

    /// Cuts every open connection.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
