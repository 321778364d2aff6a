//! The segment store: round trips, rotation, locking, torn tails, damage, and durability
//! under `kill -9`. The helpers at the top also serve `tests/player.rs`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_tlog::Error;
use strata_tlog::aggregate::{Aggregate, Hash, Key, NO_PREV, Sealed, hex};
use strata_tlog::message::Block;
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::{SegmentConfig, SegmentStore};

/// `count` random blocks from sequence `first`: writes of 512 B to 8 KiB at 512-byte
/// offsets in the first MiB, and a discard now and then. Block `s` is written at time
/// `1000 * s`.
pub(crate) fn random_blocks(rng: &mut fastrand::Rng, first: u64, count: u64) -> Vec<Block> {
    (first..first + count)
        .map(|seq| {
            let offset = rng.u64(0..2048) * 512;
            if rng.u8(0..8) == 0 {
                return Block::discard(seq, offset, rng.u64(1..32) * 512, seq * 1000);
            }
            let mut data = vec![0u8; rng.usize(1..=16) * 512];
            rng.fill(&mut data);
            Block::write(seq, offset, Bytes::from(data), seq * 1000)
        })
        .collect()
}

/// Seals `blocks` on the head of `vdisk` and appends them.
pub(crate) fn append_blocks(
    store: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    blocks: Vec<Block>,
) -> anyhow::Result<Sealed> {
    let prev = store.head(vdisk)?.map_or(NO_PREV, |s| s.hash);
    let timestamp = blocks.last().map_or(0, |b| b.timestamp);
    let aggregate = Aggregate { vdisk_id: vdisk.into(), timestamp, blocks, prev };
    let sealed = aggregate.seal(key)?;
    store.append(vdisk, &sealed)?;
    Ok(sealed)
}

/// Appends `aggregates` aggregates of `per` random blocks each; returns their names.
pub(crate) fn fill(
    store: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    aggregates: u64,
    per: u64,
) -> anyhow::Result<Vec<Hash>> {
    let mut rng = fastrand::Rng::with_seed(aggregates * 31 + per);
    let first = store.head(vdisk)?.map_or(1, |s| s.header.last_sequence + 1);
    (0..aggregates)
        .map(|i| {
            let blocks = random_blocks(&mut rng, first + i * per, per);
            Ok(*append_blocks(store, vdisk, key, blocks)?.hash())
        })
        .collect()
}

/// A vdisk's segment files, oldest first.
pub(crate) fn segments(dir: &Path, vdisk: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(vdisk))?
        .map(|e| Ok(e?.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    Ok(files)
}

/// Flips one bit of the byte at `at` in `path`.
pub(crate) fn flip(path: &Path, at: u64) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, bytes)?;
    Ok(())
}

fn small_segments() -> SegmentConfig {
    SegmentConfig { segment_size: 64 << 10, ..SegmentConfig::default() }
}

fn names(store: &dyn Storage, vdisk: &str) -> anyhow::Result<Vec<Hash>> {
    Ok(store.list(vdisk)?.iter().map(|s| s.hash).collect())
}

#[test]
fn appends_read_back_across_reopen_and_rotation() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = Key::from_bytes(&[5; 32]);
    let (a, b) = {
        let store = SegmentStore::open_with(tmp.path(), small_segments())?;
        assert_eq!(store.head("vd1")?, None);
        assert!(store.list("vd1")?.is_empty());
        let a = fill(&store, "vd1", Some(&key), 40, 8)?;
        let b = fill(&store, "vd2", None, 3, 2)?;
        assert_eq!(names(&store, "vd1")?, a);
        assert_eq!(store.head("vd1")?.map(|s| s.hash), a.last().copied());
        (a, b)
    };
    assert!(segments(tmp.path(), "vd1")?.len() > 3, "64 KiB segments rotate");
    for store in [
        SegmentStore::open_with(tmp.path(), small_segments())?,
        SegmentStore::open_read_only(tmp.path())?,
    ] {
        assert_eq!(store.vdisks()?, ["vd1", "vd2"]);
        assert_eq!(names(&store, "vd1")?, a);
        assert_eq!(names(&store, "vd2")?, b);
        let listed = store.list("vd1")?;
        assert_eq!(listed[0].header.prev, NO_PREV);
        assert!(listed.windows(2).all(|w| w[1].header.prev == w[0].hash));
        for stored in &listed {
            let bytes = store.get("vd1", &stored.hash)?;
            assert_eq!(bytes.len() as u64, stored.len);
            let aggregate = Aggregate::open("vd1", &stored.hash, &bytes, Some(&key))?;
            assert_eq!(aggregate.blocks.len() as u32, stored.header.blocks);
        }
    }
    let store = SegmentStore::open_with(tmp.path(), small_segments())?;
    let more = fill(&store, "vd1", Some(&key), 2, 3)?;
    assert_eq!(store.list("vd1")?.len(), a.len() + more.len());
    Ok(())
}

