//! Block blobs: round trips of random changes over chains against a model byte array,
//! determinism, holes, zero detection, size growth, corrupt and hostile blobs, and the
//! size bound of a blob against its data compressed alone; all on the real filesystem.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use strata_error::Category;
use strata_volume::{
    BlobId, BlobStore, BlockDiff, BlockHeader, Error, Manifest, block_header, materialize_disk,
    snapshot,
};

use crate::util::{Mutator, store_bytes};

const MIB: u64 = 1 << 20;

/// A disk's model: the bytes it should hold.
struct Model {
    bytes: Vec<u8>,
}

impl Model {
    /// Applies a random change to the model and to `diff`.
    fn change(&mut self, rng: &mut fastrand::Rng, diff: &mut BlockDiff) -> anyhow::Result<()> {
        let size = self.bytes.len();
        let len = match rng.u8(..4) {
            0 => rng.usize(1..600),
            1 => 4096 * rng.usize(1..4),
            2 => rng.usize(1..20_000),
            _ => rng.usize(1..300_000),
        }
        .min(size);
        let offset = if rng.bool() {
            rng.usize(..=size - len) / 4096 * 4096
        } else {
            rng.usize(..=size - len)
        };
        match rng.u8(..5) {
            0 => {
                diff.zero(offset as u64, len as u64)?;
                self.bytes[offset..offset + len].fill(0);
            }
            1 => {
                // Data with zero chunks inside.
                let mut data = vec![0u8; len];
                for (i, b) in data.iter_mut().enumerate() {
                    if (offset + i) / 4096 % 3 == 0 {
                        *b = rng.u8(1..);
                    }
                }
                diff.write(offset as u64, &data)?;
                self.bytes[offset..offset + len].copy_from_slice(&data);
            }
            _ => {
                let mut data = vec![0u8; len];
                rng.fill(&mut data);
                diff.write(offset as u64, &data)?;
                self.bytes[offset..offset + len].copy_from_slice(&data);
            }
        }
        Ok(())
    }
}

fn store(dir: &Path) -> anyhow::Result<BlobStore> {
    Ok(BlobStore::open(&dir.join("blobs"))?)
}

/// Materializes `chain` into a new image under `dir` and returns its bytes and header.
fn image_of(
    blobs: &BlobStore,
    chain: &[BlobId],
    dir: &Path,
) -> anyhow::Result<(Vec<u8>, BlockHeader)> {
    let image = dir.join("image");
    let header = materialize_disk(blobs, chain, &image, |_, _| {})?;
    let bytes = fs::read(&image)?;
    fs::remove_file(&image)?;
    Ok((bytes, header))
}

fn assert_same(expected: &[u8], actual: &[u8]) {
    assert_eq!(expected.len(), actual.len(), "image length");
    if let Some(i) = expected.iter().zip(actual).position(|(a, b)| a != b) {
        panic!("image differs from the model first at byte {i}: {} vs {}", expected[i], actual[i]);
    }
}

#[test]
fn random_changes_round_trip_over_a_chain_that_grows() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    let mut rng = fastrand::Rng::with_seed(17);
    let mut model = Model { bytes: vec![0; (4 * MIB) as usize] };
    let mut chain = Vec::new();
    for (i, size) in [4 * MIB, 4 * MIB, 6 * MIB + 1000].into_iter().enumerate() {
        model.bytes.resize(size as usize, 0);
        let mut diff = BlockDiff::new(&blobs, size, i == 0)?;
        for _ in 0..300 {
            model.change(&mut rng, &mut diff)?;
        }
        let blob = diff.finish()?;
        assert_eq!(blob.header.size, size);
        assert_eq!(blob.header.full, i == 0);
        assert_eq!(blob.stored, blobs.size(&blob.id)?);
        assert_eq!(block_header(&blobs, &blob.id)?, blob.header);
        chain.push(blob.id);
        let (bytes, header) = image_of(&blobs, &chain, tmp.path())?;
        assert_eq!(header, blob.header);
        assert_same(&model.bytes, &bytes);
    }
    // Progress counts the bytes of every blob applied, never going back.
    let total: u64 = chain.iter().map(|id| blobs.size(id)).sum::<Result<_, _>>()?;
    let mut seen = Vec::new();
    materialize_disk(&blobs, &chain, &tmp.path().join("image"), |d, t| seen.push((d, t)))?;
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(seen.iter().all(|&(d, t)| t == total && d <= total), "{seen:?}");
    assert_eq!(seen.last(), Some(&(total, total)));
    fs::remove_file(tmp.path().join("image"))?;
    // Nothing but blobs is left in the store: the scratch files went.
    let names: Vec<_> =
        fs::read_dir(blobs.dir())?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    assert_eq!(names.len(), 3, "{names:?}");
    Ok(())
}

