//! `strata nbd serve`: the NBD server for vdisks.

use std::path::Path;

use clap::Args;
use serde::Deserialize;

use crate::config::Config;

/// The NBD server.
#[derive(Debug, Args)]
pub(crate) struct NbdArgs {}

/// `[nbd]` in strata.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NbdConfig {}

pub(crate) fn run(_a: NbdArgs, _c: &Config, _d: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata nbd: work in progress")
}