#[test]
fn appends_must_extend_the_head_and_ids_must_be_valid() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = SegmentStore::open(tmp.path())?;
    let first = fill(&store, "vd", None, 1, 2)?[0];
    let mut rng = fastrand::Rng::with_seed(1);
    let stale = Aggregate {
        vdisk_id: "vd".into(),
        timestamp: 1,
        blocks: random_blocks(&mut rng, 3, 1),
        prev: NO_PREV,
    }
    .seal(None)?;
    let err = store.append("vd", &stale).unwrap_err();
    assert!(matches!(err, Error::StaleHead(_)), "a stale writer is fenced: {err}");
    assert!(err.to_string().contains(&format!("the head is {}", hex(&first))), "{err}");
    let err = store.append("../etc", &stale).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(store.head(".lock").is_err());
    let err = store.get("vd", &[1; 32]).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(names(&store, "vd")?, [first]);
    Ok(())
}

#[test]
fn one_writer_per_directory_and_readers_beside_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = SegmentStore::open(tmp.path())?;
    let written = fill(&store, "vd", None, 3, 2)?;
    let err = SegmentStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("locked by another process"), "{err}");
    let reader = SegmentStore::open_read_only(tmp.path())?;
    assert_eq!(names(&reader, "vd")?, written);
    assert!(reader.append("vd", &store_head_again(&store)?).is_err());
    drop(store);
    assert!(SegmentStore::open(tmp.path()).is_ok(), "the lock goes with the store");
    Ok(())
}

/// An aggregate that would extend `store`'s head of "vd".
fn store_head_again(store: &dyn Storage) -> anyhow::Result<Sealed> {
    let head = store.head("vd")?.map_or(NO_PREV, |s| s.hash);
    let mut rng = fastrand::Rng::with_seed(2);
    let blocks = random_blocks(&mut rng, 100, 1);
    Ok(Aggregate { vdisk_id: "vd".into(), timestamp: 1, blocks, prev: head }.seal(None)?)
}

#[test]
fn a_torn_tail_is_cut_back_on_open() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (kept, torn) = {
        let store = SegmentStore::open(tmp.path())?;
        let kept = fill(&store, "vd", None, 5, 4)?;
        let torn = store.head("vd")?.map(|s| s.len).unwrap_or_default();
        (kept, torn)
    };
    // The last record loses its second half, as a crash during its write would leave it.
    let last = segments(tmp.path(), "vd")?.pop().unwrap();
    let data_end = std::fs::read(&last)?.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    std::fs::OpenOptions::new().write(true).open(&last)?.set_len(data_end - torn / 2)?;

    let reader = SegmentStore::open_read_only(tmp.path())?;
    assert_eq!(names(&reader, "vd")?, kept[..4], "a reader sees the consistent prefix");
    let len_before = std::fs::metadata(&last)?.len();
    drop(reader);
    assert_eq!(std::fs::metadata(&last)?.len(), len_before, "a reader never truncates");

    let store = SegmentStore::open(tmp.path())?;
    assert_eq!(names(&store, "vd")?, kept[..4]);
    assert!(std::fs::metadata(&last)?.len() < len_before, "the writer cut the tail");
    let again = fill(&store, "vd", None, 2, 3)?;
    drop(store);
    let store = SegmentStore::open(tmp.path())?;
    assert_eq!(names(&store, "vd")?, [&kept[..4], &again[..]].concat());
    Ok(())
}

