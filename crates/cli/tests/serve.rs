//! `strata serve`: starts on embedded defaults and stops cleanly on signals.

use std::time::Duration;

use anyhow::ensure;

use crate::util::Strata;

/// Runs `strata serve`, checks every service answers, and stops it with `signal`. With
/// `tlog_from_config` the tlog's address comes from `[tlog] listen`, not from a flag, and
/// the hub serves https with `hub.tls_cert` and `hub.tls_key`.
fn serve_then_signal(signal: i32, tlog_from_config: bool) -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let mut command = strata.command();
    command.arg("serve");
    let configured = if tlog_from_config {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = strata.dir.path().join("strata.toml");
        strata_testkit::make_certificates(strata.dir.path())?;
        let (cert, key) =
            (strata.dir.path().join("server.pem"), strata.dir.path().join("server.key"));
        std::fs::write(
            &config,
            format!(
                "[tlog]\nlisten = \"127.0.0.1:{port}\"\n[hub]\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
            ),
        )?;
        command.arg("--config").arg(config);
        Some(format!("127.0.0.1:{port}"))
    } else {
        command.args(["--tlog-listen", "127.0.0.1:0"]);
        None
    };
    let server = command
        .args([
            "--ckpt-listen",
            "127.0.0.1:0",
            "--hub-listen",
            "127.0.0.1:0",
            "--nbd-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    strata_testkit::wait_until("strata serve", Duration::from_secs(10), || {
        Ok(strata.dir.path().join("kv.redb").exists())
    })?;
    strata_testkit::wait_until("run/status.json", Duration::from_secs(10), || {
        Ok(strata.dir.path().join("run/status.json").exists())
    })?;
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(strata.dir.path().join("run/status.json"))?)?;
    ensure!(status["state"] == "serving" && status["pid"] == server.id(), "{status}");
    // Every service answers where the status says it is.
    let socket = status["services"]["snapshotter"]["socket"].as_str().unwrap_or_default();
    let tlog = status["services"]["tlog"]["address"].as_str().unwrap_or_default();
    let ckpt = status["services"]["ckpt"]["address"].as_str().unwrap_or_default();
    if let Some(configured) = &configured {
        ensure!(tlog == configured, "tlog on {tlog}, not on tlog.listen {configured}");
    }
    strata_testkit::wait_until("services", Duration::from_secs(10), || {
        Ok(std::os::unix::net::UnixStream::connect(socket).is_ok()
            && std::net::TcpStream::connect(tlog).is_ok())
    })?;
    // The checkpoint service answers HEAD / with 204 when it is up.
    let mut http = std::net::TcpStream::connect(ckpt)?;
    std::io::Write::write_all(
        &mut http,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut http, &mut answer)?;
    ensure!(answer.starts_with("HTTP/1.1 204"), "ckpt answered {answer:?}");
    // The hub speaks https when configured to: plain HTTP is told so.
    let hub = status["services"]["hub"]["address"].as_str().unwrap_or_default();
    let mut http = std::net::TcpStream::connect(hub)?;
    std::io::Write::write_all(
        &mut http,
        b"GET /openapi.yaml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut http, &mut answer)?;
    let https_only = answer.starts_with("HTTP/1.1 400") && answer.contains("https only");
    ensure!(https_only == configured.is_some(), "hub answered {answer:?}");
    let scheme = if configured.is_some() { "https" } else { "http" };
    let url = status["services"]["hub"]["url"].as_str().unwrap_or_default();
    ensure!(url == format!("{scheme}://{hub}"), "the status names the hub's url as {url:?}");
    let pid = libc::pid_t::try_from(server.id())?;
    #[allow(unsafe_code, reason = "sending a signal to our own child")]
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let sent = unsafe { libc::kill(pid, signal) };
    ensure!(sent == 0, "kill failed");
    let output = server.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "serve exited with {}: {stderr}", output.status);
    ensure!(stderr.contains("shutting down") && stderr.contains("stopped"), "{stderr}");
    let status = std::fs::read_to_string(strata.dir.path().join("run/status.json"))?;
    ensure!(status.contains("stopped"), "{status}");
    // The store must be free for the next process.
    ensure!(strata.ok(&["kv", "ls"])?.is_empty());
    Ok(())
}

#[test]
fn serve_stops_cleanly_on_sigterm() -> anyhow::Result<()> {
    serve_then_signal(libc::SIGTERM, false)
}

/// Also: the tlog listens where `[tlog] listen` says when no flag overrides it.
#[test]
fn serve_stops_cleanly_on_sigint() -> anyhow::Result<()> {
    serve_then_signal(libc::SIGINT, true)
}
