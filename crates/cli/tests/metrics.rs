//! `strata serve`'s metrics and health endpoint: real traffic on every service (NBD writes
//! through qemu-io, a checkpoint request, snapshotter gRPC calls, a hub push and pull), then
//! a plain HTTP scrape whose series must have moved.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use hyper_util::rt::TokioIo;
use strata_snapshots::grpc::proto::snapshots_client::SnapshotsClient;
use strata_snapshots::grpc::proto::{PrepareSnapshotRequest, StatSnapshotRequest};
use strata_testkit::{ServerProcess, ensure_program, free_port, wait_until};
use tonic::transport::Endpoint;

use crate::util::Strata;

/// `GET path` (or another `method`) over a fresh connection: the status and the body.
fn http(addr: &str, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.split(' ').nth(1).unwrap_or("0").parse()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// One sample of a scrape: the series name, its labels, its value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses Prometheus text (as strata renders it: no quotes or commas inside label values).
fn parse(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("sample {line:?}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        samples.push((name.to_string(), labels, value.parse()?));
    }
    Ok(samples)
}

/// The value of the series `name` whose labels include `labels` (summed over the rest).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name && labels.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// A snapshotter call that succeeds (Prepare) and one that fails (Stat of nothing).
fn snapshotter_calls(socket: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let socket = socket.to_path_buf();
        let channel = Endpoint::from_static("http://strata.invalid")
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await?;
        let mut client = SnapshotsClient::new(channel);
        let prepare = PrepareSnapshotRequest { key: "layer".into(), ..Default::default() };
        client.prepare(prepare).await?;
        let stat = client.stat(StatSnapshotRequest { key: "nothing".into(), ..Default::default() });
        let code = stat.await.err().map(|status| status.code());
        ensure!(code == Some(tonic::Code::NotFound), "stat of nothing: {code:?}");
        Ok(())
    })
}

/// A volume set pushed to the hub at `hub` and pulled back into another data directory.
fn hub_push_and_pull(server: &Strata, hub: &str) -> anyhow::Result<()> {
    let token = server.ok(&["hub", "token", "create", "alice"])?.trim().to_string();
    let url = format!("http://{hub}");
    let a = Strata::new()?;
    a.ok(&["volumeset", "create", "data"])?;
    let made: serde_json::Value =
        serde_json::from_str(&a.ok(&["volume", "create", "data", "--name", "v", "--json"])?)?;
    let path = Path::new(made["path"].as_str().unwrap_or_default()).to_path_buf();
    std::fs::write(path.join("hello.txt"), vec![7u8; 100_000])?;
    a.ok(&["volume", "snapshot", "v", "--name", "s1"])?;
    a.ok(&["push", "data", "--remote", &url, "--token", &token])?;
    let b = Strata::new()?;
    b.ok(&["pull", "data", "--remote", &url, "--token", &token])?;
    Ok(())
}

