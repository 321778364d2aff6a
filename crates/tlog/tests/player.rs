//! The player: replay against an in-memory model, bounds, verification of damage and keys,
//! listing, and key files.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use strata_tlog::Error;
use strata_tlog::aggregate::{Key, hex};
use strata_tlog::keyfile::{read_key_file, write_key_file};
use strata_tlog::message::{Block, operation};
use strata_tlog::player::{Bounds, Progress, list, replay, verify, visit};
use strata_tlog::storage::Storage;
use strata_tlog::storage::segment::{SegmentConfig, SegmentStore};

use crate::storage::{append_blocks, flip, random_blocks, segments};

/// Appends `aggregates` aggregates of `per` random blocks; returns every block in order.
fn log(
    store: &dyn Storage,
    key: Option<&Key>,
    aggregates: u64,
    per: u64,
) -> anyhow::Result<Vec<Block>> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut all = Vec::new();
    for i in 0..aggregates {
        let blocks = random_blocks(&mut rng, 1 + i * per, per);
        all.extend(blocks.iter().cloned());
        append_blocks(store, "vd", key, blocks)?;
    }
    Ok(all)
}

/// The image `blocks` make, as the player should write it.
pub(crate) fn model<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> Vec<u8> {
    let mut image = Vec::new();
    for b in blocks {
        let end = (b.offset + b.size) as usize;
        if image.len() < end {
            image.resize(end, 0);
        }
        let range = b.offset as usize..end;
        match b.operation {
            operation::WRITE => image[range].copy_from_slice(&b.data),
            _ => image[range].fill(0),
        }
    }
    image
}

fn small() -> SegmentConfig {
    SegmentConfig { segment_size: 128 << 10, ..SegmentConfig::default() }
}

#[test]
fn replay_rebuilds_the_image_and_reports_progress() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = Key::from_bytes(&[3; 32]);
    let blocks =
        log(&SegmentStore::open_with(&tmp.path().join("tlog"), small())?, Some(&key), 30, 10)?;
    let store = SegmentStore::open_read_only(&tmp.path().join("tlog"))?;
    let image = tmp.path().join("disk.img");
    let mut seen: Vec<Progress> = Vec::new();
    let done = replay(&store, "vd", Some(&key), Bounds::default(), &image, |p| seen.push(p))?;
    assert_eq!(done.last_sequence, Some(300));
    assert_eq!(done.blocks, 300);
    assert_eq!(done.aggregates, 30);
    let writes: u64 =
        blocks.iter().filter(|b| b.operation == operation::WRITE).map(|b| b.size).sum();
    assert_eq!(done.bytes, writes);
    assert_eq!(std::fs::read(&image)?, model(&blocks));
    assert_eq!(seen.len(), 30);
    let last = seen.last().unwrap();
    assert_eq!((last.aggregates, last.bytes), (last.aggregates_total, last.bytes_total));
    Ok(())
}

#[test]
fn replay_stops_at_sequence_and_time_bounds_and_resumes_from_one() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = SegmentStore::open(tmp.path())?;
    let blocks = log(&store, None, 12, 10)?;
    let cases = [
        (Bounds { to_seq: Some(57), ..Bounds::default() }, 57),
        (Bounds { to_time: Some(83_500), ..Bounds::default() }, 83),
        (Bounds { to_seq: Some(5), to_time: Some(90_000), ..Bounds::default() }, 5),
        (Bounds { to_seq: Some(10_000), ..Bounds::default() }, 120),
    ];
    for (i, (bounds, last)) in cases.into_iter().enumerate() {
        let image = tmp.path().join(format!("case{i}.img"));
        let done = replay(&store, "vd", None, bounds, &image, |_| {})?;
        assert_eq!(done.last_sequence, Some(last), "{bounds:?}");
        assert_eq!(std::fs::read(&image)?, model(&blocks[..last as usize]), "{bounds:?}");
    }
    // Continue the image of case 0 from sequence 58: the same as a full replay.
    let image = tmp.path().join("case0.img");
    let from = Bounds { from_seq: Some(58), ..Bounds::default() };
    let done = replay(&store, "vd", None, from, &image, |_| {})?;
    assert_eq!((done.blocks, done.last_sequence), (63, Some(120)));
    assert_eq!(std::fs::read(&image)?, model(&blocks));
    // A lower time bound skips earlier blocks (here: applies only 101 and later).
    let image = tmp.path().join("late.img");
    let late = Bounds { from_time: Some(101_000), ..Bounds::default() };
    assert_eq!(replay(&store, "vd", None, late, &image, |_| {})?.blocks, 20);
    assert_eq!(std::fs::read(&image)?, model(&blocks[100..]));
    Ok(())
}

