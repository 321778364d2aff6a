//! Scanning: what a manifest records, and the files a volume cannot hold.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;

use strata_volume::{BlobStore, Error, Kind, Manifest, snapshot};

use crate::util::hash;

#[test]
fn a_scan_records_kinds_modes_sizes_hashes_and_targets() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    fs::create_dir(dir.join("d"))?;
    fs::set_permissions(dir.join("d"), fs::Permissions::from_mode(0o750))?;
    fs::write(dir.join("d/f"), b"content")?;
    fs::set_permissions(dir.join("d/f"), fs::Permissions::from_mode(0o4711))?;
    symlink("../somewhere", dir.join("l"))?;
    let m = Manifest::scan(dir)?;
    assert_eq!(m.len(), 3);
    let paths: Vec<&str> = m.iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["d", "d/f", "l"]);
    let d = m.get("d").ok_or_else(|| anyhow::anyhow!("no d"))?;
    assert_eq!((d.kind, d.mode, d.size), (Kind::Dir, 0o750, 0));
    let f = m.get("d/f").ok_or_else(|| anyhow::anyhow!("no d/f"))?;
    assert_eq!(
        (f.kind, f.mode, f.size, f.hash.clone()),
        (Kind::File, 0o4711, 7, Some(hash(b"content")))
    );
    let l = m.get("l").ok_or_else(|| anyhow::anyhow!("no l"))?;
    assert_eq!((l.kind, l.target.as_deref()), (Kind::Symlink, Some("../somewhere")));
    assert_eq!(m.file_bytes(), 7);

    // A manifest survives serde as it is.
    let json = serde_json::to_string(&m)?;
    assert_eq!(serde_json::from_str::<Manifest>(&json)?, m);
    Ok(())
}

#[test]
fn sockets_and_fifos_are_refused_with_their_path() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("vol");
    fs::create_dir(&dir)?;
    let sock = dir.join("sock");
    let _listener = UnixListener::bind(&sock)?;
    let store = BlobStore::open(&tmp.path().join("blobs"))?;
    let err = snapshot(&dir, &Manifest::empty(), &store).expect_err("socket");
    assert!(matches!(err, Error::Unsupported { kind: "socket", .. }), "{err}");
    assert!(err.to_string().contains(&sock.display().to_string()), "{err}");
    assert!(store.list()?.is_empty());
    Ok(())
}

#[test]
fn non_utf8_names_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    fs::write(tmp.path().join(OsStr::from_bytes(b"bad\xff")), b"x")?;
    let err = Manifest::scan(tmp.path()).expect_err("non-UTF-8");
    assert!(matches!(err, Error::NonUtf8Name { .. }), "{err}");
    Ok(())
}

#[test]
fn a_missing_volume_directory_is_an_error_naming_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("missing");
    let err = Manifest::scan(&missing).expect_err("missing");
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(err.category(), strata_error::Category::NotFound);
    Ok(())
}
