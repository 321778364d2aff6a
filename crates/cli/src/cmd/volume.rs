//! `strata volumeset`, `strata volume`, `strata log`, `strata push|pull|sync`: filesystem
//! volumes with snapshots on branches, and their exchange with a hub.

use std::path::Path;

use clap::Args;

use crate::config::Config;

/// Volume sets: create, ls.
#[derive(Debug, Args)]
pub(crate) struct VolumesetArgs {}

/// Volumes: create, ls, snapshot.
#[derive(Debug, Args)]
pub(crate) struct VolumeArgs {}

/// `strata log VOLSET`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {}

/// `strata push|pull|sync VOLSET --remote URL --token TOKEN`.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {}

pub(crate) fn run_volumeset(_a: VolumesetArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata volumeset: work in progress")
}

pub(crate) fn run_volume(_a: VolumeArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata volume: work in progress")
}

pub(crate) fn run_log(_a: LogArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata log: work in progress")
}

pub(crate) fn run_push(_a: TransferArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata push: work in progress")
}

pub(crate) fn run_pull(_a: TransferArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata pull: work in progress")
}

pub(crate) fn run_sync(_a: TransferArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata sync: work in progress")
}
