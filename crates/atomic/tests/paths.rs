//! Payload path rules: what is refused, what is cleaned, and that a refused payload changes
//! nothing on disk.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use strata_atomic::{Error, MAX_ELEMENT_LEN, MAX_PATH_LEN, Payload, PayloadError, clean_path};

use crate::util::{assert_layout, expected, open, payload};

/// The reason a path is refused, as a short word, for tables of cases.
fn refusal(path: &Path) -> &'static str {
    match clean_path(path) {
        Ok(_) => "ok",
        Err(PayloadError::Empty { .. }) => "empty",
        Err(PayloadError::Absolute { .. }) => "absolute",
        Err(PayloadError::Nul { .. }) => "nul",
        Err(PayloadError::TooLong { .. }) => "too long",
        Err(PayloadError::ElementTooLong { .. }) => "element too long",
        Err(PayloadError::ParentElement { .. }) => "dotdot",
        Err(PayloadError::Reserved { .. }) => "reserved",
        Err(_) => "other",
    }
}

#[test]
fn refused_paths() {
    let long_path = "a/".repeat(MAX_PATH_LEN / 2) + "a";
    let long_element = "e".repeat(MAX_ELEMENT_LEN + 1);
    let max_element = "e".repeat(MAX_ELEMENT_LEN);
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        (".", "empty"),
        ("./", "empty"),
        ("/etc/passwd", "absolute"),
        ("/", "absolute"),
        ("a\0b", "nul"),
        (&long_path, "too long"),
        (&long_element, "element too long"),
        (&format!("dir/{long_element}"), "element too long"),
        (&max_element, "ok"),
        ("..", "dotdot"),
        ("../x", "dotdot"),
        ("a/../b", "dotdot"),
        ("hello/there/../../../../etc/passwd", "dotdot"),
        ("a/..", "dotdot"),
        ("..data", "reserved"),
        ("..lock", "reserved"),
        ("..2016_02_01_15_04_05.12345678/x", "reserved"),
        ("...", "reserved"),
        ("./..sneaky", "reserved"),
        ("a/..not-top", "ok"),
        ("a/...", "ok"),
        ("i/am/well/behaved.txt", "ok"),
        (".dotfile", "ok"),
    ];
    for (path, want) in cases {
        assert_eq!(refusal(Path::new(path)), *want, "path {path:?}");
    }
    let at_limit = "a/".repeat(MAX_PATH_LEN / 2 - 1) + "ab";
    assert_eq!(at_limit.len(), MAX_PATH_LEN);
    assert_eq!(refusal(Path::new(&at_limit)), "ok");
}

#[test]
fn unclean_paths_are_cleaned() -> anyhow::Result<()> {
    let cases = [
        ("foo//bar", "foo/bar"),
        ("./foo", "foo"),
        ("foo/./bar/", "foo/bar"),
        ("foo///bar//.//baz", "foo/bar/baz"),
        ("foo/", "foo"),
    ];
    for (raw, clean) in cases {
        assert_eq!(clean_path(Path::new(raw))?, Path::new(clean), "path {raw:?}");
    }
    let non_utf8 = PathBuf::from(OsString::from_vec(b"caf\xe9//x".to_vec()));
    assert_eq!(clean_path(&non_utf8)?, PathBuf::from(OsString::from_vec(b"caf\xe9/x".to_vec())));
    Ok(())
}

#[test]
fn unclean_paths_are_written_clean() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let given = payload(&[("./a//b/", "ab", 0o644), ("c/./d", "cd", 0o600)]);
    writer.write(&given)?;
    let clean = payload(&[("a/b", "ab", 0o644), ("c/d", "cd", 0o600)]);
    assert_layout(dir.path(), &expected(&clean)?)
}

#[test]
fn refused_payloads_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let good = payload(&[("keep", "k", 0o644)]);
    writer.write(&good)?;
    let bad: Vec<(Payload, &str)> = vec![
        (payload(&[("ok", "x", 0o644), ("../escape", "x", 0o644)]), "dotdot"),
        // `Path` equality already merges `a//b` and `a/b`; a leading `./` it keeps.
        (payload(&[("a/b", "x", 0o644), ("./a/b", "y", 0o644)]), "duplicate"),
        (payload(&[("a", "x", 0o644), ("a/b", "y", 0o644)]), "file is directory"),
        (payload(&[("setuid", "x", 0o4755)]), "mode"),
        (payload(&[("..data", "x", 0o644)]), "reserved"),
    ];
    for (payload, what) in bad {
        match writer.write(&payload) {
            Err(Error::Payload(err)) => assert!(err.to_string().starts_with("payload path ")),
            other => anyhow::bail!("{what}: expected a payload error, got {other:?}"),
        }
        assert_layout(dir.path(), &expected(&good)?)?;
    }
    Ok(())
}

#[test]
fn messages_name_the_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut writer = open(dir.path())?;
    let err = writer.write(&payload(&[("a/../b", "x", 0o644)])).err().context("accepted")?;
    assert_eq!(err.to_string(), r#"payload path "a/../b": must not contain a `..` element"#);
    let err = writer.write(&payload(&[("x", "x", 0o1644)])).err().context("accepted")?;
    assert_eq!(err.to_string(), r#"payload path "x": mode 0o1644 has bits outside 0o777"#);
    Ok(())
}
