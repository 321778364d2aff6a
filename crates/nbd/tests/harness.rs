//! The test environment: a tlog server (segment store, no key) and an NBD server on one
//! runtime in this process, vdisk records in a temporary data directory; qemu's tools as
//! clients; and a raw NBD client for checking exact replies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use strata_nbd::restore::{self, Bound};
use strata_nbd::{Listen, NbdServer, Records, ServerConfig, Vdisk};
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;
use tokio::sync::oneshot;

/// Servers running until [`Env::stop`] or drop.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub records: Records,
    pub nbd: SocketAddr,
    pub socket: PathBuf,
    pub server: NbdServer,
    runtime: tokio::runtime::Runtime,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Env {
    pub fn start() -> anyhow::Result<Env> {
        Env::start_with(ServerConfig::default())
    }

    /// Starts with `config` (its tlog servers replaced by the one started here).
    pub fn start_with(config: ServerConfig) -> anyhow::Result<Env> {
        Env::start_tlog(config, false)
    }

    /// Starts with disks journaling to the tlog server in-process, through its local
    /// connector (as in `strata serve`), with no tlog server address given at all.
    pub fn start_local() -> anyhow::Result<Env> {
        Env::start_local_with(ServerConfig::default())
    }

    /// Like [`Env::start_local`], with `config`.
    pub fn start_local_with(config: ServerConfig) -> anyhow::Result<Env> {
        Env::start_tlog(config, true)
    }

    fn start_tlog(config: ServerConfig, local: bool) -> anyhow::Result<Env> {
        strata_testkit::ensure_program("qemu-img", "qemu-utils")?;
        strata_testkit::ensure_program("qemu-io", "qemu-utils")?;
        strata_testkit::ensure_program("qemu-nbd", "qemu-utils")?;
        let tmp = tempfile::tempdir()?;
        let records = Records::embedded(tmp.path());
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let socket = tmp.path().join("nbd.sock");
        let storage: Arc<dyn Storage> = Arc::new(SegmentStore::open(&tmp.path().join("tlog"))?);
        let (tlog_stop, tlog_stopped) = oneshot::channel::<()>();
        let (nbd_stop, nbd_stopped) = oneshot::channel::<()>();
        let (nbd, server, tasks) = runtime.block_on(async {
            let tlog_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let tlog_addr = tlog_listener.local_addr()?;
            let tlog_config = strata_tlog::server::ServerConfig::default();
            let tlog_server = strata_tlog::server::Server::new(tlog_config, storage)?;
            let connector = tlog_server.local();
            let tlog = tokio::spawn(async move {
                let stop = async {
                    let _ = tlog_stopped.await;
                };
                if let Err(err) = tlog_server.serve(tlog_listener, stop).await {
                    eprintln!("tlog server failed: {err}");
                }
            });
            let config = match local {
                true => {
                    ServerConfig { tlog_servers: Vec::new(), tlog_local: Some(connector), ..config }
                }
                false => ServerConfig { tlog_servers: vec![tlog_addr.to_string()], ..config },
            };
            let server = NbdServer::new(records.clone(), config)?;
            let kept = server.clone();
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let nbd = tcp.local_addr()?;
            let unix = tokio::net::UnixListener::bind(&socket)?;
            let listeners = vec![Listen::Tcp(tcp), Listen::Unix(unix, socket.clone())];
            let served = tokio::spawn(async move {
                let stop = async {
                    let _ = nbd_stopped.await;
                };
                if let Err(err) = server.serve(listeners, stop).await {
                    eprintln!("nbd server failed: {err}");
                }
            });
            anyhow::Ok((nbd, kept, vec![served, tlog]))
        })?;
        let stops = vec![nbd_stop, tlog_stop];
        Ok(Env { tmp, records, nbd, socket, server, runtime, stops, tasks })
    }

    /// Stops the NBD server (flushing every disk), then the tlog server.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        for (stop, task) in self.stops.drain(..).zip(self.tasks.drain(..)) {
            let _ = stop.send(());
            self.runtime.block_on(task)?;
        }
        Ok(())
    }

    /// Stops only the tlog server (the second one started).
    pub fn stop_tlog(&mut self) -> anyhow::Result<()> {
        if let (Some(stop), Some(task)) = (self.stops.pop(), self.tasks.pop()) {
            let _ = stop.send(());
            self.runtime.block_on(task)?;
        }
        Ok(())
    }

    pub fn create(&self, name: &str, size: u64) -> anyhow::Result<Vdisk> {
        Ok(self.records.create(name, size, 4096)?)
    }

    pub fn uri(&self, name: &str) -> String {
        format!("nbd://{}/{name}", self.nbd)
    }

    /// The log's storage, read-only (works beside the running server).
    pub fn log(&self) -> anyhow::Result<SegmentStore> {
        Ok(SegmentStore::open_read_only(&self.tmp.path().join("tlog"))?)
    }

    /// The last durable sequence of `vdisk`'s log.
    pub fn last_sequence(&self, vdisk: &Vdisk) -> anyhow::Result<Option<u64>> {
        Ok(self.log()?.list(&vdisk.tlog_id)?.last().map(|s| s.header.last_sequence))
    }

    /// Restores `name` from the log into `new`.
    pub fn restore(&self, name: &str, bound: Bound, new: &str) -> anyhow::Result<Vdisk> {
        let log = self.log()?;
        Ok(restore::restore(&self.records, &log, None, name, bound, Some(new), |_| {})?)
    }

    /// Restores `name` from the log in place.
    pub fn restore_in_place(&self, name: &str) -> anyhow::Result<Vdisk> {
        let log = self.log()?;
        Ok(restore::restore(&self.records, &log, None, name, Bound::default(), None, |_| {})?)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs a program; fails with its output unless it succeeds.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = output(program, args)?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn output(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    Command::new(program).args(args).output().with_context(|| format!("run {program}"))
}

/// Runs qemu-io commands on `target` and checks none failed.
pub fn qemu_io(target: &str, commands: &[&str]) -> anyhow::Result<String> {
    let mut args = vec!["-f", "raw"];
    for c in commands {
        args.push("-c");
        args.push(c);
    }
    args.push(target);
    let out = run("qemu-io", &args)?;
    ensure!(
        !out.contains("failed") && !out.contains("error"),
        "qemu-io {commands:?} reported a failure:\n{out}"
    );
    Ok(out)
}

/// A raw file of `size` bytes: random data in random runs, with holes between.
pub fn random_image(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut file = std::fs::File::create(path)?;
    file.set_len(size)?;
    let mut at = 0u64;
    use std::io::Seek;
    while at < size {
        let run = rng.u64(1..=256 * 1024).min(size - at);
        if rng.bool() {
            let mut data = vec![0u8; run as usize];
            rng.fill(&mut data);
            file.seek(std::io::SeekFrom::Start(at))?;
            file.write_all(&data)?;
        }
        at += run;
    }
    file.sync_all()?;
    Ok(())
}

/// A raw NBD client speaking fixed newstyle with NBD_OPT_GO and simple replies.
pub struct RawClient {
    stream: TcpStream,
    pub size: u64,
    pub flags: u16,
}

/// An option reply: type and data.
pub type OptionReply = (u32, Vec<u8>);

impl RawClient {
    /// Connects and reads the greeting; returns before any option.
    pub fn hello(addr: SocketAddr) -> anyhow::Result<TcpStream> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        let mut greeting = [0u8; 18];
        stream.read_exact(&mut greeting)?;
        ensure!(&greeting[0..8] == b"NBDMAGIC" && &greeting[8..16] == b"IHAVEOPT", "bad greeting");
        stream.write_all(&3u32.to_be_bytes())?; // fixed newstyle, no zeroes
        Ok(stream)
    }

    /// Sends an option and reads replies up to an ACK or an error.
    pub fn option(
        stream: &mut TcpStream,
        option: u32,
        data: &[u8],
    ) -> anyhow::Result<Vec<OptionReply>> {
        let mut msg = b"IHAVEOPT".to_vec();
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        stream.write_all(&msg)?;
        let mut replies = Vec::new();
        loop {
            let mut head = [0u8; 20];
            stream.read_exact(&mut head)?;
            ensure!(head[0..8] == 0x0003_e889_0455_65a9u64.to_be_bytes(), "bad option reply magic");
            let kind = u32::from_be_bytes(head[12..16].try_into()?);
            let len = u32::from_be_bytes(head[16..20].try_into()?) as usize;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body)?;
            replies.push((kind, body));
            if kind == 1 || kind >= 1 << 31 {
                return Ok(replies);
            }
        }
    }

    /// Connects to export `name` with NBD_OPT_GO.
    pub fn go(addr: SocketAddr, name: &str) -> anyhow::Result<RawClient> {
        let mut stream = RawClient::hello(addr)?;
        let replies = RawClient::option(&mut stream, 7, &go_data(name))?;
        let (kind, _) = replies.last().context("no reply")?;
        ensure!(*kind == 1, "GO {name} refused: {replies:?}");
        let export =
            replies.iter().find(|(k, d)| *k == 3 && d[0..2] == [0, 0]).context("no export info")?;
        let size = u64::from_be_bytes(export.1[2..10].try_into()?);
        let flags = u16::from_be_bytes(export.1[10..12].try_into()?);
        Ok(RawClient { stream, size, flags })
    }

    /// The raw stream, for tests that write requests themselves.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends a request (with `data` for a write) and returns the reply's error and data.
    pub fn request(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        length: u32,
        data: &[u8],
    ) -> anyhow::Result<(u32, Vec<u8>)> {
        let mut msg = 0x2560_9513u32.to_be_bytes().to_vec();
        msg.extend_from_slice(&flags.to_be_bytes());
        msg.extend_from_slice(&kind.to_be_bytes());
        msg.extend_from_slice(&42u64.to_be_bytes());
        msg.extend_from_slice(&offset.to_be_bytes());
        msg.extend_from_slice(&length.to_be_bytes());
        msg.extend_from_slice(data);
        self.stream.write_all(&msg)?;
        let mut head = [0u8; 16];
        self.stream.read_exact(&mut head)?;
        ensure!(head[0..4] == 0x6744_6698u32.to_be_bytes(), "bad reply magic");
        ensure!(head[8..16] == 42u64.to_be_bytes(), "wrong cookie");
        let error = u32::from_be_bytes(head[4..8].try_into()?);
        let mut body = Vec::new();
        if kind == 0 && error == 0 {
            body = vec![0u8; length as usize];
            self.stream.read_exact(&mut body)?;
        }
        Ok((error, body))
    }
}

/// The data of NBD_OPT_GO/INFO for `name`, asking for the block size.
pub fn go_data(name: &str) -> Vec<u8> {
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&1u16.to_be_bytes());
    data.extend_from_slice(&3u16.to_be_bytes());
    data
}
