//! Operators' commands beside a busy `strata serve` on the same data directory: the kv and
//! snapshot commands go through the server's admin socket (named in `run/status.json`),
//! the others read what the server never locks, and none waits for the server or blocks it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::ensure;
use strata_testkit::ensure_program;

use crate::util::{Strata, serve};

/// Writes to `uri` with qemu-io (a flush after each round) until `stop`; returns the rounds.
fn write_disk(uri: &str, stop: &AtomicBool) -> anyhow::Result<u32> {
    let mut rounds = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let pattern = format!("write -P {} 0 1M", rounds % 250 + 1);
        let offset = format!("write -P 7 {}M 512k", 2 + rounds % 8);
        let out = std::process::Command::new("qemu-io")
            .args(["-f", "raw", "-c", &pattern, "-c", &offset, "-c", "flush", uri])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success() && !text.contains("failed"), "qemu-io: {text}");
        rounds += 1;
    }
    Ok(rounds)
}

/// Puts `load/NNNN` keys through the server until `stop`; returns how many.
fn write_keys(strata: &Strata, stop: &AtomicBool) -> anyhow::Result<usize> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        strata.ok(&["kv", "put", &format!("load/{n:04}"), &n.to_string()])?;
        n += 1;
    }
    Ok(n)
}

/// Every inspection command, and the kv and snapshot writes, once.
fn inspect(strata: &Strata, round: usize) -> anyhow::Result<()> {
    strata.ok(&["kv", "ls", "load/"])?;
    let key = format!("k{round}");
    let name = format!("layer{round}");
    strata.ok(&["snapshot", "prepare", &key])?;
    strata.ok(&["snapshot", "commit", &name, &key])?;
    let info = strata.json(&["snapshot", "info", &name, "--json"])?;
    ensure!(info["kind"] == "committed", "{info}");
    ensure!(strata.ok(&["snapshot", "ls"])?.contains(&name));
    let disks = strata.json(&["vdisk", "ls", "--json"])?;
    ensure!(disks.as_array().is_some_and(|d| d.len() == 1), "{disks}");
    let sets = strata.json(&["volumeset", "ls", "--json"])?;
    ensure!(sets.as_array().is_some_and(|s| s.len() == 1), "{sets}");
    let log = strata.json(&["log", "vs", "--json"])?;
    ensure!(log["snapshots"].as_array().is_some_and(|s| !s.is_empty()), "{log}");
    strata.ok(&["volume", "ls"])?;
    Ok(())
}

#[test]
fn commands_work_beside_a_busy_server() -> anyhow::Result<()> {
    ensure_program("qemu-io", "qemu-utils")?;
    let strata = Strata::new()?;
    let (mut server, addr) = serve(&strata, "serve.log")?;
    // The status is published once every service runs, just after the NBD port answers.
    let status_file = strata.dir.path().join("run/status.json");
    strata_testkit::wait_until("run/status.json", Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&status_file).is_ok_and(|s| s.contains("serving")))
    })?;
    let status = std::fs::read_to_string(&status_file)?;
    ensure!(status.contains("admin.sock"), "status names no admin socket: {status}");
    strata.ok(&["vdisk", "create", "busy", "--size", "16M"])?;
    let tlog_id = strata.json(&["vdisk", "info", "busy", "--json"])?["tlog_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    strata.ok(&["volumeset", "create", "vs"])?;
    let volume = strata.json(&["volume", "create", "vs", "--json"])?;
    let path = volume["path"].as_str().unwrap_or_default();
    std::fs::write(std::path::Path::new(path).join("a.txt"), "a")?;
    strata.ok(&[
        "volume",
        "snapshot",
        volume["name"].as_str().unwrap_or_default(),
        "--name",
        "s1",
    ])?;

    let stop = AtomicBool::new(false);
    let uri = format!("nbd://{addr}/busy");
    let (rounds, keys) = std::thread::scope(|scope| -> anyhow::Result<(u32, usize)> {
        let disk = scope.spawn(|| write_disk(&uri, &stop));
        let writer = scope.spawn(|| write_keys(&strata, &stop));
        let inspected = (0..3).try_for_each(|round| inspect(&strata, round));
        let backup = strata.dir.path().join("backup.redb");
        let backed_up = strata.json(&["kv", "backup", &backup.to_string_lossy(), "--json"]);
        let layers = strata.dir.path().join("layers.redb");
        let layers_backed_up =
            strata.json(&["snapshot", "backup", &layers.to_string_lossy(), "--json"]);
        // The log shows the disk's flushed writes while they go on.
        let listed = strata_testkit::wait_until("tlog ls", Duration::from_secs(20), || {
            let listed = strata.json(&["tlog", "ls", "--vdisk", &tlog_id, "--json"])?;
            Ok(listed.as_array().is_some_and(|a| !a.is_empty()))
        });
        stop.store(true, Ordering::Relaxed);
        let rounds = disk.join().map_err(|_| anyhow::anyhow!("the disk writer panicked"))??;
        let keys = writer.join().map_err(|_| anyhow::anyhow!("the key writer panicked"))??;
        inspected?;
        listed?;
        ensure!(backed_up?["keys"].as_u64().is_some_and(|k| k > 0), "an empty backup");
        ensure!(layers_backed_up?["keys"].as_u64().is_some_and(|k| k > 0), "no layers");
        Ok((rounds, keys))
    })?;
    ensure!(rounds > 0 && keys > 0, "no load: {rounds} disk rounds, {keys} keys");
    let through_server = strata.json(&["kv", "ls", "load/", "--json"])?;
    ensure!(
        through_server.as_array().is_some_and(|a| a.len() == keys),
        "{keys} keys put, listed: {through_server}"
    );

    // Stopped, the server leaves the same keys for a command that opens the file itself.
    server.terminate()?;
    let status = std::fs::read_to_string(strata.dir.path().join("run/status.json"))?;
    ensure!(status.contains("stopped"), "{status}");
    let local = strata.json(&["kv", "ls", "load/", "--json"])?;
    ensure!(local == through_server, "after the server stopped: {local}");
    ensure!(strata.ok(&["snapshot", "ls"])?.contains("layer2"));

    // The backup is one moment of the store: the key writer's first N keys, none missing.
    let restored = Strata::new()?;
    std::fs::copy(strata.dir.path().join("backup.redb"), restored.dir.path().join("kv.redb"))?;
    let copy = restored.json(&["kv", "ls", "load/", "--json"])?;
    let names: Vec<&str> =
        copy.as_array().into_iter().flatten().filter_map(|e| e["key"].as_str()).collect();
    let expected: Vec<String> = (0..names.len()).map(|n| format!("load/{n:04}")).collect();
    ensure!(!names.is_empty() && names == expected, "backup holds {names:?}");
    let refused =
        strata.run(&["kv", "backup", &strata.dir.path().join("backup.redb").to_string_lossy()])?;
    ensure!(refused.status.code() == Some(4), "a backup over an existing file: {refused:?}");
    Ok(())
}
