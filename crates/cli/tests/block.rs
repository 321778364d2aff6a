//! Block volumes end to end (issue 17): a vdisk served by `strata serve` and written by
//! qemu-io is snapshotted while served, pushed to the hub (a push killed with SIGKILL, then
//! resumed), pulled into another data directory, made into new vdisks there, and compared
//! byte for byte with qemu-img; the clone is served, written, snapshotted on the same
//! branch and restored from its own log.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use strata_testkit::{ensure_program, wait_until};

use crate::util::{Strata, identical, qemu, serve};

/// Runs qemu-io commands on `target` (an image file or an nbd:// URI).
fn qemu_io(target: &str, commands: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["-f", "raw"];
    for c in commands {
        args.extend(["-c", c]);
    }
    args.push(target);
    qemu("qemu-io", &args).map(drop)
}

/// The disk as NBD serves it now, copied into the file `to`.
fn copy_out(uri: &str, to: &Path) -> anyhow::Result<String> {
    let to = to.to_string_lossy().into_owned();
    qemu("qemu-img", &["convert", "-f", "raw", "-O", "raw", uri, &to])?;
    Ok(to)
}

/// Random bytes in a file, for qemu-io to write from (`write -s FILE`).
fn random_file(path: &Path, len: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    std::fs::write(path, &bytes)?;
    Ok(path.to_string_lossy().into_owned())
}

/// A qemu-io process connected to a disk, running commands one at a time from its stdin and
/// holding the connection (and its unflushed writes) in between.
struct Held {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Held {
    fn open(uri: &str) -> anyhow::Result<Held> {
        let mut child = Command::new("qemu-io")
            // qemu-io writes through by default (a flush after every write): not here.
            .args(["-f", "raw", "-t", "writeback", uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Held { child, stdin, stdout })
    }

    /// Runs one command and waits for its report (qemu-io prints a line with the bytes
    /// done when the request was answered).
    fn run(&mut self, command: &str) -> anyhow::Result<()> {
        use std::io::{BufRead as _, Write as _};
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        loop {
            line.clear();
            ensure!(self.stdout.read_line(&mut line)? > 0, "qemu-io ended during {command:?}");
            ensure!(!line.contains("failed"), "{command}: {line}");
            if line.contains("bytes") {
                return Ok(());
            }
        }
    }

    fn close(mut self) -> anyhow::Result<()> {
        drop(self.stdin);
        let status = self.child.wait()?;
        ensure!(status.success(), "qemu-io exited with {status}");
        Ok(())
    }
}

fn status(strata: &Strata) -> anyhow::Result<serde_json::Value> {
    let path = strata.dir.path().join("run/status.json");
    wait_until("strata serve's status", Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&path).is_ok_and(|s| s.contains("\"serving\"")))
    })?;
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn remote<'a>(args: &[&'a str], url: &'a str, token: &'a str) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--remote", url, "--token", token]);
    all
}

