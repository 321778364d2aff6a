//! The disk's floor: how long one 4 KiB write plus `fdatasync` takes where the benchmarks
//! keep their files. Every durable commit, redb's or bbolt's, pays at least this.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::measure::{Summary, warm_then_run};

/// Overwrites the first 4 KiB of a file in `dir` and syncs its data, in a loop for `duration`.
pub fn fdatasync_floor(dir: &Path, duration: Duration) -> anyhow::Result<Summary> {
    let path = dir.join("fdatasync.bin");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let block = [0xa5_u8; 4096];
    warm_then_run(1, duration, |_, _| {
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        Ok(())
    })
}
