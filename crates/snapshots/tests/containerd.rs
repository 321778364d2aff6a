//! End to end with a real containerd (started by the testkit with strata's proxy snapshotter
//! plugged in as `strata`), driven by `ctr`: the snapshot commands, errors that come back
//! from strata, and importing and unpacking an OCI image the test builds itself. The gRPC
//! details are tested in `grpc.rs`; this is about containerd accepting what strata says.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::json;
use strata_snapshots::{Filters, Info, Kind};
use strata_testkit::Containerd;

use crate::grpc::TestServer;

const SNAPSHOTS: [&str; 3] = ["snapshots", "--snapshotter", "strata"];

/// `ctr snapshots --snapshotter strata ARGS…`, which must succeed; its standard output.
fn snapshots(containerd: &Containerd, args: &[&str]) -> anyhow::Result<String> {
    containerd.ctr_ok(&[&SNAPSHOTS[..], args].concat())
}

/// `ctr snapshots --snapshotter strata ARGS…`, which must fail; its standard error.
fn snapshots_err(containerd: &Containerd, args: &[&str]) -> anyhow::Result<String> {
    let output = containerd.ctr(&[&SNAPSHOTS[..], args].concat())?;
    ensure!(!output.status.success(), "ctr snapshots {args:?} succeeded");
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The snapshot strata holds for containerd's `key` (containerd prefixes keys with its
/// namespace and an id of its own: `strata-test/3/key`).
/// Waits until containerd's garbage collection has removed every backend snapshot. The
/// collector may try a parent before its children (strata refuses that) and then waits for
/// the next deletion to run again, so each wait that finds leftovers pokes it with one more
/// (a throwaway snapshot made and removed).
fn wait_collected(containerd: &Containerd, server: &TestServer) -> anyhow::Result<()> {
    let mut pokes = 0;
    loop {
        let gone =
            strata_testkit::wait_until("strata's snapshots to go", Duration::from_secs(10), || {
                Ok(server.snapshotter.list(&Filters::default())?.is_empty())
            });
        if gone.is_ok() || pokes == 5 {
            return gone.with_context(|| containerd.log());
        }
        pokes += 1;
        let poke = format!("poke-{pokes}");
        snapshots(containerd, &["prepare", &poke])?;
        snapshots(containerd, &["rm", &poke])?;
    }
}

fn backend(server: &TestServer, key: &str) -> anyhow::Result<Option<Info>> {
    let suffix = format!("/{key}");
    let all = server.snapshotter.list(&Filters::default())?;
    Ok(all.into_iter().find(|info| info.name.ends_with(&suffix)))
}

/// Mounts `key` on `target` with the command `ctr snapshots mounts` prints, runs `body`,
/// and unmounts.
fn with_mounted<T>(
    containerd: &Containerd,
    key: &str,
    target: &Path,
    body: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    std::fs::create_dir_all(target)?;
    let target_arg = target.to_str().context("target path is not UTF-8")?;
    let command = snapshots(containerd, &["mounts", target_arg, key])?;
    run(Command::new("sh").arg("-c").arg(command.trim()), None)
        .with_context(|| format!("mount with {command:?}"))?;
    let result = body();
    strata_snapshots::unmount(target)?;
    result
}

/// Runs `command` with `stdin`, failing with its standard error; its standard output.
fn run(command: &mut Command, stdin: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {command:?}"))?;
    let mut pipe = child.stdin.take().context("no stdin pipe")?;
    pipe.write_all(stdin.unwrap_or_default())?;
    drop(pipe);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output.stdout)
}

