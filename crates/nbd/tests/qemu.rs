//! Real NBD clients against the server: qemu-img convert and compare, qemu-io patterns at
//! unaligned offsets, discards and write-zeroes, qemu-nbd --list, restores from the log, and
//! the kernel client where this machine has one.

use anyhow::ensure;
use strata_nbd::restore::Bound;

use crate::harness::{Env, output, qemu_io, random_image, run};

const MIB: u64 = 1 << 20;

#[test]
fn qemu_img_convert_lands_in_the_disk_and_in_the_log() -> anyhow::Result<()> {
    let mut env = Env::start()?;
    env.create("disk1", 64 * MIB)?;
    let source = env.file("source.raw");
    random_image(&source, 64 * MIB, 7)?;
    let src = source.to_string_lossy().into_owned();
    let uri = env.uri("disk1");
    run("qemu-img", &["convert", "-n", "-f", "raw", "-O", "raw", &src, &uri])?;
    let same = run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &src, &uri])?;
    ensure!(same.contains("Images are identical"), "compare: {same}");
    // After a clean stop every write is in the log: a restore equals the source.
    env.stop()?;
    let restored = env.restore("disk1", Bound::default(), "disk1-copy")?;
    let image = restored.image.to_string_lossy().into_owned();
    let same = run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &src, &image])?;
    ensure!(same.contains("Images are identical"), "compare restored: {same}");
    ensure!(restored.origin.len() == 1 && restored.origin[0].to_seq.is_some_and(|s| s > 0));
    Ok(())
}

#[test]
fn qemu_io_patterns_discards_and_zeroes_over_tcp_and_unix() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("pat", 8 * MIB)?;
    let uri = env.uri("pat");
    qemu_io(
        &uri,
        &[
            "write -P 0xab 1000 5000",
            "write -P 0xcd 123457 70001",
            "read -P 0xab 1000 5000",
            "read -P 0xcd 123457 70001",
            "read -P 0 0 1000",
            "write -P 0x11 1048576 1048576",
            "discard 1048576 65536",
            "read -P 0 1048576 65536",
            "read -P 0x11 1114112 4096",
            "write -z 1200000 3333",
            "read -P 0 1200000 3333",
            "read -P 0x11 1203333 100",
            "flush",
        ],
    )?;
    // The same disk over the unix socket, in a new connection.
    let unix = format!("nbd+unix:///pat?socket={}", env.socket.display());
    qemu_io(&unix, &["read -P 0xcd 123457 70001", "read -P 0 1200000 3333"])?;
    // Reads past the end are refused by the client itself; the server refuses the rest
    // (see the protocol tests).
    let past = output("qemu-io", &["-f", "raw", "-c", "read 8388000 4096", &uri])?;
    let text =
        String::from_utf8_lossy(&past.stdout).into_owned() + &String::from_utf8_lossy(&past.stderr);
    ensure!(
        text.contains("rror") || text.contains("out of range") || text.contains("nput/output"),
        "read past the end: {text}"
    );
    Ok(())
}

#[test]
fn qemu_nbd_lists_the_exports_and_unknown_exports_are_refused() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("alpha", MIB)?;
    env.create("beta", 2 * MIB)?;
    let port = env.nbd.port().to_string();
    let list = run("qemu-nbd", &["--list", "--bind", "127.0.0.1", "--port", &port])?;
    ensure!(list.contains("alpha") && list.contains("beta"), "qemu-nbd --list: {list}");
    ensure!(list.contains("size:  2097152") || list.contains("2097152"), "sizes: {list}");
    let missing = output("qemu-io", &["-f", "raw", "-c", "read 0 512", &env.uri("gamma")])?;
    ensure!(!missing.status.success(), "an unknown export must be refused");
    let err = String::from_utf8_lossy(&missing.stderr);
    ensure!(err.contains("gamma"), "the refusal names the export: {err}");
    // A disk created while the server runs is served at once.
    env.create("late", MIB)?;
    qemu_io(&env.uri("late"), &["write -P 0x5a 0 512", "read -P 0x5a 0 512"])?;
    Ok(())
}

