//! `strata vdisk` and `strata nbd serve` end to end, with real NBD clients: records and
//! their exit codes, and a whole `strata serve` killed with SIGKILL after a flush, then the
//! disk restored from the log.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use strata_testkit::{ServerProcess, ensure_program, wait_until};

use crate::util::{Strata, identical, qemu, serve, start_on_free_port, wait_ready};

/// A raw image of `size` bytes: pseudo-random runs with holes between.
fn random_image(path: &Path, size: u64, mut seed: u64) -> anyhow::Result<()> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut file = std::fs::File::create(path)?;
    file.set_len(size)?;
    let mut at = 0;
    while at < size {
        let run = (next() % (192 * 1024) + 1).min(size - at);
        if next() % 2 == 0 {
            let data: Vec<u8> = (0..run).map(|_| next() as u8).collect();
            file.seek(SeekFrom::Start(at))?;
            file.write_all(&data)?;
        }
        at += run;
    }
    file.sync_all()?;
    Ok(())
}

#[test]
fn vdisk_records_and_their_errors() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let made = strata.json(&["vdisk", "create", "one", "--size", "10M", "--json"])?;
    ensure!(made["size"] == 10 << 20 && made["block_size"] == 4096, "{made}");
    ensure!(Path::new(made["image"].as_str().unwrap_or_default()).exists());
    strata.ok(&["vdisk", "create", "two", "--size", "1048576", "--block-size", "512"])?;
    let listed = strata.json(&["vdisk", "ls", "--json"])?;
    let names: Vec<&str> =
        listed.as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
    ensure!(names == ["one", "two"], "{listed}");
    ensure!(strata.ok(&["vdisk", "ls"])?.contains("one"));
    let info = strata.json(&["vdisk", "info", "two", "--json"])?;
    ensure!(info["block_size"] == 512 && info["origin"] == serde_json::json!([]), "{info}");
    let code =
        |args: &[&str]| -> anyhow::Result<Option<i32>> { Ok(strata.run(args)?.status.code()) };
    ensure!(code(&["vdisk", "create", "one", "--size", "1M"])? == Some(4), "exists: 4");
    ensure!(code(&["vdisk", "info", "nope"])? == Some(3), "missing: 3");
    ensure!(code(&["vdisk", "create", "bad", "--size", "ten"])? == Some(2), "bad size: 2");
    ensure!(code(&["vdisk", "create", "bad/name", "--size", "1M"])? == Some(2), "bad name: 2");
    ensure!(code(&["vdisk", "create", "odd", "--size", "1000"])? == Some(2), "unaligned size: 2");
    strata.ok(&["vdisk", "rm", "one"])?;
    ensure!(
        !Path::new(made["image"].as_str().unwrap_or_default()).exists(),
        "rm removes the image"
    );
    ensure!(code(&["vdisk", "rm", "one"])? == Some(3));
    Ok(())
}

// Issue 16: `--size 1.5G` was refused and `10GB` meant 10 GiB.
#[test]
fn sizes_with_units_mean_what_they_say() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let size = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let made = strata.json(&[&["vdisk", "create"], args, &["--json"]].concat())?;
        Ok(made["size"].clone())
    };
    ensure!(size(&["binary", "--size", "1.5GiB"])? == 3u64 << 29);
    ensure!(size(&["bare", "--size", "1.5G"])? == 3u64 << 29);
    ensure!(size(&["decimal", "--size", "10GB", "--block-size", "512"])? == 10_000_000_000u64);
    // People read sizes in units; --json keeps bytes.
    let listed = strata.ok(&["vdisk", "ls"])?;
    ensure!(listed.contains("1.50 GiB") && listed.contains("9.31 GiB"), "{listed}");
    let info = strata.ok(&["vdisk", "info", "binary"])?;
    ensure!(info.contains("1.50 GiB (1610612736 bytes)"), "{info}");
    // 10 GB is not a multiple of 4096: refused, naming the block size.
    let out = strata.run(&["vdisk", "create", "odd", "--size", "10GB"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "{:?}: {stderr}", out.status);
    ensure!(stderr.contains("10000000000") && stderr.contains("block size 4096"), "{stderr}");
    let out = strata.run(&["vdisk", "create", "bad", "--size", "1.5X"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2) && stderr.contains("\"1.5X\""), "{stderr}");
    Ok(())
}

