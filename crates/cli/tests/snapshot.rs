//! `strata snapshot` end to end: the commands people use, their JSON, and their errors.

use anyhow::ensure;

use crate::util::Strata;

#[test]
fn snapshot_commands_round_trip() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let root = strata.dir.path().join("snapshotter");
    let root = root.to_string_lossy();
    let sn = |args: &[&str]| strata.ok(&[&["snapshot", "--root", &root], args].concat());

    let mounts: serde_json::Value = serde_json::from_str(&sn(&["prepare", "a", "--json"])?)?;
    ensure!(mounts[0]["type"] == "bind", "{mounts}");
    let layer = mounts[0]["source"].as_str().unwrap_or_default().to_string();
    std::fs::write(format!("{layer}/file"), vec![1u8; 10_000])?;
    sn(&["commit", "base", "a", "--label", "team=storage"])?;
    sn(&["prepare", "child", "base"])?;
    sn(&["view", "look", "base"])?;

    let list: serde_json::Value = serde_json::from_str(&sn(&["ls", "--json"])?)?;
    ensure!(list.as_array().map(Vec::len) == Some(3), "{list}");
    let committed = sn(&["ls", "kind==committed"])?;
    ensure!(committed.lines().count() == 2 && committed.contains("base"), "{committed}");
    ensure!(sn(&["tree"])? == "base (committed)\n  child (active)\n  look (view)\n");

    let info: serde_json::Value = serde_json::from_str(&sn(&["info", "base", "--json"])?)?;
    ensure!(info["kind"] == "committed" && info["labels"]["team"] == "storage", "{info}");
    let labelled: serde_json::Value =
        serde_json::from_str(&sn(&["label", "base", "team=", "tier=gold", "--json"])?)?;
    ensure!(labelled["labels"] == serde_json::json!({ "tier": "gold" }), "{labelled}");

    let usage: serde_json::Value = serde_json::from_str(&sn(&["usage", "base", "--json"])?)?;
    ensure!(usage[0]["size"].as_i64().unwrap_or(0) >= 10_000, "{usage}");
    let mounts: serde_json::Value = serde_json::from_str(&sn(&["mounts", "child", "--json"])?)?;
    ensure!(mounts[0]["type"] == "overlay", "{mounts}");
    sn(&["rm", "child", "look"])?;
    sn(&["rm", "base"])?;
    ensure!(sn(&["ls", "--json"])? == "[]\n");
    Ok(())
}

#[test]
fn snapshot_errors_have_categories() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let root = strata.dir.path().join("snapshotter");
    let root = root.to_string_lossy();
    let run = |args: &[&str]| strata.run(&[&["snapshot", "--root", &root], args].concat());
    strata.ok(&["snapshot", "--root", &root, "prepare", "a"])?;
    strata.ok(&["snapshot", "--root", &root, "commit", "c", "a"])?;
    strata.ok(&["snapshot", "--root", &root, "prepare", "child", "c"])?;
    let cases: [(&[&str], i32, &str); 6] = [
        (&["info", "missing"], 3, "not found"),
        (&["prepare", "child", "c"], 4, "already exists"),
        (&["rm", "c"], 5, "child"),
        (&["ls", "kind=committed"], 2, "filter"),
        (&["prepare", "x", "child"], 2, "not a committed"),
        (&["label", "c", "novalue"], 2, "K=V"),
    ];
    for (args, code, message) in cases {
        let out = run(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(code), "{args:?} exited {:?}: {stderr}", out.status);
        ensure!(stderr.contains(message), "{args:?}: {stderr}");
    }
    Ok(())
}

#[test]
fn snapshotter_serves_a_socket_and_stops_on_sigterm() -> anyhow::Result<()> {
    use std::time::Duration;
    let strata = Strata::new()?;
    let socket = strata.dir.path().join("snap.sock");
    let root = strata.dir.path().join("root");
    let mut server = strata
        .command()
        .args([
            "snapshotter",
            "--socket",
            &socket.to_string_lossy(),
            "--root",
            &root.to_string_lossy(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let up = strata_testkit::wait_until("snapshotter socket", Duration::from_secs(10), || {
        Ok(std::os::unix::net::UnixStream::connect(&socket).is_ok())
    });
    #[allow(unsafe_code, reason = "sending a signal to our own child")]
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let sent = unsafe { libc::kill(libc::pid_t::try_from(server.id())?, libc::SIGTERM) };
    if up.is_err() {
        server.kill()?;
    }
    up?;
    ensure!(sent == 0);
    let status = server.wait()?;
    ensure!(status.success(), "snapshotter exited with {status}");
    ensure!(!socket.exists(), "socket left behind");
    ensure!(root.join("metadata.redb").is_file(), "no metadata under the root");
    Ok(())
}