#[test]
fn visit_hands_over_exactly_the_blocks_replay_applies_and_stops_on_an_error() -> anyhow::Result<()>
{
    let tmp = tempfile::tempdir()?;
    let store = SegmentStore::open(tmp.path())?;
    let blocks = log(&store, None, 12, 10)?;
    let cases = [
        Bounds::default(),
        Bounds { from_seq: Some(33), to_seq: Some(77), ..Bounds::default() },
        Bounds { from_seq: Some(58), to_time: Some(83_500), ..Bounds::default() },
        Bounds { from_time: Some(101_000), ..Bounds::default() },
    ];
    for bounds in cases {
        let mut seen = Vec::new();
        let visited = visit(
            &store,
            "vd",
            None,
            bounds,
            |_| {},
            |b| {
                seen.push(b.clone());
                Ok(())
            },
        )?;
        let image = tmp.path().join("replayed.img");
        let _ = std::fs::remove_file(&image);
        let replayed = replay(&store, "vd", None, bounds, &image, |_| {})?;
        assert_eq!(visited, replayed, "{bounds:?}");
        let expected: Vec<&Block> = blocks
            .iter()
            .filter(|b| bounds.from_seq.is_none_or(|f| b.sequence >= f))
            .filter(|b| bounds.from_time.is_none_or(|f| b.timestamp >= f))
            .take_while(|b| bounds.to_seq.is_none_or(|t| b.sequence <= t))
            .take_while(|b| bounds.to_time.is_none_or(|t| b.timestamp <= t))
            .collect();
        assert_eq!(seen.iter().collect::<Vec<_>>(), expected, "{bounds:?}");
    }
    let mut calls = 0;
    let stopped = visit(
        &store,
        "vd",
        None,
        Bounds::default(),
        |_| {},
        |b| {
            calls += 1;
            if b.sequence == 42 {
                return Err(Error::InvalidArgument("stop at 42".into()));
            }
            Ok(())
        },
    );
    assert!(matches!(stopped, Err(Error::InvalidArgument(m)) if m == "stop at 42"));
    assert_eq!(calls, 42);
    Ok(())
}

#[test]
fn discards_punch_holes_in_a_sparse_image() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = SegmentStore::open(tmp.path())?;
    let data = bytes::Bytes::from(vec![0xabu8; 1 << 20]);
    append_blocks(&store, "vd", None, vec![Block::write(1, 0, data.clone(), 1)])?;
    append_blocks(&store, "vd", None, vec![Block::write(2, 64 << 20, data, 2)])?;
    append_blocks(&store, "vd", None, vec![Block::discard(3, 0, 1 << 20, 3)])?;
    let image = tmp.path().join("disk.img");
    let done = replay(&store, "vd", None, Bounds::default(), &image, |_| {})?;
    assert_eq!((done.blocks, done.discarded), (3, 1 << 20));
    let meta = std::fs::metadata(&image)?;
    assert_eq!(meta.len(), 65 << 20);
    assert!(meta.blocks() * 512 <= 2 << 20, "{} bytes allocated", meta.blocks() * 512);
    let bytes = std::fs::read(&image)?;
    assert!(bytes[..1 << 20].iter().all(|&b| b == 0));
    assert!(bytes[64 << 20..].iter().all(|&b| b == 0xab));
    Ok(())
}

