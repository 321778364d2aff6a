//! The file system boundary: every change the writer makes on disk goes through [`Fs`].
//!
//! This is not an abstraction of reading: the writer reads directories, links and files with
//! `std::fs` directly, since a read changes nothing and so needs no fault or crash hook.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The changes the writer makes on disk, one method per kind.
///
/// Tests wrap [`RealFs`] to fail, or to pause for a `SIGKILL`, at the n-th call. Each call is
/// one step of the write protocol, so its numbered steps are the points where a crash can
/// land (see `docs/design/atomic.md`).
pub trait Fs {
    /// Creates the directory `path` with exactly the permission bits `mode`.
    fn create_dir(&mut self, path: &Path, mode: u32) -> io::Result<()>;

    /// Creates the file `path`, which must not exist, with `data` and exactly the permission
    /// bits `mode`, and makes its data and mode durable (fsync) before returning.
    ///
    /// One call does it all on one descriptor because a file of mode `0o000` or `0o200`
    /// could not be opened again for the fsync by a writer that is not root.
    fn write_file(&mut self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;

    /// Makes the entries of the directory `path` durable (fsync).
    fn sync_dir(&mut self, path: &Path) -> io::Result<()>;

    /// Creates the symlink `link` pointing at `target`.
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file or symlink `path`.
    fn remove_file(&mut self, path: &Path) -> io::Result<()>;

    /// Removes the directory `path` and everything under it.
    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Fs for RealFs {
    fn create_dir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        // The umask applies to mkdir's mode but not to chmod, so chmod sets the exact bits.
        DirBuilder::new().mode(0o700).create(path)?;
        std::fs::set_permissions(path, Permissions::from_mode(mode))
    }

    fn write_file(&mut self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(data)?;
        // fchmod is not subject to the umask, unlike the mode given to open.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()
    }

    fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        // A read-only descriptor is enough for fsync on Linux.
        File::open(path)?.sync_all()
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
}
