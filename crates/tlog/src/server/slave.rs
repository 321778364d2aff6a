//! Slave copies: a second image of each vdisk, kept up to date by replaying the log.
//!
//! `<dir>/<vdisk>.img` is a raw image; `<dir>/<vdisk>.seq` holds the last sequence replayed
//! into it (decimal, replaced atomically after the image is synced). A sync replays every
//! aggregate after that sequence, so it is idempotent and survives crashes: a crash before
//! the `.seq` update only means the same blocks are applied again.

use std::path::Path;

use crate::player::{Bounds, replay};
use crate::server::Shared;
use crate::{Error, Result};

/// Brings the slave of `vdisk` in `dir` up to the log's head.
pub(crate) fn sync(shared: &Shared, dir: &Path, vdisk: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::file(dir))?;
    let image = dir.join(format!("{vdisk}.img"));
    let seq_file = dir.join(format!("{vdisk}.seq"));
    let done = match std::fs::read_to_string(&seq_file) {
        Ok(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            Error::Corrupted(format!("{}: not a sequence number", seq_file.display()))
        })?),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(Error::file(&seq_file)(err)),
    };
    let bounds = Bounds { from_seq: done.map(|d| d + 1), ..Bounds::default() };
    let replayed =
        replay(&*shared.storage, vdisk, shared.config.key.as_ref(), bounds, &image, |_| {})?;
    let Some(last) = replayed.last_sequence else { return Ok(()) };
    let tmp = dir.join(format!("{vdisk}.seq.tmp"));
    std::fs::write(&tmp, format!("{last}\n")).map_err(Error::file(&tmp))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(Error::file(&tmp))?;
    std::fs::rename(&tmp, &seq_file).map_err(Error::file(&seq_file))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::file(dir))?;
    tracing::debug!(vdisk, last, "slave synced");
    Ok(())
}