#[test]
fn serve_exports_metrics_and_health_after_real_traffic() -> anyhow::Result<()> {
    ensure_program("qemu-io", "qemu-utils")?;
    let strata = Strata::new()?;
    let socket = strata.dir.path().join("snapshotter.sock");
    let mut command = strata.command();
    command.arg("serve").arg("--snapshotter-socket").arg(&socket);
    for flag in
        ["--tlog-listen", "--ckpt-listen", "--nbd-listen", "--hub-listen", "--metrics-listen"]
    {
        command.args([flag, "127.0.0.1:0"]);
    }
    let log = strata.dir.path().join("serve.log");
    let mut server = ServerProcess::spawn("strata serve", command, &log)?;
    let status_file = strata.dir.path().join("run/status.json");
    let mut status = serde_json::Value::Null;
    wait_until("strata serve", Duration::from_secs(20), || {
        server.check_running()?;
        let text = std::fs::read_to_string(&status_file).unwrap_or_default();
        status = serde_json::from_str(&text).unwrap_or_default();
        Ok(status["state"] == "serving")
    })
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    let address = |service: &str| -> String {
        status["services"][service]["address"].as_str().unwrap_or_default().to_string()
    };
    let metrics = address("metrics");
    ensure!(http(&metrics, "GET", "/healthz")?.0 == 200, "healthz");
    ensure!(http(&metrics, "GET", "/readyz")? == (200, "ready\n".into()), "readyz");
    ensure!(http(&metrics, "POST", "/metrics")?.0 == 405, "POST /metrics");

    // NBD: writes and a flush journaled through the tlog.
    strata.ok(&["vdisk", "create", "vm", "--size", "4M"])?;
    let uri = format!("nbd://{}/vm", address("nbd"));
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "flush", &uri])
        .output()?;
    ensure!(out.status.success(), "qemu-io: {}", String::from_utf8_lossy(&out.stderr));
    // The checkpoint service answers HEAD / with 204.
    ensure!(http(&address("ckpt"), "HEAD", "/")?.0 == 204, "ckpt HEAD /");
    snapshotter_calls(&socket)?;
    hub_push_and_pull(&strata, &address("hub"))?;

    let (code, text) = http(&metrics, "GET", "/metrics")?;
    ensure!(code == 200, "GET /metrics: {code}");
    let samples = parse(&text)?;
    let moved = [
        ("strata_nbd_requests_total", vec![("op", "write"), ("result", "ok")]),
        ("strata_nbd_requests_total", vec![("op", "flush"), ("result", "ok")]),
        ("strata_nbd_request_duration_seconds_count", vec![("op", "write")]),
        ("strata_tlog_flush_duration_seconds_count", vec![("result", "ok")]),
        ("strata_tlog_fsync_duration_seconds_count", vec![]),
        ("strata_kv_commit_duration_seconds_count", vec![("engine", "redb"), ("result", "ok")]),
        ("strata_kv_commits_per_durable_write_count", vec![("engine", "redb")]),
        ("strata_kv_durable_write_duration_seconds_count", vec![("engine", "redb")]),
        ("strata_ckpt_requests_total", vec![("method", "HEAD"), ("code", "204")]),
        ("strata_snapshotter_grpc_requests_total", vec![("method", "Prepare"), ("code", "OK")]),
        ("strata_snapshotter_grpc_requests_total", vec![("method", "Stat"), ("code", "NotFound")]),
        ("strata_snapshotter_grpc_request_duration_seconds_count", vec![("method", "Prepare")]),
        ("strata_hub_transfer_bytes_total", vec![("direction", "in")]),
        ("strata_hub_transfer_bytes_total", vec![("direction", "out")]),
        ("strata_build_info", vec![]),
    ];
    for (name, labels) in &moved {
        ensure!(value(&samples, name, labels) > 0.0, "{name} {labels:?} did not move:\n{text}");
    }
    ensure!(value(&samples, "strata_nbd_data_bytes_total", &[("op", "write")]) >= 65536.0);
    ensure!(value(&samples, "strata_tlog_flush_bytes_sum", &[]) >= 65536.0, "{text}");
    // Every duration histogram's first bucket is 100 µs or less.
    let durations: Vec<&Sample> =
        samples.iter().filter(|(n, _, _)| n.ends_with("_seconds_bucket")).collect();
    ensure!(!durations.is_empty(), "no duration histogram:\n{text}");
    for name in durations.iter().map(|(n, _, _)| n) {
        let first = durations
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.get("le")?.parse::<f64>().ok())
            .fold(f64::INFINITY, f64::min);
        ensure!(first <= 0.000_1, "{name}: first bucket {first}");
    }

    let pid = libc::pid_t::try_from(server.pid())?;
    #[allow(unsafe_code, reason = "sending a signal to our own child")]
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    ensure!(sent == 0, "kill failed");
    wait_until("strata serve to stop", Duration::from_secs(40), || {
        Ok(std::fs::read_to_string(&status_file).unwrap_or_default().contains("stopped"))
    })?;
    ensure!(http(&metrics, "GET", "/healthz").is_err(), "the endpoint stops with the process");
    Ok(())
}

/// A standalone server exports only when given `--metrics-listen`: `strata tlog serve`,
/// ready once it listens, and gone with the process after SIGTERM.
#[test]
fn a_standalone_server_exports_with_metrics_listen() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let mut last = None;
    // A port found free can be taken by another test before the server binds it: retry.
    for _ in 0..3 {
        let (tlog, metrics) = (free_port()?, free_port()?);
        let metrics = format!("127.0.0.1:{metrics}");
        let mut command = strata.command();
        command.args([
            "tlog",
            "serve",
            "--no-encryption",
            "--listen",
            &format!("127.0.0.1:{tlog}"),
        ]);
        command.args(["--metrics-listen", &metrics]);
        let log = strata.dir.path().join("tlog.log");
        let mut server = ServerProcess::spawn("strata tlog serve", command, &log)?;
        let ready = wait_until("readyz", Duration::from_secs(20), || {
            server.check_running()?;
            Ok(http(&metrics, "GET", "/readyz").is_ok_and(|(code, _)| code == 200))
        });
        if let Err(err) = ready {
            last = Some(err.context(std::fs::read_to_string(&log).unwrap_or_default()));
            continue;
        }
        let (code, text) = http(&metrics, "GET", "/metrics")?;
        ensure!(code == 200 && text.contains("strata_build_info{version="), "{code}: {text}");
        let pid = libc::pid_t::try_from(server.pid())?;
        #[allow(unsafe_code, reason = "sending a signal to our own child")]
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        ensure!(sent == 0, "kill failed");
        return wait_until("tlog serve to stop", Duration::from_secs(20), || {
            Ok(server.check_running().is_err() && http(&metrics, "GET", "/healthz").is_err())
        });
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no try")))
}

/// An address that is not one, on the command line or in `[metrics] listen`, is refused
/// with exit code 2 and names what was wrong.
#[test]
fn bad_metrics_addresses_are_clear_errors() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let out = strata.run(&["serve", "--metrics-listen", "localhost:9464"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2) && stderr.contains("--metrics-listen"), "{stderr}");
    let config = strata.dir.path().join("strata.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"nowhere\"\n")?;
    let out = strata.run(&["--config", &config.to_string_lossy(), "serve"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2) && stderr.contains("metrics.listen"), "{stderr}");
    ensure!(stderr.contains("\"nowhere\""), "{stderr}");
    Ok(())
}