#[test]
fn verify_checks_everything_and_lists_from_headers() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = Key::from_bytes(&[4; 32]);
    let store = SegmentStore::open_with(tmp.path(), small())?;
    log(&store, Some(&key), 20, 10)?;
    let report = verify(&store, "vd", Some(&key), false)?;
    assert_eq!((report.aggregates, report.encrypted, report.blocks), (20, 20, 200));
    assert_eq!((report.first_sequence, report.last_sequence), (Some(1), Some(200)));
    assert_eq!(report.head, store.head("vd")?.map(|s| s.hash));
    let listed = list(&store, "vd")?;
    assert_eq!(listed.len(), 20);
    assert_eq!((listed[3].header.first_sequence, listed[3].header.last_sequence), (31, 40));
    assert_eq!(listed[3].header.timestamp, 40_000);
    let err = verify(&store, "nothing", Some(&key), false).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named_by_verify_and_replay() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = Key::from_bytes(&[4; 32]);
    log(&SegmentStore::open_with(tmp.path(), small())?, Some(&key), 20, 10)?;
    // Inside the body of the second aggregate, in the first (sealed) segment.
    let reader = SegmentStore::open_read_only(tmp.path())?;
    let second = reader.list("vd")?[1];
    let at = 16 + 40 + reader.list("vd")?[0].len + 40 + 500;
    flip(&segments(tmp.path(), "vd")?[0], at)?;
    // Opening scans only the framing of sealed segments; the checks that hash find it.
    let store = SegmentStore::open_with(tmp.path(), small())?;
    let err = verify(&store, "vd", Some(&key), false).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Corrupted(_)), "{message}");
    assert!(message.contains("aggregate 2 of 20"), "{message}");
    assert!(message.contains(&hex(&second.hash)), "{message}");
    let image = tmp.path().join("disk.img");
    let err = replay(&store, "vd", Some(&key), Bounds::default(), &image, |_| {}).unwrap_err();
    assert!(err.to_string().contains(&hex(&second.hash)), "{err}");
    // A replay that needs only later aggregates does not trip over it.
    let late = Bounds { from_seq: Some(150), ..Bounds::default() };
    assert_eq!(replay(&store, "vd", Some(&key), late, &image, |_| {})?.last_sequence, Some(200));
    Ok(())
}

#[test]
fn a_wrong_or_missing_key_is_named_as_such() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = SegmentStore::open(tmp.path())?;
    log(&store, Some(&Key::from_bytes(&[1; 32])), 3, 4)?;
    let err = verify(&store, "vd", Some(&Key::from_bytes(&[2; 32])), false).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("aggregate 1 of 3"), "{err}");
    assert!(err.to_string().contains("wrong key"), "{err}");
    let image = tmp.path().join("disk.img");
    let err = replay(&store, "vd", None, Bounds::default(), &image, |_| {}).unwrap_err();
    assert!(err.to_string().contains("give the key file"), "{err}");
    Ok(())
}

#[test]
fn key_files_round_trip_privately_and_are_never_overwritten() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("tlog.key");
    write_key_file(&path)?;
    let text = std::fs::read_to_string(&path)?;
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    let err = write_key_file(&path).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&path)?, text, "the key is untouched");

    // The key read back opens what it sealed.
    let store = SegmentStore::open(&tmp.path().join("tlog"))?;
    log(&store, Some(&read_key_file(&path)?), 2, 2)?;
    assert_eq!(verify(&store, "vd", Some(&read_key_file(&path)?), false)?.encrypted, 2);

    let bad = tmp.path().join("bad.key");
    std::fs::write(&bad, "not a key\n")?;
    let err = read_key_file(&bad).unwrap_err();
    assert!(err.to_string().contains(&bad.display().to_string()), "{err}");
    assert!(err.to_string().contains("64 hex characters"), "{err}");
    let err = read_key_file(Path::new("/nonexistent/tlog.key")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tlog.key"), "{err}");
    Ok(())
}

/// Seals blocks `first..=last` of `vd` on the head of `store`, as a run's start when asked.
fn append_run(store: &dyn Storage, first: u64, last: u64, run_start: bool) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(first);
    let blocks = random_blocks(&mut rng, first, last - first + 1);
    let prev = store.head("vd")?.map_or(strata_tlog::aggregate::NO_PREV, |s| s.hash);
    let aggregate = strata_tlog::aggregate::Aggregate {
        vdisk_id: "vd".into(),
        timestamp: last * 1000,
        blocks,
        prev,
    };
    let sealed = if run_start { aggregate.seal_run_start(None)? } else { aggregate.seal(None)? };
    store.append("vd", &sealed)?;
    Ok(())
}

