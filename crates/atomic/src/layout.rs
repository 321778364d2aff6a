//! The writer's names in the target directory, and reading which version is current.
//!
//! This is not where anything is changed: see `writer.rs` and `links.rs` for that.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The symlink to the current version directory; consumers watch it to learn of updates.
pub const DATA_LINK: &str = "..data";

/// The symlink that is renamed over [`DATA_LINK`] to switch versions; only present between
/// the two steps, or after a crash between them.
pub const DATA_TMP_LINK: &str = "..data_tmp";

/// The file whose `flock` a writer holds for its life.
pub const LOCK_FILE: &str = "..lock";

/// True when `name` has the shape of a version directory's name,
/// `..YYYY_MM_DD_HH_MM_SS.<random>`.
///
/// Only directories with such names are ever removed by the writer as leftovers.
pub fn is_version_dir_name(name: &OsStr) -> bool {
    let Some(rest) = name.as_bytes().strip_prefix(b"..") else { return false };
    if rest.len() < STAMP_LEN + 2 || rest[STAMP_LEN] != b'.' {
        return false;
    }
    let stamp_ok = rest[..STAMP_LEN].iter().enumerate().all(|(i, &b)| {
        if matches!(i, 4 | 7 | 10 | 13 | 16) { b == b'_' } else { b.is_ascii_digit() }
    });
    stamp_ok && rest[STAMP_LEN + 1..].iter().all(u8::is_ascii_alphanumeric)
}

/// The length of `YYYY_MM_DD_HH_MM_SS`.
const STAMP_LEN: usize = 19;

/// A fresh version directory name for `now`, in UTC, with a random suffix.
pub(crate) fn version_dir_name(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem / 60 % 60, rem % 60);
    let suffix = fastrand::u32(..);
    format!("..{year:04}_{month:02}_{day:02}_{hour:02}_{minute:02}_{second:02}.{suffix:08x}")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The name of the current version directory, read from [`DATA_LINK`]; `None` when there is
/// no current version: no link yet, or a link to a directory that is gone.
pub(crate) fn read_current(target: &Path) -> Result<Option<OsString>> {
    let link = target.join(DATA_LINK);
    let dest = match std::fs::read_link(&link) {
        Ok(dest) => dest,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
            let reason = "not a symlink".to_string();
            return Err(Error::Corrupted { path: link, reason });
        }
        Err(err) => return Err(Error::io("read link", link)(err)),
    };
    let mut components = dest.components();
    let name = match (components.next(), components.next()) {
        (Some(Component::Normal(name)), None) if is_version_dir_name(name) => name.to_os_string(),
        _ => {
            let reason = format!("points at {}, not at a version directory", dest.display());
            return Err(Error::Corrupted { path: link, reason });
        }
    };
    if target.join(&name).is_dir() {
        Ok(Some(name))
    } else {
        tracing::warn!(link = %link.display(), "..data points at a missing directory; ignoring it");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn version_names_are_recognized() {
        let at = UNIX_EPOCH + Duration::from_secs(1_454_339_045);
        let name = version_dir_name(at);
        assert!(name.starts_with("..2016_02_01_15_04_05."), "{name}");
        assert!(is_version_dir_name(OsStr::new(&name)));
        for bad in ["..data", "..data_tmp", "..lock", "..2016_02_01_15_04_05.", "x2016"] {
            assert!(!is_version_dir_name(OsStr::new(bad)), "{bad}");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