#[test]
fn sigkill_after_a_flush_then_restore_from_the_log() -> anyhow::Result<()> {
    ensure_program("qemu-img", "qemu-utils")?;
    ensure_program("qemu-io", "qemu-utils")?;
    let strata = Strata::new()?;
    let (mut server, addr) = serve(&strata, "serve1.log")?;
    // Created while the server runs: served at once.
    strata.ok(&["vdisk", "create", "vm", "--size", "32M"])?;
    let source = strata.dir.path().join("source.raw");
    random_image(&source, 32 << 20, 0x9e37_79b9_7f4a_7c15)?;
    let src = source.to_string_lossy().into_owned();
    let uri = format!("nbd://{addr}/vm");
    // qemu-img convert flushes at the end.
    qemu("qemu-img", &["convert", "-n", "-f", "raw", "-O", "raw", &src, &uri])?;
    identical(&src, &uri)?;
    server.kill();

    let restored = strata.json(&["vdisk", "restore", "vm", "--as", "vm-copy", "--json"])?;
    identical(&src, restored["image"].as_str().unwrap_or_default())?;
    ensure!(restored["origin"][0]["to_seq"].as_u64().is_some_and(|s| s > 0), "{restored}");

    // Serve again: the disk goes on where it was, with new sequences in the same log.
    let (mut server, addr) = serve(&strata, "serve2.log")?;
    let uri = format!("nbd://{addr}/vm");
    identical(&src, &uri)?;
    let writes = ["write -P 0x5c 1000001 77777", "write -z 4096 8192", "discard 16M 1M", "flush"];
    let mut args = vec!["-f", "raw"];
    for w in writes {
        args.extend(["-c", w]);
    }
    qemu("qemu-io", &[args.as_slice(), &[uri.as_str()]].concat())?;
    // The same writes on a local copy are what the disk must now hold.
    let expected = strata.dir.path().join("expected.raw");
    std::fs::copy(&source, &expected)?;
    let exp = expected.to_string_lossy().into_owned();
    qemu("qemu-io", &[args.as_slice(), &[exp.as_str()]].concat())?;
    identical(&exp, &uri)?;
    server.kill();

    // In place this time: the record gets a new log whose origin is the old one.
    let again = strata.json(&["vdisk", "restore", "vm", "--json"])?;
    identical(&exp, again["image"].as_str().unwrap_or_default())?;
    ensure!(again["origin"].as_array().is_some_and(|o| o.len() == 1), "{again}");
    // The first restore still equals the source: its own log is separate.
    identical(&src, restored["image"].as_str().unwrap_or_default())?;
    Ok(())
}