#[test]
fn restore_to_an_earlier_sequence_equals_the_disk_at_that_moment() -> anyhow::Result<()> {
    let env = Env::start()?;
    let vdisk = env.create("hist", 16 * MIB)?;
    let uri = env.uri("hist");
    qemu_io(&uri, &["write -P 0x01 0 4M", "write -P 0x02 5000 9000", "flush"])?;
    let at = env
        .last_sequence(&vdisk)?
        .ok_or_else(|| anyhow::anyhow!("nothing logged after a flush"))?;
    let then = env.file("then.raw").to_string_lossy().into_owned();
    run("qemu-img", &["convert", "-f", "raw", "-O", "raw", &uri, &then])?;
    qemu_io(&uri, &["write -P 0x03 0 1M", "discard 2M 1M", "write -P 0x04 15M 1M", "flush"])?;
    let now = env.file("now.raw").to_string_lossy().into_owned();
    run("qemu-img", &["convert", "-f", "raw", "-O", "raw", &uri, &now])?;

    let earlier =
        env.restore("hist", Bound { to_seq: Some(at), ..Bound::default() }, "hist-then")?;
    let image = earlier.image.to_string_lossy().into_owned();
    ensure!(
        run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &then, &image])?
            .contains("identical")
    );
    let latest = env.restore("hist", Bound::default(), "hist-now")?;
    let image = latest.image.to_string_lossy().into_owned();
    ensure!(
        run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &now, &image])?
            .contains("identical")
    );

    // The restored disk has its own log; writes to it, then restoring it again, replay the
    // origin first and then its own writes.
    let again_uri = env.uri("hist-then");
    qemu_io(&again_uri, &["write -P 0x77 8M 64k", "flush"])?;
    let expect = env.file("again.raw").to_string_lossy().into_owned();
    run("qemu-img", &["convert", "-f", "raw", "-O", "raw", &again_uri, &expect])?;
    let again = env.restore("hist-then", Bound::default(), "hist-again")?;
    ensure!(again.origin.len() == 2, "lineage: {:?}", again.origin);
    let image = again.image.to_string_lossy().into_owned();
    ensure!(
        run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &expect, &image])?
            .contains("identical")
    );
    Ok(())
}

#[test]
fn the_kernel_client_formats_and_mounts_where_the_module_exists() -> anyhow::Result<()> {
    strata_testkit::ensure_program("nbd-client", "nbd-client")?;
    let help = output("nbd-client", &["--help"])?;
    let text =
        String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
    ensure!(text.contains("nbd-client"), "nbd-client runs: {text}");
    if !std::path::Path::new("/dev/nbd0").exists() {
        eprintln!(
            "kernel nbd: not tested here: /dev/nbd0 does not exist (the nbd module is not \
             loaded and cannot be loaded in this environment); nbd-client is installed"
        );
        return Ok(());
    }
    strata_testkit::ensure_program("mkfs.ext4", "e2fsprogs")?;
    let env = Env::start()?;
    env.create("kdisk", 64 * MIB)?;
    let port = env.nbd.port().to_string();
    run("nbd-client", &["127.0.0.1", &port, "/dev/nbd0", "-N", "kdisk"])?;
    let mount = env.file("mnt");
    std::fs::create_dir_all(&mount)?;
    let mnt = mount.to_string_lossy().into_owned();
    let used = (|| {
        run("mkfs.ext4", &["-q", "/dev/nbd0"])?;
        run("mount", &["/dev/nbd0", &mnt])?;
        std::fs::write(mount.join("hello"), b"strata")?;
        run("umount", &[&mnt])?;
        run("mount", &["/dev/nbd0", &mnt])?;
        let back = std::fs::read(mount.join("hello"))?;
        run("umount", &[&mnt])?;
        ensure!(back == b"strata");
        anyhow::Ok(())
    })();
    run("nbd-client", &["-d", "/dev/nbd0"])?;
    used
}