#[test]
fn a_later_full_blob_discards_what_came_before() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    let mut first = BlockDiff::new(&blobs, MIB, true)?;
    first.write(0, &[7u8; 100_000])?;
    let first = first.finish()?;
    let mut second = BlockDiff::new(&blobs, MIB, false)?;
    second.write(500_000, &[8u8; 1000])?;
    let second = second.finish()?;
    let mut third = BlockDiff::new(&blobs, 2 * MIB, true)?;
    third.write(MIB, &[9u8; 10])?;
    let third = third.finish()?;
    let mut progress = Vec::new();
    let image = tmp.path().join("image");
    materialize_disk(&blobs, &[first.id, second.id, third.id.clone()], &image, |d, t| {
        progress.push((d, t))
    })?;
    let mut expected = vec![0u8; (2 * MIB) as usize];
    expected[MIB as usize..MIB as usize + 10].fill(9);
    assert_same(&expected, &fs::read(&image)?);
    // Only the full blob was read: progress ends at its size.
    assert_eq!(progress.last(), Some(&(third.stored, third.stored)));
    Ok(())
}

#[test]
fn the_same_changes_make_the_same_blob_in_two_stores() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let blobs = store(&tmp.path().join(name))?;
        let mut rng = fastrand::Rng::with_seed(5);
        let mut model = Model { bytes: vec![0; (2 * MIB) as usize] };
        let mut diff = BlockDiff::new(&blobs, 2 * MIB, false)?;
        for _ in 0..200 {
            model.change(&mut rng, &mut diff)?;
        }
        let blob = diff.finish()?;
        ids.push((blob.id.clone(), fs::read(blobs.path_of(&blob.id))?));
    }
    assert_eq!(ids[0], ids[1]);
    Ok(())
}

#[test]
fn holes_stay_holes() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    let size = 256 * MIB;
    let mut diff = BlockDiff::new(&blobs, size, true)?;
    for at in [0, 100 * MIB, size - 4096] {
        diff.write(at, &[0xab; 4096])?;
    }
    diff.write(50 * MIB, &vec![0u8; (8 * MIB) as usize])?; // zeros: a hole, not data
    let full = diff.finish()?;
    assert_eq!(full.header.data_bytes, 3 * 4096);
    let image = tmp.path().join("image");
    materialize_disk(&blobs, std::slice::from_ref(&full.id), &image, |_, _| {})?;
    let meta = fs::metadata(&image)?;
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < MIB,
        "{} bytes allocated for 12 KiB of data",
        meta.blocks() * 512
    );

    // A zero extent over written data punches it out again.
    let mut diff = BlockDiff::new(&blobs, size, true)?;
    diff.write(0, &vec![1u8; (16 * MIB) as usize])?;
    let base = diff.finish()?;
    let mut diff = BlockDiff::new(&blobs, size, false)?;
    diff.zero(0, 12 * MIB)?;
    let trim = diff.finish()?;
    assert_eq!(trim.header.zero_bytes, 12 * MIB);
    materialize_disk(&blobs, &[base.id, trim.id], &image, |_, _| {})?;
    let allocated = fs::metadata(&image)?.blocks() * 512;
    assert!(allocated < 6 * MIB, "{allocated} bytes allocated for 4 MiB of data");
    let bytes = fs::read(&image)?;
    assert!(bytes[..(12 * MIB) as usize].iter().all(|&b| b == 0));
    assert!(bytes[(12 * MIB) as usize..(16 * MIB) as usize].iter().all(|&b| b == 1));
    Ok(())
}

