//! Snapshots of a vdisk's lineage: each blob applied onto its parent's disk gives exactly
//! the disk its log replays to, whatever restores and clones came between.

use std::path::{Path, PathBuf};

use anyhow::ensure;
use bytes::Bytes;
use strata_blockvol::{Log, Recorded, SnapshotSpec, Snapshotted};
use strata_hub::{Hub, Take, Workspace};
use strata_kv::Store;
use strata_nbd::restore::{self, Bound};
use strata_nbd::{Records, Vdisk};
use strata_tlog::aggregate::{Aggregate, NO_PREV};
use strata_tlog::message::Block;
use strata_tlog::player::{self, Bounds};
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::SegmentStore;
use strata_volume::{BlobId, materialize_disk};

const SIZE: u64 = 8 << 20;

struct Env {
    dir: tempfile::TempDir,
    log: SegmentStore,
    records: Records,
    ws: Workspace,
    next: u64,
}

/// A change to write to a disk's log.
enum Change {
    Write(u64, Vec<u8>),
    Zero(u64, u64),
}

impl Env {
    fn new() -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let log = SegmentStore::open(&dir.path().join("tlog"))?;
        let records = Records::embedded(dir.path());
        let hub = Hub::new(Store::redb(&dir.path().join("volumes.redb"))?, "");
        let ws = Workspace::open(hub, dir.path(), "tester")?;
        Ok(Env { dir, log, records, ws, next: 1 })
    }

    /// Appends `changes` to `disk`'s own log as one aggregate, as the tlog server would.
    fn append(&mut self, disk: &str, changes: &[Change]) -> anyhow::Result<()> {
        let tlog_id = self.records.get(disk)?.tlog_id;
        let prev = self.log.head(&tlog_id)?.map_or(NO_PREV, |h| h.hash);
        let blocks = changes
            .iter()
            .map(|c| {
                self.next += 1;
                match c {
                    Change::Write(at, data) => {
                        Block::write(self.next, *at, Bytes::from(data.clone()), self.next)
                    }
                    Change::Zero(at, len) => Block::discard(self.next, *at, *len, self.next),
                }
            })
            .collect();
        let aggregate = Aggregate { vdisk_id: tlog_id.clone(), timestamp: self.next, blocks, prev };
        self.log.append(&tlog_id, &aggregate.seal(None)?)?;
        Ok(())
    }

    fn snapshot(&self, disk: &str, name: &str) -> anyhow::Result<Recorded> {
        let spec =
            SnapshotSpec { volset: None, take: Take { name: name.into(), ..Take::default() } };
        let log = Log { storage: &self.log, key: None };
        match strata_blockvol::snapshot(&self.ws, &self.records, log, disk, &spec, |_| {})? {
            Snapshotted::Recorded(r) => Ok(*r),
            Snapshotted::Unchanged { base } => anyhow::bail!("unchanged since {base}"),
        }
    }

    /// The disk as its whole lineage replays, base included: what every snapshot must hold.
    fn replayed(&self, disk: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path(&format!("{disk}.expected"));
        let _ = std::fs::remove_file(&path);
        let vdisk = self.records.get(disk)?;
        let copy = format!("{disk}-check");
        let _ = self.records.remove(&copy);
        let made = restore::restore(
            &self.records,
            &self.log,
            None,
            disk,
            Bound::default(),
            Some(&copy),
            |_| {},
        )?;
        let bytes = std::fs::read(&made.image)?;
        self.records.remove(&copy)?;
        ensure!(bytes.len() as u64 == vdisk.size);
        Ok(bytes)
    }

    /// The disk a snapshot's chain of blobs materializes.
    fn materialized(&self, snapshot: &str) -> anyhow::Result<Vec<u8>> {
        let chain: Vec<BlobId> = (self.ws.hub().chain(snapshot)?.into_iter())
            .map(|s| s.blob_id.unwrap_or_default().parse())
            .collect::<Result<_, _>>()?;
        let path = self.path("materialized.img");
        materialize_disk(&self.ws.local().blobs, &chain, &path, |_, _| {})?;
        Ok(std::fs::read(&path)?)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

fn same(a: &[u8], b: &[u8], what: &str) -> anyhow::Result<()> {
    ensure!(a.len() == b.len(), "{what}: {} vs {} bytes", a.len(), b.len());
    if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
        anyhow::bail!("{what}: first difference at byte {at}");
    }
    Ok(())
}

#[test]
fn incremental_snapshots_hold_exactly_the_changes_since_their_parent() -> anyhow::Result<()> {
    let mut env = Env::new()?;
    env.records.create("d", SIZE, 4096)?;
    env.append("d", &[Change::Write(0, data(1, 64 << 10)), Change::Write(1 << 20, data(2, 8192))])?;
    let s1 = env.snapshot("d", "s1")?;
    ensure!(s1.snapshot.parent_id.is_none() && s1.blob.header.full);
    ensure!(s1.blob.header.data_bytes == (64 << 10) + 8192, "{:?}", s1.blob.header);
    same(&env.materialized(&s1.snapshot.id)?, &env.replayed("d")?, "s1")?;

    env.append("d", &[Change::Write(4096, data(3, 4096)), Change::Zero(1 << 20, 4096)])?;
    env.append("d", &[Change::Write(4096, data(4, 4096))])?;
    let s2 = env.snapshot("d", "s2")?;
    ensure!(s2.snapshot.parent_id.as_deref() == Some(s1.snapshot.id.as_str()));
    ensure!(!s2.blob.header.full && s2.blocks == 3, "{} blocks", s2.blocks);
    ensure!(s2.blob.header.data_bytes == 4096 && s2.blob.header.zero_bytes == 4096);
    same(&env.materialized(&s2.snapshot.id)?, &env.replayed("d")?, "s2")?;

    // Nothing new: no snapshot, and the log is not read.
    let log = Log { storage: &env.log, key: None };
    let spec = SnapshotSpec {
        take: Take { name: "s3".into(), ..Take::default() },
        ..SnapshotSpec::default()
    };
    let unchanged = strata_blockvol::snapshot(&env.ws, &env.records, log, "d", &spec, |_| {})?;
    ensure!(matches!(unchanged, Snapshotted::Unchanged { ref base } if *base == s2.snapshot.id));
    Ok(())
}