#[test]
fn restore_to_a_time_stops_at_the_writes_made_by_then() -> anyhow::Result<()> {
    let env = Env::start()?;
    env.create("timed", 4 * MIB)?;
    let uri = env.uri("timed");
    qemu_io(&uri, &["write -P 0x21 0 1M", "flush"])?;
    let then = env.file("then.raw").to_string_lossy().into_owned();
    run("qemu-img", &["convert", "-f", "raw", "-O", "raw", &uri, &then])?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    std::thread::sleep(std::time::Duration::from_millis(50));
    qemu_io(&uri, &["write -P 0x22 512k 1M", "flush"])?;
    let restored =
        env.restore("timed", Bound { to_time: Some(at), ..Bound::default() }, "timed-then")?;
    let image = restored.image.to_string_lossy().into_owned();
    ensure!(
        run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &then, &image])?
            .contains("identical")
    );
    // A time bound reaches into the lineage: the restored disk's own later writes are after it.
    qemu_io(&env.uri("timed-then"), &["write -P 0x23 2M 4k", "flush"])?;
    let again =
        env.restore("timed-then", Bound { to_time: Some(at), ..Bound::default() }, "timed-again")?;
    let image = again.image.to_string_lossy().into_owned();
    ensure!(
        run("qemu-img", &["compare", "-f", "raw", "-F", "raw", &then, &image])?
            .contains("identical")
    );
    Ok(())
}

#[test]
fn an_unclean_disk_is_refused_where_the_log_cannot_be_read_until_restored() -> anyhow::Result<()> {
    // This server journals to a tlog it cannot read behind (as `strata nbd serve` does), so
    // a disk whose last session did not close cleanly cannot be rebuilt here.
    let env = Env::start()?;
    let vdisk = env.create("dirty", 4 << 20)?;
    qemu_io(&env.uri("dirty"), &["write -P 0x11 0 64k", "flush"])?;
    // Once that session has closed cleanly, the record says a session is open again: as a
    // crash or a lost tlog leaves it.
    strata_testkit::wait_until("the session to close", std::time::Duration::from_secs(10), || {
        Ok(!env.records.get("dirty")?.session_open)
    })?;
    env.records.begin_session("dirty", &vdisk.tlog_id)?;
    let refused = output("qemu-io", &["-f", "raw", "-c", "read 0 4k", &env.uri("dirty")])?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    ensure!(!refused.status.success() || said.contains("failed"), "served: {said}");
    ensure!(
        said.contains("strata vdisk restore dirty"),
        "the refusal does not say what to do: {said}"
    );
    // The restore the message names makes the disk servable again, from its log.
    env.restore_in_place("dirty")?;
    qemu_io(&env.uri("dirty"), &["read -P 0x11 0 64k"])?;
    Ok(())
}

#[test]
fn a_disk_journaling_in_process_replays_to_its_image_after_a_flush() -> anyhow::Result<()> {
    let env = Env::start_local()?;
    let vdisk = env.create("local1", 16 * MIB)?;
    let uri = env.uri("local1");
    // Large writes (cut into 1 MiB blocks), small unaligned ones, a discard and zeroes.
    qemu_io(
        &uri,
        &[
            "write -P 0x31 0 5M",
            "write -P 0x32 1234567 70001",
            "discard 2M 1M",
            "write -z 4M 64k",
            "write -P 0x33 15M 1M",
            "flush",
        ],
    )?;
    qemu_io(&uri, &["read -P 0x31 0 1M", "read -P 0 2M 1M", "read -P 0x33 15M 1M"])?;
    // After the FLUSH, with the server still running, the log holds every write: replaying
    // it makes the image byte for byte.
    let replay = env.file("replayed.raw");
    let log = env.log()?;
    let bounds = strata_tlog::player::Bounds::default();
    strata_tlog::player::replay(&log, &vdisk.tlog_id, None, bounds, &replay, |_| {})?;
    let image = std::fs::read(&vdisk.image)?;
    let mut replayed = std::fs::read(&replay)?;
    ensure!(replayed.len() <= image.len(), "replay of {} bytes", replayed.len());
    replayed.resize(image.len(), 0);
    ensure!(replayed == image, "the replayed log differs from the image");
    ensure!(env.last_sequence(&vdisk)?.is_some());
    Ok(())
}