#[test]
fn gaps_and_overlaps_are_errors_unless_recorded_as_resets_or_allowed() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let image = tmp.path().join("disk.img");
    for (name, second, run_start, says) in [
        ("gap", (20, 25), false, Some("sequences 11 to 19 were never stored")),
        ("overlap", (5, 12), false, Some("sequences 5 to 10 are stored twice")),
        ("reset", (20, 25), true, None),
    ] {
        let store = SegmentStore::open(&tmp.path().join(name))?;
        append_run(&store, 1, 10, false)?;
        append_run(&store, second.0, second.1, run_start)?;
        let strict = verify(&store, "vd", None, false);
        let replayed = replay(&store, "vd", None, Bounds::default(), &image, |_| {});
        match says {
            Some(says) => {
                for err in [strict.map(drop).unwrap_err(), replayed.map(drop).unwrap_err()] {
                    let message = err.to_string();
                    assert!(matches!(err, Error::Corrupted(_)), "{name}: {message}");
                    assert!(message.contains(says), "{name}: {message}");
                    assert!(message.contains("--allow-gaps"), "{name}: {message}");
                }
                assert_eq!(verify(&store, "vd", None, true)?.gaps, 1, "{name}");
                let allowed = Bounds { allow_gaps: true, ..Bounds::default() };
                let done = replay(&store, "vd", None, allowed, &image, |_| {})?;
                assert_eq!(done.last_sequence, Some(second.1), "{name}");
            }
            None => {
                assert_eq!(strict?.gaps, 0, "{name}: a recorded reset is no gap");
                assert_eq!(replayed?.last_sequence, Some(25), "{name}");
            }
        }
        std::fs::remove_file(&image)?;
    }
    Ok(())
}

#[test]
fn a_forged_plaintext_aggregate_in_a_keyed_log_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let key = Key::from_bytes(&[9; 32]);
    let store = SegmentStore::open(tmp.path())?;
    log(&store, Some(&key), 3, 4)?;
    // Whoever can write the storage but has no key appends a plaintext aggregate that
    // chains to the head and continues the sequences.
    let mut rng = fastrand::Rng::with_seed(3);
    let forged = store.head("vd")?.map(|s| s.hash);
    append_blocks(&store, "vd", None, random_blocks(&mut rng, 13, 2))?;
    let err = verify(&store, "vd", Some(&key), false).unwrap_err();
    assert!(matches!(err, Error::Corrupted(_)), "{err}");
    assert!(err.to_string().contains("not encrypted, but this log has a key"), "{err}");
    let image = tmp.path().join("disk.img");
    let err = replay(&store, "vd", Some(&key), Bounds::default(), &image, |_| {}).unwrap_err();
    assert!(err.to_string().contains("not encrypted"), "{err}");
    assert_ne!(store.head("vd")?.map(|s| s.hash), forged, "the forgery is the head");
    Ok(())
}

/// `blocks` sealed as strata's format 1 wrote them, on the head of `vd`: each block's data
/// inside the Cap'n Proto message, version byte 1, no run-start flag, encrypted (when `key`
/// is given) with the header as authenticated data, and named by BLAKE3 of every byte.
fn append_format_1(
    store: &dyn Storage,
    key: Option<&[u8; 32]>,
    blocks: Vec<Block>,
) -> anyhow::Result<()> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use strata_proto::tlog_capnp::tlog_aggregation;
    let prev = store.head("vd")?.map_or(strata_tlog::aggregate::NO_PREV, |s| s.hash);
    let timestamp = blocks.last().map_or(0, |b| b.timestamp);
    let mut message = capnp::message::Builder::new_default();
    let mut root = message.init_root::<tlog_aggregation::Builder<'_>>();
    root.set_name("tlog");
    root.set_size(blocks.len() as u64);
    root.set_timestamp(timestamp);
    root.set_vdisk_i_d("vd");
    root.set_prev(&prev);
    let mut list = root.init_blocks(blocks.len() as u32);
    for (i, block) in blocks.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_sequence(block.sequence);
        b.set_offset(block.offset);
        b.set_size(block.size);
        b.set_hash(&block.hash);
        b.set_data(&block.data);
        b.set_timestamp(block.timestamp);
        b.set_operation(block.operation);
    }
    let mut body = Vec::new();
    capnp::serialize::write_message(&mut body, &message)?;
    let nonce: [u8; 12] =
        if key.is_some() { std::array::from_fn(|_| fastrand::u8(..)) } else { [0; 12] };
    let (first, last) = (blocks[0].sequence, blocks[blocks.len() - 1].sequence);
    let mut bytes = b"STLA".to_vec();
    bytes.extend_from_slice(&[1, if key.is_some() { 2 } else { 0 }, 0, 0]);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&prev);
    for field in [first, last, timestamp] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    if let Some(key) = key {
        let aad = [&bytes[..], b"vd"].concat();
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| anyhow::anyhow!("key"))?,
        );
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| anyhow::anyhow!("seal"))?;
    }
    bytes.extend_from_slice(&body);
    let sealed = strata_tlog::aggregate::Sealed::from_bytes(bytes)?;
    assert_eq!(sealed.hash(), blake3::hash(sealed.bytes()).as_bytes());
    store.append("vd", &sealed)?;
    Ok(())
}