#[test]
fn a_restore_before_the_last_snapshot_starts_over_and_one_after_goes_on() -> anyhow::Result<()> {
    let mut env = Env::new()?;
    env.records.create("d", SIZE, 4096)?;
    env.append("d", &[Change::Write(0, data(1, 8192))])?;
    let early = env.next;
    env.append("d", &[Change::Write(65536, data(2, 8192))])?;
    let s1 = env.snapshot("d", "s1")?;

    // Restored in place to after s1's point: the next blob holds only the later blocks.
    env.append("d", &[Change::Write(8192, data(3, 4096))])?;
    let after = env.next;
    env.append("d", &[Change::Write(12288, data(4, 4096))])?;
    let bound = Bound { to_seq: Some(after), ..Bound::default() };
    restore::restore(&env.records, &env.log, None, "d", bound, None, |_| {})?;
    env.append("d", &[Change::Write(1 << 20, data(5, 4096))])?;
    let s2 = env.snapshot("d", "s2")?;
    ensure!(s2.snapshot.parent_id.as_deref() == Some(s1.snapshot.id.as_str()));
    ensure!(s2.blocks == 2 && s2.blob.header.data_bytes == 8192, "{} blocks", s2.blocks);
    same(&env.materialized(&s2.snapshot.id)?, &env.replayed("d")?, "after")?;

    // Restored in place to before s2's point (and s1's): a new root of the whole lineage.
    let bound = Bound { to_time: Some(early), ..Bound::default() };
    restore::restore(&env.records, &env.log, None, "d", bound, None, |_| {})?;
    let s3 = env.snapshot("d", "s3")?;
    ensure!(s3.snapshot.parent_id.is_none() && s3.blob.header.full, "{:?}", s3.snapshot);
    ensure!(s3.branch.name == "d", "main is taken: a new branch named after the disk");
    same(&env.materialized(&s3.snapshot.id)?, &env.replayed("d")?, "before")?;
    Ok(())
}

#[test]
fn a_disk_made_from_a_snapshot_snapshots_on_top_of_it() -> anyhow::Result<()> {
    let mut env = Env::new()?;
    env.records.create("d", SIZE, 4096)?;
    env.append("d", &[Change::Write(0, data(1, 1 << 20)), Change::Write(4 << 20, data(2, 4096))])?;
    let s1 = env.snapshot("d", "s1")?;
    let clone: Vdisk =
        strata_blockvol::create_vdisk(&env.ws, &env.records, "s1", None, "c", 4096, |_, _| {})?;
    same(&std::fs::read(&clone.image)?, &env.materialized(&s1.snapshot.id)?, "clone")?;
    ensure!(clone.base.as_ref().is_some_and(|b| b.chain.len() == 1));

    env.append("c", &[Change::Zero(0, 4096), Change::Write(6 << 20, data(3, 4096))])?;
    let c1 = env.snapshot("c", "c1")?;
    ensure!(c1.snapshot.parent_id.as_deref() == Some(s1.snapshot.id.as_str()));
    ensure!(c1.branch.name == "main" && c1.volset.name == "d", "extends s1's branch, same set");
    ensure!(
        c1.blocks == 2 && c1.blob.header.data_bytes == 4096 && c1.blob.header.zero_bytes == 4096
    );
    same(&env.materialized(&c1.snapshot.id)?, &env.replayed("c")?, "clone's snapshot")?;

    // The original goes on from s1 too: s1 is no longer a tip, so it forks.
    env.append("d", &[Change::Write(8192, data(4, 4096))])?;
    let s2 = env.snapshot("d", "s2")?;
    ensure!(
        s2.snapshot.parent_id.as_deref() == Some(s1.snapshot.id.as_str()) && s2.branch.name == "d"
    );

    // A restore of the clone starts from its base: to sequence 0 it is the snapshot.
    let bound = Bound { to_seq: Some(0), ..Bound::default() };
    let back = restore::restore(&env.records, &env.log, None, "c", bound, Some("c0"), |_| {})?;
    same(&std::fs::read(&back.image)?, &env.materialized(&s1.snapshot.id)?, "restored clone")?;
    ensure!(replayed_alone(&env.log, &clone.tlog_id, &env.path("own.img"))? == 2);
    Ok(())
}

/// A clone's own log replayed onto nothing holds only its own writes (the base is not in
/// the log): the record's base is what makes it whole.
fn replayed_alone(log: &SegmentStore, tlog_id: &str, path: &Path) -> anyhow::Result<u64> {
    Ok(player::replay(log, tlog_id, None, Bounds::default(), path, |_| {})?.blocks)
}