// Issue 16: `strata vdisk resize`.
#[test]
fn a_grown_vdisk_is_served_and_restored_at_its_new_size() -> anyhow::Result<()> {
    ensure_program("qemu-img", "qemu-utils")?;
    ensure_program("qemu-io", "qemu-utils")?;
    let strata = Strata::new()?;
    let (mut server, addr) = serve(&strata, "serve.log")?;
    strata.ok(&["vdisk", "create", "vm", "--size", "1M"])?;
    let uri = format!("nbd://{addr}/vm");
    let first = ["-f", "raw", "-c", "write -P 0x11 0 64k", "-c", "flush"];
    qemu("qemu-io", &[first.as_slice(), &[uri.as_str()]].concat())?;
    let code =
        |args: &[&str]| -> anyhow::Result<Option<i32>> { Ok(strata.run(args)?.status.code()) };
    ensure!(code(&["vdisk", "resize", "vm", "--size", "512K"])? == Some(5), "shrink: 5");
    ensure!(code(&["vdisk", "resize", "vm", "--size", "3000"])? == Some(2), "off-block: 2");
    ensure!(code(&["vdisk", "resize", "nope", "--size", "2M"])? == Some(3), "missing: 3");
    let grown = strata.json(&["vdisk", "resize", "vm", "--size", "2M", "--json"])?;
    ensure!(grown["size"] == 2 << 20, "{grown}");
    // The next connection sees the new size, and can write past the old end.
    let info = qemu("qemu-img", &["info", "--output=json", &uri])?;
    ensure!(info.contains("\"virtual-size\": 2097152"), "{info}");
    let second = ["-f", "raw", "-c", "write -P 0x22 1536k 64k", "-c", "flush"];
    qemu("qemu-io", &[second.as_slice(), &[uri.as_str()]].concat())?;
    server.kill();

    let expected = strata.dir.path().join("expected.raw");
    std::fs::File::create(&expected)?.set_len(2 << 20)?;
    let exp = expected.to_string_lossy().into_owned();
    qemu("qemu-io", &[first.as_slice(), &[exp.as_str()]].concat())?;
    qemu("qemu-io", &[second.as_slice(), &[exp.as_str()]].concat())?;
    let restored = strata.json(&["vdisk", "restore", "vm", "--as", "copy", "--json"])?;
    ensure!(restored["size"] == 2 << 20, "{restored}");
    identical(&exp, restored["image"].as_str().unwrap_or_default())?;
    Ok(())
}

#[test]
fn nbd_serve_with_a_separate_tlog_server_and_a_unix_socket() -> anyhow::Result<()> {
    separate_tlog_server(&[])
}

#[test]
fn nbd_serve_journaling_to_a_tlog_on_redis_and_restore_from_redis() -> anyhow::Result<()> {
    let redis = strata_testkit::RedisServers::start(6)?;
    let servers = redis.addresses().join(",");
    separate_tlog_server(&["--redis-servers", &servers])
}

/// `strata nbd serve` journaling to a `strata tlog serve` process (which keeps its log where
/// `store` says), served on TCP and a unix socket; after a SIGTERM the disk is restored
/// from the log kept there.
fn separate_tlog_server(store: &[&str]) -> anyhow::Result<()> {
    ensure_program("qemu-io", "qemu-utils")?;
    let strata = Strata::new()?;
    let (mut tlog_server, tlog_addr) = start_on_free_port(|tlog| {
        let tlog_addr = format!("127.0.0.1:{tlog}");
        let mut command = strata.command();
        command.args(["tlog", "serve", "--listen", &tlog_addr, "--no-encryption"]).args(store);
        let log = strata.dir.path().join("tlog.log");
        let mut tlog_server = ServerProcess::spawn("strata tlog serve", command, &log)?;
        wait_ready(&mut tlog_server, &log, || std::net::TcpStream::connect(&tlog_addr).is_ok())?;
        Ok((tlog_server, tlog_addr))
    })?;
    let socket = strata.dir.path().join("nbd.sock");
    let (nbd_server, nbd) = start_on_free_port(|nbd| {
        let mut command = strata.command();
        command.args([
            "nbd",
            "serve",
            "--listen",
            &format!("127.0.0.1:{nbd}"),
            "--tlog-servers",
            &tlog_addr,
            "--socket",
            &socket.to_string_lossy(),
        ]);
        let log = strata.dir.path().join("nbd.log");
        let mut nbd_server = ServerProcess::spawn("strata nbd serve", command, &log)?;
        wait_ready(&mut nbd_server, &log, || socket.exists())?;
        Ok((nbd_server, nbd))
    })?;
    strata.ok(&["vdisk", "create", "d", "--size", "4M"])?;
    let unix = format!("nbd+unix:///d?socket={}", socket.display());
    qemu("qemu-io", &["-f", "raw", "-c", "write -P 0x42 3 4099", "-c", "flush", &unix])?;
    qemu(
        "qemu-io",
        &["-f", "raw", "-c", "read -P 0x42 3 4099", &format!("nbd://127.0.0.1:{nbd}/d")],
    )?;
    // SIGTERM flushes and stops; the log then holds the write.
    let pid = libc::pid_t::try_from(nbd_server.pid())?;
    #[allow(unsafe_code, reason = "sending a signal to our own child")]
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    ensure!(sent == 0);
    wait_until("nbd serve to stop", Duration::from_secs(20), || Ok(!socket.exists()))?;
    tlog_server.kill();
    let restore = [&["vdisk", "restore", "d", "--as", "d2", "--json"], store].concat();
    let copy = strata.json(&restore)?;
    let data = std::fs::read(copy["image"].as_str().unwrap_or_default())?;
    ensure!(
        data.len() == 4 << 20 && data[3..4102].iter().all(|b| *b == 0x42) && data[..3] == [0, 0, 0]
    );
    Ok(())
}

