//! A real etcd for tests: one member, its own data directory, free loopback ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

use crate::process::{ServerProcess, ensure_program, free_port, wait_until};

/// A running etcd server; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Etcd {
    process: ServerProcess,
    port: u16,
    /// The data directory, removed on drop after the process is gone.
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Installs etcd if needed (Debian `etcd-server`) and starts it. Limits are raised above
    /// etcd's defaults (`--max-txn-ops 20000`, 32 MiB requests) so tests can run large
    /// transactions; the defaults are tested by configuring the client's `max_txn_ops`.
    pub fn start() -> anyhow::Result<Etcd> {
        ensure_program("etcd", "etcd-server")?;
        let mut last = None;
        for _ in 0..3 {
            match Etcd::try_start() {
                Ok(etcd) => return Ok(etcd),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn try_start() -> anyhow::Result<Etcd> {
        let dir = crate::process::scratch_dir("strata-etcd-")?;
        let (port, peer) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new("etcd");
        command
            .args(["--name", "strata-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("strata-test={peer}")])
            .args(["--max-txn-ops", "20000", "--max-request-bytes", "33554432"])
            .args(["--quota-backend-bytes", "8589934592", "--logger", "zap"])
            .args(["--log-level", "warn"]);
        let log = dir.path().join("etcd.log");
        let mut process = ServerProcess::spawn("etcd", command, &log)?;
        let ready = wait_until("etcd", Duration::from_secs(20), || {
            process.check_running()?;
            Ok(healthy(port))
        });
        if let Err(err) = ready {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(err).context(format!("etcd log:\n{output}"));
        }
        Ok(Etcd { process, port, dir })
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id, for tests that kill it.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// One etcd for the whole test process, started on first use. Tests share it by using
/// distinct key prefixes.
pub fn shared_etcd() -> &'static Etcd {
    static ETCD: OnceLock<Etcd> = OnceLock::new();
    ETCD.get_or_init(|| Etcd::start().unwrap_or_else(|err| panic!("cannot start etcd: {err:#}")))
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}
