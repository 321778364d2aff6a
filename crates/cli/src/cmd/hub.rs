//! `strata hub`: the hub server and its users' tokens.

use std::path::Path;

use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::config::Config;

/// The hub server (`strata hub serve`) and bearer tokens for its users.
#[derive(Debug, Args)]
pub(crate) struct HubArgs {
    #[command(subcommand)]
    pub(crate) command: HubCommand,
}

/// `strata hub` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum HubCommand {
    /// Serve the hub's HTTP API until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
}

impl HubArgs {
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, HubCommand::Serve { .. })
    }
}

/// `[hub]` in strata.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HubConfig {}

pub(crate) fn run(_args: HubArgs, _config: &Config, _data_dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("strata hub: work in progress")
}