#[test]
fn vdisk_snapshots_push_pull_clone_and_compare() -> anyhow::Result<()> {
    ensure_program("qemu-img", "qemu-utils")?;
    ensure_program("qemu-io", "qemu-utils")?;
    let a = Strata::new()?;
    let (mut server, addr) = serve(&a, "serve-a.log")?;
    let url = status(&a)?["services"]["hub"]["url"].as_str().context("hub url")?.to_string();
    let token = a.ok(&["hub", "token", "create", "alice"])?.trim().to_string();
    a.ok(&["vdisk", "create", "vm", "--size", "128M"])?;
    let uri = format!("nbd://{addr}/vm");

    // s1: 96 MiB of random data (so that a push of it can be cut off), and a pattern.
    let random = random_file(&a.dir.path().join("random.bin"), 96 << 20)?;
    qemu_io(&uri, &[&format!("write -s {random} 1M 96M"), "write -P 0x11 110M 64k"])?;
    let s1 = a.json(&["vdisk", "snapshot", "vm", "--name", "s1", "--json"])?;
    ensure!(s1["volumeset"] == "vm" && s1["branch"] == "main", "{s1}");
    ensure!(s1["blob"]["full"] == true, "a first snapshot is a root: {s1}");
    let data1 = s1["blob"]["data_bytes"].as_u64().unwrap_or(0);
    ensure!(data1 == (96 << 20) + (64 << 10), "only the written extents: {s1}");
    let expected1 = copy_out(&uri, &a.dir.path().join("expected1.raw"))?;

    // Nothing written since: no snapshot.
    let same = a.json(&["vdisk", "snapshot", "vm", "--name", "again", "--json"])?;
    ensure!(same["unchanged"] == true && same["base"] == s1["id"], "{same}");

    // s2: an overwrite, a discard and zeroes, by a client that stays connected and never
    // flushes: the snapshot's FLUSH barrier makes them durable in the log. Its blob holds
    // only those.
    let mut held = Held::open(&uri)?;
    for command in ["write -P 0x22 2M 256k", "discard 10M 1M", "write -z 20M 64k"] {
        held.run(command)?;
    }
    let s2 = a.json(&["vdisk", "snapshot", "vm", "--name", "s2", "--json"])?;
    held.close()?;
    ensure!(s2["parent_id"] == s1["id"] && s2["branch"] == "main", "{s2}");
    ensure!(s2["blob"]["full"] == false, "{s2}");
    ensure!(s2["blob"]["data_bytes"] == 256 << 10, "only the overwrite's data: {s2}");
    ensure!(s2["blob"]["zero_bytes"] == (1 << 20) + (64 << 10), "{s2}");
    ensure!(s2["size"].as_u64().unwrap_or(u64::MAX) < 1 << 20, "a small blob: {s2}");
    let expected2 = copy_out(&uri, &a.dir.path().join("expected2.raw"))?;
    // Writes after the snapshot are not in it.
    qemu_io(&uri, &["write -P 0x33 0 1M"])?;

    let log = a.ok(&["log", "vm"])?;
    ensure!(log.contains("block") && log.contains("s1") && log.contains("s2"), "{log}");
    let sets = a.ok(&["volumeset", "ls"])?;
    ensure!(sets.contains("block"), "{sets}");

    // A push killed with SIGKILL while the large blob is in flight, then sent again.
    let push = a
        .command()
        .args(remote(&["push", "vm"], &url, &token))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let hub_blobs = a.dir.path().join("hub/blobs");
    let in_flight = wait_until("a blob upload in flight", Duration::from_secs(60), || {
        Ok(std::fs::read_dir(&hub_blobs).into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".tmp-")
                && e.metadata().is_ok_and(|m| m.len() > (1 << 20))
        }))
    });
    let pid = push.id();
    let mut push = push;
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    let killed = push.wait()?;
    in_flight?;
    ensure!(!killed.success(), "the push was killed");
    let pushed = a.json(&remote(&["push", "vm", "--json"], &url, &token))?;
    ensure!(pushed["snapshots_pushed"] == 2, "{pushed}");
    let again = a.json(&remote(&["push", "vm", "--json"], &url, &token))?;
    ensure!(again["snapshots_pushed"] == 0 && again["blobs_pushed"] == 0, "{again}");

    // Another data directory pulls the set and makes disks of both snapshots.
    let b = Strata::new()?;
    b.ok(&remote(&["pull", "vm"], &url, &token))?;
    let c1 = b.json(&["vdisk", "create", "c1", "--from", "s1", "--json"])?;
    identical(&expected1, c1["image"].as_str().context("image")?)?;
    let c2 = b.json(&["vdisk", "create", "c2", "--from", "s2", "--volumeset", "vm", "--json"])?;
    identical(&expected2, c2["image"].as_str().context("image")?)?;
    ensure!(c2["base"]["snapshot_id"] == s2["id"], "{c2}");

    // The clone served, written and snapshotted: its snapshot extends s2's branch.
    let (mut served, addr) = serve(&b, "serve-b.log")?;
    let uri = format!("nbd://{addr}/c2");
    identical(&expected2, &uri)?;
    qemu_io(&uri, &["write -P 0x44 30M 128k"])?;
    let s3 = b.json(&["vdisk", "snapshot", "c2", "--name", "s3", "--json"])?;
    ensure!(s3["parent_id"] == s2["id"] && s3["branch"] == "main", "{s3}");
    ensure!(s3["blob"]["data_bytes"] == 128 << 10, "{s3}");
    let expected3 = copy_out(&uri, &b.dir.path().join("expected3.raw"))?;
    // The other clone's snapshot on s1 forks: s1 is no longer a tip.
    let uri1 = format!("nbd://{addr}/c1");
    qemu_io(&uri1, &["write -P 0x55 0 4k"])?;
    let fork = b.json(&["vdisk", "snapshot", "c1", "--name", "f1", "--json"])?;
    ensure!(fork["parent_id"] == s1["id"] && fork["branch"] == "c1", "{fork}");
    served.kill();

    // Three-way sync sends both back; the first data directory pulls them and makes a disk
    // of the clone's snapshot.
    let synced = b.json(&remote(&["sync", "vm", "--json"], &url, &token))?;
    ensure!(synced["snapshots_pushed"] == 2, "{synced}");
    a.ok(&remote(&["pull", "vm"], &url, &token))?;
    let back = a.json(&["vdisk", "create", "back", "--from", "s3", "--json"])?;
    identical(&expected3, back["image"].as_str().context("image")?)?;
    let log = a.ok(&["log", "vm"])?;
    ensure!(log.contains("s3") && log.contains("f1"), "{log}");
    server.terminate()?;

    // The clone's log is here: a restore rebuilds it on top of the snapshot it came from.
    let restored = b.json(&["vdisk", "restore", "c2", "--as", "c2r", "--json"])?;
    identical(&expected3, restored["image"].as_str().context("image")?)?;
    let before = b.json(&["vdisk", "restore", "c2", "--as", "c2r0", "--to-seq", "0", "--json"])?;
    identical(&expected2, before["image"].as_str().context("image")?)?;
    // And the pulled snapshots' blobs came back from the hub byte for byte: a third copy.
    let c3 =
        b.json(&["vdisk", "create", "c3", "--from", s3["id"].as_str().context("id")?, "--json"])?;
    identical(&expected3, c3["image"].as_str().context("image")?)?;
    Ok(())
}

#[test]
fn block_and_filesystem_sets_refuse_each_others_commands() -> anyhow::Result<()> {
    let a = Strata::new()?;
    a.ok(&["volumeset", "create", "files"])?;
    a.ok(&["volumeset", "create", "disks", "--kind", "block"])?;
    a.ok(&["vdisk", "create", "d", "--size", "1M"])?;
    let out = a.run(&["vdisk", "snapshot", "d", "--name", "x", "--volumeset", "files"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "{out:?}");
    ensure!(stderr.contains("filesystem") && stderr.contains("strata volume"), "{stderr}");
    let out = a.run(&["volume", "create", "disks"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("strata vdisk"), "{stderr}");
    // An empty disk not served: its first snapshot is an empty root.
    let s =
        a.json(&["vdisk", "snapshot", "d", "--name", "empty", "--volumeset", "disks", "--json"])?;
    ensure!(s["blob"]["extents"] == 0 && s["volumeset"] == "disks", "{s}");
    let out = a.run(&["vdisk", "create", "e", "--from", "nothing"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(3) && stderr.contains("nothing"), "{stderr}");
    Ok(())
}
