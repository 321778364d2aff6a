//! `strata vdisk`: virtual disk records, and restore from the tlog.

use std::path::Path;

use clap::Args;

use crate::config::Config;

/// Virtual disks: create, ls, info, rm, restore.
#[derive(Debug, Args)]
pub(crate) struct VdiskArgs {}

pub(crate) fn run(_a: VdiskArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata vdisk: work in progress")
}
