//! Running the `strata` binary in a temporary data directory.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context;
use strata_testkit::{ServerProcess, free_port, wait_until};

/// A data directory and a way to run `strata` on it.
pub struct Strata {
    pub dir: tempfile::TempDir,
}

impl Strata {
    pub fn new() -> anyhow::Result<Strata> {
        Ok(Strata { dir: tempfile::tempdir()? })
    }

    /// A `strata` command with `--data-dir` set and the environment cleared of strata's
    /// variables (and of a service manager's `NOTIFY_SOCKET`).
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command.arg("--data-dir").arg(self.dir.path());
        for variable in ["STRATA_CONFIG", "STRATA_LOG", "STRATA_LOG_FORMAT", "NOTIFY_SOCKET"] {
            command.env_remove(variable);
        }
        command
    }

    /// Runs `strata ARGS` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.command().args(args).output()?)
    }

    /// Runs `strata ARGS`, requires success, and returns standard output.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.run(args)?;
        anyhow::ensure!(
            output.status.success(),
            "strata {args:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Runs `strata ARGS`, requires success, and parses standard output as JSON.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.ok(args)?)?)
    }
}

/// Starts a server with `start` on a free port until it is up: a port found free can be
/// taken by another test's server before this one binds it, so a server that exits early
/// is started again on another port (three tries; the last error carries its log).
pub fn start_on_free_port<T>(mut start: impl FnMut(u16) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut last = None;
    for _ in 0..3 {
        match start(free_port()?) {
            Ok(started) => return Ok(started),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no try")))
}

/// Waits until `ready`, or fails with the server's log when it exits first.
pub fn wait_ready(
    process: &mut ServerProcess,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    wait_until("the server", Duration::from_secs(20), || {
        process.check_running()?;
        Ok(ready())
    })
    .with_context(|| std::fs::read_to_string(log).unwrap_or_default())
}

/// `strata serve` on free ports; returns the process and the NBD address.
pub fn serve(strata: &Strata, log: &str) -> anyhow::Result<(ServerProcess, String)> {
    start_on_free_port(|nbd| serve_on(strata, log, nbd))
}

pub fn serve_on(strata: &Strata, log: &str, nbd: u16) -> anyhow::Result<(ServerProcess, String)> {
    let (tlog, ckpt) = (free_port()?, free_port()?);
    let mut command = strata.command();
    command.args([
        "serve",
        "--tlog-listen",
        &format!("127.0.0.1:{tlog}"),
        "--ckpt-listen",
        &format!("127.0.0.1:{ckpt}"),
        "--nbd-listen",
        &format!("127.0.0.1:{nbd}"),
        "--hub-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--snapshotter-socket",
        &strata.dir.path().join(format!("{log}.sock")).to_string_lossy(),
    ]);
    let log = strata.dir.path().join(log);
    let mut process = ServerProcess::spawn("strata serve", command, &log)?;
    let addr = format!("127.0.0.1:{nbd}");
    wait_ready(&mut process, &log, || std::net::TcpStream::connect(&addr).is_ok())?;
    Ok((process, addr))
}

/// Runs a qemu tool (`qemu-img`, `qemu-io`) and returns its output; an exit status or a
/// "failed" line in its output is an error with both streams.
pub fn qemu(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out =
        Command::new(program).args(args).output().with_context(|| format!("run {program}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success() && !text.contains("failed"),
        "{program} {args:?}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// Requires two raw images (files or nbd:// URIs) to hold the same bytes (`qemu-img compare`).
pub fn identical(a: &str, b: &str) -> anyhow::Result<()> {
    let out = qemu("qemu-img", &["compare", "-f", "raw", "-F", "raw", a, b])?;
    anyhow::ensure!(out.contains("Images are identical"), "{a} vs {b}: {out}");
    Ok(())
}