#[test]
fn zero_data_is_recorded_as_zero_extents() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    // In a full blob, zeros cost nothing.
    let mut diff = BlockDiff::new(&blobs, 4 * MIB, true)?;
    diff.write(100, &vec![0u8; 3 * MIB as usize])?;
    let full = diff.finish()?;
    assert_eq!((full.header.extents, full.header.data_bytes, full.header.zero_bytes), (0, 0, 0));
    // A zero 4 KiB-aligned chunk inside a write, and a whole small zero write, are zero extents.
    let mut diff = BlockDiff::new(&blobs, 4 * MIB, false)?;
    let mut data = vec![5u8; 3 * 4096];
    data[4096..8192].fill(0);
    diff.write(8192, &data)?;
    diff.write(MIB + 10, &[0u8; 100])?;
    let blob = diff.finish()?;
    let h = blob.header;
    assert_eq!((h.extents, h.data_bytes, h.zero_bytes), (4, 8192, 4096 + 100));
    // A zero chunk that is only zero in part stays data.
    let mut diff = BlockDiff::new(&blobs, 4 * MIB, false)?;
    let mut data = vec![0u8; 4096];
    data[4095] = 1;
    diff.write(0, &data)?;
    assert_eq!(diff.finish()?.header.data_bytes, 4096);
    Ok(())
}

#[test]
fn later_changes_over_the_same_bytes_win() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    let mut expected = vec![0u8; 20_000];
    let mut diff = BlockDiff::new(&blobs, 20_000, true)?;
    let steps: [(usize, usize, u8); 6] =
        [(0, 10_000, 1), (5000, 2000, 2), (8000, 1000, 0), (8500, 100, 3), (9999, 2, 4), (0, 1, 5)];
    for (at, len, value) in steps {
        if value == 0 {
            diff.zero(at as u64, len as u64)?;
        } else {
            diff.write(at as u64, &vec![value; len])?;
        }
        expected[at..at + len].fill(value);
    }
    let blob = diff.finish()?;
    // Data 5, 1, 2, 1 (adjacent: one extent), a hole, 3, a hole, data 1, 4 (one extent).
    assert_eq!(blob.header.extents, 3);
    let (bytes, _) = image_of(&blobs, &[blob.id], tmp.path())?;
    assert_same(&expected, &bytes);
    Ok(())
}

#[test]
fn changes_past_the_size_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    let mut diff = BlockDiff::new(&blobs, 8192, false)?;
    let err = diff.write(8000, &[1u8; 200]).expect_err("past the end");
    assert_eq!(err.category(), Category::InvalidArgument);
    let msg = err.to_string();
    assert!(msg.contains("8000") && msg.contains("8192"), "{msg}");
    let err = diff.zero(u64::MAX, 2).expect_err("overflow");
    assert!(matches!(err, Error::OutOfRange { .. }), "{err}");
    let err = materialize_disk(&blobs, &[], &tmp.path().join("image"), |_, _| {})
        .expect_err("empty chain");
    assert_eq!(err.category(), Category::InvalidArgument);
    Ok(())
}

#[test]
fn a_blob_is_at_most_five_percent_larger_than_its_data_compressed() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let blobs = store(tmp.path())?;
    let mut rng = fastrand::Rng::with_seed(99);
    let blocks = (10 * MIB / 4096) as usize;
    let slots = (1 << 30) / 4096u64;
    let mut diff = BlockDiff::new(&blobs, 1 << 30, false)?;
    let mut all = Vec::with_capacity((10 * MIB) as usize);
    let mut used = std::collections::BTreeSet::new();
    while used.len() < blocks {
        let slot = rng.u64(..slots);
        if !used.insert(slot) {
            continue;
        }
        let mut block = [0u8; 4096];
        rng.fill(&mut block);
        diff.write(slot * 4096, &block)?;
        all.extend_from_slice(&block);
    }
    let blob = diff.finish()?;
    let alone = zstd::encode_all(all.as_slice(), 3)?.len() as f64;
    assert!(
        blob.stored as f64 <= 1.05 * alone,
        "blob {} bytes, data compressed alone {alone}",
        blob.stored
    );
    Ok(())
}