#[test]
fn a_segment_whose_header_never_landed_is_dropped() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut written = Vec::new();
    {
        // Append until a rotation: the newest segment then holds exactly one record.
        let store = SegmentStore::open_with(tmp.path(), small_segments())?;
        while written.is_empty() || segments(tmp.path(), "vd")?.len() < 2 {
            written.extend(fill(&store, "vd", None, 1, 8)?);
        }
    }
    // A crash between sealing a segment and making the next one's header durable leaves
    // an empty or partial file: replace the newest segment (and its one record) by that.
    let newest = segments(tmp.path(), "vd")?.pop().unwrap();
    std::fs::write(&newest, [0u8; 7])?;
    written.pop();
    let store = SegmentStore::open_with(tmp.path(), small_segments())?;
    assert!(!newest.exists(), "the empty segment a crash left is removed");
    assert_eq!(names(&store, "vd")?, written);
    fill(&store, "vd", None, 1, 1)?;
    assert_eq!(store.list("vd")?.len(), written.len() + 1);
    assert!(newest.exists(), "the next append starts the segment again");
    Ok(())
}

#[test]
fn damage_before_valid_records_is_corruption_named_by_segment_and_offset() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    fill(&SegmentStore::open(tmp.path())?, "vd", None, 6, 4)?;
    let seg = segments(tmp.path(), "vd")?.pop().unwrap();
    // Inside the second record's envelope: its hash no longer verifies, four follow.
    let listed = SegmentStore::open_read_only(tmp.path())?.list("vd")?;
    let second = listed[0].len + 16 + 40;
    flip(&seg, second + 40 + 200)?;
    // The server's open hashes every record of the last segment and refuses the damage.
    let err = SegmentStore::open(tmp.path()).map(|_| ()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Corrupted(_)), "{message}");
    assert!(message.contains(&seg.display().to_string()), "{message}");
    assert!(message.contains(&format!("offset {second}")), "{message}");
    assert!(message.contains("valid record follows"), "{message}");
    // A reader hashes only the last record when it opens (a write under way can only be
    // the last one); the damaged aggregate is refused, by name, where it is read.
    let reader = SegmentStore::open_read_only(tmp.path())?;
    assert_eq!(reader.list("vd")?.len(), listed.len());
    let err = strata_tlog::player::verify(&reader, "vd", None, false).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Corrupted(_)), "{message}");
    assert!(message.contains(&hex(&listed[1].hash)), "{message}");
    Ok(())
}

/// Opening the store in `dir` for writing, and listing it read-only, both fail with
/// `Corrupted` naming `seg`, `offset` and the valid record after it.
fn damage_is_named(dir: &Path, seg: &Path, offset: u64) -> anyhow::Result<()> {
    for result in [SegmentStore::open(dir).map(|_| ()), {
        let reader = SegmentStore::open_read_only(dir)?;
        reader.list("vd").map(|_| ())
    }] {
        let Err(err) = result else { anyhow::bail!("damage at offset {offset} went unseen") };
        let message = err.to_string();
        assert!(matches!(err, Error::Corrupted(_)), "{message}");
        assert!(message.contains(&seg.display().to_string()), "{message}");
        assert!(message.contains(&format!("offset {offset}")), "{message}");
        assert!(message.contains("valid record follows"), "{message}");
    }
    Ok(())
}

