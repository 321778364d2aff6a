//! Protocol versions: `major<<24 | minor<<16 | patch<<8 | stage`.
//!
//! Comparison ignores the stage byte, except that a live release ranks above a pre-release
//! of the same number.

use std::cmp::Ordering;
use std::fmt;

/// A protocol version as sent in handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u32);

/// Release stages (the low byte).
pub mod stage {
    /// A live release.
    pub const LIVE: u8 = 1;
    /// A release candidate.
    pub const RC: u8 = 2;
    /// A beta.
    pub const BETA: u8 = 4;
    /// An alpha.
    pub const ALPHA: u8 = 8;
    /// A development build.
    pub const DEV: u8 = 16;
}

impl Version {
    /// This strata's protocol version: 1.0.0 live.
    pub const CURRENT: Version = Version::new(1, 0, 0, stage::LIVE);
    /// The oldest client version the server accepts.
    pub const MIN_SUPPORTED: Version = Version::new(1, 0, 0, stage::DEV);

    /// Builds a version from its parts.
    pub const fn new(major: u8, minor: u8, patch: u8, stage: u8) -> Version {
        Version((major as u32) << 24 | (minor as u32) << 16 | (patch as u32) << 8 | stage as u32)
    }

    fn number(self) -> u32 {
        self.0 >> 8
    }

    fn is_live(self) -> bool {
        self.0 & 0xff == u32::from(stage::LIVE)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.number().cmp(&other.number()).then(self.is_live().cmp(&other.is_live()))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch, stage] = self.0.to_be_bytes();
        write!(f, "{major}.{minor}.{patch}")?;
        match stage {
            stage::LIVE => Ok(()),
            stage::RC => f.write_str("-rc"),
            stage::BETA => f.write_str("-beta"),
            stage::ALPHA => f.write_str("-alpha"),
            stage::DEV => f.write_str("-dev"),
            other => write!(f, "-stage{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_the_pinned_value() {
        assert_eq!(Version::CURRENT.0, 0x0100_0001);
        assert_eq!(Version::CURRENT.to_string(), "1.0.0");
    }

    #[test]
    fn live_ranks_above_prerelease_of_same_number_only() {
        let live = Version::new(1, 1, 0, stage::LIVE);
        let alpha = Version::new(1, 1, 0, stage::ALPHA);
        let beta = Version::new(1, 1, 0, stage::BETA);
        assert!(live > alpha);
        assert_eq!(alpha.cmp(&beta), Ordering::Equal);
        assert!(Version::new(1, 2, 0, stage::DEV) > live);
        assert!(Version::new(0, 9, 0, stage::LIVE) < Version::MIN_SUPPORTED);
    }
}