/// Corrupt, foreign and hostile blobs.
mod corrupt {
    use super::*;

    /// A store with one valid non-full blob of a 1 MiB disk.
    fn fixture(dir: &Path) -> anyhow::Result<(BlobStore, BlobId)> {
        let blobs = store(dir)?;
        let mut diff = BlockDiff::new(&blobs, MIB, false)?;
        let mut rng = fastrand::Rng::with_seed(3);
        let mut data = vec![0u8; 200_000];
        rng.fill(&mut data);
        diff.write(1000, &data)?;
        diff.zero(300_000, 5000)?;
        Ok((blobs.clone(), diff.finish()?.id))
    }

    fn damage(blobs: &BlobStore, id: &BlobId, f: impl FnOnce(&mut Vec<u8>)) -> anyhow::Result<()> {
        let path = blobs.path_of(id);
        let mut bytes = fs::read(&path)?;
        f(&mut bytes);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        fs::write(&path, bytes)?;
        Ok(())
    }

    /// Materializing `id` fails as corrupt, naming the blob; returns the message.
    fn refused(blobs: &BlobStore, id: &BlobId, dir: &Path) -> String {
        let err = materialize_disk(blobs, std::slice::from_ref(id), &dir.join("image"), |_, _| {})
            .expect_err("a bad blob must be refused");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(err.category(), Category::Corrupted);
        let msg = err.to_string();
        assert!(msg.contains(id.as_str()), "{msg}");
        msg
    }