#[test]
fn ctr_snapshot_commands_reach_strata() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let containerd = Containerd::start(&server.socket)?;
    let scratch = tempfile::tempdir()?;
    let ctr = &containerd;

    snapshots(ctr, &["prepare", "k1"])?;
    let active = backend(&server, "k1")?.context("k1 did not reach strata")?;
    assert_eq!(active.kind, Kind::Active);
    let mounts = snapshots(ctr, &["mounts", "/mnt", "k1"])?;
    let root = server.root().display().to_string();
    assert!(mounts.starts_with("mount -t bind ") && mounts.contains(&root), "{mounts}");
    with_mounted(ctr, "k1", &scratch.path().join("k1"), || {
        std::fs::write(scratch.path().join("k1/hello.txt"), vec![1u8; 20_000])?;
        Ok(())
    })?;
    let usage = snapshots(ctr, &["usage", "k1"])?;
    let row = usage.lines().find(|l| l.starts_with("k1 ")).context("no usage row")?;
    let inodes: i64 = row.split_whitespace().last().context("empty row")?.parse()?;
    assert!(inodes >= 2 && !row.contains(" 0.0 B"), "{usage}");

    snapshots(ctr, &["commit", "base", "k1"])?;
    let info: serde_json::Value = serde_json::from_str(&snapshots(ctr, &["info", "base"])?)?;
    assert_eq!((info["Kind"].as_str(), info["Name"].as_str()), (Some("Committed"), Some("base")));
    let committed = backend(&server, "base")?.context("base did not reach strata")?;
    assert_eq!(committed.kind, Kind::Committed);
    assert!(backend(&server, "k1")?.is_none(), "the active snapshot outlived its commit");

    snapshots(ctr, &["view", "v1", "base"])?;
    // ctr labels what it prepares and commits as a garbage collection root, but not views:
    // without the label containerd collects v1 on its next deletion.
    snapshots(ctr, &["label", "v1", "containerd.io/gc.root=test"])?;
    snapshots(ctr, &["prepare", "k2", "base"])?;
    let overlay = snapshots(ctr, &["mounts", "/mnt", "k2"])?;
    assert!(overlay.contains("-t overlay") && overlay.contains("lowerdir="), "{overlay}");
    with_mounted(ctr, "v1", &scratch.path().join("v1"), || {
        assert_eq!(std::fs::read(scratch.path().join("v1/hello.txt"))?.len(), 20_000);
        Ok(())
    })?;

    // Labels under containerd.io/snapshot/ are the ones containerd passes to snapshotters.
    snapshots(ctr, &["label", "k2", "containerd.io/snapshot/team=storage", "local=only"])?;
    let k2 = backend(&server, "k2")?.context("k2 did not reach strata")?;
    assert_eq!(k2.labels.get("containerd.io/snapshot/team").map(String::as_str), Some("storage"));
    assert!(!k2.labels.contains_key("local"), "{k2:?}");
    let info: serde_json::Value = serde_json::from_str(&snapshots(ctr, &["info", "k2"])?)?;
    assert_eq!(info["Labels"]["containerd.io/snapshot/team"], "storage");
    assert_eq!((info["Kind"].as_str(), info["Parent"].as_str()), (Some("Active"), Some("base")));

    let tree = snapshots(ctr, &["tree"])?;
    assert!(
        tree.contains(" base\n") && tree.contains("\\_ k2") && tree.contains("\\_ v1"),
        "{tree}"
    );
    let ls = snapshots(ctr, &["ls"])?;
    assert!(ls.lines().any(|l| l.split_whitespace().eq(["v1", "base", "View"])), "{ls}");

    // strata's own refusals come back through containerd with their messages.
    let err = snapshots_err(ctr, &["view", "v2", "k2"])?;
    assert!(
        err.contains("is not a committed snapshot") && err.contains("invalid argument"),
        "{err}"
    );
    let err = snapshots_err(ctr, &["commit", "c2", "v1"])?;
    assert!(err.contains("only active snapshots can be committed"), "{err}");
    let err = snapshots_err(ctr, &["info", "missing"])?;
    assert!(err.contains("not found"), "{err}");
    let err = snapshots_err(ctr, &["rm", "base"])?;
    assert!(err.contains("child"), "{err}");

    snapshots(ctr, &["rm", "v1", "k2"])?;
    snapshots(ctr, &["rm", "base"])?;
    assert!(snapshots(ctr, &["ls"])?.lines().count() <= 1, "header only");
    wait_collected(ctr, &server)?;
    drop(containerd);
    server.stop()
}

/// One file of a layer: path and contents.
type File<'a> = (&'a str, &'a str);

/// `sha256:<hex>` of `bytes`, by sha256sum(1).
fn digest(bytes: &[u8]) -> anyhow::Result<String> {
    let out = run(&mut Command::new("sha256sum"), Some(bytes))?;
    let hex = String::from_utf8(out)?.split_whitespace().next().context("no digest")?.to_string();
    Ok(format!("sha256:{hex}"))
}

