//! `strata hub`: the hub server and its users' tokens.
//!
//! The hub keeps everything under DATA-DIR/hub/: its store (`store.redb`, or the `[kv]`
//! etcd under the prefix `hub/`), its blobs (`blobs/`) and its users' token hashes
//! (`tokens.json`, re-read by a running server when it changes).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_hub::HubService;
use strata_volume::BlobStore;

use crate::config::Config;
use crate::exit::categorized;

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
    ///
    /// Volume sets pushed by `strata push` live in DATA-DIR/hub/ (store.redb, blobs/),
    /// or with `[kv] engine = "etcd"` in etcd under the prefix `hub/`. Users authenticate
    /// with tokens from `strata hub token create USER`, which works while the server runs.
    /// The API is described at GET /openapi.yaml.
    Serve {
        /// Address to listen on [default: hub.listen of the config, 127.0.0.1:7070].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Share a volume set on a hub with another user (only its owner may).
    Grant {
        /// The volume set's name or id (here, or on the hub).
        volset: String,
        /// The user to share it with.
        user: String,
        /// The hub's URL, http://HOST:PORT.
        #[arg(long, value_name = "URL")]
        remote: String,
        /// Your bearer token on that hub.
        #[arg(long, value_name = "TOKEN", env = "STRATA_HUB_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Bearer tokens for the hub's users.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// `strata hub token` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new random bearer token for USER; the hub (in this data directory) keeps
    /// only its hash. A running `strata hub serve` accepts it at once.
    Create {
        /// The user the token authenticates as: owner and creator of what it pushes.
        user: String,
        /// Print `{"user": ..., "token": ...}`.
        #[arg(long)]
        json: bool,
    },
}

impl HubArgs {
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, HubCommand::Serve { .. })
    }
}

/// DATA-DIR/hub.
pub(crate) fn hub_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("hub")
}

/// The hub server's service on DATA-DIR/hub.
pub(crate) fn open_service(config: &Config, data_dir: &Path) -> anyhow::Result<HubService> {
    let dir = hub_dir(data_dir);
    let hub = crate::open::hub_store(config, &dir.join("store.redb"), "hub/")?;
    let blobs = BlobStore::open(&dir.join("blobs"))
        .with_context(|| format!("open {}", dir.join("blobs").display()))?;
    Ok(HubService::new(hub, blobs))
}

/// Binds the hub server: what `strata hub serve` and `strata serve` run; `flag` is the
/// option that chooses the address, for the message when it is taken.
pub(crate) async fn bind(
    config: &Config,
    data_dir: &Path,
    listen: Option<String>,
    flag: &str,
) -> anyhow::Result<strata_hub::Server> {
    config.hub.validate().map_err(categorized)?;
    let service = open_service(config, data_dir)?;
    let server_config = config.hub.server(listen);
    let tokens = strata_hub::tokens::Tokens::open(&hub_dir(data_dir));
    strata_hub::Server::bind(server_config.clone(), service, tokens)
        .await
        .map_err(categorized)
        // The hub's error names the address already.
        .with_context(|| format!("hub (choose another address with {flag} or hub.listen)"))
}

pub(crate) fn run(args: HubArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    match args.command {
        HubCommand::Serve { listen } => {
            let runtime = crate::runtime::runtime()?;
            runtime.block_on(async {
                let shutdown = crate::runtime::shutdown_signal();
                let server = bind(config, data_dir, listen, "--listen").await?;
                tracing::info!(addr = %server.local_addr(), dir = %hub_dir(data_dir).display(), "hub listening");
                server.run(shutdown).await.map_err(categorized)
            })
        }
        HubCommand::Grant { volset, user, remote, token } => {
            use strata_hub::Remote as _;
            let client = strata_hub::Client::new(&remote, &token).map_err(categorized)?;
            let runtime = crate::runtime::runtime()?;
            let vs = runtime.block_on(async {
                let vs = client.find_volset(&volset).await?.ok_or_else(|| {
                    strata_hub::Error::NotFound(format!(
                        "no volume set {volset:?} of yours on {remote}"
                    ))
                })?;
                client.grant(&vs.id, &user).await?;
                Ok::<_, strata_hub::Error>(vs)
            });
            let vs = vs.map_err(categorized)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "shared volume set {} ({}) with {user}", vs.name, vs.id)?;
            out.flush()?;
            Ok(())
        }
        HubCommand::Token { command: TokenCommand::Create { user, json } } => {
            let token =
                strata_hub::tokens::create_token(&hub_dir(data_dir), &user).map_err(categorized)?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::json!({ "user": user, "token": token }))?;
            } else {
                writeln!(out, "{token}")?;
            }
            out.flush()?;
            Ok(())
        }
    }
}
