//! libnbd's clients (`nbdinfo`, `nbdcopy`), fio's `nbd` engine and `qemu-img` against the
//! server: block status maps holes and data, copies out of a mostly empty disk move only
//! its data, TLS (required and optional), and a verified fio run whose log replays to the
//! same image.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, ensure};
use strata_nbd::{ServerConfig, Tls};
use strata_testkit::ensure_program;

use crate::harness::{Env, output, qemu_io, random_image, run};

const MIB: u64 = 1 << 20;

fn libnbd() -> anyhow::Result<()> {
    ensure_program("nbdinfo", "libnbd-bin")?;
    ensure_program("nbdcopy", "libnbd-bin")
}

/// Makes vdisk `name` of 1 GiB with 1 MiB of data every 5 MiB (20% of it) and holes
/// between, through qemu-io; writes the same into the local raw file `expected`.
fn mostly_holes(env: &Env, name: &str, expected: &Path) -> anyhow::Result<u64> {
    let size = 1024 * MIB;
    env.create(name, size)?;
    let file = std::fs::File::create(expected)?;
    file.set_len(size)?;
    let mut commands = Vec::new();
    let mut data = 0;
    for i in 0..size / (5 * MIB) {
        let pattern = (i % 250 + 1) as u8;
        commands.push(format!("write -q -P {pattern} {} 1M", i * 5 * MIB));
        file.write_all_at(&vec![pattern; MIB as usize], i * 5 * MIB)?;
        data += MIB;
    }
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    qemu_io(&env.uri(name), &commands)?;
    Ok(data)
}

/// Whether two files have the same bytes, compared a chunk at a time.
fn same_bytes(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

#[test]
fn block_status_maps_holes_and_copies_read_only_the_data() -> anyhow::Result<()> {
    libnbd()?;
    let env = Env::start()?;
    let expected = env.file("expected.raw");
    let data = mostly_holes(&env, "sparse", &expected)?;
    let uri = env.uri("sparse");

    // nbdinfo --map: the data extents are exactly the megabytes written.
    let map = run("nbdinfo", &["--map", &uri])?;
    let mut mapped_data = 0u64;
    let mut mapped = 0u64;
    for line in map.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        ensure!(fields.len() >= 3, "unexpected nbdinfo --map line {line:?}");
        let length: u64 = fields[1].parse().context("extent length")?;
        mapped += length;
        if fields[2] == "0" {
            mapped_data += length;
        } else {
            ensure!(fields[2] == "3", "holes read as zeros: {line:?}");
        }
    }
    ensure!(mapped == 1024 * MIB && mapped_data == data, "map: {mapped_data} of {mapped}\n{map}");

    // nbdcopy and qemu-img convert read only the data, and copy every byte right.
    for (program, out) in [("nbdcopy", "nbdcopy.raw"), ("qemu-img", "qemu-img.raw")] {
        let out = env.file(out);
        let before = env.server.stats().bytes_read;
        let out_arg = out.to_string_lossy().into_owned();
        match program {
            "nbdcopy" => run("nbdcopy", &[&uri, &out_arg])?,
            _ => run("qemu-img", &["convert", "-f", "raw", "-O", "raw", &uri, &out_arg])?,
        };
        let read = env.server.stats().bytes_read - before;
        ensure!(
            read * 4 <= 1024 * MIB,
            "{program} read {read} bytes of a 1 GiB disk with {data} bytes of data"
        );
        ensure!(same_bytes(&out, &expected)?, "{program}'s copy differs from what was written");
    }
    Ok(())
}

/// A directory libnbd takes as `tls-certificates`: the test CA as `ca-cert.pem`.
fn client_certificates(certs: &Path) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(certs.join("ca.pem"), dir.path().join("ca-cert.pem"))?;
    Ok(dir)
}

fn tls_env(certs: &Path, required: bool) -> anyhow::Result<Env> {
    let tls = Tls::from_files(&certs.join("server.pem"), &certs.join("server.key"), required)?;
    Env::start_with(ServerConfig { tls: Some(tls), ..ServerConfig::default() })
}

#[test]
fn tls_required_serves_nbds_and_refuses_plain_clients() -> anyhow::Result<()> {
    libnbd()?;
    let certs = tempfile::tempdir()?;
    strata_testkit::make_certificates(certs.path())?;
    let trusted = client_certificates(certs.path())?;
    let env = tls_env(certs.path(), true)?;
    env.create("secure", 64 * MIB)?;
    let secure = format!("nbds://{}/secure?tls-certificates={}", env.nbd, trusted.path().display());
    let info = run("nbdinfo", &[&secure])?;
    ensure!(info.contains("with TLS"), "nbdinfo over TLS: {info}");

    // Without TLS the server answers nothing but "TLS required".
    let plain = output("nbdinfo", &[&env.uri("secure")])?;
    ensure!(!plain.status.success(), "a plain client got in: {plain:?}");

    // Data goes in and comes back out over TLS.
    let source = env.file("source.raw");
    random_image(&source, 64 * MIB, 7)?;
    let back = env.file("back.raw");
    run("nbdcopy", &[&source.to_string_lossy(), &secure])?;
    run("nbdcopy", &[&secure, &back.to_string_lossy()])?;
    ensure!(same_bytes(&source, &back)?, "the round trip over TLS changed the data");
    Ok(())
}

#[test]
fn tls_optional_serves_both() -> anyhow::Result<()> {
    libnbd()?;
    let certs = tempfile::tempdir()?;
    strata_testkit::make_certificates(certs.path())?;
    let trusted = client_certificates(certs.path())?;
    let env = tls_env(certs.path(), false)?;
    env.create("either", 8 * MIB)?;
    let plain = run("nbdinfo", &[&env.uri("either")])?;
    ensure!(plain.contains("without TLS"), "plain: {plain}");
    let tls = format!("nbds://{}/either?tls-certificates={}", env.nbd, trusted.path().display());
    let secure = run("nbdinfo", &[&tls])?;
    ensure!(secure.contains("with TLS"), "tls: {secure}");
    Ok(())
}

#[test]
fn fio_writes_verify_and_the_log_replays_to_the_same_image() -> anyhow::Result<()> {
    ensure_program("fio", "fio")?;
    let mut env = Env::start()?;
    let vdisk = env.create("fio", 64 * MIB)?;
    let uri = format!("--uri={}", env.uri("fio"));
    for job in [
        vec!["--rw=randwrite", "--bs=4k", "--iodepth=16"],
        vec!["--rw=write", "--bs=1m", "--iodepth=4"],
        vec!["--rw=randwrite", "--bs=64k", "--iodepth=8", "--offset=8m"],
    ] {
        let args = [
            &["--name=verify", "--ioengine=nbd", uri.as_str(), "--size=32m"][..],
            &job,
            &["--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--end_fsync=1"],
            // No verify state file left in the working directory.
            &["--verify_state_save=0"],
        ]
        .concat();
        let out = output("fio", &args)?;
        ensure!(out.status.success(), "fio {job:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    env.stop()?;
    let replayed = env.restore("fio", strata_nbd::restore::Bound::default(), "replayed")?;
    ensure!(
        same_bytes(&vdisk.image, &replayed.image)?,
        "the image differs from its log's replay after fio"
    );
    let mut head = [0u8; 4096];
    std::fs::File::open(&vdisk.image)?.read_exact(&mut head)?;
    ensure!(head.iter().any(|b| *b != 0), "fio wrote nothing at the start");
    Ok(())
}