#[test]
fn zeros_before_valid_records_are_damage_not_the_end() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let kept = fill(&SegmentStore::open(tmp.path())?, "vd", None, 6, 4)?;
    let seg = segments(tmp.path(), "vd")?.pop().unwrap();
    // Zero the third record's header and envelope, as media damage might: before the fix
    // the scan took the zeros for the end and silently dropped the last four aggregates.
    let list = SegmentStore::open_read_only(tmp.path())?.list("vd")?;
    let third = 16 + list[0].len + 40 + list[1].len + 40;
    let mut bytes = std::fs::read(&seg)?;
    bytes[third as usize..(third + 40 + list[2].len) as usize].fill(0);
    std::fs::write(&seg, &bytes)?;
    assert_eq!(kept.len(), 6);
    damage_is_named(tmp.path(), &seg, third)
}

#[test]
fn reopening_an_existing_vdisk_directory_syncs_its_parent() -> anyhow::Result<()> {
    // A vdisk directory left by a process that crashed before syncing its parent: opening
    // and appending must work, and the directory stays in place across a reopen.
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("log");
    std::fs::create_dir_all(root.join("vd"))?;
    let store = SegmentStore::open(&root)?;
    let kept = fill(&store, "vd", None, 2, 2)?;
    drop(store);
    assert_eq!(names(&SegmentStore::open(&root)?, "vd")?, kept);
    Ok(())
}

#[test]
fn a_truncated_or_missing_sealed_segment_is_corruption() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    fill(&SegmentStore::open_with(tmp.path(), small_segments())?, "vd", None, 20, 8)?;
    let files = segments(tmp.path(), "vd")?;
    assert!(files.len() >= 3);
    let len = std::fs::metadata(&files[0])?.len();
    std::fs::OpenOptions::new().write(true).open(&files[0])?.set_len(len - 100)?;
    let err = SegmentStore::open_with(tmp.path(), small_segments()).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err}");
    assert!(err.to_string().contains(&files[0].display().to_string()), "{err}");

    std::fs::remove_file(&files[0])?;
    std::fs::remove_file(&files[1])?;
    std::fs::rename(&files[2], &files[1])?;
    let err = SegmentStore::open_read_only(tmp.path())?.head("vd").unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err}");
    Ok(())
}

const CHILD_DIR: &str = "STRATA_TLOG_KILL9_CHILD_DIR";

/// One kill -9 scenario: a child process appends in a loop, printing each name once its
/// append returned, and is killed at a random moment, round after round.
struct KillCase {
    /// The test function the child runs as.
    test: &'static str,
    /// The child's segment settings (the parent reopens with them).
    config: SegmentConfig,
    /// Aggregates one append call makes, at most: how many may be found beyond the
    /// acknowledged ones (any prefix of the call that was under way).
    per_call: usize,
    rounds: usize,
}

const KEY: [u8; 32] = [9; 32];

