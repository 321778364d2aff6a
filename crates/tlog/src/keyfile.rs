//! Key files: one AES-256-GCM key as 64 hex characters and a newline, readable by its
//! owner only. `strata tlog keygen` writes one; the server seals with it and the player
//! opens with it. This module does not manage or rotate keys; it reads and writes files.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::aggregate::Key;
use crate::{Error, Result};

/// Reads the key in `path`. Surrounding white space is ignored; anything but 64 hex
/// characters is an error naming the file. A file others can read is used, with a warning.
pub fn read_key_file(path: &Path) -> Result<Key> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        ErrorKind::InvalidData => Error::InvalidArgument(format!(
            "{}: not a tlog key file (not text); give the file `strata tlog keygen` wrote",
            path.display()
        )),
        _ => Error::file(path)(e),
    })?;
    let bytes = parse_hex_key(text.trim()).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}: not a tlog key file: expected 64 hex characters (as `strata tlog keygen` \
             writes)",
            path.display()
        ))
    })?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{}: key file is readable by others (mode {:o}); run `chmod 600` on it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(Key::from_bytes(&bytes))
}

/// Writes a fresh random key to `path` with mode 0600, durably. Never overwrites: the
/// aggregates sealed with an existing key would become unreadable.
pub fn write_key_file(path: &Path) -> Result<()> {
    let bytes = Key::generate()?;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
        |e| match e.kind() {
            ErrorKind::AlreadyExists => Error::InvalidArgument(format!(
                "{}: already exists; a key file is never overwritten (what it sealed would \
                 be lost): choose another path",
                path.display()
            )),
            _ => Error::file(path)(e),
        },
    )?;
    let mut text = crate::aggregate::hex(&bytes);
    text.push('\n');
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(Error::file(path))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(Error::file(parent))?;
    }
    Ok(())
}

/// 32 bytes from exactly 64 hex digits.
fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_parse_strictly() {
        let text = "00ff".repeat(16);
        let bytes = parse_hex_key(&text).unwrap();
        assert_eq!(bytes[0..2], [0x00, 0xff]);
        assert!(parse_hex_key(&text[..62]).is_none());
        assert!(parse_hex_key(&format!("{}zz", &text[..62])).is_none());
        assert!(parse_hex_key(&format!("+{}", &text[..63])).is_none());
    }
}
