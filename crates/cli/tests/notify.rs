//! systemd readiness (`Type=notify`): `strata serve` and `strata snapshotter` say READY=1 on
//! `NOTIFY_SOCKET` once they listen, and STOPPING=1 when SIGTERM starts their shutdown. The
//! test plays the service manager: it binds the datagram socket and reads what comes.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::util::Strata;

/// The service manager's end: a datagram socket the child is pointed at.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    fn bind(path: &Path) -> anyhow::Result<Manager> {
        let socket = UnixDatagram::bind(path)?;
        // Generous: two shared cores, and serve opens every store before it is ready.
        socket.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Manager { socket })
    }

    /// The next notification's `KEY=VALUE` lines.
    fn next(&self, waiting_for: &str) -> anyhow::Result<Vec<String>> {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).with_context(|| format!("waiting for {waiting_for}"))?;
        Ok(String::from_utf8(buf[..n].to_vec())?.lines().map(str::to_string).collect())
    }
}

fn sigterm(child: &Child) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id())?;
    #[allow(unsafe_code, reason = "sending a signal to our own child")]
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    ensure!(sent == 0, "kill failed");
    Ok(())
}

/// Waits for READY=1 and returns the notification's lines; on a timeout, kills `child` and
/// fails with what it logged.
fn ready(manager: &Manager, child: &mut Child) -> anyhow::Result<Vec<String>> {
    let lines = match manager.next("READY=1") {
        Ok(lines) => lines,
        Err(err) => {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
            }
            let _ = child.wait();
            return Err(err.context(stderr));
        }
    };
    ensure!(lines.iter().any(|l| l == "READY=1"), "{lines:?}");
    Ok(lines)
}

/// Sends SIGTERM, expects STOPPING=1, then a clean exit.
fn stop(manager: &Manager, child: Child) -> anyhow::Result<()> {
    sigterm(&child)?;
    let stopping = manager.next("STOPPING=1")?;
    ensure!(stopping.iter().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "exited with {}: {stderr}", output.status);
    Ok(())
}

#[test]
fn serve_notifies_ready_then_stopping() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let manager = Manager::bind(&strata.dir.path().join("notify.sock"))?;
    let mut server = strata
        .command()
        .env("NOTIFY_SOCKET", strata.dir.path().join("notify.sock"))
        .args(["serve", "--tlog-listen", "127.0.0.1:0", "--ckpt-listen", "127.0.0.1:0"])
        .args(["--hub-listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()?;
    let ready = ready(&manager, &mut server)?;
    let status = ready.iter().find_map(|l| l.strip_prefix("STATUS=")).unwrap_or_default();
    ensure!(status.starts_with("serving: tlog 127.0.0.1:"), "{ready:?}");
    // Ready means listening: every service accepts connections already, with no retries.
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(strata.dir.path().join("run/status.json"))?)?;
    let services = &published["services"];
    for name in ["tlog", "ckpt", "hub", "nbd"] {
        let address = services[name]["address"].as_str().unwrap_or_default();
        ensure!(status.contains(&format!("{name} {address}")), "{status} lacks {name}");
        std::net::TcpStream::connect(address).with_context(|| format!("{name} at {address}"))?;
    }
    let socket = services["snapshotter"]["socket"].as_str().unwrap_or_default();
    UnixStream::connect(socket).with_context(|| format!("snapshotter at {socket}"))?;
    stop(&manager, server)
}

#[test]
fn snapshotter_notifies_ready_then_stopping() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let dir = strata.dir.path();
    let manager = Manager::bind(&dir.join("notify.sock"))?;
    let socket = dir.join("snapshotter.sock");
    let mut server = strata
        .command()
        .env("NOTIFY_SOCKET", dir.join("notify.sock"))
        .arg("snapshotter")
        .arg("--socket")
        .arg(&socket)
        .arg("--root")
        .arg(dir.join("root"))
        .stderr(Stdio::piped())
        .spawn()?;
    ready(&manager, &mut server)?;
    UnixStream::connect(&socket).context("the snapshotter's socket after READY=1")?;
    stop(&manager, server)
}