/// The child half: appends until killed (or for a minute at most) with `append`, which
/// returns the names of what it appended.
fn append_until_killed(
    dir: &Path,
    case: &KillCase,
    mut append: impl FnMut(&dyn Storage, &mut fastrand::Rng) -> anyhow::Result<Vec<Hash>>,
) -> anyhow::Result<()> {
    let store = SegmentStore::open_with(dir, case.config.clone())?;
    let mut rng = fastrand::Rng::new();
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        for name in append(&store, &mut rng)? {
            // A closed pipe means the parent is gone: stop.
            if writeln!(out, "acked {}", hex(&name)).and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs `case`: as the child (under [`CHILD_DIR`]) appends with `append` until killed and
/// gives `None`; as the parent, runs the rounds and gives the log's directory.
fn kill_9(
    case: &KillCase,
    mut append: impl FnMut(&dyn Storage, &Key, &mut fastrand::Rng) -> anyhow::Result<Vec<Hash>>,
) -> anyhow::Result<Option<tempfile::TempDir>> {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let key = Key::from_bytes(&KEY);
        append_until_killed(Path::new(&dir), case, |store, rng| append(store, &key, rng))?;
        return Ok(None);
    }
    kill_9_rounds(case).map(Some)
}

/// The parent half: runs the child `case.rounds` times, killing it at a random moment,
/// and checks after each that every acknowledged aggregate is stored, in order, followed by
/// at most the rest of the call under way, and that the head opens.
fn kill_9_rounds(case: &KillCase) -> anyhow::Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    let key = Key::from_bytes(&KEY);
    let mut acked: Vec<String> = Vec::new();
    for round in 0..case.rounds {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--exact", case.test, "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    // The first may follow libtest's "test <name> ... " on the same line.
                    if let Some((_, name)) = line.split_once("acked ") {
                        lines.lock().expect("lines lock").push(name.to_string());
                    }
                }
            })
        };
        // Wait for a few appends, then kill at a random moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        while lines.lock().expect("lines lock").len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..60_000)));
        child.kill()?;
        child.wait()?;
        reader.join().expect("the reader thread");
        let new = std::mem::take(&mut *lines.lock().expect("lines lock"));
        assert!(new.len() >= 3, "round {round}: the child appended nothing");
        acked.extend(new);

        let store = SegmentStore::open_with(tmp.path(), case.config.clone())?;
        let listed = store.list("vd")?;
        let stored: Vec<String> = listed.iter().map(|s| hex(&s.hash)).collect();
        // Every acknowledged append is there, in order, and at most the rest of the call
        // that was under way at the kill, unacknowledged.
        assert!(stored.len() >= acked.len(), "round {round}: acknowledged aggregates lost");
        assert_eq!(stored[..acked.len()], acked[..], "round {round}");
        assert!(stored.len() <= acked.len() + case.per_call, "round {round}: phantom aggregates");
        let head = listed.last().expect("the child stored aggregates");
        let bytes = store.get("vd", &head.hash)?;
        Aggregate::open("vd", &head.hash, &bytes, Some(&key))?;
        // The next round's child continues from the stored head, acknowledged or not.
        acked = stored;
    }
    Ok(tmp)
}

const SMALL_APPENDS: KillCase = KillCase {
    test: "storage::appends_that_returned_survive_kill_9",
    config: SegmentConfig { segment_size: 256 << 10, direct_io: true },
    per_call: 1,
    rounds: 30,
};

#[test]
fn appends_that_returned_survive_kill_9() -> anyhow::Result<()> {
    let appended = kill_9(&SMALL_APPENDS, |store, key, rng| {
        let first = store.head("vd")?.map_or(1, |s| s.header.last_sequence + 1);
        let count = rng.u64(1..40);
        let blocks = random_blocks(rng, first, count);
        Ok(vec![*append_blocks(store, "vd", Some(key), blocks)?.hash()])
    })?;
    let Some(tmp) = appended else { return Ok(()) };
    assert!(segments(tmp.path(), "vd")?.len() > 1, "the crashes spanned segment rotations");
    Ok(())
}

const LARGE_FLUSHES: KillCase = KillCase {
    test: "storage::large_flushes_that_returned_survive_kill_9",
    config: SegmentConfig { segment_size: 64 << 20, direct_io: true },
    per_call: 12,
    rounds: 10,
};

/// The same with flushes of about 12 MB each, which the segment writer writes in batches
/// while the rest is sealed: a kill mid-flush leaves a prefix of it at most.
#[test]
fn large_flushes_that_returned_survive_kill_9() -> anyhow::Result<()> {
    let appended = kill_9(&LARGE_FLUSHES, |store, key, rng| {
        let written = append_large(store, "vd", Some(key), rng, LARGE_FLUSHES.per_call)?;
        Ok(written.into_iter().map(|(hash, _)| hash).collect())
    })?;
    let Some(tmp) = appended else { return Ok(()) };
    assert!(!segments(tmp.path(), "vd")?.is_empty(), "the flushes reached a segment");
    Ok(())
}

