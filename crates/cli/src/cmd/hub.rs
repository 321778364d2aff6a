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
use crate::show::{Table, print, rfc3339};

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
    /// The API is described at GET /openapi.yaml. With --tls-cert and --tls-key (or
    /// hub.tls_cert and hub.tls_key) the hub speaks https only.
    Serve {
        /// Address to listen on [default: hub.listen of the config, 127.0.0.1:7070].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// The server's certificate chain (PEM) [default: hub.tls_cert]; needs --tls-key.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert [default: hub.tls_key].
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        metrics: crate::metrics::MetricsArgs,
    },
    /// Share a volume set on a hub with another user (only its owner may).
    Grant {
        /// The volume set's name or id (here, or on the hub).
        volset: String,
        /// The user to share it with.
        user: String,
        /// The hub's URL, http://HOST:PORT or https://HOST:PORT.
        #[arg(long, value_name = "URL")]
        remote: String,
        /// Your bearer token on that hub.
        #[arg(long, value_name = "TOKEN", env = "STRATA_HUB_TOKEN", hide_env_values = true)]
        token: String,
        /// A CA certificate (PEM) to trust for an https remote, besides the system's roots
        /// [default: hub.ca_file].
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
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
        /// Print `{"user": ..., "id": ..., "token": ...}`.
        #[arg(long)]
        json: bool,
    },
    /// List the tokens: id, user and creation time (never the token itself).
    Ls {
        /// Print a JSON array of `{"id", "user", "created_at"}` (Unix nanoseconds).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (from `ls`; a unique prefix of at least 4 digits will do),
    /// or every token of a user with --user. A running `strata hub serve` refuses it from
    /// its next request on.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    Revoke {
        /// The token's id.
        #[arg(group = "which")]
        id: Option<String>,
        /// Revoke every token of this user instead.
        #[arg(long, value_name = "USER", group = "which")]
        user: Option<String>,
        /// Print the revoked tokens as a JSON array.
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

/// The server's TLS files from the command line; each wins over its config key.
#[derive(Debug, Default)]
pub(crate) struct TlsFlags {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

/// Binds the hub server: what `strata hub serve` and `strata serve` run; `flag` is the
/// option that chooses the address, for the message when it is taken.
pub(crate) async fn bind(
    config: &Config,
    data_dir: &Path,
    listen: Option<String>,
    tls: TlsFlags,
    flag: &str,
) -> anyhow::Result<strata_hub::Server> {
    config.hub.validate().map_err(categorized)?;
    let service = open_service(config, data_dir)?;
    let mut server_config = config.hub.server(listen);
    if let (Some(cert), Some(key)) = (tls.cert, tls.key) {
        server_config.tls_cert = Some(cert);
        server_config.tls_key = Some(key);
    }
    let tokens = strata_hub::tokens::Tokens::open(&hub_dir(data_dir));
    strata_hub::Server::bind(server_config.clone(), service, tokens)
        .await
        .map_err(categorized)
        // The hub's error names the address already.
        .with_context(|| format!("hub (choose another address with {flag} or hub.listen)"))
}

pub(crate) fn run(args: HubArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    match args.command {
        HubCommand::Serve { listen, tls_cert, tls_key, metrics } => {
            let runtime = crate::runtime::runtime()?;
            runtime.block_on(async {
                let shutdown = crate::runtime::shutdown_signal();
                let metrics = crate::metrics::Exporter::start(metrics.metrics_listen).await?;
                let tls = TlsFlags { cert: tls_cert, key: tls_key };
                let server = bind(config, data_dir, listen, tls, "--listen").await?;
                tracing::info!(url = %server.url(), dir = %hub_dir(data_dir).display(), "hub listening");
                server.run(metrics.ready_until(shutdown)).await.map_err(categorized)?;
                metrics.stop().await;
                Ok(())
            })
        }
        HubCommand::Grant { volset, user, remote, token, ca_file } => {
            use strata_hub::Remote as _;
            let client = crate::open::hub_client(config, &remote, &token, ca_file.as_deref())?;
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
                let id = strata_hub::tokens::token_id(&token);
                writeln!(out, "{}", serde_json::json!({ "user": user, "id": id, "token": token }))?;
            } else {
                writeln!(out, "{token}")?;
            }
            out.flush()?;
            Ok(())
        }
        HubCommand::Token { command: TokenCommand::Ls { json } } => {
            let tokens =
                strata_hub::tokens::list_tokens(&hub_dir(data_dir)).map_err(categorized)?;
            if json {
                return print(&serde_json::to_string(&tokens)?);
            }
            let mut table = Table::new(["ID", "USER", "CREATED"]);
            for t in tokens {
                table.row([t.id, t.user, rfc3339(t.created_at)]);
            }
            print(&table.render())
        }
        HubCommand::Token { command: TokenCommand::Revoke { id, user, json } } => {
            use strata_hub::tokens::{Revoke, revoke_tokens};
            let which = match (&id, &user) {
                (_, Some(user)) => Revoke::User(user),
                (Some(id), None) => Revoke::Id(id),
                (None, None) => anyhow::bail!("give a token id or --user USER"),
            };
            let gone = revoke_tokens(&hub_dir(data_dir), which).map_err(categorized)?;
            if json {
                return print(&serde_json::to_string(&gone)?);
            }
            let lines: Vec<String> =
                gone.iter().map(|t| format!("revoked token {} of {}", t.id, t.user)).collect();
            print(&lines.join("\n"))
        }
    }
}
