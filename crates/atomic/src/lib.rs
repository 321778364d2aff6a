//! Atomic projection of a set of files into a directory.
//!
//! A writer owns a target directory and replaces its whole content at once: a reader of the
//! target sees either the previous set of files or the new one, never a mix, a missing file
//! or a dangling link, and a crash at any point leaves one of the two sets on disk, which the
//! next writer heals. This is the Kubernetes `AtomicWriter` protocol, with three fixes listed
//! in `docs/design/atomic.md`. It is not a general file synchronizer: the writer owns every
//! name that starts with `..` in the target, and the files it projects are replaced whole.
//!
//! # Brief overview
//!
//! - [`AtomicWriter`] opens a target directory, locks it against other writers, heals what an
//!   earlier crash left behind, and projects a [`Payload`] with [`AtomicWriter::write`].
//! - [`Payload`] maps relative paths to a [`FileProjection`] (bytes and permission bits);
//!   [`clean_path`] is the path rule every key must pass.
//! - [`Fs`] is the boundary through which every change on disk goes; [`RealFs`] is the real
//!   file system, tests substitute fault-injecting and crash-pausing ones.
//! - [`Source`] reads a payload from a directory or a JSON file; [`Watcher`] tells when a
//!   source directory changed.
//! - [`Error`], [`PayloadError`] and [`SourceError`] say what failed and name the path.
//!
//! On disk, user-visible names are symlinks `name -> ..data/name`, [`DATA_LINK`] is a symlink
//! to a hidden timestamped directory holding the real files, and [`LOCK_FILE`] carries the
//! writers' lock. Consumers watch [`DATA_LINK`] to learn of updates.
//!
//! The writer is not thread-safe by design: [`AtomicWriter::write`] takes `&mut self`, so
//! threads that share one must wrap it in a mutex, and a second writer on the same target,
//! in this process or another, fails fast with [`Error::Locked`] instead of racing.
//!
//! ```
//! use strata_atomic::{AtomicWriter, FileProjection, Outcome, Payload};
//!
//! let dir = tempfile::tempdir()?;
//! let mut writer = AtomicWriter::open(dir.path())?;
//! let mut payload = Payload::new();
//! payload.insert("app/config.toml".into(), FileProjection::new("port = 80\n", 0o644));
//! assert_eq!(writer.write(&payload)?, Outcome::Written);
//! assert_eq!(std::fs::read_to_string(dir.path().join("app/config.toml"))?, "port = 80\n");
//! assert_eq!(writer.write(&payload)?, Outcome::Unchanged);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod compare;
mod error;
mod fs;
mod layout;
mod links;
mod payload;
mod source;
mod writer;

pub use crate::error::{Error, PayloadError, Result};
pub use crate::fs::{Fs, RealFs};
pub use crate::layout::{DATA_LINK, DATA_TMP_LINK, LOCK_FILE, is_version_dir_name};
pub use crate::payload::{
    DIR_MODE, FileProjection, MAX_ELEMENT_LEN, MAX_PATH_LEN, Payload, check_payload, clean_path,
};
pub use crate::source::{
    Source, SourceError, Watcher, parse_json_payload, parse_mode, read_dir_payload,
};
pub use crate::writer::{AtomicWriter, Outcome};