#[test]
fn a_session_killed_with_unflushed_writes_is_rebuilt_from_the_log() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    ensure_program("qemu-img", "qemu-utils")?;
    ensure_program("qemu-io", "qemu-utils")?;
    let strata = Strata::new()?;
    let (mut server, addr) = serve(&strata, "serve1.log")?;
    let made = strata.json(&["vdisk", "create", "vm", "--size", "8M", "--json"])?;
    let image = made["image"].as_str().unwrap_or_default().to_string();
    let uri = format!("nbd://{addr}/vm");
    qemu("qemu-io", &["-f", "raw", "-c", "write -P 0xaa 0 64k", "-c", "flush", &uri])?;
    // A client writes without flushing (cache=unsafe ignores flushes) and is still
    // connected when the server is killed: the image has the write, the log does not.
    let mut client = Command::new("qemu-io")
        .args(["-f", "raw", "-t", "unsafe", &uri])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = client.stdin.take().context("qemu-io stdin")?;
    let mut stdout = BufReader::new(client.stdout.take().context("qemu-io stdout")?);
    writeln!(stdin, "write -P 0xbb 1M 64k")?;
    let mut line = String::new();
    while !line.contains("wrote") {
        line.clear();
        ensure!(stdout.read_line(&mut line)? > 0, "qemu-io ended before its write");
    }
    server.kill();
    client.kill()?;
    client.wait()?;
    let mut held = vec![0u8; 64 << 10];
    std::fs::File::open(&image)?.read_exact_at(&mut held, 1 << 20)?;
    ensure!(held.iter().all(|&b| b == 0xbb), "the image did not get the unflushed write");

    // What the log holds: the flushed write only.
    let copy = strata.json(&["vdisk", "restore", "vm", "--as", "vm-log", "--json"])?;
    let copy = copy["image"].as_str().unwrap_or_default().to_string();
    qemu("qemu-io", &["-f", "raw", "-c", "read -P 0xaa 0 64k", "-c", "read -P 0 1M 64k", &copy])?;
    // Served again, the disk is rebuilt from its log before anyone reads it: image and log
    // agree, so a restore from the log and the served disk are the same disk.
    let (mut server, addr) = serve(&strata, "serve2.log")?;
    let uri = format!("nbd://{addr}/vm");
    identical(&copy, &uri)?;
    qemu("qemu-io", &["-f", "raw", "-c", "write -P 0xcc 2M 4k", "-c", "flush", &uri])?;
    server.kill();
    let after = strata.json(&["vdisk", "restore", "vm", "--as", "vm-after", "--json"])?;
    let after = after["image"].as_str().unwrap_or_default().to_string();
    qemu("qemu-io", &["-f", "raw", "-c", "read -P 0 1M 64k", "-c", "read -P 0xcc 2M 4k", &after])?;
    Ok(())
}