    /// The content of a block blob, hand-encoded: header then table then data.
    fn raw(
        size: u64,
        flags: u32,
        counts: [u64; 3],
        table: &[(u64, u64, u8)],
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = b"STRATABK".to_vec();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        for v in [size, counts[0], counts[1], counts[2]] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (o, l, k) in table {
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&l.to_le_bytes());
            out.push(*k);
        }
        out.extend_from_slice(data);
        out
    }

    fn store_frame(blobs: &BlobStore, content: &[u8]) -> anyhow::Result<BlobId> {
        let mut enc = zstd::Encoder::new(Vec::new(), 3)?;
        enc.include_checksum(true)?;
        enc.write_all(content)?;
        store_bytes(blobs, &enc.finish()?)
    }

    #[test]
    fn a_hand_made_blob_materializes() -> anyhow::Result<()> {
        // The reference encoding of the tests matches the crate's: the tests below damage it.
        let tmp = tempfile::tempdir()?;
        let blobs = store(tmp.path())?;
        let id = store_frame(&blobs, &raw(100, 0, [2, 3, 5], &[(10, 3, 1), (20, 5, 2)], b"abc"))?;
        let (bytes, header) = image_of(&blobs, &[id], tmp.path())?;
        assert_eq!(
            header,
            BlockHeader { size: 100, full: false, extents: 2, data_bytes: 3, zero_bytes: 5 }
        );
        assert_eq!(&bytes[10..13], b"abc");
        assert_eq!(bytes.len(), 100);
        Ok(())
    }

    #[test]
    fn a_flipped_byte_is_refused() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let (blobs, id) = fixture(tmp.path())?;
        damage(&blobs, &id, |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x10;
        })?;
        refused(&blobs, &id, tmp.path());
        Ok(())
    }

    #[test]
    fn a_truncated_blob_is_refused() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let (blobs, id) = fixture(tmp.path())?;
        damage(&blobs, &id, |b| b.truncate(b.len() - 100))?;
        refused(&blobs, &id, tmp.path());
        damage(&blobs, &id, |b| b.truncate(10))?;
        refused(&blobs, &id, tmp.path());
        Ok(())
    }

    #[test]
    fn bytes_that_do_not_hash_to_the_id_are_refused() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let (blobs, id) = fixture(tmp.path())?;
        damage(&blobs, &id, |b| b.push(0))?;
        refused(&blobs, &id, tmp.path());
        // A valid blob of other changes under this id.
        let other = fixture(&tmp.path().join("other"))?;
        let mut diff = BlockDiff::new(&other.0, MIB, false)?;
        diff.write(0, b"other")?;
        let other_id = diff.finish()?.id;
        let bytes = fs::read(other.0.path_of(&other_id))?;
        damage(&blobs, &id, |b| *b = bytes)?;
        let msg = refused(&blobs, &id, tmp.path());
        assert!(msg.contains(other_id.as_str()), "{msg}");
        Ok(())
    }

    #[test]
    fn a_wrong_magic_or_version_is_not_a_block_blob() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let blobs = store(tmp.path())?;
        let mut content = raw(100, 0, [0, 0, 0], &[], b"");
        content[7] = b'X';
        let id = store_frame(&blobs, &content)?;
        let msg = refused(&blobs, &id, tmp.path());
        assert!(msg.contains("not a strata block blob"), "{msg}");
        assert_eq!(block_header(&blobs, &id).expect_err("magic").category(), Category::Corrupted);
        let mut content = raw(100, 0, [0, 0, 0], &[], b"");
        content[8] = 2;
        let id = store_frame(&blobs, &content)?;
        assert!(refused(&blobs, &id, tmp.path()).contains("version 2"));
        let id = store_bytes(&blobs, b"plain bytes, not zstd")?;
        refused(&blobs, &id, tmp.path());
        assert!(block_header(&blobs, &id).is_err());
        Ok(())
    }

    #[test]
    fn a_filesystem_blob_is_not_a_block_blob() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let blobs = store(tmp.path())?;
        let src = tmp.path().join("src");
        Mutator::new(&src, 8)?.mutate(20)?;
        let fs_blob = snapshot(&src, &Manifest::empty(), &blobs)?.blob;
        let err = block_header(&blobs, &fs_blob).expect_err("a tar blob");
        assert_eq!(err.category(), Category::Corrupted);
        assert!(err.to_string().contains("not a strata block blob"), "{err}");
        refused(&blobs, &fs_blob, tmp.path());
        Ok(())
    }

    #[test]
    fn hostile_tables_are_refused() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let blobs = store(tmp.path())?;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Counts that promise a huge table: refused by the header check, nothing allocated.
            (raw(u64::MAX, 0, [u64::MAX, 1, 0], &[], b""), "extents"),
            (raw(1 << 40, 0, [1 << 40, 1 << 40, 0], &[], b""), "extents"),
            (raw(100, 0, [1, 200, 0], &[], b""), "do not fit"),
            (raw(100, 1, [1, 0, 5], &[(0, 5, 2)], b""), "full blob"),
            (raw(100, 4, [0, 0, 0], &[], b""), "flags"),
            // A table shorter than its count.
            (raw(100, 0, [3, 3, 0], &[(0, 3, 1)], b""), "truncated"),
            (raw(100, 0, [2, 4, 0], &[(10, 3, 1), (11, 1, 1)], b"abcd"), "overlaps"),
            (raw(100, 0, [2, 4, 0], &[(10, 3, 1), (5, 1, 1)], b"abcd"), "precedes"),
            (raw(100, 0, [2, 4, 0], &[(10, 3, 1), (13, 1, 1)], b"abcd"), "not merged"),
            (raw(100, 0, [1, 10, 0], &[(95, 10, 1)], &[1; 10]), "past the disk's size"),
            (raw(100, 0, [1, 0, 2], &[(u64::MAX, 2, 2)], b""), "past the disk's size"),
            (raw(100, 0, [1, 1, 0], &[(5, 0, 1)], b""), "empty"),
            (raw(100, 0, [1, 3, 0], &[(5, 3, 7)], b"abc"), "unknown kind"),
            (raw(100, 0, [1, 4, 0], &[(5, 3, 1)], b"abc"), "header says"),
            (raw(100, 0, [1, 3, 0], &[(5, 3, 1)], b"ab"), "truncated in its data"),
            (raw(100, 0, [1, 3, 0], &[(5, 3, 1)], b"abcd"), "after the data"),
        ];
        for (content, expected) in cases {
            let id = store_frame(&blobs, &content)?;
            let msg = refused(&blobs, &id, tmp.path());
            assert!(msg.contains(expected), "expected {expected:?} in {msg}");
        }
        Ok(())
    }
}
