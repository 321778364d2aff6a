//! The overlayfs snapshotter with real mounts (the tests run as root, as CI does): layers,
//! whiteouts, read-only views, deep chains, usage and cleanup.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use strata_kv::Category;
use strata_snapshots::{Filters, Kind, Mount, Snapshotter, unmount};

use strata_testkit::{StoreFixture as Fixture, redb_store as redb};

/// A mount point that is unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(mounts: &[Mount], target: &Path) -> anyhow::Result<Mounted> {
        ensure!(mounts.len() == 1, "expected one mount, got {mounts:?}");
        fs::create_dir_all(target)?;
        mounts[0].mount(target).context("mount (these tests need root)")?;
        Ok(Mounted(target.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

fn setup() -> anyhow::Result<(Fixture, Snapshotter)> {
    let fixture = redb()?;
    let snapshotter = Snapshotter::new(&fixture.dir.path().join("root"), fixture.store.clone())?;
    Ok((fixture, snapshotter))
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn layers_whiteouts_and_readonly_views() -> anyhow::Result<()> {
    let (fixture, sn) = setup()?;
    let mnt = fixture.dir.path().join("mnt");

    let mounts = sn.prepare("base-active", "", none())?;
    ensure!(mounts[0].kind == "bind" && mounts[0].options.contains(&"rw".to_string()));
    {
        let _m = Mounted::new(&mounts, &mnt)?;
        fs::write(mnt.join("kept"), "from base")?;
        fs::write(mnt.join("doomed"), "deleted in the child")?;
        fs::create_dir(mnt.join("dir"))?;
        fs::write(mnt.join("dir/nested"), "nested")?;
    }
    sn.commit("base", "base-active", none())?;

    let mounts = sn.prepare("child-active", "base", none())?;
    ensure!(mounts[0].kind == "overlay", "{mounts:?}");
    {
        let _m = Mounted::new(&mounts, &mnt)?;
        ensure!(fs::read_to_string(mnt.join("kept"))? == "from base", "child misses parent file");
        fs::remove_file(mnt.join("doomed"))?;
        fs::write(mnt.join("added"), "from child")?;
        fs::write(mnt.join("dir/nested"), "changed")?;
    }
    sn.commit("child", "child-active", none())?;

    let mounts = sn.view("child-view", "child", none())?;
    ensure!(
        mounts[0].kind == "overlay" && !mounts[0].options.iter().any(|o| o.starts_with("upperdir"))
    );
    {
        let _m = Mounted::new(&mounts, &mnt)?;
        ensure!(!mnt.join("doomed").exists(), "a whiteout did not hide the deleted file");
        ensure!(fs::read_to_string(mnt.join("added"))? == "from child");
        ensure!(fs::read_to_string(mnt.join("dir/nested"))? == "changed");
        ensure!(fs::read_to_string(mnt.join("kept"))? == "from base");
        ensure!(fs::write(mnt.join("new"), "x").is_err(), "a view was writable");
    }

    let mounts = sn.view("base-view", "base", none())?;
    ensure!(mounts[0].kind == "bind" && mounts[0].options.contains(&"ro".to_string()));
    {
        let _m = Mounted::new(&mounts, &mnt)?;
        ensure!(mnt.join("doomed").exists(), "the base layer lost a file");
        ensure!(fs::write(mnt.join("new"), "x").is_err(), "a single-parent view was writable");
    }
    Ok(())
}

#[test]
fn deep_chain_of_128_layers_mounts() -> anyhow::Result<()> {
    let (fixture, sn) = setup()?;
    let mnt = fixture.dir.path().join("mnt");
    let mut parent = String::new();
    for depth in 0..128 {
        let key = format!("active-{depth}");
        let name = format!("layer-{depth}");
        let mounts = sn.prepare(&key, &parent, none())?;
        // Write straight into the layer rather than mounting 128 times.
        let upper = mounts[0]
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&mounts[0].source));
        fs::write(upper.join(format!("file-{depth}")), depth.to_string())?;
        sn.commit(&name, &key, none())?;
        parent = name;
    }
    let mounts = sn.prepare("top", &parent, none())?;
    let options = mounts[0].options.join(",");
    ensure!(options.len() > 4096, "expected options past one page, got {} bytes", options.len());
    let _m = Mounted::new(&mounts, &mnt)?;
    for depth in 0..128 {
        let content = fs::read_to_string(mnt.join(format!("file-{depth}")))?;
        ensure!(content == depth.to_string());
    }
    let err = sn.remove("layer-64").err().context("removed a layer with children")?;
    ensure!(err.category() == Category::FailedPrecondition, "{err}");
    Ok(())
}

#[test]
fn usage_is_measured_and_stored_at_commit() -> anyhow::Result<()> {
    let (_fixture, sn) = setup()?;
    let mounts = sn.prepare("a", "", none())?;
    let layer = PathBuf::from(&mounts[0].source);
    fs::write(layer.join("one"), vec![7u8; 64 * 1024])?;
    fs::write(layer.join("two"), vec![7u8; 64 * 1024])?;
    let live = sn.usage("a")?;
    ensure!(live.inodes == 3 && live.size >= 128 * 1024, "{live:?}");
    sn.commit("c", "a", BTreeMap::from([("k".into(), "v".into())]))?;
    fs::write(layer.join("three"), b"after commit")?;
    ensure!(sn.usage("c")? == live, "committed usage changed after commit");
    let info = sn.stat("c")?;
    ensure!(info.kind == Kind::Committed && info.labels.get("k").map(String::as_str) == Some("v"));
    Ok(())
}

#[test]
fn remove_and_cleanup_leave_no_layers_behind() -> anyhow::Result<()> {
    let (fixture, sn) = setup()?;
    let layers = fixture.dir.path().join("root/snapshots");
    sn.prepare("a", "", none())?;
    sn.commit("c", "a", none())?;
    sn.view("v", "c", none())?;
    ensure!(fs::read_dir(&layers)?.count() == 2);
    fs::create_dir_all(layers.join("999999/fs"))?;
    ensure!(sn.cleanup()? == ["999999"]);
    ensure!(sn.remove("c").err().map(|e| e.category()) == Some(Category::FailedPrecondition));
    sn.remove("v")?;
    sn.remove("c")?;
    ensure!(fs::read_dir(&layers)?.count() == 0);
    ensure!(sn.list(&Filters::default())?.is_empty());
    let err = sn.mounts("c").err().context("mounts of a removed snapshot")?;
    ensure!(err.category() == Category::NotFound, "{err}");
    Ok(())
}

#[test]
fn wrong_kinds_are_refused() -> anyhow::Result<()> {
    let (_fixture, sn) = setup()?;
    sn.prepare("a", "", none())?;
    let active_parent = sn.prepare("b", "a", none()).err().context("active parent accepted")?;
    ensure!(active_parent.category() == Category::InvalidArgument, "{active_parent}");
    sn.view("v", "", none())?;
    let commit_view = sn.commit("c", "v", none()).err().context("committed a view")?;
    ensure!(commit_view.category() == Category::FailedPrecondition, "{commit_view}");
    sn.commit("c", "a", none())?;
    let mounts = sn.mounts("c").err().context("mounts of a committed snapshot")?;
    ensure!(mounts.category() == Category::FailedPrecondition, "{mounts}");
    Ok(())
}