/// Writes `bytes` as a blob of the OCI layout at `dir` and returns its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    let digest = digest(bytes)?;
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(dir.join("blobs/sha256").join(hex), bytes)?;
    Ok(json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }))
}

/// A gzipped layer tar holding `files`, and its diff id (the digest of the plain tar).
fn layer(dir: &Path, files: &[File<'_>]) -> anyhow::Result<(Vec<u8>, String)> {
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().context("file without a parent")?)?;
        std::fs::write(path, contents)?;
    }
    let tar = run(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0"])
            .arg("-C")
            .arg(dir)
            .args(["-cf", "-", "."]),
        None,
    )?;
    let gzipped = run(Command::new("gzip").args(["-n", "-c"]), Some(&tar))?;
    Ok((gzipped, digest(&tar)?))
}

/// Builds an OCI image archive of two layers (the second overwrites a file of the first)
/// named `name`, and returns its path and the chain ids of its layers, bottom first.
fn oci_archive(dir: &Path, name: &str) -> anyhow::Result<(std::path::PathBuf, Vec<String>)> {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    let gzip_layer = "application/vnd.oci.image.layer.v1.tar+gzip";
    let (one, diff_one) =
        layer(&dir.join("l1"), &[("hello.txt", "hello from layer one\n"), ("a/one.txt", "1\n")])?;
    let (two, diff_two) =
        layer(&dir.join("l2"), &[("hello.txt", "hello from layer two\n"), ("a/two.txt", "2\n")])?;
    let layers = [blob(&layout, gzip_layer, &one)?, blob(&layout, gzip_layer, &two)?];
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_one, diff_two] },
    });
    let config =
        blob(&layout, "application/vnd.oci.image.config.v1+json", &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let mut manifest = blob(&layout, manifest_type, &serde_json::to_vec(&manifest)?)?;
    manifest["annotations"] =
        json!({ "io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest" });
    let index = json!({ "schemaVersion": 2, "manifests": [manifest] });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let archive = dir.join("image.tar");
    run(
        Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).args([
            "oci-layout",
            "index.json",
            "blobs",
        ]),
        None,
    )?;
    let chain_two = digest(format!("{diff_one} {diff_two}").as_bytes())?;
    Ok((archive, vec![diff_one, chain_two]))
}

#[test]
fn ctr_imports_and_unpacks_an_image_onto_strata() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    let containerd = Containerd::start(&server.socket)?;
    let scratch = tempfile::tempdir()?;
    let name = "docker.io/strata/two-layers:latest";
    let (archive, chain) = oci_archive(scratch.path(), name)?;
    let archive = archive.to_str().context("archive path is not UTF-8")?;

    containerd
        .ctr_ok(&["images", "import", "--snapshotter", "strata", archive])
        .with_context(|| containerd.log())?;
    let images = containerd.ctr_ok(&["images", "ls", "-q"])?;
    assert!(images.lines().any(|l| l == name), "{images}");

    // Both layers were unpacked onto strata as committed snapshots, the top on the bottom.
    let bottom = backend(&server, &chain[0])?.context("bottom layer not on strata")?;
    let top = backend(&server, &chain[1])?.context("top layer not on strata")?;
    assert_eq!((bottom.kind, top.kind), (Kind::Committed, Kind::Committed));
    assert_eq!(top.parent, bottom.name);
    let ls = snapshots(&containerd, &["ls"])?;
    assert!(ls.contains(&chain[1]) && ls.contains("Committed"), "{ls}");

    snapshots(&containerd, &["view", "rootfs", &chain[1]])?;
    let target = scratch.path().join("rootfs");
    let files = with_mounted(&containerd, "rootfs", &target, || {
        let read = |path: &str| std::fs::read_to_string(target.join(path));
        Ok([read("hello.txt")?, read("a/one.txt")?, read("a/two.txt")?])
    })?;
    assert_eq!(files, ["hello from layer two\n", "1\n", "2\n"]);

    snapshots(&containerd, &["rm", "rootfs"])?;
    containerd.ctr_ok(&["images", "rm", "--sync", name])?;
    wait_collected(&containerd, &server)?;
    drop(containerd);
    server.stop()
}