/// Records reach the segment files in whole aligned blocks with `O_DIRECT`, the partial
/// block before them rewritten with the same bytes, or through the page cache; either way,
/// many small appends and segment rotations read back whole after a reopen.
#[test]
fn appends_read_back_with_and_without_o_direct() -> anyhow::Result<()> {
    for direct_io in [true, false] {
        let dir = tempfile::tempdir()?;
        let config = SegmentConfig { segment_size: 256 * 1024, direct_io };
        let names = {
            let store = SegmentStore::open_with(dir.path(), config.clone())?;
            let mut names = fill(&store, "vd", None, 40, 1)?;
            names.extend(fill(&store, "vd", None, 7, 30)?);
            names.extend(fill(&store, "vd", None, 25, 2)?);
            names
        };
        assert!(segments(dir.path(), "vd")?.len() > 1, "rotation happened");
        for store in [SegmentStore::open_read_only(dir.path())?, SegmentStore::open(dir.path())?] {
            let listed = store.list("vd")?;
            assert_eq!(listed.iter().map(|s| s.hash).collect::<Vec<_>>(), names);
            for stored in &listed {
                let bytes = store.get("vd", &stored.hash)?;
                Aggregate::open("vd", &stored.hash, &bytes, None)?;
            }
        }
    }
    Ok(())
}

/// Appends `count` aggregates of one incompressible write of 0.7 to 1.3 MB each in one
/// `append_many`, so the flush spans several of the segment writer's batches and they end
/// inside a block; returns their names and blocks.
fn append_large(
    store: &dyn Storage,
    vdisk: &str,
    key: Option<&Key>,
    rng: &mut fastrand::Rng,
    count: usize,
) -> anyhow::Result<Vec<(Hash, Vec<Block>)>> {
    let head = store.head(vdisk)?;
    let mut sequence = head.map_or(1, |s| s.header.last_sequence + 1);
    let mut written = Vec::new();
    let mut next = |prev: &Hash| -> strata_tlog::Result<Option<Sealed>> {
        if written.len() == count {
            return Ok(None);
        }
        let mut data = vec![0u8; rng.usize(700_000..1_300_000)];
        rng.fill(&mut data);
        let block = Block::write(sequence, 0, Bytes::from(data), sequence);
        let aggregate = Aggregate {
            vdisk_id: vdisk.into(),
            timestamp: sequence,
            blocks: vec![block],
            prev: *prev,
        };
        sequence += 1;
        let sealed = aggregate.seal(key)?;
        written.push((*sealed.hash(), aggregate.blocks));
        Ok(Some(sealed))
    };
    let stored = store.append_many(vdisk, &mut next, head.map_or(NO_PREV, |s| s.hash))?;
    assert_eq!(Some(stored), written.last().map(|(h, _)| *h));
    Ok(written)
}

/// A flush of many large aggregates is handed to the segment writer in batches that end
/// mid-block, while the next ones are sealed; every aggregate reads back whole after a
/// reopen, with `O_DIRECT` and without, in one segment or across a rotation mid-flush.
#[test]
fn a_large_flush_written_in_batches_reads_back_whole() -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(15);
    let configs = [
        SegmentConfig { segment_size: 256 << 20, direct_io: true },
        SegmentConfig { segment_size: 256 << 20, direct_io: false },
        SegmentConfig { segment_size: 20 << 20, direct_io: true },
    ];
    for config in configs {
        let dir = tempfile::tempdir()?;
        let mut written = Vec::new();
        {
            let store = SegmentStore::open_with(dir.path(), config.clone())?;
            // Two flushes: the second starts where the first left a partial block.
            for _ in 0..2 {
                written.extend(append_large(&store, "vd", None, &mut rng, 30)?);
                // Written once append_many returned: a reader beside the writer sees it all.
                let reader = SegmentStore::open_read_only(dir.path())?;
                assert_eq!(names(&reader, "vd")?.len(), written.len());
            }
        }
        if config.segment_size < 256 << 20 {
            assert!(segments(dir.path(), "vd")?.len() > 1, "a rotation happened mid-flush");
        }
        let store = SegmentStore::open(dir.path())?;
        let listed = names(&store, "vd")?;
        assert_eq!(listed, written.iter().map(|(h, _)| *h).collect::<Vec<_>>());
        for (hash, blocks) in &written {
            let bytes = store.get("vd", hash)?;
            assert_eq!(&Aggregate::open("vd", hash, &bytes, None)?.blocks, blocks);
        }
    }
    Ok(())
}