// Issue 13: the aggregate format went to version 2 (the run-start flag), and issue 15 to 3
// (data after the message, encrypted envelopes named through a body checksum); logs written
// in format 1 are still read, encrypted ones opened with their key as before.
#[test]
fn a_format_1_log_still_verifies_and_replays() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let image = tmp.path().join("disk.img");
    let bytes = [8u8; 32];
    let key = Key::from_bytes(&bytes);
    let mut rng = fastrand::Rng::with_seed(11);
    let store = SegmentStore::open(&tmp.path().join("old"))?;
    let mut all = Vec::new();
    for first in [1, 9, 17] {
        let blocks = random_blocks(&mut rng, first, 8);
        all.extend(blocks.iter().cloned());
        append_format_1(&store, Some(&bytes), blocks)?;
    }
    assert!(store.list("vd")?.iter().all(|s| s.header.encrypted && !s.header.run_start));
    let report = verify(&store, "vd", Some(&key), false)?;
    assert_eq!((report.aggregates, report.encrypted, report.gaps), (3, 3, 0));
    let done = replay(&store, "vd", Some(&key), Bounds::default(), &image, |_| {})?;
    assert_eq!(done.last_sequence, Some(24));
    assert_eq!(std::fs::read(&image)?, model(&all));
    // Aggregates of today's format chain on after them, as a server of this version appends.
    let more = random_blocks(&mut rng, 25, 4);
    all.extend(more.iter().cloned());
    append_blocks(&store, "vd", Some(&key), more)?;
    std::fs::remove_file(&image)?;
    replay(&store, "vd", Some(&key), Bounds::default(), &image, |_| {})?;
    assert_eq!(std::fs::read(&image)?, model(&all));
    // Format 1 records no resets: a jump in its sequences is a gap, to be allowed by hand.
    let plain = SegmentStore::open(&tmp.path().join("reset"))?;
    append_format_1(&plain, None, random_blocks(&mut rng, 1, 4))?;
    append_format_1(&plain, None, random_blocks(&mut rng, 100, 4))?;
    let err = verify(&plain, "vd", None, false).unwrap_err();
    assert!(err.to_string().contains("sequences 5 to 99 were never stored"), "{err}");
    assert_eq!(verify(&plain, "vd", None, true)?.gaps, 1);
    Ok(())
}

// Issue 13: a gap must be reported wherever it is, even with data continuing after it;
// a reset the chain records is not one, and a replay that does not cross the gap is not
// stopped by it.
#[test]
fn a_gap_inside_the_log_is_reported_by_position_and_sequences() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let image = tmp.path().join("disk.img");
    let store = SegmentStore::open(tmp.path())?;
    append_run(&store, 1, 10, false)?;
    append_run(&store, 20, 25, false)?;
    append_run(&store, 26, 30, false)?;
    append_run(&store, 40, 45, true)?;
    let names: Vec<String> = store.list("vd")?.iter().map(|s| hex(&s.hash)).collect();
    let err = verify(&store, "vd", None, false).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Corrupted(_)), "{message}");
    assert!(message.contains("between aggregates 1"), "{message}");
    assert!(message.contains(&names[0]) && message.contains(&names[1]), "{message}");
    assert!(message.contains("sequences 11 to 19 were never stored"), "{message}");
    let err = replay(&store, "vd", None, Bounds::default(), &image, |_| {}).unwrap_err();
    assert!(err.to_string().contains("sequences 11 to 19"), "{err}");
    assert!(!image.exists(), "a replay that found a gap wrote an image");
    // Only the unrecorded gap counts; the recorded reset (30 to 40) does not.
    assert_eq!(verify(&store, "vd", None, true)?.gaps, 1);
    let allowed = Bounds { allow_gaps: true, ..Bounds::default() };
    assert_eq!(replay(&store, "vd", None, allowed, &image, |_| {})?.last_sequence, Some(45));
    // Replays on one side of the gap do not cross it.
    std::fs::remove_file(&image)?;
    let before = Bounds { to_seq: Some(8), ..Bounds::default() };
    assert_eq!(replay(&store, "vd", None, before, &image, |_| {})?.last_sequence, Some(8));
    let after = Bounds { from_seq: Some(22), ..Bounds::default() };
    assert_eq!(replay(&store, "vd", None, after, &image, |_| {})?.last_sequence, Some(45));
    Ok(())
}
